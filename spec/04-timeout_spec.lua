-- spec/04-timeout_spec.lua -- docs/cancellation.md#timeouts: spindle.timeout,
-- is_timeout, level-triggered deadlines, scoped nesting, and how timeouts
-- meet abort and shield.  Virtual clock throughout: every time below is exact.

local H = require "spec.helpers"
local spindle = H.spindle

local pack = table.pack
local vrun, is_cancel, near = H.vrun, H.is_cancel, H.near

local function is_timeout_err(e)
  return spindle.is_timeout(e) == true and spindle.is_cancelled(e) == true
    and tostring(e) == "timeout"
end

describe("spindle.timeout in time", function()
  it("returns all of fn's results, nil holes included, and passes arguments", function()
    vrun(function()
      local t0 = spindle.now()
      local r = pack(spindle.timeout(5, function(...)
        spindle.sleep(1)
        return ...
      end, 1, nil, 3, nil))
      assert.are.equal(4, r.n)
      assert.are.same({1, nil, 3, nil}, {r[1], r[2], r[3], r[4]})
      assert.is_true(near(spindle.now() - t0, 1))
      r = pack(spindle.timeout(5, function() end))
      assert.are.equal(0, r.n)
    end)
  end)

  it("runs fn in the current task", function()
    vrun(function()
      local me = spindle.current()
      local inside = spindle.timeout(1, function() return spindle.current() end)
      assert.are.equal(me:id(), inside:id())
    end)
  end)

  it("returns at once when fn does not await", function()
    vrun(function()
      local t0 = spindle.now()
      assert.are.equal("x", spindle.timeout(1, function() return "x" end))
      assert.are.equal("y", spindle.timeout(0, function() return "y" end))
      assert.are.equal(t0, spindle.now())
    end)
  end)

  it("disarms its deadline when fn returns: later awaits are unaffected", function()
    vrun(function()
      local t0 = spindle.now()
      spindle.timeout(2, spindle.sleep, 1)
      spindle.sleep(5) -- past the old deadline: must not raise
      assert.is_true(near(spindle.now() - t0, 6))
      for _ = 1, 100 do spindle.timeout(1, spindle.yield) end
      spindle.sleep(10)
      assert.is_true(near(spindle.now() - t0, 16))
    end)
  end)

  it("removes its deadline's timer when fn returns (observed with rt:next_timeout)", function()
    local reported = 0
    local rt = spindle.runtime{on_error = function() reported = reported + 1 end}
    local ok, err = pcall(function()
      local h = rt:spawn(function()
        local r = spindle.timeout(100, function() spindle.yield(); return "in time" end)
        spindle.timeout(200, function() error("fails in time") end)
        return r
      end)
      for _ = 1, 10 do
        if rt:step() == 0 then break end
      end
      assert.are.equal("failed", h:status())
      assert.is_nil(rt:next_timeout())
    end)
    rt:close()
    if not ok then error(err, 0) end
    assert.are.equal(1, reported)
  end)

  it("raises fn's own error unchanged", function()
    vrun(function()
      local E = {"own"}
      local ok, e = pcall(spindle.timeout, 5, function() spindle.sleep(1); error(E) end)
      assert.is_false(ok)
      assert.is_true(rawequal(E, e))
      ok, e = pcall(spindle.timeout, 5, function() error("plain", 0) end)
      assert.is_false(ok)
      assert.are.equal("plain", e)
      ok, e = pcall(spindle.timeout, 5, function() error(nil) end)
      assert.is_false(ok)
      assert.is_nil(e)
    end)
  end)
end)

