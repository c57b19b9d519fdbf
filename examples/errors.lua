-- errors.lua -- how errors travel between tasks, and the messages spindle
-- gives for the mistakes it can detect.
--
--   ./build/spindle examples/errors.lua
--
-- Each part prints what happened and asserts it. At the very end one task
-- fails without anyone joining it, so spindle reports it on stderr: that
-- report is expected.

local spindle = require "spindle"

local function has(s, part) return string.find(s, part, 1, true) ~= nil end

-- 1. join re-raises exactly what the task raised: tables keep their
--    identity, so structured errors survive the trip. ------------------
do
  local E = {code = "ENOPE", msg = "no such user"}
  local h = spindle.spawn(function() spindle.yield(); error(E) end)
  local ok, err = pcall(h.join, h)
  print("1. error table:", ok, err == E, err.code)
  assert(not ok and err == E)
  -- result() gives the same value without raising, and traceback() the
  -- stack at the point of the error:
  local ok2, err2 = h:result()
  assert(ok2 == false and err2 == E)
  assert(has(h:traceback(), "stack traceback:"))
end

-- 2. Results come back complete, nil holes included. -------------------
do
  local h = spindle.spawn(function() return 1, nil, 3, nil end)
  local n = select("#", h:join())
  print("2. results:", h:join())
  assert(n == 4)
end

-- 3. Misuse raises an error that names the function. ------------------
do
  local ok, err = pcall(spindle.sleep, -1)
  print("3a.", err)
  assert(has(err, "bad argument #1 to 'spindle.sleep'"))

  local me = spindle.current()
  ok, err = pcall(me.join, me)
  print("3b.", err)
  assert(has(err, "deadlock: a task cannot join itself"))

  -- Awaiting from inside your own coroutine is refused, clearly:
  local gen = coroutine.wrap(function() spindle.sleep(0.01) end)
  ok, err = pcall(gen)
  print("3c.", err)
  assert(has(err, "nested coroutine") and has(err, "spindle.sleep"))

  -- So is awaiting where Lua cannot yield (a C function is in the way):
  ok, err = pcall(table.sort, {3, 1, 2}, function(x, y)
    spindle.yield()
    return x < y
  end)
  print("3d.", err)
  assert(has(err, "C-call boundary") and has(err, "spindle.yield"))
end

-- 4. Plain coroutines still work inside tasks, and a bare coroutine.yield
--    at task level simply acts like spindle.yield(). --------------------
do
  local gen = coroutine.wrap(function()
    for i = 1, 3 do coroutine.yield(i) end
  end)
  local a, b, c = gen(), gen(), gen()
  local n = select("#", coroutine.yield("ignored"))
  print("4. generator:", a, b, c, "| bare yield returned", n, "values")
  assert(a + b + c == 6 and n == 0)
end

-- 5. A failure nobody looks at is not lost: when its handle is collected,
--    or at the latest when the runtime ends, it is reported on stderr as
--    "spindle: task <id> (<name>) failed and was never joined: ...".
local h = spindle.spawn(function() error("nobody joins me") end)
h:name("forgotten")
spindle.yield() -- let it run (and fail) before main returns
print("5. a forgotten task fails; expect its report on stderr")
print("errors: all checks passed")
