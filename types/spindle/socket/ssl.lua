---@meta spindle.socket.ssl
-- LuaLS stubs for require("spindle.socket.ssl"): LuaSec's shape on
-- spindle.tls (docs/socket.md).

---@class spindle.socket.ssllib
---@field _VERSION string
local ssl = {}

---@class spindle.socket.ssl.params
---@field mode "client"|"server"
---@field protocol? string
---@field key? string
---@field certificate? string
---@field cafile? string
---@field capath? string
---@field verify? string|string[]
---@field alpn? string|string[]
---@field options? any
---@field ciphers? string
---@field depth? integer

---@param params spindle.socket.ssl.params
---@return table|nil context
---@return string? err
function ssl.newcontext(params) end

---@param sock spindle.socket.tcp
---@param params spindle.socket.ssl.params|table
---@return spindle.socket.ssl.connection|nil
---@return string? err
function ssl.wrap(sock, params) end

---A LuaSec-style connection; the TCP client's methods work on it too.
---@class spindle.socket.ssl.connection: spindle.socket.tcp
local connection = {}
---@param name string
function connection:sni(name) end
---@return true|nil
---@return string? err
function connection:dohandshake() end
---@param pattern? string|integer
---@param prefix? string
---@return string|nil data
---@return string? err
---@return string? partial
function connection:receive(pattern, prefix) end
---@param data string
---@param i? integer
---@param j? integer
---@return integer|nil last
---@return string? err
---@return integer? last_sent
function connection:send(data, i, j) end
---@return 1
function connection:close() end
---@param field? string
---@return any
function connection:info(field) end
---@return table?
function connection:getpeercertificate() end
---@return boolean
---@return table?
function connection:getpeerverification() end
---@return string?
function connection:getalpn() end
---@return string?
function connection:getsniname() end
---@return string
function connection:want() end

return ssl
