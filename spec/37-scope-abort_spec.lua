-- spec/37-scope-abort_spec.lua -- docs/structured.md#scopes: "Aborting the
-- owner aborts the children first."
local spindle = require "spindle"

local function closer(log, tag)
  return setmetatable({}, {__close = function() log[#log + 1] = tag end})
end

describe("aborting the task that runs a scope", function()
  it("aborts the children first: their <close> handlers run before the owner's", function()
    local log = {}
    local rt = spindle.runtime({clock = "virtual"})
    rt:run(function()
      local owner = spindle.spawn(function()
        spindle.scope(function(s)
          for i = 1, 2 do
            s:spawn(function()
              local c <close> = closer(log, "child " .. i)
              spindle.sleep(100)
            end)
          end
          local c <close> = closer(log, "owner body")
          spindle.sleep(100)
        end)
      end)
      spindle.sleep(1)
      owner:abort()
      local ok, err = pcall(owner.join, owner)
      assert.is_false(ok)
      assert.is_true(spindle.is_cancelled(err))
    end)
    rt:close()
    assert.same({"child 1", "child 2", "owner body"}, log)
  end)

  it("leaves every child ended before the owner leaves the scope", function()
    local statuses
    local rt = spindle.runtime({clock = "virtual"})
    rt:run(function()
      local kids = {}
      local owner = spindle.spawn(function()
        spindle.scope(function(s)
          for i = 1, 3 do
            kids[i] = s:spawn(function()
              spindle.shield(function() spindle.sleep(5) end) -- slow cleanup
              spindle.sleep(100)
            end)
          end
          spindle.sleep(100)
        end)
      end)
      spindle.sleep(1)
      owner:abort()
      pcall(owner.join, owner)
      statuses = {}
      for i = 1, 3 do statuses[i] = kids[i]:status() end
    end)
    rt:close()
    assert.same({"cancelled", "cancelled", "cancelled"}, statuses)
  end)
end)
