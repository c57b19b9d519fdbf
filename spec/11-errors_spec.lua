-- spec/11-errors_spec.lua -- docs/errors.md (errors and bad input): argument
-- errors name the function, awaits outside a task, awaits from a user's own
-- coroutine, awaits across a C-call boundary, memory exhaustion, lua_close
-- with a runtime still open.  (The full argument sweep: 12-badargs_spec.)
local H = require "spec.helpers"
local spindle = H.spindle
local run = H.run_virtual

describe("§11 arguments are checked", function()
  it("a wrong type raises an error naming the function and argument", function()
    run(function()
      local cases = {
        {"sleep", function() spindle.sleep("x") end, "#1"},
        {"sleep", function() spindle.sleep({}) end, "#1"},
        {"spawn", function() spindle.spawn(42) end, "#1"},
        {"timeout", function() spindle.timeout("x", function() end) end, "#1"},
        {"timeout", function() spindle.timeout(1, 42) end, "#2"},
        {"shield", function() spindle.shield(true) end, "#1"},
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(c[2])
        assert.is_false(ok, c[1])
        assert.truthy(H.msg_has(err, "bad argument " .. c[3]), tostring(err))
        assert.truthy(H.msg_has(err, c[1]), tostring(err))
      end
    end)
  end)

  it("a value out of range raises an error naming the function", function()
    run(function()
      for _, v in ipairs({-1, 0/0, math.huge, -math.huge, 1e300}) do
        local ok, err = pcall(spindle.sleep, v)
        assert.is_false(ok, tostring(v))
        assert.truthy(H.msg_has(err, "bad argument #1"), tostring(err))
        assert.truthy(H.msg_has(err, "sleep"), tostring(err))
      end
    end)
  end)

  it("sleep accepts the documented range 0 .. 1e9 seconds", function()
    local d = run(function()
      local t0 = spindle.now()
      spindle.sleep(0)
      spindle.sleep(1e9)
      return spindle.now() - t0
    end)
    assert.is_true(math.abs(d - 1e9) < 1e-3, tostring(d))
    run(function()
      local ok, err = pcall(spindle.sleep, 1e9 + 1)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "bad argument #1"), tostring(err))
    end)
  end)
end)

describe("§11 awaits outside a task", function()
  local cases = {
    {"spindle.sleep", function() return spindle.sleep(1) end},
    {"spindle.yield", function() return spindle.yield() end},
    {"spindle.timeout", function() return spindle.timeout(1, function() return 1 end) end},
    {"spindle.shield", function() return spindle.shield(function() return 1 end) end},
  }

  it("raise '<name>: not inside a task' outside any runtime", function()
    for _, c in ipairs(cases) do
      local ok, err = pcall(c[2])
      assert.is_false(ok, c[1])
      assert.truthy(H.msg_has(err, c[1] .. ": not inside a task"), tostring(err))
    end
  end)

  it("raise the same while a runtime exists but no task runs", function()
    local rt = spindle.runtime({clock = "virtual"})
    rt:spawn(function() spindle.sleep(1) end)
    for _, c in ipairs(cases) do
      local ok, err = pcall(c[2])
      assert.is_false(ok, c[1])
      assert.truthy(H.msg_has(err, c[1] .. ": not inside a task"), tostring(err))
    end
    rt:run()
    rt:close()
  end)

  it("join and result raise 'join: not inside a task', even on a finished task", function()
    local done, waiting
    local rt = spindle.runtime({clock = "virtual"})
    done = rt:spawn(function() return 1 end)
    waiting = rt:spawn(function() spindle.sleep(5) return 2 end)
    rt:step()
    for _, h in ipairs({done, waiting}) do
      local ok, err = pcall(h.join, h)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "join: not inside a task"), tostring(err))
      ok, err = pcall(h.result, h)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "result: not inside a task"), tostring(err))
    end
    rt:run()
    rt:close()
    -- after the runtime ended too
    local ok, err = pcall(done.join, done)
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, "join: not inside a task"), tostring(err))
  end)

  it("leave everything usable afterwards", function()
    pcall(spindle.sleep, 1)
    pcall(spindle.yield)
    assert.equal(3, spindle.run(function() spindle.sleep(0.001); return 3 end))
  end)
end)

