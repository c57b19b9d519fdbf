-- spindle.http -- HTTP for spindle tasks (docs/http.md).
--
-- The client is C (csrc/http_client.c: libcurl's multi interface on the
-- runtime's loop); this module gives its entry points their names:
--
--   http.request(opts)           -> response | nil, msg, code
--   http.get(url, [opts])        the same with opts.url = url
--   http.post(url, body, [opts]) the same with opts.url and opts.body
--
-- They are the C functions themselves (no Lua frame in between), so an
-- argument error points at the caller's line.  Reached as
-- `require "spindle.http"` or as the field `spindle.http`.
local spindle = require "spindle"

local M = {}

M.request = spindle._http_request
M.get = spindle._http_get
M.post = spindle._http_post

-- the server (lua/spindle/http_server.lua), loaded when first used
function M.serve(...)
  return require("spindle.http_server").serve(...)
end

return M
