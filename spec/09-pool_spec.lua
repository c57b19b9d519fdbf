-- Coroutine reuse (docs/tasks.md#coroutines-are-reused): a task gets its
-- coroutine at its first slice, from a pool of coroutines that ended tasks
-- gave back.  A reused coroutine must be indistinguishable from a new one,
-- and nothing kept from an old task may see the new one.
local H = require "spec.helpers"
local spindle = H.spindle

local function stats() return spindle.stats() end

describe("the coroutine pool", function()
  it("serves many short tasks with a handful of coroutines", function()
    H.run_virtual(function()
      local hs = {}
      for i = 1, 10000 do hs[i] = spindle.spawn(function() return i end) end
      local sum = 0
      for i = 1, 10000 do sum = sum + hs[i]:join() end
      assert.equal(10000 * 10001 // 2, sum)
      assert.is_true(stats().pooled <= 4, stats().pooled)
    end)
  end)

  it("keeps at most 1024 coroutines", function()
    H.run_virtual(function()
      local hs = {}
      for i = 1, 2000 do hs[i] = spindle.spawn(spindle.sleep, 1) end
      for i = 1, 2000 do hs[i]:join() end
      assert.equal(1024, stats().pooled)
    end)
  end)

  it("a reused coroutine carries no stack, hook, local or argument of the last task", function()
    H.run_virtual(function()
      local co1
      local a = spindle.spawn(function(x, y)
        co1 = coroutine.running()
        debug.sethook(function() end, "", 1000) -- a hook left behind
        local leftover <const> = "secret"
        return x + y, leftover
      end, 1, 2)
      assert.same({3, "secret"}, {a:join()})
      local seen
      local b = spindle.spawn(function(...)
        local co = coroutine.running()
        seen = {
          same = co == co1,
          nargs = select("#", ...),
          hook = debug.gethook(),
          level2 = debug.getinfo(3, "S"), -- nothing of the old task below
          traceback = debug.traceback(),
        }
        return "b"
      end)
      assert.equal("b", b:join())
      assert.is_true(seen.same) -- it was reused: the point of the test
      assert.equal(0, seen.nargs)
      assert.is_nil(seen.hook)
      assert.falsy(seen.traceback:find("secret", 1, true))
      -- the old handle still answers for the old task
      assert.same({3, "secret"}, {a:join()})
      assert.equal("done", a:status())
    end)
  end)

  it("after a task that failed, the next one runs clean and the old traceback stays", function()
    H.run_virtual(function()
      local a = spindle.spawn(function() error("boom in a") end)
      local ok, err = a:result()
      assert.is_false(ok)
      assert.truthy(err:find("boom in a", 1, true))
      local tb = a:traceback()
      local b = spindle.spawn(function() spindle.sleep(1); error("boom in b") end)
      spindle.sleep(0.5)
      assert.equal(tb, a:traceback())
      assert.falsy(a:traceback():find("boom in b", 1, true))
      assert.is_false((b:result()))
      assert.truthy(b:traceback():find("boom in b", 1, true))
      assert.equal(tb, a:traceback())
    end)
  end)

  it("after an abort whose <close> handler raised, the next task runs clean", function()
    H.run_virtual(function()
      local closed = 0
      local a = spindle.spawn(function()
        local _ <close> = setmetatable({}, {__close = function()
          closed = closed + 1
          error("close failed")
        end})
        spindle.sleep(10)
      end)
      spindle.sleep(1)
      a:abort()
      local ok, err = a:result()
      assert.is_false(ok)
      assert.is_true(spindle.is_cancelled(err))
      assert.equal(1, closed)
      local b = spindle.spawn(function(...)
        return select("#", ...), coroutine.isyieldable()
      end, "only")
      assert.same({1, true}, {b:join()})
      assert.equal(1, closed) -- the old <close> does not run again
    end)
  end)

  it("many results and errors are kept in the handle, not the coroutine", function()
    H.run_virtual(function()
      local big = spindle.spawn(function() return table.unpack({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) end)
      local err = spindle.spawn(function() error({code = 7}) end)
      spindle.sleep(0)
      spindle.sleep(0)
      for _ = 1, 50 do spindle.spawn(function() return "churn" end):join() end
      assert.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {big:join()})
      local ok, e = err:result()
      assert.is_false(ok)
      assert.equal(7, e.code)
    end)
  end)
end)

-- What an idle task costs (bench/README.md, "Where an idle task's bytes
-- go"): its coroutine, one more CallInfo for the task body's yieldable
-- pcall (task_body), and the handle (the task record in a userdata with one
-- user value).  Counted on the Lua heap, which is deterministic (RSS is
-- bench/'s business): spindle tasks blocked in sleep against raw
-- coroutines suspended in coroutine.yield, in the same process, each kept
-- in an array of the same size (the tasks also fill a slot of the
-- runtime's anchors table).  The bound is generous (measured: 232 bytes
-- over raw on Lua 5.4.4, 64-bit) but catches a table or a second userdata
-- per task.
describe("an idle task", function()
  it("costs its coroutine and at most 256 bytes of Lua heap more", function()
    local N = 4000
    local per_raw, per_task
    H.run_virtual(function()
      local yield = coroutine.yield
      local function raw_idle() yield() end
      local base = H.heap_kb()
      local cos = {}
      for i = 1, N do
        local co = coroutine.create(raw_idle)
        assert(coroutine.resume(co))
        cos[i] = co
      end
      per_raw = (H.heap_kb() - base) * 1024 / N
      cos = nil -- let them go before the spindle tasks are counted

      local started = 0
      local function idle()
        started = started + 1
        spindle.sleep(3600)
      end
      base = H.heap_kb()
      local hs = {}
      for i = 1, N do hs[i] = spindle.spawn(idle) end
      while started < N do spindle.sleep(0) end
      per_task = (H.heap_kb() - base) * 1024 / N
      for i = 1, N do hs[i]:abort() end
      for i = 1, N do
        local ok, err = hs[i]:result()
        assert.is_true(not ok and spindle.is_cancelled(err))
      end
    end)
    assert.is_true(per_raw > 500, ("a raw coroutine costs %.0f B?"):format(per_raw))
    assert.is_true(per_task - per_raw <= 256,
      ("an idle task costs %.0f B of Lua heap, %.0f B more than a raw coroutine (at most 256)")
        :format(per_task, per_task - per_raw))
  end)
end)
