---@meta spindle.http
-- LuaLS stubs for require("spindle.http") / spindle.http (docs/http.md).

---@class spindle.http
local http = {}

---@class spindle.http.request.opts
---@field url? string  required for request; get and post take it as argument #1
---@field method? string
---@field headers? table<string, string|number|(string|number)[]>
---@field body? string|fun(): string?
---@field timeout? number
---@field connect_timeout? number
---@field follow? integer
---@field max_body? integer
---@field stream? boolean
---@field tls? {ca?: string, verify?: boolean}
---@field version? "1.1"|"2"

---A response of the client (docs/http.md, Responses).
---@class spindle.http.client_response
---@field status integer
---@field headers table<string, string>
---@field header_list {[1]: string, [2]: string}[]
---@field body string?  nil with stream = true
---@field version string
---@field url string
local response = {}
---@param max? integer
---@return string|nil data
---@return string? message
---@return string? code
function response:read_some(max) end
---@param max? integer
---@return string|nil data
---@return string? message
---@return string? code
---@return string? partial
function response:read_all(max) end
---@param max? integer
---@return fun(): string?
function response:lines(max) end
---@return true
function response:close() end

---@param opts spindle.http.request.opts
---@return spindle.http.client_response|nil
---@return string? message
---@return string? code
function http.request(opts) end

---@param url string
---@param opts? spindle.http.request.opts
---@return spindle.http.client_response|nil
---@return string? message
---@return string? code
function http.get(url, opts) end

---@param url string
---@param body string|fun(): string?
---@param opts? spindle.http.request.opts
---@return spindle.http.client_response|nil
---@return string? message
---@return string? code
function http.post(url, body, opts) end

---The server: require("spindle.http_server").serve (docs/http.md).
---@param opts spindle.http.serve.opts
---@return spindle.http.server|nil
---@return string? message
---@return string? code
function http.serve(opts) end

return http
