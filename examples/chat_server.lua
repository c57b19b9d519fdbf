-- chat_server.lua -- a line-based chat server: many clients, broadcast,
-- and clients that disconnect abruptly.
--
--   ./build/spindle examples/chat_server.lua
--
-- Protocol: the first line a client sends is its name; every later line
-- goes to everyone else as "name: text"; the server announces "* name
-- joined" and "* name left".  Each client gets a writer task fed by a
-- bounded channel, so one slow or vanished client never holds up the
-- broadcast (its queue fills and it is dropped).  The script starts the
-- server on 127.0.0.1, port 0, runs eight scripted clients -- two of them
-- vanish mid-conversation, one with a TCP reset -- checks what everybody
-- received, prints a summary and exits 0.

local spindle = require "spindle"
local net = spindle.net

local QUEUE = 64 -- lines queued per client before it counts as stuck
local members = {} -- name -> {out = channel}
local log = {joined = 0, left = 0, messages = 0, dropped = 0}

local function broadcast(from, line)
  for name, m in pairs(members) do
    if name ~= from and not m.out:try_send(line) then
      log.dropped = log.dropped + 1 -- stuck client: cut it off
      m.out:close()
    end
  end
end

local function session(conn)
  local c <close> = conn
  local name = c:read_line(64)
  if not name or name == "" or members[name] then return end
  local out = spindle.channel(QUEUE)
  members[name] = {out = out}
  log.joined = log.joined + 1
  broadcast(name, "* " .. name .. " joined\n")
  -- the writer: the only task that writes to this connection
  local writer = spindle.spawn(function()
    for line in out:iter() do
      if not c:write(line) then break end
    end
  end)
  for line in c:lines(1024) do -- ends at EOF, reset or close
    log.messages = log.messages + 1
    broadcast(name, name .. ": " .. line .. "\n")
  end
  members[name] = nil
  out:close()
  writer:abort()
  log.left = log.left + 1
  broadcast(name, "* " .. name .. " left\n")
end

local srv <close> = assert(net.listen("127.0.0.1", 0))
local host, port = srv:local_addr()
print(("chat server on %s:%d"):format(host, port))
local server = spindle.spawn(function()
  spindle.scope(function(sc)
    while true do
      local c, msg = srv:accept()
      if c then sc:spawn(session, c) elseif msg == "closed" then break end
    end
  end)
end)

-- ---------------------------------------------------------------- clients

-- Connects, sends its name, waits until `ready` (everyone has joined).
local function join(name)
  local s = assert(net.connect(host, port, {timeout = 5}))
  assert(s:write(name, "\n"))
  return s
end

-- Reads lines until `want` (a set of lines) has been seen; returns what
-- was read.  A timeout guards against a lost message.
local function expect(s, want)
  local missing, seen = {}, {}
  for line in pairs(want) do missing[line] = true end
  spindle.timeout(5, function()
    while next(missing) do
      local line = assert(s:read_line())
      seen[#seen + 1] = line
      missing[line] = nil
    end
  end)
  return seen
end

local names = {"ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal"}
local conns = {}
for i, name in ipairs(names) do
  conns[i] = join(name)
  -- wait for the server to register the name before the next one joins
  if i > 1 then expect(conns[1], {["* " .. name .. " joined"] = true}) end
end

-- Everyone says hello; everyone must hear everyone else.
local talkers = {}
for i, name in ipairs(names) do
  talkers[i] = spindle.spawn(function()
    assert(conns[i]:write("hello from ", name, "\n"))
  end)
end
for _, h in ipairs(talkers) do h:join() end
local heard = 0
for i, name in ipairs(names) do
  local want = {}
  for j, other in ipairs(names) do
    if j ~= i then want[other .. ": hello from " .. other] = true end
  end
  heard = heard + #expect(conns[i], want)
end
print(("%d clients each heard the %d others"):format(#names, #names - 1))

-- Two clients vanish in the middle of a line.  gus closes: at end of file
-- read_line hands over the last, unterminated line, so the others get it.
-- hal resets the connection: the bytes that arrived before the reset are
-- handed over the same way, and only then does the read fail (ECONNRESET).
conns[7]:write("last words")
conns[7]:close()
conns[8]:write("neither does th")
spindle.sleep(0.05) -- let the bytes reach the server before the reset
conns[8]:close_reset()
for i = 1, 6 do
  expect(conns[i], {["* gus left"] = true, ["* hal left"] = true,
                    ["gus: last words"] = true,
                    ["hal: neither does th"] = true})
end
print("the two that vanished were dropped; the rest saw them leave")

-- The survivors keep chatting.
assert(conns[1]:write("still here?\n"))
for i = 2, 6 do expect(conns[i], {["ada: still here?"] = true}) end
print("the survivors still talk")

for i = 1, 6 do conns[i]:close() end
spindle.sleep(0.05) -- let the sessions notice
srv:close()
server:abort()

print(("summary: %d joined, %d left, %d messages, %d lines read by clients, %d dropped")
  :format(log.joined, log.left, log.messages, heard, log.dropped))
assert(log.joined == 8 and log.left == 8 and log.dropped == 0)
print("ok")
