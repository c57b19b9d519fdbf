-- spindle.tasks() (and shutdown, and dump) list live tasks in id order even
-- when finished tasks' anchor slots have been reused out of order.
local spindle = require "spindle"

describe("spindle.tasks() after slots were reused", function()
  it("is in id order", function()
    local rt = spindle.runtime({clock = "virtual"})
    local ids
    rt:run(function()
      for i = 1, 200 do
        spindle.spawn(function() spindle.sleep(i % 3 == 0 and 1 or 100) end)
      end
      spindle.sleep(2) -- a third of them finish; their slots go free
      for _ = 1, 100 do spindle.spawn(function() spindle.sleep(100) end) end
      ids = {}
      for i, h in ipairs(spindle.tasks()) do ids[i] = h:id() end
      for _, h in ipairs(spindle.tasks()) do
        if h ~= spindle.current() then h:abort() end
      end
    end)
    rt:close()
    assert.equal(1 + 134 + 100, #ids) -- main, the survivors, the new ones
    for i = 2, #ids do assert.is_true(ids[i - 1] < ids[i]) end
  end)
end)
