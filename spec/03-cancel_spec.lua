-- spec/03-cancel_spec.lua -- docs/cancellation.md: h:abort, level-triggering,
-- abort wins, is_cancelled, shield, and its section At runtime shutdown (when
-- main ends every task still alive is aborted and unwound before run returns;
-- no unfinished task is collected while suspended).
--
-- Everything runs on the virtual clock, so every time assertion is exact and
-- independent of machine speed.

local H = require "spec.helpers"
local spindle = H.spindle

local pack = table.pack

-- fn as the main task of a fresh virtual-clock runtime, closed after;
-- virtual-clock differences are exact up to floating-point rounding.
local vrun, is_cancel, near = H.vrun, H.is_cancel, H.near

-- A to-be-closed value that counts how often it was closed, into log.
local function closer(log, name, extra)
  log.created[name] = (log.created[name] or 0) + 1
  return setmetatable({}, {__close = function(_, err)
    log.closed[name] = (log.closed[name] or 0) + 1
    log.order[#log.order + 1] = name
    if extra then extra(err) end
  end})
end
local function newlog() return {created = {}, closed = {}, order = {}} end

local function assert_closed_once(log)
  for name, n in pairs(log.created) do
    assert.are.equal(1, n, "created " .. name)
    assert.are.equal(1, log.closed[name], "__close of " .. name)
  end
  for name in pairs(log.closed) do
    assert.is_not_nil(log.created[name], "closed but never created: " .. name)
  end
end

describe("h:abort() on a task that has not started", function()
  it("never runs it, marks it cancelled at once, and returns true", function()
    local ran = false
    local r = vrun(function()
      local h = spindle.spawn(function() ran = true; return 1 end)
      assert.are.equal("ready", h:status())
      assert.is_true(h:abort())
      assert.are.equal("cancelled", h:status())
      for _ = 1, 5 do spindle.yield() end
      assert.are.equal("cancelled", h:status())
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
      local r = pack(h:result())
      assert.are.equal(2, r.n)
      assert.is_false(r[1])
      assert.is_true(is_cancel(r[2]))
      return "main"
    end)
    assert.are.equal("main", r)
    assert.is_false(ran)
  end)

  it("never runs the body, even after main sleeps past any deadline", function()
    local ran = false
    vrun(function()
      local h = spindle.spawn(function(x) ran = x end, true)
      h:abort()
      spindle.sleep(10)
      assert.are.equal("cancelled", h:status())
    end)
    assert.is_false(ran)
  end)
end)

describe("h:abort() on a waiting task", function()
  it("cancels a sleep at once: the sleep raises a cancellation error in the task", function()
    local log = newlog()
    local seen
    local t_abort, t_join
    vrun(function()
      local h = spindle.spawn(function()
        local c <close> = closer(log, "c")
        local ok, e = pcall(spindle.sleep, 3600)
        seen = pack(ok, e)
        error(e, 0) -- re-raise; abort wins anyway
      end)
      spindle.yield()
      assert.are.equal("waiting", h:status())
      t_abort = spindle.now()
      assert.is_true(h:abort())
      local ok, e = pcall(h.join, h)
      t_join = spindle.now()
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
      assert.are.equal("cancelled", h:status())
      assert_closed_once(log)
    end)
    assert.is_false(seen[1])
    assert.is_true(is_cancel(seen[2]))
    assert.are.equal(t_abort, t_join) -- woken by the abort, not by the deadline
    assert_closed_once(log)
  end)

  it("stops the timer of the cancelled sleep (observed with rt:next_timeout)", function()
    local rt = spindle.runtime() -- stepped by hand; nothing here waits
    local ok, err = pcall(function()
      local h = rt:spawn(spindle.sleep, 100)
      assert.are.equal(1, rt:step())
      assert.are.equal("waiting", h:status())
      local nt = rt:next_timeout()
      assert.is_true(type(nt) == "number" and nt > 99 and nt <= 100.001, tostring(nt))
      assert.is_true(h:abort())
      for _ = 1, 10 do
        if rt:step() == 0 then break end
      end
      assert.are.equal("cancelled", h:status())
      assert.is_nil(rt:next_timeout())
    end)
    rt:close()
    if not ok then error(err, 0) end
  end)

  it("cancels only the join of a task blocked in join; the joined task is unaffected", function()
    local seen
    vrun(function()
      local t0 = spindle.now()
      local x = spindle.spawn(function() spindle.sleep(5); return "x", nil, 3 end)
      local h = spindle.spawn(function()
        seen = pack(pcall(x.join, x))
        return "not reached"
      end)
      spindle.yield()
      assert.are.equal("waiting", h:status())
      assert.is_true(h:abort())
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
      assert.are.equal(0, spindle.now() - t0)
      assert.are.equal("waiting", x:status())
      local r = pack(x:join())
      assert.are.equal(3, r.n)
      assert.are.same({"x", nil, 3}, {r[1], r[2], r[3]})
      assert.are.equal("done", x:status())
      assert.is_true(near(5, spindle.now() - t0))
    end)
    assert.is_false(seen[1])
    assert.is_true(is_cancel(seen[2]))
  end)

  it("wakes a task with a far deadline without letting virtual time pass", function()
    vrun(function()
      local t0 = spindle.now()
      local hs = {}
      for i = 1, 50 do hs[i] = spindle.spawn(spindle.sleep, 1000 + i) end
      spindle.yield()
      for i = 1, 50 do assert.is_true(hs[i]:abort()) end
      for i = 1, 50 do
        local ok, e = pcall(hs[i].join, hs[i])
        assert.is_false(ok)
        assert.is_true(is_cancel(e))
      end
      assert.are.equal(t0, spindle.now())
      -- the cancelled timers must not disturb later sleeps
      spindle.sleep(2000)
      assert.is_true(near(2000, spindle.now() - t0))
    end)
  end)
end)

describe("h:abort() on a ready task", function()
  it("woken by its timer but not yet resumed: delivered at its next await", function()
    local second
    local h, status_at_abort
    vrun(function()
      h = spindle.spawn(function()
        pcall(spindle.sleep, 1) -- may or may not raise: it was already woken
        second = pack(pcall(spindle.yield))
        return "swallowed"
      end)
      -- main registers its (equal) deadline first, so it is resumed first:
      -- the task has been woken (ready) but not yet resumed when main runs
      spindle.sleep(1)
      status_at_abort = h:status()
      assert.is_true(h:abort())
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
    end)
    assert.are.equal("ready", status_at_abort)
    assert.is_false(second[1])
    assert.is_true(is_cancel(second[2]))
    assert.are.equal("cancelled", h:status())
  end)

  it("that yielded: its yield (or the next await) raises", function()
    local after = {}
    vrun(function()
      local h = spindle.spawn(function()
        for i = 1, 3 do
          after[i] = pack(pcall(spindle.yield))
        end
        return 1
      end)
      spindle.yield() -- h runs, yields, is ready again
      assert.are.equal("ready", h:status())
      assert.is_true(h:abort())
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
    end)
    -- the yield in progress or the one after it raises; all later ones raise
    assert.is_false(after[2][1])
    assert.is_true(is_cancel(after[2][2]))
    assert.is_false(after[3][1])
    assert.is_true(is_cancel(after[3][2]))
    if after[1][1] == false then assert.is_true(is_cancel(after[1][2])) end
  end)

  it("woken by the end of the task it joined", function()
    local got, after
    vrun(function()
      local x = spindle.spawn(function() spindle.yield(); return "x" end)
      local h = spindle.spawn(function()
        got = pack(pcall(x.join, x))
        after = pack(pcall(spindle.yield))
      end)
      spindle.yield() -- x yields, h joins x
      assert.are.equal("waiting", h:status())
      spindle.yield() -- x finishes and wakes h (ready, queued behind main)
      assert.are.equal("done", x:status())
      assert.are.equal("ready", h:status())
      assert.is_true(h:abort())
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
      assert.are.equal("x", x:join())
    end)
    if got[1] then assert.are.equal("x", got[2]) else assert.is_true(is_cancel(got[2])) end
    assert.is_false(after[1])
    assert.is_true(is_cancel(after[2]))
  end)
end)

describe("a running task aborting itself", function()
  it("keeps running until its next await, which raises; status becomes cancelled", function()
    local trace = {}
    local h
    vrun(function()
      h = spindle.spawn(function()
        local me = spindle.current()
        trace[#trace + 1] = me:status()
        trace[#trace + 1] = me:abort()
        trace[#trace + 1] = me:status() -- still running: delivered at next await
        trace[#trace + 1] = "after abort"
        local ok, e = pcall(spindle.yield)
        trace[#trace + 1] = ok
        trace[#trace + 1] = is_cancel(e)
        return "ignored"
      end)
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
    end)
    assert.are.same({"running", true, "running", "after abort", false, true}, trace)
    assert.are.equal("cancelled", h:status())
  end)

  it("is cancelled even when it returns without another await (abort wins)", function()
    local h
    vrun(function()
      h = spindle.spawn(function()
        spindle.current():abort()
        return 1, 2, 3
      end)
      local r = pack(h:result())
      assert.are.equal(2, r.n)
      assert.is_false(r[1])
      assert.is_true(is_cancel(r[2]))
    end)
    assert.are.equal("cancelled", h:status())
  end)

  it("main aborting itself makes run raise a cancellation error after unwinding", function()
    local log = newlog()
    local other_log = newlog()
    local ok, e = pcall(vrun, function()
      local c <close> = closer(log, "main")
      spindle.spawn(function()
        local c2 <close> = closer(other_log, "other")
        spindle.sleep(100)
      end)
      spindle.yield()
      spindle.current():abort()
      spindle.sleep(1)
      error("not reached")
    end)
    assert.is_false(ok)
    assert.is_true(spindle.is_cancelled(e))
    assert_closed_once(log)
    assert_closed_once(other_log)
    assert.are.equal(1, other_log.created.other)
  end)
end)

describe("aborting the main task from another task", function()
  it("makes run raise a cancellation error once main has unwound", function()
    local log = newlog()
    local ok, e = pcall(vrun, function()
      local c <close> = closer(log, "main")
      local main = spindle.current()
      spindle.spawn(function()
        spindle.sleep(1)
        log.abort_ret = main:abort()
      end)
      spindle.sleep(10)
      log.main_continued = true
    end)
    assert.is_false(ok)
    assert.is_true(is_cancel(e))
    assert.is_true(log.abort_ret)
    assert.is_nil(log.main_continued)
    assert_closed_once(log)
  end)
end)

describe("h:abort() return value", function()
  it("is true for every unfinished state and false once finished, changing nothing", function()
    vrun(function()
      local never = spindle.spawn(function() end)
      assert.is_true(never:abort())
      assert.is_false(never:abort()) -- cancelled before it started: finished
      assert.are.equal("cancelled", never:status())

      local done = spindle.spawn(function() return 1, nil, 3, nil end)
      local E = {"failure"}
      local failed = spindle.spawn(function() error(E) end)
      local sleeper = spindle.spawn(spindle.sleep, 10)
      spindle.yield()
      spindle.yield()
      assert.are.equal("done", done:status())
      assert.are.equal("failed", failed:status())
      assert.are.equal("waiting", sleeper:status())

      assert.is_false(done:abort())
      assert.is_false(done:abort())
      assert.are.equal("done", done:status())
      local r = pack(done:join())
      assert.are.equal(4, r.n)
      assert.are.same({1, nil, 3, nil}, {r[1], r[2], r[3], r[4]})

      assert.is_false(failed:abort())
      assert.are.equal("failed", failed:status())
      local ok, e = pcall(failed.join, failed)
      assert.is_false(ok)
      assert.are.equal(E, e) -- same table

      assert.is_true(sleeper:abort())
      assert.is_true(sleeper:abort()) -- still unfinished: not yet unwound
      pcall(sleeper.join, sleeper)
      assert.are.equal("cancelled", sleeper:status())
      assert.is_false(sleeper:abort())
      assert.are.equal("cancelled", sleeper:status())
      assert.is_false(never:abort())
      assert.are.equal("cancelled", never:status())
    end)
  end)
end)

describe("unwinding on abort", function()
  it("runs <close> handlers inside the task, innermost first, with the cancellation error", function()
    local log = newlog()
    local ids = {}
    local errs = {}
    local h
    vrun(function()
      local function rec(name)
        return function(err)
          local cur = spindle.current()
          ids[name] = cur and cur:id()
          errs[name] = err
        end
      end
      h = spindle.spawn(function()
        local a <close> = closer(log, "a", rec("a"))
        local function f()
          local b <close> = closer(log, "b", rec("b"))
          do
            local c <close> = closer(log, "c", rec("c"))
            spindle.sleep(10)
          end
        end
        f()
      end)
      spindle.yield()
      h:abort()
      pcall(h.join, h)
      assert_closed_once(log)
    end)
    assert.are.same({"c", "b", "a"}, log.order)
    for _, name in ipairs{"a", "b", "c"} do
      assert.are.equal(h:id(), ids[name])
      assert.is_true(is_cancel(errs[name]))
    end
  end)

  it("lets pcall and xpcall handlers see the cancellation error", function()
    local p, xp, handler_arg
    vrun(function()
      local h = spindle.spawn(function()
        p = pack(pcall(spindle.sleep, 10))
        xp = pack(xpcall(spindle.sleep, function(m) handler_arg = m; return "handled" end, 10))
      end)
      spindle.yield()
      h:abort()
      pcall(h.join, h)
    end)
    assert.is_false(p[1])
    assert.is_true(is_cancel(p[2]))
    assert.is_false(xp[1])
    assert.are.equal("handled", xp[2])
    assert.is_true(is_cancel(handler_arg))
  end)
end)

describe("level-triggered cancellation", function()
  it("makes every later await raise at once after a pcall swallowed the first", function()
    local res = {}
    local h
    vrun(function()
      local t0 = spindle.now()
      local other = spindle.spawn(function() spindle.sleep(50); return "other" end)
      h = spindle.spawn(function()
        res.first = pack(pcall(spindle.sleep, 10))
        res.yield = pack(pcall(spindle.yield))
        res.sleep = pack(pcall(spindle.sleep, 5))
        res.sleep0 = pack(pcall(spindle.sleep, 0))
        res.join = pack(pcall(other.join, other))
        res.result = pack(pcall(other.result, other))
        res.coyield = pack(pcall(coroutine.yield))
        res.t = spindle.now() - t0
        res.loops = 0
        for _ = 1, 100 do
          if not pcall(spindle.sleep, 1) then res.loops = res.loops + 1 end
        end
        return "kept going"
      end)
      spindle.yield()
      h:abort()
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
      assert.are.equal(0, spindle.now() - t0)
      assert.are.equal("other", other:join())
    end)
    for _, k in ipairs{"first", "yield", "sleep", "sleep0", "join", "result", "coyield"} do
      assert.is_false(res[k][1], k)
      assert.is_true(is_cancel(res[k][2]), k)
    end
    assert.are.equal(0, res.t)
    assert.are.equal(100, res.loops)
    assert.are.equal("cancelled", h:status())
  end)

  it("lets a task stuck in a loop of bare coroutine.yield be cancelled", function()
    local n = 0
    local h
    vrun(function()
      h = spindle.spawn(function()
        -- bounded so that a runtime that cannot cancel it fails, not hangs
        for _ = 1, 1000 do coroutine.yield(); n = n + 1 end
      end)
      for _ = 1, 10 do spindle.yield() end
      assert.is_true(h:abort())
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
    end)
    assert.is_true(n >= 5)
    assert.is_true(n < 1000, "the abort never reached the bare coroutine.yield loop")
    assert.are.equal("cancelled", h:status())
  end)

  it("makes an await in a <close> handler raise while unwinding", function()
    local inner
    vrun(function()
      local h = spindle.spawn(function()
        local c <close> = setmetatable({}, {__close = function()
          inner = pack(pcall(spindle.sleep, 1))
        end})
        spindle.sleep(10)
      end)
      spindle.yield()
      h:abort()
      pcall(h.join, h)
    end)
    assert.is_false(inner[1])
    assert.is_true(is_cancel(inner[2]))
  end)
end)

describe("abort wins", function()
  local function case(body)
    local reports = {}
    local h, r, j
    vrun(function()
      h = spindle.spawn(body)
      spindle.yield()
      assert.is_true(h:abort())
      j = pack(pcall(h.join, h))
      r = pack(h:result())
    end, {on_error = function(err, hh) reports[#reports + 1] = {err, hh} end})
    assert.are.equal("cancelled", h:status())
    assert.is_false(j[1])
    assert.is_true(is_cancel(j[2]))
    assert.is_false(r[1])
    assert.is_true(is_cancel(r[2]))
    assert.are.equal(0, #reports)
  end

  it("when the task swallows the cancellation and returns values", function()
    case(function()
      pcall(spindle.sleep, 10)
      return 1, nil, 3
    end)
  end)

  it("when the task swallows the cancellation and raises its own error", function()
    case(function()
      pcall(spindle.sleep, 10)
      error({"own error"})
    end)
  end)

  it("when the task swallows the cancellation and calls error(nil)", function()
    case(function()
      pcall(spindle.sleep, 10)
      error(nil)
    end)
  end)

  it("when a __close handler raises during unwinding", function()
    case(function()
      local c <close> = setmetatable({}, {__close = function() error("close failed") end})
      spindle.sleep(10)
    end)
  end)
end)

describe("joining a cancelled task", function()
  it("raises a cancellation error in every joiner, any number of times", function()
    local results = {}
    vrun(function()
      local h = spindle.spawn(spindle.sleep, 10)
      local joiners = {}
      for i = 1, 5 do
        joiners[i] = spindle.spawn(function()
          results[i] = pack(pcall(h.join, h))
          results[i].r = pack(h:result())
        end)
      end
      spindle.yield()
      h:abort()
      for i = 1, 5 do joiners[i]:join() end
      for _ = 1, 3 do
        local ok, e = pcall(h.join, h)
        assert.is_false(ok)
        assert.is_true(is_cancel(e))
      end
    end)
    for i = 1, 5 do
      assert.is_false(results[i][1])
      assert.is_true(is_cancel(results[i][2]))
      assert.are.equal(2, results[i].r.n)
      assert.is_false(results[i].r[1])
      assert.is_true(is_cancel(results[i].r[2]))
    end
  end)

  it("h:result() still raises the caller's own cancellation", function()
    local got
    vrun(function()
      local x = spindle.spawn(spindle.sleep, 100)
      local h = spindle.spawn(function()
        got = pack(pcall(x.result, x))
      end)
      spindle.yield()
      h:abort()
      pcall(h.join, h)
      x:abort()
    end)
    assert.is_false(got[1]) -- raised, did not return false, err
    assert.is_true(is_cancel(got[2]))
  end)

  it("a task re-raising a cancellation error without being aborted is failed", function()
    local cancel_err
    local reports = {}
    vrun(function()
      local a = spindle.spawn(spindle.sleep, 10)
      spindle.yield()
      a:abort()
      local b = spindle.spawn(function()
        local ok, e = pcall(a.join, a)
        cancel_err = e
        error(e, 0)
      end)
      local ok, e = pcall(b.join, b)
      assert.is_false(ok)
      assert.is_true(rawequal(cancel_err, e))
      assert.is_true(spindle.is_cancelled(e))
      assert.are.equal("failed", b:status())
      local r = pack(b:result())
      assert.is_false(r[1])
      assert.is_true(rawequal(cancel_err, r[2]))
    end, {on_error = function(err) reports[#reports + 1] = err end})
    assert.are.equal(0, #reports) -- b was joined
  end)
end)

describe("spindle.is_cancelled", function()
  it("is true for cancellation and timeout errors, false for anything else", function()
    local cancel_err, timeout_err
    vrun(function()
      local h = spindle.spawn(spindle.sleep, 10)
      spindle.yield()
      h:abort()
      cancel_err = select(2, pcall(h.join, h))
      timeout_err = select(2, pcall(spindle.timeout, 1, spindle.sleep, 2))
    end)
    assert.is_true(spindle.is_cancelled(cancel_err))
    assert.are.equal("cancelled", tostring(cancel_err))
    assert.is_true(spindle.is_cancelled(timeout_err))
    assert.are.equal("timeout", tostring(timeout_err))
    assert.is_false(spindle.is_timeout(cancel_err))
    assert.is_true(spindle.is_timeout(timeout_err))
    for _, v in ipairs{"cancelled", "timeout", 0, 1, true, false, {}, print,
        setmetatable({}, {__tostring = function() return "cancelled" end}),
        coroutine.create(print)} do
      assert.is_false(spindle.is_cancelled(v), tostring(v))
      assert.is_false(spindle.is_timeout(v), tostring(v))
    end
    assert.is_false(spindle.is_cancelled(nil))
    assert.is_false(spindle.is_timeout(nil))
  end)
end)

describe("spindle.shield", function()
  it("passes arguments and returns all results, nil holes included", function()
    vrun(function()
      local r = pack(spindle.shield(function(...) spindle.sleep(1); return ... end, 1, nil, 3, nil))
      assert.are.equal(4, r.n)
      assert.are.same({1, nil, 3, nil}, {r[1], r[2], r[3], r[4]})
    end)
  end)

  it("defers an abort until fn returns; the next await then raises", function()
    local rec = {}
    local h
    vrun(function()
      local t0 = spindle.now()
      h = spindle.spawn(function()
        rec.r = pack(spindle.shield(function()
          spindle.sleep(5)
          rec.t_inner = spindle.now() - t0
          spindle.yield()
          return "shielded", nil
        end))
        rec.after = true
        rec.next = pack(pcall(spindle.yield))
      end)
      spindle.sleep(1)
      assert.is_true(h:abort())
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
      assert.is_true(near(5, spindle.now() - t0)) -- join waited for the shield
    end)
    assert.is_true(near(5, rec.t_inner))
    assert.are.equal(2, rec.r.n)
    assert.are.equal("shielded", rec.r[1])
    assert.is_true(rec.after)
    assert.is_false(rec.next[1])
    assert.is_true(is_cancel(rec.next[2]))
    assert.are.equal("cancelled", h:status())
  end)

  it("lets cleanup in a <close> handler await while the task unwinds from an abort", function()
    local flushed, t_flush, t_join
    vrun(function()
      local t0 = spindle.now()
      local h = spindle.spawn(function()
        local c <close> = setmetatable({}, {__close = function()
          spindle.shield(function()
            spindle.sleep(2)
            flushed = true
            t_flush = spindle.now() - t0
          end)
        end})
        spindle.sleep(100)
      end)
      spindle.yield()
      h:abort()
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(is_cancel(e))
      t_join = spindle.now() - t0
    end)
    assert.is_true(flushed)
    assert.is_true(near(2, t_flush))
    assert.is_true(near(2, t_join))
  end)

  it("nested shields defer the abort until the outermost returns", function()
    local rec = {}
    vrun(function()
      local h = spindle.spawn(function()
        spindle.shield(function()
          spindle.shield(function() spindle.sleep(1) end)
          rec.between = pack(pcall(spindle.sleep, 1))
          spindle.shield(spindle.sleep, 1)
        end)
        rec.outside = pack(pcall(spindle.sleep, 1))
      end)
      spindle.yield()
      h:abort()
      pcall(h.join, h)
    end)
    assert.is_true(rec.between[1])
    assert.is_false(rec.outside[1])
    assert.is_true(is_cancel(rec.outside[2]))
  end)

  it("propagates fn's error unchanged", function()
    local E = {"shield error"}
    vrun(function()
      local ok, e = pcall(spindle.shield, function() spindle.sleep(1); error(E) end)
      assert.is_false(ok)
      assert.is_true(rawequal(E, e))
    end)
  end)

  it("does not stop a task aborted before it started", function()
    local ran = false
    vrun(function()
      local h = spindle.spawn(spindle.shield, function() ran = true end)
      h:abort()
      pcall(h.join, h)
      assert.are.equal("cancelled", h:status())
    end)
    assert.is_false(ran)
  end)

  it("raises outside a task", function()
    local ok, e = pcall(spindle.shield, function() end)
    assert.is_false(ok)
    assert.is_truthy(string.find(tostring(e), "not inside a task", 1, true))
  end)
end)

describe("runtime shutdown", function()
  it("aborts and unwinds every task still alive before run returns", function()
    local logs = {}
    local hs = {}
    local r = pack(vrun(function()
      local function task(name, fn)
        local h = spindle.spawn(function()
          local c <close> = closer(logs, name)
          return fn()
        end)
        hs[name] = h
        return h
      end
      logs.created, logs.closed, logs.order = {}, {}, {}
      task("sleeping", function() spindle.sleep(100) end)
      local target = task("target", function() spindle.sleep(200) end)
      task("joining", function() target:join() end)
      task("yielding", function() while true do spindle.yield() end end)
      task("swallowing", function()
        pcall(spindle.sleep, 100)
        spindle.sleep(1) -- level-triggered: raises at once during shutdown
        logs.swallower_slept = true
      end)
      spindle.yield()
      spindle.yield()
      hs.never = spindle.spawn(function() logs.never_ran = true end)
      return 1, nil, 3, nil
    end))
    assert.are.equal(4, r.n)
    assert.are.same({1, nil, 3, nil}, {r[1], r[2], r[3], r[4]})
    for _, name in ipairs{"sleeping", "target", "joining", "yielding", "swallowing"} do
      assert.are.equal(1, logs.created[name], name)
      assert.are.equal(1, logs.closed[name], name)
      assert.are.equal("cancelled", hs[name]:status(), name)
    end
    assert.is_nil(logs.never_ran)
    assert.is_nil(logs.swallower_slept)
    assert.are.equal("cancelled", hs.never:status())
  end)

  it("reaches a task looping on bare coroutine.yield", function()
    local n = 0
    local h
    vrun(function()
      h = spindle.spawn(function()
        -- bounded so that a runtime that cannot cancel it fails, not hangs
        for _ = 1, 1000 do coroutine.yield(); n = n + 1 end
      end)
      spindle.yield()
    end)
    assert.is_true(n < 1000, "shutdown never reached the bare coroutine.yield loop")
    assert.are.equal("cancelled", h:status())
  end)

  it("aborts a task that was ready when main returned instead of finishing it", function()
    local after = {}
    local h
    vrun(function()
      h = spindle.spawn(function()
        spindle.sleep(1)
        after.woke = true
        after.sleep0 = pack(pcall(spindle.sleep, 0))
        return "finished normally"
      end)
      spindle.sleep(1) -- same deadline, registered first: h is ready now
      after.status = h:status()
    end)
    assert.are.equal("ready", after.status)
    assert.are.equal("cancelled", h:status())
    if after.sleep0 then -- if it ran on, its next await had to raise
      assert.is_false(after.sleep0[1])
      assert.is_true(is_cancel(after.sleep0[2]))
    end
  end)

  it("waits for shielded cleanup of aborted tasks before run returns", function()
    local done_at
    local t0
    vrun(function()
      t0 = spindle.now()
      spindle.spawn(function()
        local c <close> = setmetatable({}, {__close = function()
          spindle.shield(function()
            spindle.sleep(3)
            done_at = spindle.now() - t0
          end)
        end})
        spindle.sleep(100)
      end)
      spindle.yield()
    end)
    assert.is_true(near(3, done_at))
  end)

  it("also cancels a task spawned while unwinding", function()
    local late, late_ran = nil, false
    vrun(function()
      spindle.spawn(function()
        local c <close> = setmetatable({}, {__close = function()
          late = spindle.spawn(function() late_ran = true end)
        end})
        spindle.sleep(100)
      end)
      spindle.yield()
    end)
    assert.is_not_nil(late)
    assert.is_false(late_ran)
    assert.are.equal("cancelled", late:status())
  end)

  it("unwinds the others when main raises, then raises main's error", function()
    local log = newlog()
    local E = {"main failed"}
    local ok, e = pcall(vrun, function()
      for i = 1, 3 do
        spindle.spawn(function()
          local c <close> = closer(log, "t" .. i)
          spindle.sleep(10 * i)
        end)
      end
      spindle.yield()
      error(E)
    end)
    assert.is_false(ok)
    assert.is_true(rawequal(E, e))
    assert_closed_once(log)
    assert.are.equal(3, #log.order)
  end)

  it("does not report cancelled tasks as failures", function()
    local reports = 0
    vrun(function()
      for _ = 1, 10 do spindle.spawn(spindle.sleep, 5) end
      spindle.yield()
    end, {on_error = function() reports = reports + 1 end})
    assert.are.equal(0, reports)
  end)

  it("rt:close() on a stepped runtime aborts and unwinds its tasks", function()
    local log = newlog()
    local rt = spindle.runtime() -- real clock: the sleep cannot end in a step
    local h = rt:spawn(function()
      local c <close> = closer(log, "c")
      spindle.sleep(100)
    end)
    local live = rt:step()
    assert.are.equal(1, live)
    assert.are.equal("waiting", h:status())
    rt:close()
    assert_closed_once(log)
    assert.are.equal(1, log.created.c)
    assert.are.equal("cancelled", h:status())
  end)
end)

describe("suspended tasks and the garbage collector", function()
  local function detached_sleepers(gcmode)
    local log = newlog()
    local woke, finished = 0, 0
    local prev = collectgarbage(gcmode)
    local ok, err = pcall(vrun, function()
      for i = 1, 200 do
        -- handles are dropped at once: the runtime alone keeps them alive
        spindle.spawn(function()
          local c <close> = closer(log, "s" .. i)
          local big = {} for k = 1, 20 do big[k] = {k} end
          spindle.sleep(i % 10 + 1)
          woke = woke + 1
          spindle.yield()
          assert(#big == 20)
          finished = finished + 1
          return big
        end)
      end
      -- a pair where each one is reachable only from the runtime
      spindle.spawn(function()
        local inner = spindle.spawn(function()
          local c <close> = closer(log, "inner")
          spindle.sleep(7)
          return "inner result"
        end)
        local c <close> = closer(log, "outer")
        log.pair = inner:join()
      end)
      -- ones still alive when main returns
      for i = 1, 50 do
        spindle.spawn(function()
          local c <close> = closer(log, "late" .. i)
          spindle.sleep(1000)
          log.late_woke = true
        end)
      end
      for _ = 1, 12 do
        collectgarbage("collect")
        collectgarbage("collect")
        spindle.sleep(1)
      end
    end)
    collectgarbage(prev)
    if not ok then error(err, 0) end
    assert.are.equal(200, woke)
    assert.are.equal(200, finished)
    assert.are.equal("inner result", log.pair)
    assert.is_nil(log.late_woke)
    assert_closed_once(log)
    assert.are.equal(200 + 2 + 50, #log.order)
    collectgarbage("collect")
    assert.are.equal(200 + 2 + 50, #log.order) -- nothing closed a second time
  end

  it("never collects an unfinished task while it sleeps (incremental GC)", function()
    detached_sleepers("incremental")
  end)

  it("never collects an unfinished task while it sleeps (generational GC)", function()
    detached_sleepers("generational")
  end)

  it("keeps never-started and ready tasks whose handles were dropped", function()
    local ran = {}
    vrun(function()
      for i = 1, 100 do spindle.spawn(function() ran[i] = true; spindle.yield(); ran[i] = 2 end) end
      collectgarbage("collect")
      collectgarbage("collect")
      spindle.yield() -- all ran once and are ready again
      collectgarbage("collect")
      collectgarbage("collect")
      spindle.yield()
      spindle.yield()
    end)
    for i = 1, 100 do assert.are.equal(2, ran[i]) end
  end)
end)
