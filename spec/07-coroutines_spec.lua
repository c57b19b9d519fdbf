-- spec/07-coroutines_spec.lua -- a user's own coroutines inside tasks
-- (docs/errors.md#your-own-coroutines-inside-a-task, issue 2 §3):
-- coroutine.create/resume/wrap/yield work as plain Lua; an await inside such a
-- coroutine raises a clear error ("nested coroutine" and the await's name)
-- instead of hanging; a bare coroutine.yield at task level acts like
-- spindle.yield; awaits work across everything Lua 5.4 can yield across, and
-- raise a clear error where it cannot (C-call boundary).

local H = require "spec.helpers"
local spindle = H.spindle

local pack = table.pack
local vrun, near = H.run_virtual, H.near

local function has(s, sub) return string.find(tostring(s), sub, 1, true) ~= nil end

describe("user coroutines inside a task", function()
  it("pass values both ways with create/resume/yield/status", function()
    vrun(function()
      local co = coroutine.create(function(a, b)
        assert(coroutine.isyieldable())
        local c, d = coroutine.yield(a + b, nil, "x")
        local e = coroutine.yield(c .. d)
        return e, nil
      end)
      assert.are.equal("suspended", coroutine.status(co))
      local r = pack(coroutine.resume(co, 1, 2))
      assert.are.equal(4, r.n)
      assert.are.same({true, 3, nil, "x"}, {r[1], r[2], r[3], r[4]})
      spindle.sleep(1) -- an await between resumes of the user coroutine
      r = pack(coroutine.resume(co, "p", "q"))
      assert.are.same({true, "pq"}, {r[1], r[2]})
      spindle.yield()
      r = pack(coroutine.resume(co, "last"))
      assert.are.equal(3, r.n)
      assert.are.same({true, "last", nil}, {r[1], r[2], r[3]})
      assert.are.equal("dead", coroutine.status(co))
      local ok, e = coroutine.resume(co)
      assert.is_false(ok)
      assert.is_true(has(e, "dead"))
    end)
  end)

  it("see the task itself as a normal, yieldable coroutine", function()
    vrun(function()
      local th, ismain = coroutine.running()
      assert.are.equal("thread", type(th))
      assert.is_false(ismain)
      assert.is_true(coroutine.isyieldable())
      assert.are.equal("running", coroutine.status(th))
      local other
      spindle.spawn(function() other = coroutine.running() end):join()
      assert.are_not.equal(th, other)
      local inner = coroutine.wrap(function()
        local me = coroutine.running()
        assert(me ~= th)
        assert(coroutine.status(th) == "normal")
        return "ok"
      end)
      assert.are.equal("ok", inner())
    end)
  end)

  it("run generators with coroutine.wrap interleaved with sleeps", function()
    vrun(function()
      local t0 = spindle.now()
      local function gen(n)
        return coroutine.wrap(function()
          for i = 1, n do coroutine.yield(i) end
        end)
      end
      local sum = 0
      for v in gen(10) do
        sum = sum + v
        spindle.sleep(0.5)
      end
      assert.are.equal(55, sum)
      assert.is_true(near(spindle.now() - t0, 5))
    end)
  end)

  it("do not confuse the scheduler when many tasks use them concurrently", function()
    local results = {}
    vrun(function()
      local t0 = spindle.now()
      local hs = {}
      for i = 1, 50 do
        hs[i] = spindle.spawn(function()
          local co = coroutine.wrap(function(x)
            while true do x = coroutine.yield(x * 2) end
          end)
          local acc = {}
          local v = co(i)
          for k = 1, 10 do
            acc[k] = v
            if k % 2 == 0 then spindle.sleep(i * 0.01) else spindle.yield() end
            v = co(v)
          end
          results[i] = {acc = acc, t = spindle.now() - t0}
          return i
        end)
      end
      for i = 1, 50 do assert.are.equal(i, hs[i]:join()) end
    end)
    for i = 1, 50 do
      local acc = results[i].acc
      for k = 1, 10 do assert.are.equal(i * 2 ^ k, acc[k]) end
      assert.is_true(near(results[i].t, 5 * i * 0.01))
    end
  end)

  it("yield any values, nothing and nils included, exactly", function()
    vrun(function()
      local co = coroutine.create(function()
        coroutine.yield()
        coroutine.yield(nil)
        coroutine.yield(nil, nil, 3, nil)
        coroutine.yield(print, {}, true)
        return
      end)
      local expect = {1, 2, 5, 4, 1}
      for k = 1, 5 do
        local r = pack(coroutine.resume(co))
        assert.is_true(r[1])
        assert.are.equal(expect[k], r.n, "resume " .. k)
        spindle.yield()
      end
    end)
  end)

  it("report their errors through resume, and the task continues", function()
    vrun(function()
      local E = {"in coroutine"}
      local co = coroutine.create(function() coroutine.yield(1); error(E) end)
      assert.is_true((coroutine.resume(co)))
      spindle.sleep(1)
      local ok, e = coroutine.resume(co)
      assert.is_false(ok)
      assert.is_true(rawequal(E, e))
      spindle.sleep(1)
      local ok2, e2 = pcall(coroutine.wrap(function() error(E) end))
      assert.is_false(ok2)
      assert.is_true(rawequal(E, e2))
    end)
  end)

  it("can be closed with coroutine.close, running their <close> handlers once", function()
    local closed = 0
    vrun(function()
      local co = coroutine.create(function()
        local c <close> = setmetatable({}, {__close = function() closed = closed + 1 end})
        coroutine.yield()
        error("not reached")
      end)
      coroutine.resume(co)
      spindle.sleep(1)
      assert.is_true(coroutine.close(co))
      assert.are.equal("dead", coroutine.status(co))
    end)
    assert.are.equal(1, closed)
  end)

  it("may be nested several levels deep", function()
    vrun(function()
      local log = {}
      local outer = coroutine.wrap(function()
        local inner = coroutine.wrap(function()
          coroutine.yield("inner1")
          coroutine.yield("inner2")
        end)
        local v = inner()
        log[#log + 1] = v
        coroutine.yield("outer1")
        v = inner()
        log[#log + 1] = v
        coroutine.yield("outer2")
      end)
      local v = outer()
      log[#log + 1] = v
      spindle.sleep(1)
      v = outer()
      log[#log + 1] = v
      assert.are.same({"inner1", "outer1", "inner2", "outer2"}, log)
    end)
  end)

  it("may be created in one task and resumed in another", function()
    vrun(function()
      local co = coroutine.wrap(function(a)
        local b = coroutine.yield(a + 1)
        return b * 10
      end)
      local first = co(1)
      local h = spindle.spawn(function() spindle.sleep(1); return co(first) end)
      assert.are.equal(20, h:join())
    end)
  end)

  it("may spawn tasks (spawn is not an await)", function()
    vrun(function()
      local h
      local co = coroutine.wrap(function()
        h = spindle.spawn(function(x) spindle.sleep(1); return x end, "spawned")
        coroutine.yield()
      end)
      co()
      assert.are.equal("spawned", h:join())
    end)
  end)

  it("can be a task's body through coroutine.wrap when it does not await", function()
    vrun(function()
      local h = spindle.spawn(coroutine.wrap(function(a) return a * 2, nil end), 21)
      local r = pack(h:join())
      assert.are.equal(2, r.n)
      assert.are.equal(42, r[1])
    end)
  end)
end)

describe("an await inside a user coroutine", function()
  local function check_err(e, name)
    assert.is_true(has(e, "nested coroutine"), tostring(e))
    assert.is_true(has(e, name), tostring(e))
  end

  it("raises a clear error naming the await, without waiting", function()
    vrun(function()
      local t0 = spindle.now()
      local other = spindle.spawn(spindle.sleep, 100)
      spindle.yield() -- other starts sleeping
      local cases = {
        sleep = function() spindle.sleep(10) end,
        yield = function() spindle.yield() end,
        join = function() other:join() end,
        result = function() other:result() end,
      }
      for name, f in pairs(cases) do
        local co = coroutine.create(f)
        local ok, e = coroutine.resume(co)
        assert.is_false(ok, name)
        check_err(e, name)
        assert.are.equal("dead", coroutine.status(co))
        local ok2, e2 = pcall(coroutine.wrap(f))
        assert.is_false(ok2, name)
        check_err(e2, name)
      end
      assert.are.equal(t0, spindle.now())
      assert.are.equal("waiting", other:status())
      other:abort()
    end)
  end)

  it("raises the same error even after the user coroutine yielded normally", function()
    vrun(function()
      local co = coroutine.create(function()
        coroutine.yield("first")
        spindle.sleep(1)
        return "not reached"
      end)
      assert.are.same({true, "first"}, {coroutine.resume(co)})
      local ok, e = coroutine.resume(co)
      assert.is_false(ok)
      check_err(e, "sleep")
    end)
  end)

  it("leaves the task fully usable afterwards", function()
    local h
    vrun(function()
      local t0 = spindle.now()
      h = spindle.spawn(function()
        for _ = 1, 3 do
          local ok = coroutine.resume(coroutine.create(function() spindle.sleep(5) end))
          assert(not ok)
        end
        spindle.sleep(2)
        spindle.yield()
        return spindle.now() - t0
      end)
      local dt = h:join()
      assert.is_true(near(dt, 2))
    end)
    assert.are.equal("done", h:status())
  end)

  it("is also raised for timeout and shield", function()
    vrun(function()
      for name, f in pairs{
        timeout = function() return spindle.timeout(1, spindle.sleep, 0.5) end,
        shield = function() return spindle.shield(spindle.sleep, 0.5) end,
      } do
        local ok, e = coroutine.resume(coroutine.create(f))
        assert.is_false(ok, name)
        assert.is_true(has(e, "nested coroutine"), tostring(e))
      end
    end)
  end)
end)

describe("a bare coroutine.yield at task level", function()
  it("acts like spindle.yield: returns nothing and requeues the task", function()
    local order = {}
    local counts = {}
    vrun(function()
      local a = spindle.spawn(function()
        order[#order + 1] = "a1"
        counts[1] = select("#", coroutine.yield(1, 2, 3))
        order[#order + 1] = "a2"
        counts[2] = select("#", coroutine.yield())
        order[#order + 1] = "a3"
        return "a"
      end)
      local b = spindle.spawn(function()
        order[#order + 1] = "b1"
        spindle.yield()
        order[#order + 1] = "b2"
        spindle.yield()
        order[#order + 1] = "b3"
        return "b"
      end)
      assert.are.equal("a", a:join())
      assert.are.equal("b", b:join())
    end)
    assert.are.same({"a1", "b1", "a2", "b2", "a3", "b3"}, order)
    assert.are.same({0, 0}, counts)
  end)

  it("works inside pcall at task level and does not move the virtual clock", function()
    vrun(function()
      local t0 = spindle.now()
      local r = pack(pcall(coroutine.yield, "v"))
      assert.are.equal(1, r.n)
      assert.is_true(r[1])
      assert.are.equal(t0, spindle.now())
    end)
  end)

  it("in the main task does not end run early", function()
    local r = pack(vrun(function()
      coroutine.yield("not a result")
      spindle.sleep(1)
      coroutine.yield()
      return "main", nil
    end))
    assert.are.equal(2, r.n)
    assert.are.equal("main", r[1])
  end)
end)

describe("awaits across yieldable Lua constructs", function()
  it("work in generic-for iterators, metamethods, pcall, xpcall and __close", function()
    local t
    vrun(function()
      local t0 = spindle.now()
      local n = 0
      for _ in function(_, c) spindle.sleep(1); if (c or 0) < 3 then return (c or 0) + 1 end end do
        n = n + 1
      end
      assert.are.equal(3, n)
      local obj = setmetatable({}, {
        __index = function(_, k) spindle.sleep(1); return k .. "!" end,
        __lt = function() spindle.yield(); return true end,
        __concat = function() spindle.sleep(1); return "cat" end,
        __call = function(_, x) spindle.sleep(1); return x end,
      })
      assert.are.equal("k!", obj.k)
      assert.is_true(obj < obj)
      assert.are.equal("cat", obj .. "x")
      assert.are.equal(5, obj(5))
      assert.are.same({true, "p"}, {pcall(function() spindle.sleep(1); return "p" end)})
      assert.are.same({true, "x"}, {xpcall(function() spindle.sleep(1); return "x" end, debug.traceback)})
      do
        local c <close> = setmetatable({}, {__close = function() spindle.sleep(1) end})
      end
      t = spindle.now() - t0
    end)
    -- 4 iterator calls, __index, __concat, __call, pcall, xpcall, __close
    assert.is_true(near(t, 10))
  end)
end)

describe("an await where Lua cannot yield", function()
  local function check(e, name)
    assert.is_true(has(e, "C-call boundary"), tostring(e))
    assert.is_true(has(e, name), tostring(e))
  end

  it("raises an error naming the await in a table.sort comparator", function()
    vrun(function()
      local ok, e = pcall(table.sort, {3, 1, 2}, function(a, b) spindle.sleep(1); return a < b end)
      assert.is_false(ok)
      check(e, "sleep")
      -- even where the await could complete at once
      ok, e = pcall(table.sort, {3, 1, 2}, function(a, b) spindle.yield(); return a < b end)
      assert.is_false(ok)
      check(e, "yield")
      ok, e = pcall(table.sort, {3, 1, 2}, function(a, b) spindle.sleep(0); return a < b end)
      assert.is_false(ok)
      check(e, "sleep")
    end)
  end)

  it("raises an error naming the await in a string.gsub callback and __tostring", function()
    vrun(function()
      local ok, e = pcall(string.gsub, "abc", "%w", function(c) spindle.sleep(1); return c end)
      assert.is_false(ok)
      check(e, "sleep")
      local obj = setmetatable({}, {__tostring = function() spindle.yield(); return "x" end})
      ok, e = pcall(tostring, obj)
      assert.is_false(ok)
      check(e, "yield")
    end)
  end)

  it("raises an error naming the await in require and load readers", function()
    vrun(function()
      package.preload["spindle_spec_07_awaiting_module"] = function()
        spindle.sleep(1)
        return {}
      end
      local ok, e = pcall(require, "spindle_spec_07_awaiting_module")
      package.preload["spindle_spec_07_awaiting_module"] = nil
      package.loaded["spindle_spec_07_awaiting_module"] = nil
      assert.is_false(ok)
      check(e, "sleep")
      -- load reports a reader's error as nil, message
      local f, msg = load(function() spindle.yield(); return nil end)
      assert.is_nil(f)
      check(msg, "yield")
    end)
  end)

  it("does not disturb the task, which keeps running normally", function()
    vrun(function()
      local t0 = spindle.now()
      for _ = 1, 10 do
        pcall(table.sort, {2, 1}, function(a, b) spindle.sleep(1); return a < b end)
      end
      assert.are.equal(t0, spindle.now())
      spindle.sleep(1)
      assert.is_true(near(spindle.now() - t0, 1))
    end)
  end)
end)
