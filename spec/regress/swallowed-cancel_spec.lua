-- A task that keeps swallowing its cancellation must not freeze the others:
-- every await in an aborted task raises at once, and after SP_FAST_BUDGET
-- such raises in a row the await yields first.
local spindle = require "spindle"

describe("an aborted task that swallows its cancellation in a loop", function()
  it("still lets the other tasks run", function()
    local rt = spindle.runtime({clock = "virtual"})
    local stop, spins, status = false, 0, nil
    rt:run(function()
      local bad = spindle.spawn(function()
        -- bounded so that a regression fails instead of hanging
        while not stop and spins < 2000000 do
          pcall(spindle.sleep, 1)
          spins = spins + 1
        end
      end)
      spindle.yield()
      bad:abort()
      spindle.yield() -- only returns if bad yields now and then
      stop = true
      pcall(bad.join, bad)
      status = bad:status()
    end)
    rt:close()
    assert.is_true(spins < 2000000, "main never ran while bad spun")
    assert.equal("cancelled", status)
  end)
end)