describe("spindle.timeout expiring", function()
  it("raises a timeout error at the deadline, never early", function()
    for _, d in ipairs{0.001, 0.0015, 0.25, 1.5, 3600} do
      vrun(function()
        local t0 = spindle.now()
        local ok, e = pcall(spindle.timeout, d, spindle.sleep, d * 4 + 1)
        local dt = spindle.now() - t0
        assert.is_false(ok)
        assert.is_true(is_timeout_err(e))
        -- slack: floating-point rounding of now() - t0 only
        assert.is_true(dt >= d - (1e-12 + math.abs(spindle.now()) * 2 ^ -50),
          "early: " .. dt .. " < " .. d)
        assert.is_true(dt < d + 0.0011, "virtual clock overshoot: " .. dt .. " for " .. d)
      end)
    end
  end)

  it("raises the timeout error in the await fn is blocked in, unwinding fn", function()
    local rec = {closed = 0}
    vrun(function()
      local t0 = spindle.now()
      local ok, e = pcall(spindle.timeout, 2, function()
        local c <close> = setmetatable({}, {__close = function(_, err)
          rec.closed = rec.closed + 1
          rec.close_err = err
          rec.close_t = spindle.now() - t0
        end})
        local ok2, e2 = pcall(spindle.sleep, 10)
        rec.inner = pack(ok2, e2)
        error(e2, 0)
      end)
      rec.outer = pack(ok, e)
    end)
    assert.is_false(rec.inner[1])
    assert.is_true(is_timeout_err(rec.inner[2]))
    assert.is_false(rec.outer[1])
    assert.is_true(rawequal(rec.inner[2], rec.outer[2])) -- "then raises that error"
    assert.are.equal(1, rec.closed)
    assert.is_true(rawequal(rec.inner[2], rec.close_err))
    assert.is_true(near(rec.close_t, 2))
  end)

  it("is level-triggered: every await inside fn raises again, at once", function()
    local rec = {}
    vrun(function()
      local t0 = spindle.now()
      local other = spindle.spawn(function() spindle.sleep(100); return "o" end)
      local r = pack(spindle.timeout(1, function()
        rec.first = pack(pcall(spindle.sleep, 50))
        rec.t1 = spindle.now() - t0
        rec.again = {}
        for i = 1, 5 do rec.again[i] = pack(pcall(spindle.sleep, 1)) end
        rec.yield = pack(pcall(spindle.yield))
        rec.join = pack(pcall(other.join, other))
        rec.t2 = spindle.now() - t0
        return "recovered", nil
      end))
      rec.r = r
      -- the scope is gone: awaits work again, the other task is unaffected
      rec.after = pack(pcall(spindle.sleep, 2))
      rec.t3 = spindle.now() - t0
      rec.other = other:join()
    end)
    assert.is_false(rec.first[1])
    assert.is_true(is_timeout_err(rec.first[2]))
    assert.is_true(near(rec.t1, 1))
    for i = 1, 5 do
      assert.is_false(rec.again[i][1])
      assert.is_true(is_timeout_err(rec.again[i][2]))
    end
    assert.is_false(rec.yield[1])
    assert.is_true(is_timeout_err(rec.yield[2]))
    assert.is_false(rec.join[1])
    assert.is_true(is_timeout_err(rec.join[2]))
    assert.is_true(near(rec.t2, 1))
    -- fn still returned normally: timeout returns its results
    assert.are.equal(2, rec.r.n)
    assert.are.equal("recovered", rec.r[1])
    assert.is_true(rec.after[1])
    assert.is_true(near(rec.t3, 3))
    assert.are.equal("o", rec.other)
  end)

  it("with a zero deadline raises at the first await that would wait", function()
    vrun(function()
      local t0 = spindle.now()
      local ok, e = pcall(spindle.timeout, 0, spindle.sleep, 1)
      assert.is_false(ok)
      assert.is_true(is_timeout_err(e))
      assert.are.equal(t0, spindle.now())
    end)
  end)

  it("leaves the joined task alone when a join times out", function()
    vrun(function()
      local t0 = spindle.now()
      local h = spindle.spawn(function() spindle.sleep(5); return "late" end)
      local ok, e = pcall(spindle.timeout, 1, h.join, h)
      assert.is_false(ok)
      assert.is_true(is_timeout_err(e))
      assert.is_true(near(spindle.now() - t0, 1))
      assert.are.equal("waiting", h:status())
      assert.are.equal("late", h:join())
      assert.is_true(near(spindle.now() - t0, 5))
    end)
  end)

  it("expires concurrent timeouts in deadline order", function()
    local order = {}
    vrun(function()
      local ds = {7, 3, 9, 1, 5, 2, 8, 4, 6, 10}
      local hs = {}
      for i, d in ipairs(ds) do
        hs[i] = spindle.spawn(function()
          local ok, e = pcall(spindle.timeout, d, spindle.sleep, 100)
          assert(not ok and spindle.is_timeout(e))
          order[#order + 1] = d
        end)
      end
      for i = 1, #hs do hs[i]:join() end
    end)
    assert.are.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, order)
  end)
end)

