-- demo.lua -- a short tour of spindle.
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
section("5. A server and its clients over TCP (127.0.0.1)")

-- An uppercase echo server: one task per connection.
local server = assert(spindle.net.listen("127.0.0.1", 0))
local _, port = server:local_addr()
local accepter = spindle.spawn(function()
  while true do
    local conn = server:accept()
    if not conn then return end
    spindle.spawn(function()
      local c <close> = conn
      for line in c:lines() do
        if line == "slow" then spindle.sleep(1) end -- a slow request
        c:write(line:upper(), "\n")
      end
    end)
  end
end)
say("server", "listening on 127.0.0.1:%d", port)

local function client(name, request, limit)
  local s <close> = assert(spindle.net.connect("127.0.0.1", port))
  local ok2, reply = pcall(spindle.timeout, limit, function()
    s:write(request, "\n")
    return s:read_line()
  end)
  if not ok2 then
    if not spindle.is_timeout(reply) then error(reply, 0) end -- aborted
    say(name, "gave up after %.1f s: %s", limit, tostring(reply))
    return "timed out"
  end
  say(name, "sent %q, got %q", request, reply)
  return reply
end

local alice = spindle.spawn(client, "alice", "hello", 0.5)
local bob = spindle.spawn(client, "bob", "spindle", 0.5)
local carol = spindle.spawn(client, "carol", "slow", 0.2)      -- times out
local dave = spindle.spawn(client, "dave", "slow", 5)          -- aborted
spindle.sleep(0.3)
dave:abort()
say("main", "aborted dave while he waited for his reply")

local summary = {}
for _, h in ipairs({alice, bob, carol, dave}) do
  local ok3, r = h:result()
  summary[#summary + 1] = ok3 and tostring(r)
                          or (spindle.is_cancelled(r) and "cancelled" or tostring(r))
end
say("main", "summary: alice=%s bob=%s carol=%s dave=%s", table.unpack(summary))
server:close()
accepter:abort()

---------------------------------------------------------------------------
print()
local st = spindle.stats()
say("main", "done: %d tasks spawned, %d failed, %d cancelled",
    st.spawned, st.failed, st.cancelled)
