-- spec/41-blocking_spec.lua -- docs/blocking.md: spindle.blocking.
local H = require "spec.helpers"
local spindle = H.spindle

local function run(fn, opts) return H.run_with(opts, fn) end

describe("spindle.blocking(fn, ...)", function()
  it("runs fn on another thread and returns its results, copied", function()
    local r = run(function()
      return table.pack(spindle.blocking(function(n, t)
        local s = 0
        for i = 1, n do s = s + i end
        return s, t.name, {1, {2, {3}}}, nil, 1.5, 7, true, false
      end, 100, {name = "x"}))
    end)
    assert.equal(8, r.n)
    assert.equal(5050, r[1])
    assert.equal("x", r[2])
    assert.same({1, {2, {3}}}, r[3])
    assert.is_nil(r[4])
    assert.equal(1.5, r[5])
    assert.equal("integer", math.type(r[6]))
    assert.is_true(r[7])
    assert.is_false(r[8])
  end)

  it("keeps the other tasks running meanwhile", function()
    local ticks = run(function()
      local n = 0
      local ticker = spindle.spawn(function()
        while true do spindle.sleep(0.005); n = n + 1 end
      end)
      spindle.blocking(function() os.execute("sleep 0.15") end)
      ticker:abort()
      return n
    end)
    assert.is_true(ticks >= 3, "ticks: " .. ticks)
  end)

  it("runs in a separate Lua state (globals are not shared)", function()
    _G.spindle_blocking_probe = "here"
    local seen = run(function()
      return spindle.blocking(function() return spindle_blocking_probe end)
    end)
    _G.spindle_blocking_probe = nil
    assert.is_nil(seen)
  end)

  it("raises fn's error in the caller: strings and tables (copied)", function()
    run(function()
      local ok, err = pcall(spindle.blocking, function() error("boom") end)
      assert.is_false(ok)
      assert.truthy(err:find("boom", 1, true))
      ok, err = pcall(spindle.blocking, function() error({code = 5, msg = "x"}) end)
      assert.is_false(ok)
      assert.same({code = 5, msg = "x"}, err)
      ok, err = pcall(spindle.blocking, function() error(io.stdout) end)
      assert.is_false(ok)
      assert.equal("string", type(err))
    end)
  end)

  it("refuses functions with upvalues other than _ENV", function()
    run(function()
      local up = 1
      local ok, err = pcall(spindle.blocking, function() return up end)
      assert.is_false(ok)
      assert.truthy(err:find("upvalues other than _ENV", 1, true))
      assert.truthy(err:find("'up'", 1, true))
      -- _ENV alone is fine
      assert.equal("string", spindle.blocking(function() return type("") end))
    end)
  end)

  it("refuses C functions, cycles and values that cannot be copied", function()
    run(function()
      local ok, err = pcall(spindle.blocking, print)
      assert.is_false(ok)
      assert.truthy(err:find("bad argument #1", 1, true))
      local cyc = {}
      cyc.self = cyc
      ok, err = pcall(spindle.blocking, function(x) return x end, cyc)
      assert.is_false(ok)
      assert.truthy(err:find("argument #1 is a table with a cycle", 1, true))
      ok, err = pcall(spindle.blocking, function(x) return x end, 1, print)
      assert.is_false(ok)
      assert.truthy(err:find("argument #2 is a function", 1, true))
      ok, err = pcall(spindle.blocking, function() return 1, io.stdout end)
      assert.is_false(ok)
      assert.truthy(err:find("result #2 is a userdata", 1, true))
      -- a table shared twice (no cycle) is fine
      local shared = {1}
      local r = spindle.blocking(function(a, b) return a[1] + b[1] end, shared, shared)
      assert.equal(2, r)
    end)
  end)

  it("can be aborted: the caller is cancelled, the work finishes on its own", function()
    local status = run(function()
      local h = spindle.spawn(spindle.blocking, function()
        os.execute("sleep 0.1")
        return 1
      end)
      spindle.sleep(0.01)
      h:abort()
      local ok, err = h:result()
      assert.is_false(ok)
      assert.is_true(spindle.is_cancelled(err))
      return h:status()
    end)
    assert.equal("cancelled", status)
  end)

  it("keeps a virtual clock from jumping past running work", function()
    local order = run(function()
      local log = {}
      local h = spindle.spawn(function()
        spindle.blocking(function() os.execute("sleep 0.05") end)
        log[#log + 1] = "work"
      end)
      spindle.yield()
      spindle.sleep(1) -- virtual: would end at once if the clock jumped
      log[#log + 1] = "sleep"
      h:join()
      return table.concat(log, ",")
    end, {clock = "virtual"})
    assert.equal("work,sleep", order)
  end)

  it("closing the runtime waits for work in flight", function()
    local marker = os.tmpname()
    os.remove(marker)
    local rt = spindle.runtime()
    rt:spawn(spindle.blocking, function(path)
      assert(io.open(path, "w")):close() -- started: cannot be cancelled now
      os.execute("sleep 0.1")            -- wall time, whatever others do
    end, marker)
    rt:step()
    for _ = 1, 200 do -- bounded wait until the worker has started
      local f = io.open(marker)
      if f then f:close(); break end
      os.execute("sleep 0.01")
    end
    local t0 = spindle.now()
    rt:close() -- must not free what the worker still uses
    os.remove(marker)
    -- it returned only once the work was done (a lower bound: never flaky)
    assert.is_true(spindle.now() - t0 >= 0.05)
  end)

  it("shows in spindle.dump() as a blocking wait", function()
    local text = run(function()
      local h = spindle.spawn(function()
        spindle.blocking(function() os.execute("sleep 0.05") end)
      end)
      spindle.yield()
      local d = spindle.dump()
      h:join()
      return d
    end)
    assert.truthy(text:find("blocking (worker thread)", 1, true), text)
  end)

  it("raises outside a task", function()
    local ok, err = pcall(spindle.blocking, function() end)
    assert.is_false(ok)
    assert.truthy(err:find("spindle.blocking: not inside a task", 1, true))
  end)
end)

describe("worker states (docs/blocking.md#worker-threads)", function()
  it("a state whose job raised is never reused: its globals are gone", function()
    run(function()
      local ok = pcall(spindle.blocking, function()
        poisoned = true -- luacheck: ignore (a global in the worker)
        error("boom")
      end)
      assert.is_false(ok)
      for _ = 1, 40 do
        assert.is_nil(spindle.blocking(function() return rawget(_G, "poisoned") end))
      end
    end)
  end)

  it("states are reused after jobs that returned", function()
    run(function()
      local reused = false
      for _ = 1, 40 do
        local n = spindle.blocking(function()
          count = (rawget(_G, "count") or 0) + 1 -- luacheck: ignore
          return count
        end)
        if n > 1 then reused = true end
      end
      assert.is_true(reused)
    end)
  end)

  it("many jobs in parallel, then the runtime closes cleanly", function()
    local rt = spindle.runtime()
    local sum = rt:run(function()
      local hs = {}
      for i = 1, 200 do
        hs[i] = spindle.spawn(spindle.blocking, function(x) return x * 2 end, i)
      end
      local s = 0
      for i = 1, 200 do s = s + hs[i]:join() end
      return s
    end)
    rt:close()
    assert.equal(200 * 201, sum)
  end)
end)

describe("many jobs at once (docs/blocking.md#worker-threads)", function()
  it("keeps jobs beyond the pool's threads in order, and aborts those not yet handed over", function()
    local results = run(function()
      local hs = {}
      for i = 1, 150 do hs[i] = spindle.spawn(spindle.blocking, function(x) return x * 3 end, i) end
      -- the same ready round: jobs 5.. wait, 64 at a time, and the last
      -- ones until the round ends: 140..145 are dropped before they are
      -- handed over, 10..40 cancelled or detached
      spindle.spawn(function()
        for i = 10, 40 do hs[i]:abort() end
        for i = 140, 145 do hs[i]:abort() end
      end)
      local out = {}
      for i = 1, 150 do
        local ok, v = hs[i]:result()
        out[i] = ok and v or (spindle.is_cancelled(v) and "cancelled" or v)
      end
      return out
    end)
    for i = 1, 150 do
      if (i >= 10 and i <= 40) or (i >= 140 and i <= 145) then
        assert.equal("cancelled", results[i])
      else
        assert.equal(i * 3, results[i])
      end
    end
  end)

  it("a runtime closed with jobs queued and running frees everything", function()
    local rt = spindle.runtime()
    for i = 1, 20 do
      rt:spawn(spindle.blocking, function(n)
        local s = 0
        for k = 1, n do s = s + k end
        return s
      end, i * 1000)
    end
    rt:step() -- the jobs are handed to the pool; close waits for those running
    rt:close()
  end)

  it("tells functions apart in a reused worker state, and reloads none needlessly", function()
    local ok = run(function()
      for i = 1, 30 do
        -- a new closure each time (same code), and another function
        local a = spindle.blocking(function(x) return x + 1 end, i)
        local b = spindle.blocking(function(x) return x * 2 end, i)
        if a ~= i + 1 or b ~= i * 2 then return false end
      end
      return true
    end)
    assert.is_true(ok)
  end)

  it("gives every job the caller's package.path, even after a job changed its own", function()
    local saved = package.path
    local r = table.pack(pcall(run, function()
      local seen = {}
      seen[1] = spindle.blocking(function()
        local p = package.path
        package.path = "changed-in-the-worker"
        return p
      end)
      seen[2] = spindle.blocking(function() return package.path end)
      package.path = "./new/?.lua;" .. saved
      seen[3] = spindle.blocking(function() return package.path end)
      return seen
    end))
    package.path = saved
    assert.is_true(r[1], r[2])
    assert.equal(saved, r[2][1])
    assert.equal(saved, r[2][2])
    assert.equal("./new/?.lua;" .. saved, r[2][3])
  end)
end)

describe("spindle.blocking by module name (docs/blocking.md#worker-threads)", function()
  it("runs require('mod').fn in the worker, with the caller's package.path", function()
    local dir = H.tmpname()
    assert(os.execute("mkdir -p " .. H.q(dir)))
    H.write_file(dir .. "/bwork_spec_mod.lua",
      "local M = {}\nfunction M.fib(n) if n < 2 then return n end return M.fib(n-1) + M.fib(n-2) end\nreturn M\n")
    local saved = package.path
    package.path = dir .. "/?.lua;" .. package.path
    local ok, r1, r2 = pcall(run, function()
      return spindle.blocking("bwork_spec_mod.fib", 20), spindle.blocking("string.rep", "ab", 3)
    end)
    package.path = saved
    os.remove(dir .. "/bwork_spec_mod.lua")
    os.remove(dir)
    assert.is_true(ok, r1)
    assert.equal(6765, r1)
    assert.equal("ababab", r2)
  end)

  it("a missing module or function is an error in the caller", function()
    run(function()
      local ok, err = pcall(spindle.blocking, "no_such_module_xyz.fn")
      assert.is_false(ok)
      assert.truthy(tostring(err):find("no_such_module_xyz", 1, true))
      ok, err = pcall(spindle.blocking, "string.nope")
      assert.is_false(ok)
      assert.truthy(tostring(err):find("string.nope is not a function", 1, true))
    end)
  end)

  it("a name without a dot is a bad argument", function()
    run(function()
      assert.has_error(function() spindle.blocking("nodot") end)
      assert.has_error(function() spindle.blocking(".fn") end)
      assert.has_error(function() spindle.blocking("mod.") end)
    end)
  end)
end)
