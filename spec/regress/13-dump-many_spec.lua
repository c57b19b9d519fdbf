-- Issue 13: spindle.dump() with many tasks (it failed past ~16 tasks when
-- a luaL_Buffer was disturbed below its stack slot), and hangs that name
-- what every task waits for (docs/structured.md#seeing-what-tasks-do).
local H = require "spec.helpers"
local spindle = H.spindle

describe("spindle.dump", function()
  it("lists thousands of tasks, one line each", function()
    H.run_virtual(function()
      local ch = spindle.channel()
      for i = 1, 3000 do
        local h = spindle.spawn(function() ch:recv() end)
        if i % 2 == 0 then h:name("worker-" .. i) end
      end
      spindle.yield()
      local text = spindle.dump()
      local n = 0
      for line in text:gmatch("[^\n]+") do
        n = n + 1
        if n > 1 then assert.truthy(line:find("channel recv", 1, true), line) end
      end
      assert.equal(3001, n) -- and the main task
      assert.truthy(text:find("task 3001 (worker-3000)", 1, true))
      ch:close()
    end)
  end)

  it("works from the command's SIGQUIT with many tasks", function()
    local r = H.cli("-e " .. H.q([[
      local s = require "spindle"
      for i = 1, 40 do s.spawn(s.sleep, 1) end
      s.yield()
      print(select("#", pcall(s.dump)), #s.dump() > 0)
    ]]))
    assert.equal("2\ttrue\n", r.stdout, H.describe(r))
  end)

  it("a spindle.test that times out shows what each task waits for", function()
    local t = spindle.test(function()
      local ch = spindle.channel()
      spindle.spawn(function() ch:recv() end):name("stuck-reader")
      spindle.sleep(10)
    end, {timeout = 0.2})
    local ok, err = pcall(t)
    assert.is_false(ok)
    assert.truthy(err:find("timed out", 1, true), err)
    assert.truthy(err:find("stuck-reader", 1, true), err)
    assert.truthy(err:find("channel recv", 1, true), err)
  end)
end)
