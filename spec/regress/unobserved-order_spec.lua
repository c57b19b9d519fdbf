-- Failures nobody observed are reported at the end of the runtime in task
-- id order, each once.
local spindle = require "spindle"

describe("unobserved failures at the end of a runtime", function()
  it("are reported once each, in id order", function()
    local seen = {}
    local rt = spindle.runtime({clock = "virtual", on_error = function(err, h)
      seen[#seen + 1] = h:id() .. ":" .. tostring(err)
    end})
    local keep = {} -- hold the handles: the report comes from the runtime's end
    rt:run(function()
      for i = 1, 5 do
        keep[i] = spindle.spawn(function()
          spindle.sleep(10 - i) -- they fail in reverse order
          error("e" .. i, 0)
        end)
      end
      spindle.sleep(20)
    end)
    rt:close()
    assert.same({"2:e1", "3:e2", "4:e3", "5:e4", "6:e5"}, seen)
  end)
end)