describe("§11 awaits from a user's coroutine inside a task", function()
  -- {names the error may give (any one), the call}; for timeout/shield the
  -- await is either the wrapper or the sleep inside it.
  local awaits = {
    {{"spindle.sleep"}, function() spindle.sleep(0.5) end},
    {{"spindle.yield"}, function() spindle.yield() end},
    {{"spindle.timeout", "spindle.sleep"}, function() spindle.timeout(1, function() spindle.sleep(0.5) end) end},
    {{"spindle.shield", "spindle.sleep"}, function() spindle.shield(function() spindle.sleep(0.5) end) end},
  }

  it("raise a clear error naming the await (coroutine.create/resume), never hang", function()
    run(function()
      for _, a in ipairs(awaits) do
        local co = coroutine.create(function() a[2](); return "finished" end)
        local ok, err = coroutine.resume(co)
        assert.is_false(ok, a[1][1])
        assert.truthy(H.msg_has(err, "nested coroutine"), tostring(err))
        assert.truthy(H.msg_has(err, table.unpack(a[1])), tostring(err))
        assert.equal("dead", coroutine.status(co))
      end
      -- the task itself is still healthy
      local t0 = spindle.now()
      spindle.sleep(1)
      assert.equal(1, spindle.now() - t0)
    end)
  end)

  it("raise a clear error through coroutine.wrap", function()
    run(function()
      local h = spindle.spawn(function() return "joined" end)
      local f = coroutine.wrap(function() return h:join() end)
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "nested coroutine"), tostring(err))
      assert.truthy(H.msg_has(err, "join"), tostring(err))
      assert.equal("joined", h:join())
    end)
  end)

  it("raise even when the await could complete at once", function()
    run(function()
      local h = spindle.spawn(function() return 1 end)
      spindle.sleep(1)
      assert.equal("done", h:status())
      local co = coroutine.create(function() return h:join() end)
      local ok, err = coroutine.resume(co)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "nested coroutine"), tostring(err))
      local co2 = coroutine.create(function() spindle.sleep(0) end)
      ok, err = coroutine.resume(co2)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "nested coroutine"), tostring(err))
    end)
  end)

  it("leave the scheduler unconfused: other tasks keep their order", function()
    local log = {}
    run(function()
      local a = spindle.spawn(function()
        for i = 1, 3 do
          local co = coroutine.create(function() spindle.yield() end)
          coroutine.resume(co)
          log[#log + 1] = "a" .. i
          spindle.yield()
        end
      end)
      local b = spindle.spawn(function()
        for i = 1, 3 do log[#log + 1] = "b" .. i; spindle.yield() end
      end)
      a:join(); b:join()
    end)
    assert.same({"a1", "b1", "a2", "b2", "a3", "b3"}, log)
  end)

  it("a coroutine made in a task and resumed outside any task gets an error, not a hang", function()
    local co
    run(function()
      co = coroutine.create(function() spindle.sleep(1); return "x" end)
    end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, "spindle.sleep"), tostring(err))
  end)

  it("non-await functions work inside a user's coroutine (spawn, now, current, status)", function()
    local v = run(function()
      local me = spindle.current()
      local co = coroutine.wrap(function()
        local h = spindle.spawn(function() return "spawned from a coroutine" end)
        coroutine.yield(type(spindle.now()), me:status())
        return h
      end)
      local tn, st = co()
      assert.equal("number", tn)
      assert.equal("running", st)
      return co():join()
    end)
    assert.equal("spawned from a coroutine", v)
  end)
end)

