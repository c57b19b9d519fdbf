-- spec/01-run_spec.lua -- docs/tasks.md: spindle.run, spindle.runtime,
-- rt:run / rt:spawn / rt:step / rt:close and the runtime options.
local H = require "spec.helpers"
local spindle = H.spindle

describe("§1 spindle.run", function()
  it("returns main's result (the docs/tasks.md example)", function()
    local r = table.pack(spindle.run(function(a, b)
      spindle.sleep(0.01)
      return a + b
    end, 1, 2))
    assert.same({n = 1, 3}, r)
  end)

  it("passes every extra argument to main, nil holes included", function()
    local r = table.pack(spindle.run(function(...)
      return select("#", ...), ...
    end, nil, 2, nil))
    assert.same({n = 4, 3, nil, 2, nil}, r)
  end)

  it("returns all of main's results, nils included", function()
    local r = table.pack(spindle.run(function() return nil, false, nil end))
    assert.equal(3, r.n)
    assert.is_nil(r[1]); assert.is_false(r[2]); assert.is_nil(r[3])
    assert.equal(0, select("#", spindle.run(function() end)))
    local t = {}
    local r2 = table.pack(spindle.run(function() return t, "s", 1.5 end))
    assert.equal(3, r2.n)
    assert.equal(t, r2[1]) -- identity, not a copy
    assert.equal("s", r2[2]); assert.equal(1.5, r2[3])
  end)

  it("returns thousands of results and passes thousands of arguments", function()
    local N = 5000
    local args = {}
    for i = 1, N do args[i] = i end
    local r = table.pack(spindle.run(function(...)
      assert(select("#", ...) == N)
      spindle.sleep(0)
      return ...
    end, table.unpack(args, 1, N)))
    assert.equal(N, r.n)
    assert.equal(1, r[1]); assert.equal(N, r[N])
  end)

  it("runs main as a task of its own runtime", function()
    local seen
    spindle.run(function()
      local h = spindle.current()
      seen = {h ~= nil, h and h:status(), h and math.type(h:id())}
    end)
    assert.same({true, "running", "integer"}, seen)
  end)

  it("drives the loop until main ends", function()
    local log = {}
    local r = spindle.run(function()
      local a = spindle.spawn(function() spindle.sleep(0.02); log[#log + 1] = "a"; return 1 end)
      local b = spindle.spawn(function() spindle.sleep(0.01); log[#log + 1] = "b"; return 2 end)
      return a:join() + b:join()
    end)
    assert.equal(3, r)
    assert.same({"b", "a"}, log)
  end)

  it("raises main's error string unchanged", function()
    local ok, err = pcall(spindle.run, function() error("boom", 0) end)
    assert.is_false(ok)
    assert.equal("boom", err)
    local line
    ok, err = pcall(spindle.run, function()
      spindle.sleep(0)
      line = H.line(); error("located boom")
    end)
    assert.is_false(ok)
    assert.is_string(err)
    assert.truthy(err:find(":" .. line .. ": located boom", 1, true), err)
  end)

  it("raises main's error table with its identity kept", function()
    local e = {code = 42}
    local ok, err = pcall(spindle.run, function() spindle.sleep(0.001); error(e) end)
    assert.is_false(ok)
    assert.equal(e, err)
  end)

  it("raises other error values unchanged (number, boolean, nil)", function()
    local ok, err = pcall(spindle.run, function() error(42) end)
    assert.is_false(ok); assert.equal(42, err)
    ok, err = pcall(spindle.run, function() error(false) end)
    assert.is_false(ok); assert.equal(false, err)
    ok, err = pcall(spindle.run, function() error(nil) end)
    assert.is_false(ok); assert.is_nil(err)
  end)

  it("raises a cancellation error when main was aborted", function()
    local ok, err = pcall(spindle.run, function()
      spindle.current():abort()
      spindle.sleep(1)
      return "not reached"
    end)
    assert.is_false(ok)
    assert.is_true(spindle.is_cancelled(err))
    assert.equal("cancelled", tostring(err))
  end)

  it("raises the error of a task that main joined", function()
    local e = setmetatable({}, {__tostring = function() return "E" end})
    local ok, err = pcall(spindle.run, function()
      return spindle.spawn(function() error(e) end):join()
    end)
    assert.is_false(ok)
    assert.equal(e, err)
  end)

  it("prints nothing itself when main fails", function()
    local r = H.lua_child([[
      local spindle = require "spindle"
      local ok, err = pcall(spindle.run, function() error("quiet failure") end)
      assert(not ok and err:find("quiet failure", 1, true))
      local ok2, err2 = pcall(spindle.run, function() spindle.sleep(0.001); error({}) end)
      assert(not ok2 and type(err2) == "table")
      io.stdout:write("done\n")
    ]])
    assert.is_true(r.ok, H.describe(r))
    assert.equal("done\n", r.stdout)
    assert.equal("", r.stderr)
  end)

  -- Long sleeps below run on the virtual clock: were the task not aborted,
  -- it would wake and log "woke" instead of hanging the suite.
  it("when main returns, aborts a sleeping task and runs its <close> handlers before returning", function()
    local log, h = {}, nil
    H.run_virtual(function()
      h = spindle.spawn(function()
        local outer <close> = H.closer(log, "outer")
        local inner <close> = H.closer(log, "inner")
        spindle.sleep(3600)
        log[#log + 1] = "woke"
      end)
      spindle.sleep(0) -- let it start sleeping
      assert.equal("waiting", h:status())
    end)
    assert.same({"inner", "outer"}, log)
    assert.equal("cancelled", h:status())
  end)

  it("when main returns, a task that never started never runs and ends cancelled", function()
    local ran, h = false, nil
    spindle.run(function()
      h = spindle.spawn(function() ran = true end)
    end)
    assert.is_false(ran)
    assert.equal("cancelled", h:status())
  end)

  it("when main returns, a ready task is aborted and unwound", function()
    local log, h, turns = {}, nil, 0
    spindle.run(function()
      h = spindle.spawn(function()
        local c <close> = H.closer(log, "closed")
        -- bounded, so a core that does not abort fails instead of hanging
        while turns < 10000 do turns = turns + 1; spindle.yield() end
      end)
      spindle.yield(); spindle.yield()
    end)
    assert.same({"closed"}, log)
    assert.equal("cancelled", h:status())
    assert.is_true(turns >= 1 and turns < 10000)
  end)

  it("when main returns, a task blocked in join and the task it joins are both unwound", function()
    local log, a, b = {}, nil, nil
    H.run_virtual(function()
      a = spindle.spawn(function()
        local c <close> = H.closer(log, "a")
        spindle.sleep(3600)
        log[#log + 1] = "a woke"
      end)
      b = spindle.spawn(function()
        local c <close> = H.closer(log, "b")
        a:join()
        log[#log + 1] = "b after join"
      end)
      spindle.sleep(0)
      assert.equal("waiting", b:status())
    end)
    table.sort(log)
    assert.same({"a", "b"}, log)
    assert.equal("cancelled", a:status())
    assert.equal("cancelled", b:status())
  end)

  it("when main raises, the remaining tasks are unwound before run raises", function()
    local log, h = {}, nil
    local ok, err = pcall(H.run_virtual, function()
      h = spindle.spawn(function()
        local c <close> = H.closer(log, "closed")
        spindle.sleep(3600)
        log[#log + 1] = "woke"
      end)
      spindle.sleep(0)
      error("main failed", 0)
    end)
    assert.is_false(ok)
    assert.equal("main failed", err)
    assert.same({"closed"}, log)
    assert.equal("cancelled", h:status())
  end)

  it("closes every handle: a pending long timer does not keep run from returning (child)", function()
    local r = H.lua_child([[
      local spindle = require "spindle"
      local closed = false
      local v = spindle.run(function()
        spindle.spawn(function()
          local c <close> = setmetatable({}, {__close = function() closed = true end})
          spindle.sleep(1e6)
        end)
        spindle.sleep(0.001)
        return "returned"
      end)
      io.stdout:write(v, " ", tostring(closed), "\n")
    ]], {timeout = 20})
    assert.equal("exit", r.how, H.describe(r))
    assert.equal(0, r.code, H.describe(r))
    assert.equal("returned true\n", r.stdout)
  end)

  it("each run has its own runtime: runs in sequence are independent", function()
    for i = 1, 3 do
      local v = spindle.run(function()
        local hs = {}
        for j = 1, 5 do hs[j] = spindle.spawn(function() spindle.sleep(0.001); return j * i end) end
        local s = 0
        for j = 1, 5 do s = s + hs[j]:join() end
        return s
      end)
      assert.equal(15 * i, v)
      assert.is_nil(spindle.current())
    end
    -- a failed run leaves nothing behind either
    assert.is_false(pcall(spindle.run, function() error("x") end))
    assert.equal(7, spindle.run(function() spindle.sleep(0) return 7 end))
  end)

  it("spindle.run inside a task raises 'spindle.run: already inside a runtime'", function()
    local results = {}
    local function try()
      local inner_ran = false
      local ok, err = pcall(spindle.run, function() inner_ran = true end)
      results[#results + 1] = {ok, err, inner_ran}
    end
    spindle.run(function()
      try()
      spindle.spawn(try):join()
      spindle.sleep(0.001) -- the outer runtime still works
    end)
    H.run_virtual(function() try() end)
    assert.equal(3, #results)
    for _, r in ipairs(results) do
      assert.is_false(r[1])
      assert.truthy(H.msg_has(r[2], "spindle.run: already inside a runtime"), tostring(r[2]))
      assert.is_false(r[3])
    end
  end)

  it("spindle.current() is nil before and after run", function()
    assert.is_nil(spindle.current())
    spindle.run(function() end)
    assert.is_nil(spindle.current())
  end)
end)

describe("§1 spindle.runtime", function()
  it("spindle.runtime() and spindle.runtime{} create usable runtimes", function()
    for _, rt in ipairs({spindle.runtime(), spindle.runtime({})}) do
      assert.equal(5, rt:run(function(x) spindle.sleep(0.001); return x end, 5))
      rt:close()
    end
  end)

  it("rt:run(main, ...) returns all of main's results like spindle.run", function()
    local rt = spindle.runtime({clock = "virtual"})
    local r = table.pack(rt:run(function(...)
      spindle.sleep(1)
      return select("#", ...), ...
    end, nil, "b", nil))
    rt:close()
    assert.same({n = 4, 3, nil, "b", nil}, r)
  end)

  it("rt:run(main) raises main's error value with identity", function()
    local e = {}
    local rt = spindle.runtime({clock = "virtual"})
    local ok, err = pcall(rt.run, rt, function() spindle.sleep(1); error(e) end)
    rt:close()
    assert.is_false(ok)
    assert.equal(e, err)
  end)

  it("rt:run(main) unwinds the remaining tasks when main ends", function()
    local log, h = {}, nil
    local rt = spindle.runtime({clock = "virtual"})
    rt:run(function()
      h = spindle.spawn(function()
        local c <close> = H.closer(log, "closed")
        spindle.sleep(10)
        log[#log + 1] = "woke"
      end)
      spindle.sleep(1)
    end)
    assert.same({"closed"}, log)
    assert.equal("cancelled", h:status())
    rt:close()
  end)

  it("rt:run() without a function runs until no task is alive", function()
    local rt = spindle.runtime({clock = "virtual"})
    local log = {}
    local hs = {}
    for _, d in ipairs({3, 1, 2}) do
      hs[#hs + 1] = rt:spawn(function()
        spindle.sleep(d)
        log[#log + 1] = d
        return d * 10
      end)
    end
    rt:run()
    assert.same({1, 2, 3}, log)
    for i, h in ipairs(hs) do assert.equal("done", h:status(), "task " .. i) end
    -- nothing alive: returns at once
    rt:run()
    rt:close()
  end)

  it("rt:run() waits for tasks spawned by tasks", function()
    local rt = spindle.runtime({clock = "virtual"})
    local done = false
    rt:spawn(function()
      spindle.spawn(function()
        spindle.sleep(5)
        spindle.spawn(function() spindle.sleep(5); done = true end)
      end)
    end)
    rt:run()
    assert.is_true(done)
    rt:close()
  end)

  it("rt:spawn(fn, ...) returns a handle and never runs fn inside spawn", function()
    local rt = spindle.runtime({clock = "virtual"})
    local got
    local h = rt:spawn(function(...) got = table.pack(...); return "r" end, 1, nil, 3)
    assert.is_nil(got)
    assert.equal("ready", h:status())
    assert.truthy(tostring(h):match("^task %d+$"))
    rt:run()
    assert.same({n = 3, 1, nil, 3}, got)
    assert.equal("done", h:status())
    rt:close()
  end)

  it("rt:step() runs ready tasks and returns the number of live tasks", function()
    local rt = spindle.runtime({clock = "virtual"})
    local log = {}
    local h = rt:spawn(function()
      log[#log + 1] = 1
      spindle.yield()
      log[#log + 1] = 2
    end)
    assert.same({}, log)
    local n, steps = rt:step(), 1
    assert.equal("integer", math.type(n))
    assert.same(1, log[1])
    while n > 0 and steps < 100 do n = rt:step(); steps = steps + 1 end
    assert.equal(0, n)
    assert.same({1, 2}, log)
    assert.equal("done", h:status())
    rt:close()
  end)

  it("rt:close() aborts every task and runs its <close> handlers", function()
    -- real clock: a virtual one may jump to the deadline inside step
    local rt = spindle.runtime({clock = "real"})
    local log = {}
    local started = rt:spawn(function()
      local c <close> = H.closer(log, "closed")
      spindle.sleep(30)
    end)
    rt:step()
    assert.equal("waiting", started:status())
    local never = rt:spawn(function() log[#log + 1] = "never" end)
    rt:close()
    assert.same({"closed"}, log)
    assert.equal("cancelled", started:status())
    assert.equal("cancelled", never:status())
  end)

  it("all options are optional and each is accepted", function()
    local option_sets = {
      {clock = "virtual"}, {clock = "real"},
      {on_error = function() end},
      {preempt = 1000},
      {warn_blocking = 10},
      {clock = "virtual", on_error = function() end, preempt = 100000, warn_blocking = 60},
    }
    for i, opts in ipairs(option_sets) do
      local rt = spindle.runtime(opts)
      assert.equal(i, rt:run(function() spindle.sleep(0.001); return i end), "option set " .. i)
      rt:close()
    end
  end)

  it("option loop = 'luv' runs tasks on luv's default loop", function()
    local uv = require "luv"
    local rt = spindle.runtime({loop = "luv"})
    local fired = false
    local v = rt:run(function()
      local t = uv.new_timer()
      t:start(5, 0, function() fired = true; t:close() end)
      spindle.sleep(0.05)
      return "ran"
    end)
    rt:close()
    assert.equal("ran", v)
    assert.is_true(fired)
  end)

  it("an unknown option key raises an error naming it", function()
    local ok, err = pcall(spindle.runtime, {colour = "blue"})
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, "colour"), tostring(err))
  end)

  it("clock = 'virtual': sleep(3600) finishes and now() advances by exactly 3600", function()
    local d = H.run_virtual(function()
      local t0 = spindle.now()
      spindle.sleep(3600)
      return spindle.now() - t0
    end)
    assert.is_true(math.abs(d - 3600) < 1e-6, "advanced " .. d)
  end)

  it("clock = 'virtual': time does not move while a task computes without awaiting", function()
    local d = H.run_virtual(function()
      local t0 = spindle.now()
      local x = 0
      for i = 1, 2e6 do x = x + i end
      return spindle.now() - t0
    end)
    assert.equal(0, d)
  end)

  it("rt:run(main, ...) is spindle.run with options: on_error gets unobserved failures", function()
    local calls = {}
    local e = {}
    local rt = spindle.runtime({clock = "virtual", on_error = function(err, h)
      calls[#calls + 1] = {err, h}
    end})
    local id
    rt:run(function()
      local h = spindle.spawn(function() error(e) end)
      id = h:id()
      spindle.sleep(1)
    end)
    rt:close()
    assert.equal(1, #calls)
    assert.equal(e, calls[1][1])
    assert.equal(id, calls[1][2]:id())
    assert.equal("failed", calls[1][2]:status())
  end)
end)