describe("nested timeouts", function()
  it("an inner deadline that expires raises to the inner timeout's caller", function()
    local rec = {}
    vrun(function()
      local t0 = spindle.now()
      rec.r = pack(spindle.timeout(10, function()
        rec.inner = pack(pcall(spindle.timeout, 1, spindle.sleep, 5))
        rec.t_inner = spindle.now() - t0
        spindle.sleep(2) -- the outer scope is still fine
        rec.t_after = spindle.now() - t0
        return "outer ok"
      end))
    end)
    assert.is_false(rec.inner[1])
    assert.is_true(is_timeout_err(rec.inner[2]))
    assert.is_true(near(rec.t_inner, 1))
    assert.is_true(near(rec.t_after, 3))
    assert.are.equal(1, rec.r.n)
    assert.are.equal("outer ok", rec.r[1])
  end)

  it("an outer deadline is never caught by an inner timeout", function()
    local rec = {}
    vrun(function()
      local t0 = spindle.now()
      rec.outer = pack(pcall(spindle.timeout, 1, function()
        rec.inner = pack(pcall(spindle.timeout, 5, function()
          spindle.sleep(3)
          rec.inner_fn_continued = true
          return "inner done"
        end))
        rec.t_inner = spindle.now() - t0
        rec.next = pack(pcall(spindle.sleep, 1)) -- still in the expired scope
        spindle.sleep(1)
        rec.outer_fn_continued = true
      end))
      rec.t_outer = spindle.now() - t0
      spindle.sleep(10) -- neither deadline lingers
      rec.t_end = spindle.now() - t0
    end)
    -- the inner timeout raised the outer's error on instead of returning
    assert.is_false(rec.inner[1])
    assert.is_true(is_timeout_err(rec.inner[2]))
    assert.is_nil(rec.inner_fn_continued)
    assert.is_true(near(rec.t_inner, 1))
    assert.is_false(rec.next[1])
    assert.is_true(is_timeout_err(rec.next[2]))
    assert.is_nil(rec.outer_fn_continued)
    assert.is_false(rec.outer[1])
    assert.is_true(is_timeout_err(rec.outer[2]))
    assert.is_true(near(rec.t_outer, 1))
    assert.is_true(near(rec.t_end, 11))
  end)

  it("an outer deadline is raised on even if the inner fn swallows it at its await", function()
    local rec = {}
    vrun(function()
      local t0 = spindle.now()
      rec.outer = pack(pcall(spindle.timeout, 1, function()
        rec.inner = pack(pcall(spindle.timeout, 5, function()
          rec.swallowed = pack(pcall(spindle.sleep, 3))
          rec.again = pack(pcall(spindle.sleep, 3))
          return "inner fn returned"
        end))
        rec.after_inner = spindle.now() - t0
        spindle.sleep(1)
        rec.outer_fn_continued = true
      end))
      rec.t_outer = spindle.now() - t0
    end)
    assert.is_false(rec.swallowed[1])
    assert.is_true(is_timeout_err(rec.swallowed[2]))
    assert.is_false(rec.again[1]) -- level-triggered across the inner scope
    assert.is_true(is_timeout_err(rec.again[2]))
    assert.is_nil(rec.outer_fn_continued)
    assert.is_false(rec.outer[1])
    assert.is_true(is_timeout_err(rec.outer[2]))
    assert.is_true(near(rec.t_outer, 1))
  end)

  it("the deadline that expired raises to its own caller, three levels deep", function()
    local rec = {}
    vrun(function()
      local t0 = spindle.now()
      rec.r = pack(spindle.timeout(10, function()
        rec.middle = pack(pcall(spindle.timeout, 2, function()
          local r = pack(spindle.timeout(5, function()
            spindle.sleep(4)
            rec.innermost_continued = true
          end))
          rec.middle_fn_continued = r
        end))
        rec.t_middle = spindle.now() - t0
        spindle.sleep(1)
        rec.t_outer_fn = spindle.now() - t0
        return "outer", nil, "done"
      end))
      rec.t_end = spindle.now() - t0
    end)
    assert.is_nil(rec.innermost_continued)
    assert.is_nil(rec.middle_fn_continued)
    assert.is_false(rec.middle[1])
    assert.is_true(is_timeout_err(rec.middle[2]))
    assert.is_true(near(rec.t_middle, 2))
    assert.is_true(near(rec.t_outer_fn, 3))
    assert.are.equal(3, rec.r.n)
    assert.are.same({"outer", nil, "done"}, {rec.r[1], rec.r[2], rec.r[3]})
    assert.is_true(near(rec.t_end, 3))
  end)

  it("an inner timeout caught inside the outer fn, then the outer one expiring", function()
    local rec = {}
    vrun(function()
      local t0 = spindle.now()
      rec.outer = pack(pcall(spindle.timeout, 4, function()
        rec.i1 = pack(pcall(spindle.timeout, 1, spindle.sleep, 10))
        rec.i2 = pack(pcall(spindle.timeout, 1, spindle.sleep, 10))
        rec.t = spindle.now() - t0
        spindle.sleep(10)
        rec.continued = true
      end))
      rec.t_outer = spindle.now() - t0
    end)
    assert.is_true(is_timeout_err(rec.i1[2]))
    assert.is_true(is_timeout_err(rec.i2[2]))
    assert.is_true(near(rec.t, 2))
    assert.is_nil(rec.continued)
    assert.is_false(rec.outer[1])
    assert.is_true(is_timeout_err(rec.outer[2]))
    assert.is_true(near(rec.t_outer, 4))
  end)
end)

