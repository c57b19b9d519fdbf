-- spec/35-dump_spec.lua -- docs/structured.md#seeing-what-tasks-do:
-- spindle.tasks(), spindle.dump(), stats, and the `spindle` command's dump on
-- SIGQUIT.
local H = require "spec.helpers"
local spindle = H.spindle
local T = H.vtest

-- The dump line of task h.
local function line_of(h)
  for line in spindle.dump():gmatch("[^\n]+") do
    if line:find("^task " .. h:id() .. "%f[^%d]") then return line end
  end
end

describe("§8 spindle.tasks", function()
  it("returns the handles of live tasks, in id order", T(function()
    local a = spindle.spawn(spindle.sleep, 1)
    local b = spindle.spawn(function() end)
    local ts = spindle.tasks()
    assert.same({spindle.current(), a, b}, ts)
    b:join()
    assert.same({spindle.current(), a}, spindle.tasks())
    a:join()
    assert.same({spindle.current()}, spindle.tasks())
  end))
end)

describe("§8 spindle.dump", function()
  it("has a line per live task: id, name, status, age, what it awaits, where", T(function()
    local ln
    local h = spindle.spawn(function()
      ln = H.line() + 1
      spindle.sleep(10)
    end)
    h:name("worker")
    spindle.sleep(4)
    local text = spindle.dump()
    local n = select(2, text:gsub("\n", "\n"))
    assert.equal(2, n)
    assert.equal(("task 2 (worker)  waiting  age 4.0 s  sleep 6.0 s left  at %s:%d")
      :format("spec/35-dump_spec.lua", ln), line_of(h))
    assert.matches("^task 1  running  age 4.0 s  %-  at spec/35%-dump_spec.lua:%d+$",
      line_of(spindle.current()))
    h:abort()
  end))

  it("names every kind of wait", T(function()
    local ch, full = spindle.channel(), spindle.channel(0)
    local sem, m, ev = spindle.semaphore(0), spindle.mutex(), spindle.event()
    local g = m:lock()
    local target = spindle.spawn(spindle.sleep, 100)
    local hs = {
      recv = spindle.spawn(function() ch:recv() end),
      send = spindle.spawn(function() full:send(1) end),
      sem = spindle.spawn(function() sem:acquire() end),
      mutex = spindle.spawn(function() m:lock() end),
      event = spindle.spawn(function() ev:wait() end),
      join = spindle.spawn(function() target:join() end),
      scope = spindle.spawn(function()
        spindle.scope(function(s) s:spawn(spindle.sleep, 100) end)
      end),
      timeout = spindle.spawn(function() spindle.timeout(30, ev.wait, ev) end),
    }
    local ready = spindle.spawn(function() end)
    spindle.yield()
    spindle.yield()
    local expect = {
      recv = "channel recv", send = "channel send", sem = "semaphore acquire",
      mutex = "mutex lock", event = "event wait",
      join = "join task " .. target:id(), scope = "scope wait (join task ",
      timeout = "event wait (timeout in 30.0 s)",
    }
    for k, h in pairs(hs) do
      assert.is_true(H.msg_has(line_of(h), "  waiting  "), k)
      assert.is_true(H.msg_has(line_of(h), expect[k]), k .. ": " .. line_of(h))
    end
    ready = spindle.spawn(function() end)
    assert.matches("  ready  age 0.0 s  %-  at spec/35%-dump_spec.lua:%d+$", line_of(ready))
    for _, h in pairs(hs) do h:abort() end
    target:abort()
    g:unlock()
    ready:join()
  end))

  it("is callable on a runtime from outside", function()
    local rt = spindle.runtime()
    rt:spawn(function() spindle.sleep(5) end)
    rt:step()
    assert.matches("^task 1  waiting  age 0.0 s  sleep [45]%.%d s left  at ", rt:dump())
    rt:close()
    assert.equal("", rt:dump())
  end)

  it("raises outside a runtime", function()
    local ok, err = pcall(spindle.dump)
    assert.is_false(ok)
    assert.is_true(H.msg_has(err, "not inside a runtime"))
  end)
end)

describe("§8 stats", function()
  it("counts spawned, finished, failed, cancelled, live, ready, polls", T(function()
    local a = spindle.spawn(function() error("x") end)
    local b = spindle.spawn(spindle.sleep, 10)
    local c = spindle.spawn(function() end)
    local s = spindle.stats()
    assert.equal(4, s.spawned)
    assert.equal(4, s.live)
    assert.equal(3, s.ready)
    a:result()
    c:join()
    b:abort()
    spindle.yield()
    s = spindle.stats()
    assert.equal(3, s.finished)
    assert.equal(1, s.failed)
    assert.equal(1, s.cancelled)
    assert.equal(1, s.live)
    assert.is_true(s.polls >= 1)
  end))
end)

describe("§8 the spindle command", function()
  it("prints the dump on SIGQUIT and goes on", function()
    local r = H.cli("%SCRIPT%", {script = [[
      local spindle = require "spindle"
      local pid = io.open("/proc/self/stat"):read("a"):match("^(%d+)")
      spindle.spawn(function() spindle.sleep(5) end):name("sleeper")
      -- (not os.execute: system() ignores SIGQUIT while it waits)
      for _ = 1, 2 do
        local p = io.popen("kill -QUIT " .. pid)
        p:close() -- the signal is pending once kill has exited
        spindle.sleep(0.2) -- the loop sees it; the dump is printed
      end
      print("still running")
    ]]})
    assert.is_true(r.ok, H.describe(r))
    assert.equal("still running\n", r.stdout)
    local n = select(2, r.stderr:gsub("spindle: SIGQUIT: 2 live tasks", ""))
    assert.equal(2, n, H.describe(r))
    assert.is_true(H.msg_has(r.stderr, "task 2 (sleeper)  waiting  age "), H.describe(r))
    assert.is_true(H.msg_has(r.stderr, "s left  at "), H.describe(r))
    assert.is_true(H.msg_has(r.stderr, "task 1  waiting"), H.describe(r))
  end)
end)
