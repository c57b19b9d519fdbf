---@meta spindle.socket
-- LuaLS stubs for require("spindle.socket"): LuaSocket's API on spindle
-- (docs/socket.md).

---@class spindle.socketlib
---@field _VERSION string
---@field BLOCKSIZE integer
---@field ssl spindle.socket.ssllib
local socket = {}

---@return spindle.socket.tcp
function socket.tcp() end
---@return spindle.socket.tcp
function socket.tcp4() end
---@return spindle.socket.tcp
function socket.tcp6() end

---@param host string
---@param port integer
---@param locaddr? string
---@param locport? integer
---@param family? "inet"|"inet6"|"unspec"
---@return spindle.socket.tcp|nil
---@return string? err
function socket.connect(host, port, locaddr, locport, family) end
---@return spindle.socket.tcp|nil
---@return string? err
function socket.connect4(host, port, locaddr, locport) end
---@return spindle.socket.tcp|nil
---@return string? err
function socket.connect6(host, port, locaddr, locport) end

---@param host string
---@param port integer
---@param backlog? integer
---@return spindle.socket.tcp|nil
---@return string? err
function socket.bind(host, port, backlog) end

---@param recvt table?
---@param sendt table?
---@param timeout? number
---@return table readable
---@return table writable
---@return string? err
function socket.select(recvt, sendt, timeout) end

---@param seconds number
function socket.sleep(seconds) end

---@return number
function socket.gettime() end

---@param ... any
---@return ...
function socket.try(...) end
---@param finalizer? function
---@return fun(...): ...
function socket.newtry(finalizer) end
---@param f function
---@return function
function socket.protect(f) end
---@param d integer
---@return ...
function socket.skip(d, ...) end
---@param tbl table
---@return function
function socket.choose(tbl) end

---@param mode string
---@param sock spindle.socket.tcp
---@return function
function socket.sink(mode, sock) end
---@param mode string
---@param sock spindle.socket.tcp
---@param len? integer
---@return function
function socket.source(mode, sock, len) end

socket.sinkt = {}
socket.sinkt["keep-open"] = function(sock) end
socket.sinkt["close-when-done"] = function(sock) end
socket.sinkt.default = function(sock) end
socket.sourcet = {}
socket.sourcet["by-length"] = function(sock, len) end
socket.sourcet["until-closed"] = function(sock) end
socket.sourcet.default = function(sock) end

socket.dns = {}
---@param name string
---@return string|nil ip
---@return table|string info_or_err
function socket.dns.toip(name) end
---@param addr string
---@return string|nil name
---@return table|string info_or_err
function socket.dns.tohostname(addr) end
---@param name string
---@return {family: "inet"|"inet6", addr: string}[]|nil
---@return string? err
function socket.dns.getaddrinfo(name) end
---@return string
function socket.dns.gethostname() end

---A LuaSocket TCP object: master, client or server.
---@class spindle.socket.tcp
local tcp = {}
---@return 1|nil
---@return string? err
function tcp:connect(host, port) end
---@return 1|nil
---@return string? err
function tcp:bind(host, port) end
---@param backlog? integer
---@return 1|nil
function tcp:listen(backlog) end
---@return spindle.socket.tcp|nil
---@return string? err
function tcp:accept() end
---@param pattern? string|integer
---@param prefix? string
---@return string|nil data
---@return string? err
---@return string? partial
function tcp:receive(pattern, prefix) end
---@param data string
---@param i? integer
---@param j? integer
---@return integer|nil last
---@return string? err
---@return integer? last_sent
function tcp:send(data, i, j) end
---@param t number?
---@param mode? "b"|"t"
---@return 1
function tcp:settimeout(t, mode) end
---@return number block
---@return number total
function tcp:gettimeout() end
---@return 1
function tcp:close() end
---@param how? "both"|"send"|"receive"
---@return 1
function tcp:shutdown(how) end
---@return string|nil host
---@return integer|string? port
---@return string? family
function tcp:getpeername() end
---@return string|nil host
---@return integer|string? port
---@return string? family
function tcp:getsockname() end
function tcp:setpeername(host, port) end
function tcp:setsockname(host, port) end
---@param name string
---@param value any
---@return 1
function tcp:setoption(name, value) end
---@param name string
---@return any
function tcp:getoption(name) end
---@return integer
function tcp:getfd() end
---@param fd integer
function tcp:setfd(fd) end
---@return boolean
function tcp:dirty() end
---@return number received
---@return number sent
---@return number age
function tcp:getstats() end
---@return 1
function tcp:setstats(received, sent, age) end
---@return "inet4"|"inet6"
function tcp:getfamily() end

return socket
