-- echo_server.lua -- a TCP echo server and the clients that check it.
--
--   ./build/spindle examples/echo_server.lua
--
-- The server listens on 127.0.0.1, port 0 (the system picks one), and
-- runs one task per connection.  Then 50 clients connect at once: each
-- sends lines and checks every echo byte for byte, one sends a 1 MiB
-- block in a single write, one disconnects without a word.  It prints a
-- summary and exits 0, or raises if anything came back wrong.

local spindle = require "spindle"
local net = spindle.net

local stats = {connections = 0, lines = 0, bytes = 0}

-- The server: one task per connection.  `for line in c:lines()` ends at
-- end of file (or an error); `c <close>` closes the connection however the
-- task ends -- including when the runtime aborts it at the very end.
local function serve(srv)
  while true do
    local c, msg, code = srv:accept()
    if not c then
      if msg == "closed" then return end -- the listener was closed
      print("accept failed: " .. code) -- e.g. EMFILE; accept backs off
    else
      stats.connections = stats.connections + 1
      spindle.spawn(function()
        local conn <close> = c
        conn:set_nodelay(true)
        for line in conn:lines(2 * 1024 * 1024) do
          stats.lines = stats.lines + 1
          stats.bytes = stats.bytes + #line + 1
          conn:write(line, "\n")
        end
      end)
    end
  end
end

local srv <close> = assert(net.listen("127.0.0.1", 0))
local host, port = srv:local_addr()
print(("echo server on %s:%d"):format(host, port))
spindle.spawn(serve, srv)

-- A client that sends `n` lines and checks each answer.
local function chatty_client(id, n)
  local s <close> = assert(net.connect(host, port, {timeout = 5}))
  for i = 1, n do
    local line = ("client %d says %d: %s"):format(id, i, ("*"):rep(i))
    assert(s:write(line, "\n"))
    local back = assert(s:read_line())
    assert(back == line, "echo differs")
  end
  return n
end

local function bulk_client()
  local s <close> = assert(net.connect(host, port, {timeout = 5}))
  local block = ("0123456789abcdef"):rep(65536) -- 1 MiB, no newline
  -- a writer and a reader at the same time: one of each is allowed
  local w = spindle.spawn(function() return s:write(block, "\n") end)
  local back = assert(s:read_line(#block))
  assert(w:join())
  assert(back == block, "bulk echo differs")
  return #block
end

local function rude_client()
  local s = assert(net.connect(host, port, {timeout = 5}))
  s:write("half a line and then gone")
  s:close() -- the server's lines() ends; nothing else is disturbed
end

local t0 = spindle.now()
local clients = {}
for i = 1, 50 do clients[i] = spindle.spawn(chatty_client, i, 20) end
local bulk = spindle.spawn(bulk_client)
spindle.spawn(rude_client):join()

local lines = 0
for _, h in ipairs(clients) do lines = lines + h:join() end
local bulk_bytes = bulk:join()

print(("%d clients: %d lines echoed byte for byte"):format(#clients, lines))
print(("bulk client: %d bytes in one write, echoed intact"):format(bulk_bytes))
print(("server: %d connections, %d lines, %d bytes, %.2f s")
  :format(stats.connections, stats.lines, stats.bytes, spindle.now() - t0))
assert(lines == 1000 and stats.connections == 52)
print("ok")
