-- bench/idle/http_server.lua -- http.serve with a tiny handler, for
-- bench/idle/conns.py.  Prints "port N".
local spindle = require "spindle"
local serve = require("spindle.http_server").serve
local srv = assert(serve{host = "127.0.0.1", port = 0,
  handler = function() return 200, {["content-type"] = "text/plain"}, "ok" end})
io.stdout:write("port ", select(2, srv:local_addr()), "\n")
io.stdout:flush()
spindle.sleep(1e9)