describe("timeouts and tasks", function()
  it("a timeout error escaping a task makes it failed; join re-raises that value", function()
    local inside
    local reports = {}
    local h
    vrun(function()
      h = spindle.spawn(function()
        local ok, e = pcall(spindle.timeout, 1, spindle.sleep, 2)
        inside = e
        error(e, 0)
      end)
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(rawequal(inside, e))
      assert.is_true(spindle.is_timeout(e))
    end, {on_error = function(e) reports[#reports + 1] = e end})
    assert.are.equal("failed", h:status())
    assert.are.equal(0, #reports)
  end)

  it("an uncaught timeout in main makes run raise it", function()
    local ok, e = pcall(vrun, function()
      spindle.timeout(1, spindle.sleep, 2)
    end)
    assert.is_false(ok)
    assert.is_true(is_timeout_err(e))
  end)

  it("an abort inside timeout's fn raises a cancellation, not a timeout", function()
    local rec = {}
    local h
    vrun(function()
      local t0 = spindle.now()
      h = spindle.spawn(function()
        rec.t = pack(pcall(spindle.timeout, 10, function()
          rec.inner = pack(pcall(spindle.sleep, 20))
          error(rec.inner[2], 0)
        end))
        rec.after = pack(pcall(spindle.sleep, 1))
      end)
      spindle.sleep(1)
      h:abort()
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
      assert.is_true(near(spindle.now() - t0, 1))
    end)
    assert.is_true(is_cancel(rec.inner[2]))
    assert.is_false(rec.t[1])
    assert.is_true(is_cancel(rec.t[2]))
    assert.is_false(rec.after[1])
    assert.is_true(is_cancel(rec.after[2]))
    assert.are.equal("cancelled", h:status())
  end)

  it("an abort after a timeout expired still makes the task cancelled", function()
    local h
    vrun(function()
      h = spindle.spawn(function()
        pcall(spindle.timeout, 1, spindle.sleep, 5)
        spindle.sleep(10)
      end)
      spindle.sleep(2)
      h:abort()
      local r = pack(h:result())
      assert.is_false(r[1])
      assert.is_true(is_cancel(r[2]))
    end)
    assert.are.equal("cancelled", h:status())
  end)

  it("a shield inside timeout defers the expiry until the shield returns", function()
    local rec = {}
    vrun(function()
      local t0 = spindle.now()
      rec.r = pack(pcall(spindle.timeout, 1, function()
        spindle.shield(function()
          spindle.sleep(3)
          rec.shield_done = spindle.now() - t0
        end)
        rec.after_shield = true
        spindle.sleep(1)
        rec.continued = true
      end))
      rec.t = spindle.now() - t0
    end)
    assert.is_true(near(rec.shield_done, 3))
    assert.is_true(rec.after_shield)
    assert.is_nil(rec.continued)
    assert.is_false(rec.r[1])
    assert.is_true(is_timeout_err(rec.r[2]))
    assert.is_true(near(rec.t, 3))
  end)

  it("a timeout inside a shield still applies", function()
    vrun(function()
      local t0 = spindle.now()
      local r = pack(spindle.shield(function()
        return pcall(spindle.timeout, 1, spindle.sleep, 5)
      end))
      assert.is_false(r[1])
      assert.is_true(is_timeout_err(r[2]))
      assert.is_true(near(spindle.now() - t0, 1))
    end)
  end)

  it("a shielded task aborted inside a timeout finishes the shield, then is cancelled", function()
    local rec = {}
    local h
    vrun(function()
      local t0 = spindle.now()
      h = spindle.spawn(function()
        spindle.timeout(10, function()
          spindle.shield(function() spindle.sleep(2); rec.shield = spindle.now() - t0 end)
          rec.next = pack(pcall(spindle.sleep, 1))
        end)
      end)
      spindle.yield()
      h:abort()
      pcall(h.join, h)
    end)
    assert.is_true(near(rec.shield, 2))
    assert.is_false(rec.next[1])
    assert.is_true(is_cancel(rec.next[2]))
    assert.are.equal("cancelled", h:status())
  end)
end)

describe("spindle.is_timeout", function()
  it("is false for cancellation errors and for ordinary values", function()
    vrun(function()
      local h = spindle.spawn(spindle.sleep, 10)
      spindle.yield()
      h:abort()
      local _, e = pcall(h.join, h)
      assert.is_false(spindle.is_timeout(e))
      assert.is_true(spindle.is_cancelled(e))
    end)
    for _, v in ipairs{"timeout", 1, true, {}, print} do
      assert.is_false(spindle.is_timeout(v))
    end
    assert.is_false(spindle.is_timeout(nil))
  end)
end)

describe("spindle.timeout misuse", function()
  it("raises outside a task", function()
    local ok, e = pcall(spindle.timeout, 1, function() end)
    assert.is_false(ok)
    assert.is_truthy(string.find(tostring(e), "not inside a task", 1, true))
    assert.is_truthy(string.find(tostring(e), "timeout", 1, true))
  end)

  it("rejects bad durations and non-functions", function()
    vrun(function()
      for _, d in ipairs{-1, -0.001, 0 / 0, math.huge, -math.huge, 1e9 + 1, "x", {}} do
        local ok, e = pcall(spindle.timeout, d, function() end)
        assert.is_false(ok, tostring(d))
        assert.is_truthy(string.find(tostring(e), "bad argument #1", 1, true), tostring(e))
        assert.is_truthy(string.find(tostring(e), "timeout", 1, true), tostring(e))
      end
      local ok, e = pcall(spindle.timeout, nil, function() end)
      assert.is_false(ok)
      assert.is_truthy(string.find(tostring(e), "bad argument #1", 1, true))
      for _, f in ipairs{1, "f", {}, true} do
        ok, e = pcall(spindle.timeout, 1, f)
        assert.is_false(ok)
        assert.is_truthy(string.find(tostring(e), "bad argument #2", 1, true), tostring(e))
      end
      ok = pcall(spindle.timeout, 1)
      assert.is_false(ok)
      -- the runtime is still usable
      assert.are.equal(1, spindle.timeout(1, function() return 1 end))
    end)
  end)
end)
