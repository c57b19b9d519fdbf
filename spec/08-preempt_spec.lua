-- spec/08-preempt_spec.lua -- docs/blocking.md: preempt and warn_blocking.
local H = require "spec.helpers"
local spindle = H.spindle

local run_with = H.run_with

-- Aborts a task spinning in `while true do end` (with a <close> value)
-- once `settle` has let it run; checks it ended cancelled and unwound.
local function abort_spinner(opts, settle)
  local status, closed
  run_with(opts, function()
    local h = spindle.spawn(function()
      local c <close> = setmetatable({}, {__close = function() closed = true end})
      while true do end
    end)
    settle()
    assert.is_true(h:abort())
    local ok, err = pcall(h.join, h)
    assert.is_false(ok)
    assert.is_true(spindle.is_cancelled(err))
    status = h:status()
  end)
  assert.equal("cancelled", status)
  assert.is_true(closed)
end

describe("preempt = N", function()
  it("makes a CPU-bound task yield so that others run in between", function()
    local log = {}
    run_with({clock = "virtual", preempt = 1000}, function()
      local a = spindle.spawn(function()
        local x = 0
        for i = 1, 200000 do x = x + i end
        log[#log + 1] = "a"
        return x
      end)
      local b = spindle.spawn(function() log[#log + 1] = "b" end)
      assert.equal(200000 * 200001 / 2, a:join())
      b:join()
    end)
    assert.same({"b", "a"}, log)
  end)

  it("without it, a CPU-bound task runs to its end first", function()
    local log = {}
    run_with({clock = "virtual"}, function()
      local a = spindle.spawn(function()
        for _ = 1, 200000 do end
        log[#log + 1] = "a"
      end)
      local b = spindle.spawn(function() log[#log + 1] = "b" end)
      a:join(); b:join()
    end)
    assert.same({"a", "b"}, log)
  end)

  it("delivers an abort to a task that never awaits", function()
    abort_spinner({clock = "virtual", preempt = 500}, function()
      spindle.yield()
      spindle.yield()
    end)
  end)

  it("delivers an expired timeout to a busy loop", function()
    local ok, err
    run_with({preempt = 500}, function()
      ok, err = pcall(spindle.timeout, 0.02, function() while true do end end)
    end)
    assert.is_false(ok)
    assert.is_true(spindle.is_timeout(err))
  end)

  it("retries later when the hook fires inside a C call (table.sort comparator)", function()
    local first, last
    run_with({clock = "virtual", preempt = 50}, function()
      local t = {}
      for i = 1, 3000 do t[i] = (i * 7919) % 3000 end
      local h = spindle.spawn(function()
        table.sort(t, function(x, y) return x < y end)
        return t[1], t[#t]
      end)
      first, last = h:join()
    end)
    assert.equal(0, first)
    assert.equal(2999, last)
  end)

  it("leaves a user's own coroutines alone", function()
    local got
    run_with({clock = "virtual", preempt = 10}, function()
      local h = spindle.spawn(function()
        local gen = coroutine.wrap(function()
          for i = 1, 50 do
            local x = 0
            for j = 1, 100 do x = x + j end
            coroutine.yield(i + x - 5050)
          end
        end)
        local sum = 0
        for _ = 1, 50 do sum = sum + gen() end
        return sum
      end)
      got = h:join()
    end)
    assert.equal(50 * 51 / 2, got)
  end)
end)

describe("preempt = N with the real clock (docs/blocking.md#preemption)", function()
  -- The count hook is armed by a timer on the thread's CPU time (SIGURG);
  -- every loop below is bounded by CPU time so that a failure is an
  -- assertion, never a hang.
  local LIMIT = H.timeout(20)

  -- Two CPU-bound tasks under runtime options opts: a counts the times it
  -- sees b's counter move while it spins, up to want; returns that count.
  local function turns(opts, want)
    return run_with(opts, function()
      local b_count, a_done = 0, false
      local b = spindle.spawn(function()
        local t0 = os.clock()
        while not a_done and os.clock() - t0 < LIMIT do b_count = b_count + 1 end
      end)
      local a = spindle.spawn(function()
        local changes, last, t0 = 0, b_count, os.clock()
        while changes < want and os.clock() - t0 < LIMIT do
          if b_count ~= last then changes = changes + 1; last = b_count end
        end
        a_done = true
        return changes
      end)
      b:join()
      return a:join()
    end)
  end

  it("makes CPU-bound tasks take turns", function()
    assert.equal(3, turns({preempt = 10000}, 3)) -- b ran between a's instructions, three times
  end)

  it("aborts a `while true do end` task", function()
    abort_spinner({preempt = 10000}, function()
      spindle.sleep(0.01) -- h runs meanwhile; main gets a turn when h is preempted
    end)
  end)

  it("times out a `while true do end` loop", function()
    local ok, err = run_with({preempt = 10000}, function()
      return pcall(spindle.timeout, 0.02, function() while true do end end)
    end)
    assert.is_false(ok)
    assert.is_true(spindle.is_timeout(err))
  end)

  it("retries after a long C call (a table.sort comparator cannot yield)", function()
    local first, last, moved
    run_with({preempt = 1000}, function()
      local ticks = 0
      local ticker = spindle.spawn(function()
        while true do ticks = ticks + 1; spindle.sleep(0.001) end
      end)
      spindle.yield()
      local h = spindle.spawn(function()
        local t = {}
        for i = 1, H.scale(200000) do t[i] = (i * 7919) % 200003 end
        table.sort(t, function(x, y) return x < y end) -- preempted in here: retried
        local before, t0 = ticks, os.clock()
        while ticks == before and os.clock() - t0 < LIMIT do end -- ends only if preempted
        return t[1], t[#t], ticks > before
      end)
      first, last, moved = h:join()
      ticker:abort()
    end)
    assert.is_true(first < last)
    assert.is_true(moved)
  end)

  it("works in several runtimes, one after the other and in another thread", function()
    assert.equal(1, turns({preempt = 10000}, 1))
    assert.equal(1, turns({preempt = 5000}, 1)) -- a new runtime, a new timer
    -- a runtime with preempt in a worker thread's Lua state, while this
    -- thread's runtime preempts a loop of its own
    local inner, outer = run_with({preempt = 10000}, function()
      local spins = 0
      local busy = spindle.spawn(function()
        local t0 = os.clock()
        while os.clock() - t0 < LIMIT and spins >= 0 do spins = spins + 1 end
      end)
      local r = spindle.blocking(function(limit)
        local sp = require "spindle"
        local rt = sp.runtime{preempt = 10000}
        local ok = rt:run(function()
          local n, done = 0, false
          local b = sp.spawn(function()
            local t0 = os.clock()
            while not done and os.clock() - t0 < limit do n = n + 1 end
          end)
          local last, t0 = n, os.clock()
          while n == last and os.clock() - t0 < limit do end
          done = true
          b:join()
          return n ~= last
        end)
        rt:close()
        return ok
      end, LIMIT)
      busy:abort()
      return r, spins > 0
    end)
    assert.is_true(inner)
    assert.is_true(outer)
  end)

  it("removes its SIGURG handler when the last runtime closes, and passes other SIGURGs on", function()
    local r = H.lua_child([[
      local spindle = require "spindle"
      local function caught() -- SIGURG in SigCgt (bit 23 - 1)
        local f = assert(io.open("/proc/self/status"))
        local mask = tonumber(f:read("a"):match("SigCgt:%s*(%x+)"), 16)
        f:close()
        return (mask >> 22) & 1 == 1
      end
      local f = assert(io.open("/proc/self/stat"))
      local pid = f:read("a"):match("^(%d+)")
      f:close()
      assert(not caught(), "SIGURG caught at start")
      local rt = spindle.runtime{preempt = 10000}
      assert(caught(), "no handler with preempt")
      rt:close()
      assert(not caught(), "handler left after close")
      -- another handler first (libuv's, by spindle.signal): ours passes
      -- its signals on, and puts it back when the last runtime closes
      local got = spindle.runtime():run(function()
        local sig = assert(spindle.signal("URG"))
        local pre = spindle.runtime{preempt = 1000, warn_blocking = 10}
        local n = 0
        for _ = 1, 2 do
          os.execute("kill -URG " .. pid)
          local ok = spindle.timeout(5, function() sig:wait() end)
          n = n + 1
          pre:close() -- the second signal goes straight to libuv's handler
        end
        sig:close()
        return n
      end)
      io.stdout:write("got ", got, "\n")
    ]])
    assert.is_true(r.ok, H.describe(r))
    assert.equal("got 2\n", r.stdout)
  end)
end)

describe("warn_blocking = seconds", function()
  it("reports a task that runs too long between awaits, once, with its name and traceback", function()
    local r = H.lua_child([[
      local spindle = require "spindle"
      spindle.runtime{warn_blocking = 0.02}:run(function()
        local h = spindle.spawn(function()
          for _ = 1, 2 do
            local t0 = os.clock()
            while os.clock() - t0 < 0.1 do end
            spindle.sleep(0)
          end
        end)
        h:name("cruncher")
        h:join()
        io.stdout:write("done\n")
      end)
    ]])
    assert.is_true(r.ok, H.describe(r))
    assert.equal("done\n", r.stdout)
    local _, n = r.stderr:gsub("without awaiting", "")
    assert.equal(1, n, r.stderr)
    assert.truthy(r.stderr:find("task %d+ %(cruncher%)"), r.stderr)
    assert.truthy(r.stderr:find("stack traceback:", 1, true), r.stderr)
  end)

  it("catches a blocking C call too", function()
    local r = H.lua_child([[
      local spindle = require "spindle"
      spindle.runtime{warn_blocking = 0.02}:run(function()
        spindle.spawn(function() os.execute("sleep 0.1") end):join()
      end)
    ]])
    assert.is_true(r.ok, H.describe(r))
    assert.truthy(r.stderr:find("without awaiting", 1, true), r.stderr)
  end)

  it("says nothing about tasks that await often", function()
    local r = H.lua_child([[
      local spindle = require "spindle"
      spindle.runtime{warn_blocking = 0.5}:run(function()
        for _ = 1, 20 do spindle.sleep(0.001) end
      end)
    ]])
    assert.is_true(r.ok, H.describe(r))
    assert.equal("", r.stderr)
  end)
end)
