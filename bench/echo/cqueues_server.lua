-- bench/echo/cqueues_server.lua -- the cqueues echo server.
--   lua5.4 bench/echo/cqueues_server.lua [port]
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
local srv = socket.listen("127.0.0.1", tonumber(arg[1]) or 0)
srv:listen()
local _, _, port = srv:localname()
io.stdout:write("port ", port, "\n")
io.stdout:flush()
local cq = cqueues.new()
cq:wrap(function()
  for c in srv:clients() do
    cq:wrap(function()
      c:setmode("b", "b")
      while true do
        local data = c:read(-65536)
        if not data then break end
        if not c:write(data) then break end
        c:flush()
      end
      c:close()
    end)
  end
end)
assert(cq:loop())
