---@meta spindle.http_server
-- LuaLS stubs for require("spindle.http_server") (docs/http.md).

local http_server = {}

---@class spindle.http.serve.opts
---@field handler fun(req: spindle.http.request, res: spindle.http.response): (integer?, table?, string?)
---@field host? string
---@field port? integer
---@field tls? spindle.tls.context
---@field max_header? integer
---@field max_body? integer
---@field header_timeout? number
---@field idle_timeout? number
---@field max_connections? integer
---@field backlog? integer

---Listens and serves in background tasks until `srv:close()`.
---@param opts spindle.http.serve.opts
---@return spindle.http.server|nil
---@return string? message
---@return string? code
function http_server.serve(opts) end

---@class spindle.http.server
local server = {}
---@return string host
---@return integer port
function server:local_addr() end
---@param grace? number
function server:close(grace) end

---@class spindle.http.request
---@field method string
---@field target string
---@field path string
---@field query string?
---@field version "1.0"|"1.1"
---@field headers table<string, string>
---@field header_list {[1]: string, [2]: string}[]
---@field peer string
local request = {}
---@return string
function request:body() end
---@param max? integer
---@return string|nil
---@return string? message
---@return string? code
function request:read_some(max) end

---@class spindle.http.response
local response = {}
---@param status integer
---@param headers? table<string, string|string[]>
function response:write_head(status, headers) end
---@param chunk string
function response:write(chunk) end
---@param chunk? string
function response:finish(chunk) end

return http_server
