-- demo.lua -- a one-second tour of spindle.
--
--   make demo                          (installs, builds, runs this file)
--   ./build/spindle examples/demo.lua  (once built)
--
-- The `spindle` command runs this file as the *main task*, so it may call
-- awaiting functions such as spindle.sleep at top level. Every task is a
-- Lua coroutine; spindle.sleep stands in for waiting on a network or disk.

local spindle = require "spindle"

local start = spindle.now()

-- "[0.10s] who      message"
local function say(who, fmt, ...)
  print(string.format("[%.2fs] %-7s " .. fmt, spindle.now() - start, who, ...))
end

local function section(title)
  print()
  print("== " .. title)
end

print(("spindle %s demo: every task below is a Lua coroutine; [time] is"
       .. " seconds since start"):format(spindle.version))

---------------------------------------------------------------------------
section("1. Three downloads run at the same time")

local function download(name, seconds, chunks)
  for i = 1, chunks do
    spindle.sleep(seconds / chunks) -- other tasks run while this one waits
    say(name, "chunk %d/%d", i, chunks)
  end
  return chunks * 100 -- bytes
end

local a = spindle.spawn(download, "a.txt", 0.3, 3)
local b = spindle.spawn(download, "b.txt", 0.2, 2)
local c = spindle.spawn(download, "c.txt", 0.1, 1)
say("main", "spawned %s, %s and %s", a, b, c)

-- join waits for a task and returns what its function returned.
local bytes = a:join() + b:join() + c:join()
say("main", "joined all three: %d bytes in %.1f s (one after another: 0.6 s)",
    bytes, spindle.now() - start)

---------------------------------------------------------------------------
section("2. An error in a task comes back through join")

local parser = spindle.spawn(function(text)
  spindle.sleep(0.05)
  return tonumber(text) or error("not a number: " .. text, 0)
end, "forty-two")

local ok, err = parser:result() -- never raises: true, ... or false, err
say("main", "parser:result() -> %s, %q", ok, err)
ok, err = pcall(parser.join, parser) -- join re-raises the task's error
say("main", "pcall(parser.join, parser) -> %s, %q", ok, err)

---------------------------------------------------------------------------
section("3. abort() unwinds a task: its <close> handlers run")

local worker = spindle.spawn(function()
  local conn <close> = setmetatable({}, {
    __close = function(_, why)
      say("worker", "<close>: connection released (reason: %s)", why)
    end,
  })
  say("worker", "got a connection; working for 10 s...")
  spindle.sleep(10)
  say("worker", "this line never runs")
end)

spindle.sleep(0.1)
say("main", "worker:abort() -> %s", worker:abort())
ok, err = worker:result()
say("main", "worker:result() -> %s, %s (is_cancelled: %s)", ok, err,
    spindle.is_cancelled(err))
say("main", "worker:status() -> %s", worker:status())

---------------------------------------------------------------------------
section("4. A timeout")

ok, err = pcall(spindle.timeout, 0.3, function()
  say("query", "slow query started, needs 5 s")
  spindle.sleep(5)
end)
say("main", "timeout(0.3, slow) -> %s, %s (is_timeout: %s)",
    ok, err, spindle.is_timeout(err))

local answer = spindle.timeout(0.3, function()
  spindle.sleep(0.05)
  return "fast answer"
end)
say("main", "timeout(0.3, fast) -> %q", answer)

---------------------------------------------------------------------------
print()
local st = spindle.stats()
say("main", "done: %d tasks spawned, %d failed, %d cancelled",
    st.spawned, st.failed, st.cancelled)
