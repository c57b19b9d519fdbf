-- luv 1.44 keeps a dangling pointer to its loop when the luv module is
-- collected and required again (busted clears package.loaded between
-- files).  A runtime on luv's loop pins the module so that cannot happen.
local H = require "spec.helpers"

describe('loop = "luv" after package.loaded.luv was cleared', function()
  it("still finds a live loop", function()
    local r = H.lua_child([[
      local spindle = require "spindle"
      local rt = spindle.runtime{loop = "luv"}
      assert(rt:run(function() spindle.sleep(0.001) return 1 end) == 1)
      rt:close()
      package.loaded.luv = nil
      collectgarbage(); collectgarbage()
      local rt2 = spindle.runtime{loop = "luv"}
      assert(rt2:run(function() spindle.sleep(0.001) return 2 end) == 2)
      rt2:close()
      io.stdout:write("ok\n")
    ]])
    assert.is_true(r.ok, H.describe(r))
    assert.equal("ok\n", r.stdout)
  end)
end)
