-- The least HTTP a server on spindle's streams can do: read a head, write
-- a fixed answer (bench/http/server/run.sh).  arg[1]: port.
local spindle = require "spindle"
local srv = assert(spindle.net.listen("127.0.0.1", tonumber(arg[1]), {backlog = 4096}))
local resp = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\nhello world"
spindle.spawn(function()
  while true do
    local c = srv:accept()
    if c then
      spindle.spawn(function()
        local s <close> = c
        while s:read_until("\r\n\r\n", 16384) do s:write(resp) end
      end)
    end
  end
end)
spindle.signal("TERM"):wait()
