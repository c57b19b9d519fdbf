-- bench/tls/spindle_server.lua -- the spindle TLS echo server under test.
--   ./build/spindle bench/tls/spindle_server.lua CERT KEY [port]
-- Prints "port N", then echoes every connection: a TLS listener
-- (net.listen with {tls = ctx}), one task per connection, read_some/write
-- (the handshake runs inside the first read_some), as in
-- bench/echo/spindle_server.lua.
local spindle = require "spindle"
local ctx = spindle.tls.context { server = true, cert = arg[1], key = arg[2] }
local srv = assert(spindle.net.listen("127.0.0.1", tonumber(arg[3]) or 0,
                                      { backlog = 1024, tls = ctx }))
io.stdout:write("port ", select(2, srv:local_addr()), "\n")
io.stdout:flush()
while true do
  local c = srv:accept()
  if c then
    spindle.spawn(function()
      local s <close> = c
      s:set_nodelay(true)
      while true do
        local data = s:read_some(65536)
        if not data or not s:write(data) then break end
      end
    end)
  end
end
