-- spindle.http -- HTTP for spindle tasks (docs/http.md).
--
-- The client is C (csrc/http_client.c: libcurl's multi interface on the
-- runtime's loop); this module gives it its names:
--
--   http.request(opts)           -> response | nil, msg, code
--   http.get(url, [opts])        the same with opts.url = url
--   http.post(url, body, [opts]) the same with opts.url, opts.body
--
-- Reached as `require "spindle.http"` or as the field `spindle.http`.
local spindle = require "spindle"

local request = spindle._http_request

local M = {}

function M.request(opts)
  return request(opts, "request")
end

function M.get(url, opts)
  return request(opts, "get", url)
end

function M.post(url, body, opts)
  return request(opts, "post", url, body)
end

return M
