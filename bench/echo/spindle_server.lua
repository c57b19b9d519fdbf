-- bench/echo/spindle_server.lua -- the spindle echo server under test.
--   ./build/spindle bench/echo/spindle_server.lua [port]
-- Prints "port N", then echoes every connection with read_some/write.
local spindle = require "spindle"
local srv = assert(spindle.net.listen("127.0.0.1", tonumber(arg[1]) or 0,
                                      {backlog = 1024}))
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
