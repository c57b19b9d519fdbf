-- A luv callback server: the same fixed answer per "\r\n\r\n" (bench/http/
-- server/run.sh).  arg[1]: port.
local uv = require "luv"
local resp = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\nhello world"
local server = uv.new_tcp()
server:bind("127.0.0.1", tonumber(arg[1]))
server:listen(4096, function()
  local c = uv.new_tcp()
  server:accept(c)
  local buf = ""
  c:read_start(function(err, data)
    if err or not data then c:close() return end
    buf = buf .. data
    while true do
      local e = buf:find("\r\n\r\n", 1, true)
      if not e then break end
      buf = buf:sub(e + 4)
      c:write(resp)
    end
  end)
end)
local sig = uv.new_signal()
sig:start("sigterm", function() uv.stop() end)
uv.run()
