-- http.serve, "hello world" (bench/http/server/run.sh).  arg[1]: port;
-- arg[2]: "tls" to serve HTTPS with cert.pem/key.pem from arg[3] (a dir).
local spindle = require "spindle"
local serve = require("spindle.http_server").serve
local port = tonumber(arg[1])
-- The same answer as OpenResty's (nginx adds its default_type there): the
-- headers are one table made once, as a handler with fixed headers is
-- written.
local HEADERS = {["content-type"] = "text/plain"}
local opts = {host = "127.0.0.1", port = port, max_connections = 4096,
  backlog = 4096, handler = function()
    return 200, HEADERS, "hello world"
  end}
if arg[2] == "tls" then
  opts.tls = spindle.tls.context{server = true, cert = arg[3] .. "/cert.pem",
                                 key = arg[3] .. "/key.pem"}
end
local srv = assert(serve(opts))
spindle.signal("TERM"):wait()
srv:close(0)