describe("§11 a user's own coroutine.yield inside a task", function()
  it("generators made with coroutine.wrap work across awaits", function()
    local got = run(function()
      local gen = coroutine.wrap(function()
        for i = 1, 3 do coroutine.yield(i) end
        return "end"
      end)
      local out = {}
      for _ = 1, 4 do
        out[#out + 1] = gen()
        spindle.sleep(1)
      end
      return out
    end)
    assert.same({1, 2, 3, "end"}, got)
  end)

  it("coroutine.create/resume/status/close work as plain Lua", function()
    run(function()
      local co = coroutine.create(function(a)
        local b = coroutine.yield(a + 1)
        local c = coroutine.yield(b * 2)
        return c .. "!"
      end)
      assert.same({true, 2}, {coroutine.resume(co, 1)})
      spindle.yield()
      assert.same({true, 20}, {coroutine.resume(co, 10)})
      assert.equal("suspended", coroutine.status(co))
      spindle.sleep(1)
      assert.same({true, "x!"}, {coroutine.resume(co, "x")})
      assert.equal("dead", coroutine.status(co))
      local co2 = coroutine.create(function() coroutine.yield() end)
      coroutine.resume(co2)
      assert.is_true(coroutine.close(co2))
      assert.is_true(coroutine.isyieldable())
    end)
  end)

  it("a bare coroutine.yield at task level acts like spindle.yield: values discarded, nothing returned, task requeued", function()
    local log = {}
    run(function()
      local a = spindle.spawn(function()
        log[#log + 1] = "a1"
        local n = select("#", coroutine.yield(1, 2, 3))
        log[#log + 1] = "a2:" .. n
        n = select("#", coroutine.yield())
        log[#log + 1] = "a3:" .. n
        n = select("#", coroutine.yield(nil, "tag", {}))
        log[#log + 1] = "a4:" .. n
        return "a done"
      end)
      local b = spindle.spawn(function()
        for i = 1, 3 do log[#log + 1] = "b" .. i; spindle.yield() end
      end)
      assert.equal("a done", a:join())
      b:join()
    end)
    assert.same({"a1", "b1", "a2:0", "b2", "a3:0", "b3", "a4:0"}, log)
  end)

  it("a bare coroutine.yield in main does not end or confuse the run", function()
    local r = table.pack(spindle.run(function()
      local x = coroutine.yield("not a result")
      spindle.sleep(0.001)
      return "main result", x
    end))
    assert.same({n = 2, "main result", nil}, r)
  end)
end)

describe("§11 awaits across a C-call boundary", function()
  local function check(err, name)
    assert.is_string(err)
    assert.truthy(H.msg_has(err, "C-call boundary"), err)
    assert.truthy(H.msg_has(err, name), err)
  end

  it("inside a table.sort comparator: names the await, no bare Lua message", function()
    run(function()
      local finished = spindle.spawn(function() return 1 end)
      spindle.sleep(1)
      local cases = {
        {"spindle.sleep", function() spindle.sleep(0.5) end},
        {"spindle.sleep", function() spindle.sleep(0) end},
        {"spindle.yield", function() spindle.yield() end},
        {"join", function() finished:join() end},
        {"result", function() finished:result() end},
      }
      for _, c in ipairs(cases) do
        local t = {3, 1, 2}
        local ok, err = pcall(table.sort, t, function(x, y) c[2](); return x < y end)
        assert.is_false(ok, c[1])
        check(err, c[1])
      end
      spindle.sleep(1) -- the task is still usable
    end)
  end)

  it("inside a string.gsub callback", function()
    run(function()
      local ok, err = pcall(string.gsub, "abc", "%w", function(c) spindle.sleep(0); return c end)
      assert.is_false(ok)
      check(err, "spindle.sleep")
      ok, err = pcall(string.gsub, "abc", "%w", function(c) spindle.yield(); return c end)
      assert.is_false(ok)
      check(err, "spindle.yield")
    end)
  end)

  it("inside require", function()
    run(function()
      package.preload["spindle_spec_awaiting_module"] = function()
        spindle.sleep(0.5)
        return {}
      end
      local ok, err = pcall(require, "spindle_spec_awaiting_module")
      package.preload["spindle_spec_awaiting_module"] = nil
      package.loaded["spindle_spec_awaiting_module"] = nil
      assert.is_false(ok)
      check(err, "spindle.sleep")
    end)
  end)

  it("inside __tostring", function()
    run(function()
      local obj = setmetatable({}, {__tostring = function() spindle.yield(); return "obj" end})
      local ok, err = pcall(tostring, obj)
      assert.is_false(ok)
      check(err, "spindle.yield")
    end)
  end)

  it("the task keeps running normally after such an error", function()
    local log = {}
    run(function()
      local other = spindle.spawn(function() for i = 1, 3 do log[#log + 1] = "o" .. i; spindle.yield() end end)
      pcall(table.sort, {2, 1}, function(a, b) spindle.yield(); return a < b end)
      log[#log + 1] = "m1"
      spindle.yield()
      log[#log + 1] = "m2"
      other:join()
    end)
    assert.same({"m1", "o1", "m2", "o2", "o3"}, log)
  end)

  it("awaits work where Lua can yield: pcall, __index, __lt, iterators", function()
    local log = {}
    local v = run(function()
      local t0 = spindle.now()
      assert.is_true(pcall(spindle.sleep, 1))
      local lazy = setmetatable({}, {__index = function(_, k) spindle.sleep(1); return k end})
      assert.equal("key", lazy.key)
      local mt = {__lt = function(a, b) spindle.yield(); return a.v < b.v end}
      assert.is_true(setmetatable({v = 1}, mt) < setmetatable({v = 2}, mt))
      local function iter(_, i) spindle.sleep(1); if i < 3 then return i + 1 end end
      for i in iter, nil, 0 do log[#log + 1] = i end
      return spindle.now() - t0
    end)
    assert.same({1, 2, 3}, log)
    assert.equal(6, v)
  end)
end)

describe("§11 resource exhaustion", function()
  it("running out of memory is a Lua memory error, never a crash, and the runtime stays usable", function()
    -- ulimit -v caps the child's address space; spawning until allocation
    -- fails must raise "not enough memory" inside the task.
    local src = [[
      local spindle = require "spindle"
      local result = spindle.run(function()
        local hs = {}
        local ok, err = pcall(function()
          while true do hs[#hs + 1] = spindle.spawn(function() return 1 end) end
        end)
        assert(not ok, "spawned forever")
        local n = #hs
        hs = nil
        collectgarbage(); collectgarbage()
        spindle.sleep(0.001)  -- let the spawned tasks run and end
        collectgarbage(); collectgarbage()
        -- still usable
        local h = spindle.spawn(function(x) spindle.sleep(0.001); return x + 1 end, 41)
        return tostring(err) .. "|" .. n .. "|" .. h:join()
      end)
      io.stdout:write(result, "\n")
    ]]
    local script = H.tmpname()
    H.write_file(script, src)
    -- Sanitizer runtimes reserve terabytes of address space and cannot run
    -- under ulimit -v, so this child always uses the plain build, unpreloaded.
    local r = H.sh("sh -c " .. H.q("ulimit -v 400000; exec lua5.4 " .. H.q(script)),
                   {env = "LD_PRELOAD= LUA_CPATH='./build/?.so;;' LUA_PATH=" .. H.q(package.path),
                    timeout = 120})
    H.remove(script)
    assert.equal("exit", r.how, H.describe(r))
    assert.equal(0, r.code, H.describe(r))
    local err, n, v = r.stdout:match("^(.-)|(%d+)|(%d+)\n$")
    assert.truthy(err, H.describe(r))
    assert.truthy(err:find("not enough memory", 1, true), H.describe(r))
    assert.is_true(tonumber(n) > 1000, H.describe(r))
    assert.equal("42", v)
  end)
end)

describe("§11 lua_close with a runtime still open", function()
  local function clean_exit(src)
    local r = H.lua_child(src, {timeout = 30})
    assert.equal("exit", r.how, H.describe(r))
    assert.equal(0, r.code, H.describe(r))
    assert.equal("", r.stderr, H.describe(r))
    return r
  end

  it("a runtime with a sleeping task is closed by lua_close without a crash", function()
    clean_exit([[
      local spindle = require "spindle"
      rt = spindle.runtime()
      rt:spawn(function()
        local c <close> = setmetatable({}, {__close = function() end})
        spindle.sleep(1e6)
      end)
      rt:spawn(function() end) -- never started
      rt:step()
      -- the script ends: lua5.4 calls lua_close with rt still open
    ]])
  end)

  it("os.exit(0, true) with an open runtime closes it first", function()
    clean_exit([[
      local spindle = require "spindle"
      local rt = spindle.runtime()
      for i = 1, 10 do rt:spawn(function() spindle.sleep(i) end) end
      rt:step()
      os.exit(0, true)
    ]])
  end)

  it("os.exit(0, true) from inside a running task does not crash", function()
    clean_exit([[
      local spindle = require "spindle"
      spindle.run(function()
        spindle.spawn(function() spindle.sleep(1e6) end)
        spindle.spawn(function() end)
        spindle.sleep(0.001)
        os.exit(0, true)
      end)
      error("not reached")
    ]])
  end)

  it("an unreferenced runtime with live tasks is collected without a crash", function()
    clean_exit([[
      local spindle = require "spindle"
      do
        local rt = spindle.runtime()
        rt:spawn(function() spindle.sleep(1e6) end)
        rt:step()
      end
      collectgarbage(); collectgarbage()
      -- and a new runtime works afterwards
      assert(spindle.run(function() spindle.sleep(0.001); return 1 end) == 1)
    ]])
  end)

  it("a runtime never stepped, and handles kept past the runtime, are safe at lua_close", function()
    clean_exit([[
      local spindle = require "spindle"
      local rt = spindle.runtime({clock = "virtual"})
      h1 = rt:spawn(function() spindle.sleep(5) end)
      local rt2 = spindle.runtime()
      h2 = rt2:spawn(function() return 1 end)
      rt2:run()
      rt2:close()
      assert(h2:status() == "done")
    ]])
  end)
end)
