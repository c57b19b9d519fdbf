-- cancellation.lua -- h:abort(), <close> handlers, spindle.shield, and
-- what happens to tasks still running when the main task ends.
--
--   ./build/spindle examples/cancellation.lua
--
-- Each part prints what happened and asserts it.

local spindle = require "spindle"

-- A to-be-closed value that records when it is closed, and why.
local function resource(name, log)
  return setmetatable({}, {
    __close = function(_, err)
      log[#log + 1] = ("%s closed (%s)"):format(name, tostring(err))
    end,
  })
end

-- 1. Aborting a task that has not started: it never runs. --------------
do
  local ran = false
  local h = spindle.spawn(function() ran = true end)
  local first, second = h:abort(), h:abort()
  print("1. not started:", h:status(), "abort() ->", first, second)
  assert(h:status() == "cancelled" and first and not second and not ran)
end

-- 2. Aborting a waiting task: the await raises the cancellation error in
--    the task, which unwinds it; <close> handlers run, innermost first. --
do
  local log = {}
  local h = spindle.spawn(function()
    local db <close> = resource("db", log)
    local file <close> = resource("file", log)
    spindle.sleep(10)
  end)
  spindle.sleep(0.01) -- let it start and block in sleep
  h:abort()
  local ok, err = h:result()
  print("2. waiting:", ok, err, "|", table.concat(log, ", "))
  assert(not ok and spindle.is_cancelled(err))
  assert(tostring(err) == "cancelled")
  assert(log[1] == "file closed (cancelled)")
  assert(log[2] == "db closed (cancelled)")
  -- join raises the same kind of error:
  local ok2, err2 = pcall(h.join, h)
  assert(not ok2 and spindle.is_cancelled(err2))
end

-- 3. Aborting a running task (here: itself): delivered at its next await.
do
  local steps = {}
  local h = spindle.spawn(function()
    spindle.current():abort()
    steps[#steps + 1] = "still running after abort()"
    spindle.yield() -- the next await raises
    steps[#steps + 1] = "not reached"
  end)
  local ok = h:result()
  print("3. self-abort:", ok, h:status(), "|", table.concat(steps, ", "))
  assert(not ok and #steps == 1)
end

-- 4. Level-triggered, and abort wins: a task that swallows the error with
--    pcall gets it again at every later await, and even if it returns
--    normally afterwards, it ends "cancelled". -------------------------
do
  local caught = 0
  local h = spindle.spawn(function()
    for _ = 1, 3 do
      if not pcall(spindle.sleep, 10) then caught = caught + 1 end
    end
    return "pretending nothing happened"
  end)
  spindle.yield()
  h:abort()
  local ok, err = h:result()
  print("4. swallowed", caught, "times; result():", ok, err)
  assert(caught == 3 and not ok and spindle.is_cancelled(err))
end

-- 5. Cleanup that must itself wait (flush, say goodbye...): in an aborted
--    task every await raises, so do it inside spindle.shield. -----------
do
  local log = {}
  local h = spindle.spawn(function()
    local conn <close> = setmetatable({}, {
      __close = function()
        local ok = pcall(spindle.sleep, 0.01)
        log[#log + 1] = "unshielded sleep ok: " .. tostring(ok)
        spindle.shield(function()
          spindle.sleep(0.02) -- runs to the end despite the abort
          log[#log + 1] = "shielded goodbye sent"
        end)
      end,
    })
    spindle.sleep(10)
  end)
  spindle.sleep(0.01)
  h:abort()
  h:result()
  print("5. cleanup:", table.concat(log, ", "))
  assert(log[1] == "unshielded sleep ok: false")
  assert(log[2] == "shielded goodbye sent")
end

-- 6. spindle.shield defers an abort until the shielded function returns;
--    the task then sees it at its next await. -------------------------
do
  local log = {}
  local h = spindle.spawn(function()
    spindle.shield(function()
      spindle.sleep(0.05)
      log[#log + 1] = "shielded work done"
    end)
    log[#log + 1] = "after the shield"
    spindle.sleep(10) -- raises: the abort is still pending
    log[#log + 1] = "not reached"
  end)
  spindle.sleep(0.01)
  h:abort()
  print("6. shield: abort requested, status now", h:status())
  h:result()
  print("   shield:", h:status(), "|", table.concat(log, ", "))
  assert(h:status() == "cancelled" and #log == 2)
end

-- 7. A finished task cannot be aborted: abort() returns false. ----------
do
  local h = spindle.spawn(function() return "done" end)
  assert(h:join() == "done")
  print("7. finished:", h:status(), "abort() ->", h:abort())
  assert(h:abort() == false and h:status() == "done")
end

-- 8. When the main task ends, every task still alive is aborted and
--    unwound before the runtime returns; this one's <close> handler
--    prints after the last line of this file. -------------------------
local background = spindle.spawn(function()
  local _ <close> = setmetatable({}, {
    __close = function(_, err)
      print(("8. shutdown: background task unwound (%s)"):format(err))
    end,
  })
  spindle.sleep(3600)
end)
background:name("background")
spindle.yield() -- let it start

print("cancellation: all checks passed; main returns now")
