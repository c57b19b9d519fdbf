-- timeouts.lua -- spindle.timeout(seconds, fn, ...): a deadline around fn.
--
--   ./build/spindle examples/timeouts.lua
--
-- Each part prints what happened and asserts it, so this file doubles as
-- a check that runs in CI.

local spindle = require "spindle"

local function closer(what, log)
  return setmetatable({}, {
    __close = function() log[#log + 1] = what .. " closed" end,
  })
end

-- 1. In time: timeout returns everything fn returned. -------------------
do
  local sum, product = spindle.timeout(1, function(x, y)
    spindle.sleep(0.01)
    return x + y, x * y
  end, 6, 7)
  print("1. in time:", sum, product)
  assert(sum == 13 and product == 42)
end

-- 2. Too slow: the await fn is blocked in raises a timeout error; it
--    unwinds fn (running <close> handlers) and timeout raises it on. ----
do
  local log = {}
  local ok, err = pcall(spindle.timeout, 0.05, function()
    local file <close> = closer("file", log)
    spindle.sleep(10)
  end)
  print("2. too slow:", ok, err, "is_timeout:", spindle.is_timeout(err),
        "cleanup:", log[1])
  assert(not ok and spindle.is_timeout(err) and spindle.is_cancelled(err))
  assert(tostring(err) == "timeout" and log[1] == "file closed")
end

-- 3. Level-triggered: once the deadline has passed, every await inside fn
--    raises again at once, so a pcall that swallows the error cannot keep
--    fn going past its next await outside that pcall. ------------------
do
  local swallowed = 0
  local ok, err = pcall(spindle.timeout, 0.05, function()
    for _ = 1, 3 do
      local ok2 = pcall(spindle.sleep, 1)
      if not ok2 then swallowed = swallowed + 1 end
    end
    spindle.sleep(1) -- not in a pcall: the timeout error escapes here
    error("not reached")
  end)
  print("3. swallowed", swallowed, "then:", ok, err)
  assert(not ok and spindle.is_timeout(err) and swallowed == 3)
end

-- 4. Nested, inner deadline first: the inner timeout raises to its own
--    caller; the outer scope carries on. -------------------------------
do
  local result = spindle.timeout(1, function()
    local ok, err = pcall(spindle.timeout, 0.02, spindle.sleep, 10)
    assert(not ok and spindle.is_timeout(err))
    return "outer finished after the inner timeout"
  end)
  print("4. inner expired:", result)
end

-- 5. Nested, outer deadline first: the inner timeout does not catch it;
--    it passes it on, and every later await in the outer scope raises. --
do
  local log = {}
  local ok, err = pcall(spindle.timeout, 0.05, function()
    local ok2 = pcall(spindle.timeout, 10, spindle.sleep, 1)
    log[#log + 1] = "inner pcall returned " .. tostring(ok2)
    spindle.sleep(1) -- still past the outer deadline: raises again
    log[#log + 1] = "not reached"
  end)
  print("5. outer expired:", ok, err, "|", table.concat(log, "; "))
  assert(not ok and spindle.is_timeout(err) and #log == 1)
end

-- 6. One deadline over several steps, and a default on timeout. --------
do
  local function fetch(i) spindle.sleep(0.02) return "part" .. i end
  local function fetch_all(n)
    local parts = {}
    for i = 1, n do parts[i] = fetch(i) end
    return parts
  end
  local function with_deadline(seconds, default, fn, ...)
    local ok, res = pcall(spindle.timeout, seconds, fn, ...)
    if ok then return res end
    if spindle.is_timeout(res) then return default end
    error(res, 0) -- anything else, including our own abort, goes on up
  end
  local fast = with_deadline(1, {}, fetch_all, 3)
  local slow = with_deadline(0.05, {"(default)"}, fetch_all, 100)
  print("6. deadline:", table.concat(fast, ","), "|", table.concat(slow, ","))
  assert(#fast == 3 and slow[1] == "(default)")
end

-- 7. A timeout inside another task: the task fails with the timeout error
--    (it was not aborted), and join re-raises that error. ---------------
do
  local h = spindle.spawn(function()
    return spindle.timeout(0.02, spindle.sleep, 10)
  end)
  local ok, err = h:result()
  print("7. in a task:", h:status(), ok, err)
  assert(h:status() == "failed" and spindle.is_timeout(err))
end

print("timeouts: all checks passed")
