-- spec/02-tasks_spec.lua -- docs/tasks.md (tasks and handles): spawn, yield,
-- sleep, now, current, the handle methods, detach, and the report of
-- failed tasks nobody observed.
local H = require "spec.helpers"
local spindle = H.spindle
local run = H.run_virtual

local STATUSES = {ready = true, running = true, waiting = true, done = true,
                  failed = true, cancelled = true}

describe("§2 spindle.spawn", function()
  it("returns a handle", function()
    run(function()
      local h = spindle.spawn(function() end)
      assert.equal("userdata", type(h))
      for _, m in ipairs({"join", "result", "abort", "status", "traceback", "id", "name"}) do
        assert.is_function(h[m], m)
      end
      assert.equal("task " .. h:id(), tostring(h))
      h:join()
    end)
  end)

  it("schedules fn(...) with every argument, nil holes included", function()
    local got = run(function()
      return spindle.spawn(function(...) return table.pack(...) end, nil, 2, nil, false):join()
    end)
    assert.same({n = 4, nil, 2, nil, false}, got)
  end)

  it("never runs fn inside spawn; it starts on a later turn", function()
    local log = {}
    run(function()
      local h = spindle.spawn(function() log[#log + 1] = "task" end)
      log[#log + 1] = "after spawn"
      assert.equal("ready", h:status())
      spindle.yield()
      log[#log + 1] = "after yield"
    end)
    assert.same({"after spawn", "task", "after yield"}, log)
  end)

  it("works from spawned tasks too (on the same runtime)", function()
    local v = run(function()
      return spindle.spawn(function()
        return spindle.spawn(function() spindle.sleep(1); return "deep" end):join()
      end):join()
    end)
    assert.equal("deep", v)
  end)

  it("starts ready tasks in the order they were spawned (FIFO)", function()
    local log = {}
    run(function()
      local hs = {}
      for i = 1, 10 do hs[i] = spindle.spawn(function() log[#log + 1] = i end) end
      for i = 1, 10 do hs[i]:join() end
    end)
    assert.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, log)
  end)

  it("runs ready tasks in the order they became ready (round robin on yield)", function()
    local log = {}
    run(function()
      local hs = {}
      for _, name in ipairs({"a", "b", "c"}) do
        hs[#hs + 1] = spindle.spawn(function()
          for i = 1, 3 do log[#log + 1] = name .. i; spindle.yield() end
        end)
      end
      for _, h in ipairs(hs) do h:join() end
    end)
    assert.same({"a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3"}, log)
  end)

  it("wakes sleepers in deadline order, FIFO among equal deadlines", function()
    local log = {}
    run(function()
      local hs = {}
      for _, spec in ipairs({{"d3", 3}, {"d1", 1}, {"e2a", 2}, {"d2", 2}, {"e2b", 2}, {"z", 0}}) do
        hs[#hs + 1] = spindle.spawn(function() spindle.sleep(spec[2]); log[#log + 1] = spec[1] end)
      end
      for _, h in ipairs(hs) do h:join() end
    end)
    assert.same({"z", "d1", "e2a", "d2", "e2b", "d3"}, log)
  end)

  it("queues a task woken by a join behind the tasks that were ready before it", function()
    local log = {}
    run(function()
      local a = spindle.spawn(function() spindle.sleep(1); log[#log + 1] = "a" end)
      local j = spindle.spawn(function() a:join(); log[#log + 1] = "j" end)
      local b = spindle.spawn(function() spindle.sleep(1); log[#log + 1] = "b" end)
      j:join(); b:join()
    end)
    -- a and b wake together (FIFO); a's end makes j ready after b
    assert.same({"a", "b", "j"}, log)
  end)

  it("raises outside a runtime", function()
    local ran = false
    local ok, err = pcall(spindle.spawn, function() ran = true end)
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, "not inside a runtime"), tostring(err))
    assert.is_false(ran)
  end)
end)

describe("§2 spindle.yield", function()
  it("goes to the back of the ready queue", function()
    local log = {}
    run(function()
      local a = spindle.spawn(function() log[#log + 1] = "a1"; spindle.yield(); log[#log + 1] = "a2" end)
      local b = spindle.spawn(function() log[#log + 1] = "b1"; spindle.yield(); log[#log + 1] = "b2" end)
      spindle.yield()
      log[#log + 1] = "main"
      a:join(); b:join()
    end)
    assert.same({"a1", "b1", "main", "a2", "b2"}, log)
  end)

  it("returns nothing and lets the task continue", function()
    local n = run(function() return select("#", spindle.yield()) end)
    assert.equal(0, n)
  end)

  it("polls I/O and timers before the task runs again: a yield loop cannot starve a sleeper", function()
    -- real clock; the loop is bounded by CPU time so a starving core fails
    local woke, spins = H.run_real(function()
      local woke = false
      spindle.spawn(function() spindle.sleep(0.02); woke = true end)
      local spins, t0 = 0, os.clock()
      while not woke and os.clock() - t0 < 5 do
        spindle.yield()
        spins = spins + 1
      end
      return woke, spins
    end)
    assert.is_true(woke)
    assert.is_true(spins > 0)
  end)
end)

describe("§2 spindle.sleep", function()
  it("sleeps exactly the given time on the virtual clock", function()
    local d = run(function()
      local t0 = spindle.now()
      spindle.sleep(2.5)
      local t1 = spindle.now()
      spindle.sleep(0.25)
      return {t1 - t0, spindle.now() - t1}
    end)
    assert.is_true(math.abs(d[1] - 2.5) < 1e-9, tostring(d[1]))
    assert.is_true(math.abs(d[2] - 0.25) < 1e-9, tostring(d[2]))
  end)

  it("never wakes early on the real clock", function()
    local d = H.run_real(function()
      local out = {}
      for i = 1, 5 do
        local t0 = spindle.now()
        spindle.sleep(0.01 * i)
        out[i] = spindle.now() - t0 - 0.01 * i
      end
      return out
    end)
    for i = 1, 5 do assert.is_true(d[i] >= -1e-9, "sleep " .. (0.01 * i) .. " woke early by " .. -d[i]) end
  end)

  it("sleep(0) behaves like yield: other ready tasks run first", function()
    local log = {}
    run(function()
      local t0 = spindle.now()
      spindle.spawn(function() log[#log + 1] = "other" end)
      spindle.sleep(0)
      log[#log + 1] = "main"
      assert.equal(t0, spindle.now())
    end)
    assert.same({"other", "main"}, log)
  end)

  it("accepts seconds >= 0 only", function()
    run(function()
      local ok, err = pcall(spindle.sleep, -0.5)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "bad argument #1 to '"), tostring(err))
      assert.truthy(H.msg_has(err, "sleep"), tostring(err))
    end)
  end)

  it("names the function and argument like luaL_argerror", function()
    run(function()
      local ok, err = pcall(function() spindle.sleep("soon") end)
      assert.is_false(ok)
      assert.truthy(err:find("bad argument #1 to '[%w_.]*sleep' %(number expected, got string%)"), err)
    end)
  end)
end)

describe("§2 spindle.now", function()
  it("is a number that never goes backwards", function()
    local ok = H.run_real(function()
      local prev = spindle.now()
      assert.equal("number", type(prev))
      for _ = 1, 50 do
        spindle.yield()
        local t = spindle.now()
        if t < prev then return false end
        prev = t
      end
      return true
    end)
    assert.is_true(ok)
  end)

  it("advances with the virtual clock by the slept amounts", function()
    local ts = run(function()
      local t = {spindle.now()}
      for _, d in ipairs({1, 0.5, 10}) do spindle.sleep(d); t[#t + 1] = spindle.now() end
      return t
    end)
    assert.is_true(math.abs(ts[2] - ts[1] - 1) < 1e-9)
    assert.is_true(math.abs(ts[3] - ts[2] - 0.5) < 1e-9)
    assert.is_true(math.abs(ts[4] - ts[3] - 10) < 1e-9)
  end)

  it("has at least millisecond resolution", function()
    local d = run(function()
      local t0 = spindle.now()
      spindle.sleep(0.001)
      return spindle.now() - t0
    end)
    assert.is_true(d > 0 and math.abs(d - 0.001) < 1e-9, tostring(d))
  end)
end)

describe("§2 spindle.current", function()
  it("is the handle of the running task", function()
    run(function()
      local me = spindle.current()
      assert.equal("running", me:status())
      assert.equal(me, spindle.current())
      local h
      h = spindle.spawn(function()
        local c = spindle.current()
        assert.equal(h, c)
        assert.equal(h:id(), c:id())
        assert.equal("running", c:status())
        assert.are_not.equal(me:id(), c:id())
        return c:id()
      end)
      assert.equal(h:id(), h:join())
      assert.equal(me, spindle.current())
    end)
  end)

  it("is nil outside tasks", function()
    assert.is_nil(spindle.current())
    local rt = spindle.runtime({clock = "virtual"})
    rt:spawn(function() end)
    assert.is_nil(spindle.current())
    rt:run()
    assert.is_nil(spindle.current())
    rt:close()
  end)
end)

describe("§2 h:join", function()
  it("waits for the task and returns all its results, nil holes included", function()
    local r = run(function()
      local h = spindle.spawn(function() spindle.sleep(1); return nil, "two", nil end)
      return table.pack(h:join())
    end)
    assert.same({n = 3, nil, "two", nil}, r)
  end)

  it("returns thousands of results (and spawn passes thousands of arguments)", function()
    local N = 5000
    local args = {}
    for i = 1, N do args[i] = i end
    run(function()
      local h = spindle.spawn(function(...)
        spindle.sleep(1)
        return ...
      end, table.unpack(args, 1, N))
      local r = table.pack(h:join())
      assert.equal(N, r.n)
      assert.equal(N, r[N])
      r = table.pack(h:result())
      assert.equal(N + 1, r.n)
      assert.is_true(r[1])
      assert.equal(N, r[N + 1])
    end)
  end)

  it("returns zero results for a task that returned nothing", function()
    assert.equal(0, run(function() return select("#", spindle.spawn(function() end):join()) end))
  end)

  it("returns result values themselves, not copies", function()
    local t = {}
    local got = run(function() return spindle.spawn(function() return t end):join() end)
    assert.equal(t, got)
  end)

  it("puts the joiner in status 'waiting' until the task ends", function()
    run(function()
      local h = spindle.spawn(function() spindle.sleep(5); return 1 end)
      local j = spindle.spawn(function() return h:join() end)
      spindle.sleep(1)
      assert.equal("waiting", j:status())
      assert.equal(1, j:join())
    end)
  end)

  it("raises the task's error string unchanged", function()
    local ok, err = pcall(run, function()
      spindle.spawn(function() spindle.sleep(1); error("task boom", 0) end):join()
    end)
    assert.is_false(ok)
    assert.equal("task boom", err)
  end)

  it("raises the task's error table with its identity", function()
    local e = {}
    run(function()
      local h = spindle.spawn(function() error(e) end)
      local ok, err = pcall(h.join, h)
      assert.is_false(ok)
      assert.equal(e, err)
    end)
  end)

  it("raises non-string, non-table error values unchanged (number, false, nil)", function()
    run(function()
      for _, v in ipairs({{42}, {false}, {nil}}) do
        local h = spindle.spawn(function() error(v[1]) end)
        local ok, err = pcall(h.join, h)
        assert.is_false(ok)
        assert.equal(v[1], err)
      end
    end)
  end)

  it("raises a cancellation error for an aborted task", function()
    run(function()
      local sleeping = spindle.spawn(function() spindle.sleep(10) end)
      spindle.sleep(1)
      local unstarted = spindle.spawn(function() end)
      assert.is_true(sleeping:abort())
      assert.is_true(unstarted:abort())
      for _, h in ipairs({sleeping, unstarted}) do
        local ok, err = pcall(h.join, h)
        assert.is_false(ok)
        assert.is_true(spindle.is_cancelled(err))
        assert.equal("cancelled", tostring(err))
      end
    end)
  end)

  it("keeps a finished task's results available as long as the handle lives", function()
    local e = {}
    run(function()
      local ok_h = spindle.spawn(function() return 1, nil, 3 end)
      local bad_h = spindle.spawn(function() error(e) end)
      spindle.sleep(1)
      assert.equal("done", ok_h:status())
      for _ = 1, 3 do
        collectgarbage(); collectgarbage()
        assert.same({n = 3, 1, nil, 3}, table.pack(ok_h:join()))
        local ok, err = pcall(bad_h.join, bad_h)
        assert.is_false(ok); assert.equal(e, err)
        spindle.sleep(1)
      end
      -- and from another task, later
      assert.same({n = 3, 1, nil, 3}, spindle.spawn(function() return table.pack(ok_h:join()) end):join())
    end)
  end)

  it("lets any number of tasks join one handle", function()
    local e = {}
    run(function()
      local h = spindle.spawn(function() spindle.sleep(5); return "v", 2 end)
      local f = spindle.spawn(function() spindle.sleep(5); error(e) end)
      local joiners = {}
      for i = 1, 5 do
        joiners[i] = spindle.spawn(function()
          local ok, err = pcall(f.join, f)
          return table.pack(h:join()), ok, err
        end)
      end
      for i = 1, 5 do
        local r, ok, err = joiners[i]:join()
        assert.same({n = 2, "v", 2}, r)
        assert.is_false(ok)
        assert.equal(e, err)
      end
      assert.same({n = 2, "v", 2}, table.pack(h:join()))
    end)
  end)

  it("joining the current task raises 'deadlock: a task cannot join itself'", function()
    run(function()
      local function check()
        local me = spindle.current()
        local ok, err = pcall(me.join, me)
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "deadlock: a task cannot join itself"), tostring(err))
        ok, err = pcall(me.result, me)
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "deadlock: a task cannot join itself"), tostring(err))
        assert.equal("running", me:status())
        spindle.sleep(1) -- still a healthy task
        return "fine"
      end
      assert.equal("fine", check())
      assert.equal("fine", spindle.spawn(check):join())
    end)
  end)

  it("aborting a joiner cancels the joiner only, not the task it joins", function()
    run(function()
      local target = spindle.spawn(function() spindle.sleep(10); return "target done" end)
      local joiner = spindle.spawn(function() return target:join() end)
      spindle.sleep(1)
      assert.is_true(joiner:abort())
      local ok, err = pcall(joiner.join, joiner)
      assert.is_false(ok); assert.is_true(spindle.is_cancelled(err))
      assert.equal("waiting", target:status())
      assert.equal("target done", target:join())
    end)
  end)
end)

describe("§2 h:result", function()
  it("returns true and all results for a task that returned", function()
    local r = run(function()
      return table.pack(spindle.spawn(function() spindle.sleep(1); return nil, 2, nil end):result())
    end)
    assert.same({n = 4, true, nil, 2, nil}, r)
  end)

  it("returns false and the error (identity kept) and never raises it", function()
    local e = {}
    run(function()
      local h = spindle.spawn(function() spindle.sleep(1); error(e) end)
      local r = table.pack(h:result())
      assert.equal(2, r.n)
      assert.is_false(r[1]); assert.equal(e, r[2])
      -- again, once finished
      r = table.pack(h:result())
      assert.is_false(r[1]); assert.equal(e, r[2])
      local h2 = spindle.spawn(function() error("s", 0) end)
      assert.same({false, "s"}, {h2:result()})
    end)
  end)

  it("returns false and a cancellation error for an aborted task", function()
    run(function()
      local h = spindle.spawn(function() spindle.sleep(10) end)
      spindle.sleep(1)
      h:abort()
      local ok, err = h:result()
      assert.is_false(ok)
      assert.is_true(spindle.is_cancelled(err))
      assert.equal("cancelled", tostring(err))
    end)
  end)

  it("still raises the caller's own cancellation", function()
    run(function()
      local target = spindle.spawn(function() spindle.sleep(10); return "t" end)
      local seen
      local waiter = spindle.spawn(function()
        local ok, err = pcall(target.result, target)
        seen = {ok, err}
        if not ok then error(err, 0) end
      end)
      spindle.sleep(1)
      waiter:abort()
      local ok = waiter:result()
      assert.is_false(ok)
      assert.equal("cancelled", waiter:status())
      assert.is_false(seen[1])
      assert.is_true(spindle.is_cancelled(seen[2]))
      assert.same({true, "t"}, {target:result()})
    end)
  end)
end)

describe("§2 h:abort", function()
  it("returns true if the task had not finished, false once it has", function()
    run(function()
      local unstarted = spindle.spawn(function() end)
      assert.is_true(unstarted:abort())
      local sleeping = spindle.spawn(function() spindle.sleep(10) end)
      local done = spindle.spawn(function() return 1 end)
      local failed = spindle.spawn(function() error("x") end)
      spindle.sleep(1)
      assert.is_true(sleeping:abort())
      spindle.sleep(1)
      assert.equal("cancelled", sleeping:status())
      assert.equal("cancelled", unstarted:status())
      assert.equal("done", done:status())
      assert.equal("failed", failed:status())
      for _, h in ipairs({done, failed, sleeping, unstarted}) do
        assert.is_false(h:abort(), tostring(h))
      end
      assert.equal("done", done:status())
      assert.equal("failed", failed:status())
      failed:result()
    end)
  end)

  it("requests cancellation: a sleeping task unwinds and runs its <close> handlers", function()
    local log = {}
    run(function()
      local h = spindle.spawn(function()
        local c <close> = H.closer(log, "closed")
        spindle.sleep(10)
        log[#log + 1] = "woke"
      end)
      spindle.sleep(1)
      h:abort()
      assert.is_false(h:result())
    end)
    assert.same({"closed"}, log)
  end)
end)

describe("§2 h:status", function()
  it("goes through ready, running, waiting and done", function()
    run(function()
      local inside
      local h = spindle.spawn(function()
        inside = spindle.current():status()
        spindle.sleep(2)
      end)
      assert.equal("ready", h:status())
      spindle.sleep(1)
      assert.equal("running", inside)
      assert.equal("waiting", h:status())
      spindle.sleep(2)
      assert.equal("done", h:status())
    end)
  end)

  it("is 'ready' for a task that yielded and waits for its turn", function()
    run(function()
      local a = spindle.spawn(function() spindle.yield(); spindle.yield() end)
      local seen
      spindle.spawn(function() seen = a:status() end)
      spindle.sleep(1)
      assert.equal("ready", seen)
    end)
  end)

  it("is 'waiting' while joining another task", function()
    run(function()
      local t = spindle.spawn(function() spindle.sleep(5) end)
      local j = spindle.spawn(function() t:join() end)
      spindle.sleep(1)
      assert.equal("waiting", j:status())
      j:join()
      assert.equal("done", j:status())
    end)
  end)

  it("is 'failed' after an error and 'cancelled' after an abort", function()
    run(function()
      local f = spindle.spawn(function() error("x") end)
      local c = spindle.spawn(function() spindle.sleep(5) end)
      spindle.sleep(1)
      c:abort()
      spindle.sleep(1)
      assert.equal("failed", f:status())
      assert.equal("cancelled", c:status())
      f:result()
    end)
  end)

  it("always returns one of the six documented words", function()
    run(function()
      local hs = {
        spindle.spawn(function() end),
        spindle.spawn(function() spindle.sleep(3) end),
        spindle.spawn(function() error("x") end),
        spindle.spawn(function() spindle.yield() end),
        spindle.current(),
      }
      for _ = 1, 5 do
        for _, h in ipairs(hs) do assert.is_true(STATUSES[h:status()] == true, tostring(h:status())) end
        spindle.sleep(1)
      end
      hs[3]:result()
    end)
  end)
end)

describe("§2 h:traceback", function()
  it("of a failed task is the traceback at the error", function()
    local line
    local tb = run(function()
      local function deep_failure()
        line = H.line(); error("tb boom")
      end
      local h = spindle.spawn(function() spindle.sleep(1); deep_failure() end)
      h:result()
      return h:traceback()
    end)
    assert.is_string(tb)
    assert.truthy(tb:find("stack traceback:", 1, true), tb)
    assert.truthy(tb:find(":" .. line .. ":", 1, true), tb)
  end)

  it("of a waiting task says where it waits", function()
    local line
    local tb = run(function()
      local h = spindle.spawn(function()
        line = H.line(); spindle.sleep(10)
      end)
      spindle.sleep(1)
      local tb = h:traceback()
      h:abort()
      return tb
    end)
    assert.is_string(tb)
    assert.truthy(tb:find(":" .. line .. ":", 1, true), tb)
  end)

  it("is nil for ready, running, done and cancelled tasks", function()
    run(function()
      local ready = spindle.spawn(function() end)
      assert.is_nil(ready:traceback())
      assert.is_nil(spindle.current():traceback())
      local cancelled = spindle.spawn(function() spindle.sleep(5) end)
      spindle.sleep(1)
      cancelled:abort()
      spindle.sleep(1)
      assert.equal("done", ready:status())
      assert.is_nil(ready:traceback())
      assert.equal("cancelled", cancelled:status())
      assert.is_nil(cancelled:traceback())
    end)
  end)
end)

describe("§2 h:id", function()
  it("is a unique integer per runtime, stable for the handle", function()
    run(function()
      local seen = {[spindle.current():id()] = true}
      assert.equal("integer", math.type(spindle.current():id()))
      local hs = {}
      for i = 1, 200 do
        hs[i] = spindle.spawn(function() spindle.sleep(i % 3) end)
        local id = hs[i]:id()
        assert.equal("integer", math.type(id))
        assert.is_nil(seen[id], "duplicate id " .. id)
        seen[id] = true
      end
      local before = hs[7]:id()
      for _, h in ipairs(hs) do h:join() end
      assert.equal(before, hs[7]:id())
      -- ids of finished tasks are not reused
      for _ = 1, 50 do
        local id = spindle.spawn(function() end):id()
        assert.is_nil(seen[id], "reused id " .. id)
        seen[id] = true
      end
    end)
  end)
end)

describe("§2 h:name", function()
  it("gets nil for an unnamed task, and sets and returns a name", function()
    run(function()
      local h = spindle.spawn(function() end)
      assert.is_nil(h:name())
      assert.equal("worker", h:name("worker"))
      assert.equal("worker", h:name())
      assert.equal("worker", h:name(nil)) -- nil is the getter
      assert.equal("renamed", h:name("renamed"))
      assert.equal("renamed", h:name())
      h:join()
      assert.equal("renamed", h:name())
    end)
  end)

  it("is used by tostring(h)", function()
    run(function()
      local h = spindle.spawn(function() end)
      local id = h:id()
      assert.equal("task " .. id, tostring(h))
      h:name("fetcher")
      assert.equal("task " .. id .. " (fetcher)", tostring(h))
      spindle.current():name("main")
      assert.equal("task " .. spindle.current():id() .. " (main)", tostring(spindle.current()))
    end)
  end)

  it("can be set by the task itself", function()
    local h = run(function()
      local h = spindle.spawn(function() spindle.current():name("self-named") end)
      h:join()
      return h
    end)
    assert.equal("self-named", h:name())
  end)
end)

describe("§2 detached tasks", function()
  it("dropping the handle neither ends nor cancels the task", function()
    local log = {}
    run(function()
      for i = 1, 3 do
        spindle.spawn(function()
          local c <close> = H.closer(log, "closed " .. i)
          spindle.sleep(i)
          collectgarbage()
          log[#log + 1] = "finished " .. i
        end)
      end
      for _ = 1, 3 do collectgarbage() end
      spindle.sleep(1.5)
      for _ = 1, 3 do collectgarbage() end
      spindle.sleep(5)
    end)
    assert.same({"finished 1", "closed 1", "finished 2", "closed 2", "finished 3", "closed 3"}, log)
  end)

  it("an unstarted task whose handle was dropped still runs", function()
    local ran = false
    run(function()
      spindle.spawn(function() ran = true end)
      collectgarbage(); collectgarbage()
      spindle.sleep(1)
    end)
    assert.is_true(ran)
  end)
end)

-- Unobserved failures: reported on stderr (child processes) or on_error.
local function report_script(body)
  return [[
local spindle = require "spindle"
local function mark(s) io.stderr:write(s, "\n"); io.stderr:flush() end
]] .. body
end

describe("§2 unobserved failures", function()
  it("are reported on stderr with id, name and traceback when the handle is collected", function()
    local r = H.lua_child(report_script([[
      spindle.run(function()
        local h = spindle.spawn(function()
          spindle.sleep(0.001)
          error("unobserved boom")
        end)
        h:name("lonely-worker")
        io.stdout:write(h:id(), "\n")
        h = nil
        spindle.sleep(0.01)      -- the task fails
        for _ = 1, 4 do collectgarbage() end
        spindle.sleep(0.01)
        mark("MAIN-END")
      end)
      mark("RUN-RETURNED")
    ]]))
    assert.equal(0, r.code, H.describe(r))
    local id = r.stdout:match("^(%d+)\n$")
    assert.truthy(id, H.describe(r))
    local s = r.stderr
    local at = s:find("spindle: task " .. id, 1, true)
    assert.truthy(at, H.describe(r))
    assert.truthy(s:find("lonely-worker", 1, true), s)
    assert.truthy(s:find("unobserved boom", 1, true), s)
    assert.truthy(s:find("stack traceback:", 1, true), s)
    assert.truthy(at < s:find("MAIN-END", 1, true), "reported after the handle was collected:\n" .. s)
    -- exactly once
    local _, count = s:gsub("unobserved boom", "")
    assert.equal(1, count, s)
  end)

  it("are reported when the runtime ends if the handle is still alive", function()
    local r = H.lua_child(report_script([[
      local keep
      spindle.run(function()
        keep = spindle.spawn(function() error("kept but never joined") end)
        spindle.sleep(0.01)
        mark("MAIN-END")
      end)
      mark("RUN-RETURNED " .. keep:id())
      keep = nil
      collectgarbage(); collectgarbage()
    ]]))
    assert.equal(0, r.code, H.describe(r))
    local s = r.stderr
    local id = s:match("RUN%-RETURNED (%d+)")
    assert.truthy(id, H.describe(r))
    local at = s:find("spindle: task " .. id, 1, true)
    assert.truthy(at, H.describe(r))
    assert.truthy(s:find("kept but never joined", 1, true), s)
    assert.truthy(s:find("stack traceback:", 1, true), s)
    assert.truthy(at < s:find("RUN-RETURNED", 1, true), "reported when the runtime ended:\n" .. s)
    local _, count = s:gsub("kept but never joined", "")
    assert.equal(1, count, s)
  end)

  it("are not reported once observed by join or result, nor when cancelled", function()
    local r = H.lua_child(report_script([[
      spindle.run(function()
        local a = spindle.spawn(function() error("joined error") end)
        local b = spindle.spawn(function() error("result error") end)
        local c = spindle.spawn(function() spindle.sleep(10) end)
        spindle.sleep(0.01)
        assert(not pcall(a.join, a))
        assert(b:result() == false)
        c:abort()
        spindle.sleep(0.01)
        spindle.spawn(function() spindle.sleep(10) end) -- aborted by shutdown
        a, b, c = nil, nil, nil
        collectgarbage(); collectgarbage()
      end)
      collectgarbage(); collectgarbage()
    ]]))
    assert.equal(0, r.code, H.describe(r))
    assert.equal("", r.stderr)
  end)

  it("go to opts.on_error(err, handle) instead of stderr when set", function()
    local r = H.lua_child(report_script([[
      local got = {}
      local e = {}
      local rt = spindle.runtime({on_error = function(err, h)
        got[#got + 1] = {err, h}
      end})
      local id
      rt:run(function()
        local h = spindle.spawn(function() error(e) end)
        h:name("handled")
        id = h:id()
        h = nil
        spindle.sleep(0.01)
        collectgarbage(); collectgarbage()
      end)
      rt:close()
      assert(#got == 1, "on_error called " .. #got .. " times")
      assert(got[1][1] == e, "same error value")
      assert(got[1][2]:id() == id and got[1][2]:name() == "handled")
      io.stdout:write("ok\n")
    ]]))
    assert.equal(0, r.code, H.describe(r))
    assert.equal("ok\n", r.stdout)
    assert.equal("", r.stderr)
  end)
end)
