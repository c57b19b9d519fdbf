-- lua-http (Debian lua-http, on cqueues) under Lua 5.4 with the 5.3..5.1
-- paths (bench/http/server/run.sh).  arg[1]: port.
package.path = package.path .. ";/usr/share/lua/5.3/?.lua;/usr/share/lua/5.3/?/init.lua"
  .. ";/usr/share/lua/5.2/?.lua;/usr/share/lua/5.2/?/init.lua"
  .. ";/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"
local http_server = require "http.server"
local http_headers = require "http.headers"
local srv = assert(http_server.listen{
  host = "127.0.0.1", port = tonumber(arg[1]),
  onstream = function(_, stream)
    stream:get_headers()
    local h = http_headers.new()
    h:append(":status", "200")
    h:append("content-type", "text/plain")
    h:append("content-length", "11")
    stream:write_headers(h, false)
    stream:write_chunk("hello world", true)
  end,
})
assert(srv:listen())
assert(srv:loop())
