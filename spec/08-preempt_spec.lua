-- spec/08-preempt_spec.lua -- docs/blocking.md: preempt and warn_blocking.
local H = require "spec.helpers"
local spindle = H.spindle

local run_with = H.run_with

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
    local status, closed
    run_with({clock = "virtual", preempt = 500}, function()
      local h = spindle.spawn(function()
        local c <close> = setmetatable({}, {__close = function() closed = true end})
        while true do end
      end)
      spindle.yield()
      spindle.yield()
      assert.is_true(h:abort())
      local ok, err = pcall(h.join, h)
      assert.is_false(ok)
      assert.is_true(spindle.is_cancelled(err))
      status = h:status()
    end)
    assert.equal("cancelled", status)
    assert.is_true(closed)
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
