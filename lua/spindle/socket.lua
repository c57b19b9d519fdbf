-- spindle.socket -- LuaSocket's `socket` module on spindle's streams
-- (docs/socket.md).
--
-- A table shaped like LuaSocket 3's `socket`, so code written for LuaSocket
-- (and LuaSocket's own socket.http, socket.smtp and ltn12) runs inside
-- tasks: where LuaSocket would block the process in poll(2), these objects
-- await, and the other tasks keep running.  Results, numbers (floats, as
-- LuaSocket pushes them) and error words are LuaSocket's.
--
-- TCP objects are plain tables with one of three metatables, the classes
-- LuaSocket calls tcp{master}, tcp{client} and tcp{server}:
--
--   master --connect--> client            (also when the connect fails,
--      |                                   as in LuaSocket)
--      +--bind--> master (bound) --listen--> server
--                        |
--                        +--connect--> client (from the bound address)
--   any --close--> the same class, closed (every I/O method: "closed")
--
-- Reading.  A client reads its stream with read_some into its own buffer
-- (_rbuf from _rpos), which receive drains; so a timed-out receive can
-- return the bytes that did arrive (LuaSocket's partial result), dirty()
-- says whether bytes are buffered, and select can wait for readability by
-- reading into that buffer in a helper task.  A read is only ever cancelled
-- while it waits, and a cancelled spindle read consumes nothing, so no byte
-- is lost to a timeout.
--
-- Timeouts.  settimeout's block and total values bound each call as
-- LuaSocket's timeout_getretry does; a wait is spindle.timeout around the
-- stream's await.  A connect with a finite timeout runs in a helper task,
-- so a timed-out connect goes on like LuaSocket's non-blocking connect (a
-- second connect reports "already connected", select sees it writable).
--
-- Sending.  A send that times out leaves its bytes queued in the stream
-- (spindle writes complete in the background, in order); they are counted
-- as sent, and the next send first waits for them.
--
-- The pure-Lua parts of LuaSocket's socket.lua (sink, source, choose, bind,
-- connect4/6) are rewritten here with the same behaviour; LuaSocket is
-- MIT-licensed, Copyright (C) 2004-2022 Diego Nehab.

local spindle = require "spindle"

local net = spindle.net
local current, now, sleep = spindle.current, spindle.now, spindle.sleep
local stimeout, is_timeout = spindle.timeout, spindle.is_timeout
local pack, unpack, concat = table.pack, table.unpack, table.concat
local type, tostring, tonumber, select = type, tostring, tonumber, select
local setmetatable, getmetatable, error = setmetatable, getmetatable, error
local pcall, ipairs, rawequal = pcall, ipairs, rawequal
local floor, min, max = math.floor, math.min, math.max
local sfind, sformat, ssub, gsub = string.find, string.format, string.sub,
                                   string.gsub

local M = {}

M._VERSION = "LuaSocket 3.0.0 (spindle " .. spindle.version .. ")"
M.BLOCKSIZE = 2048
M._SETSIZE = 1024.0
M._SOCKETINVALID = -1.0
M._DATAGRAMSIZE = 8192.0

local CHUNK = 65536      -- bytes asked of read_some at a time
local MAX_WAIT = 1e9     -- longer timeouts than spindle.timeout takes: none

-- ------------------------------------------------------------ errors

-- LuaSocket's words for the system's errors (usocket.c socket_strerror,
-- socket_gaistrerror), by spindle's code (the libuv error name); the rest
-- as glibc's strerror says them.
local STRERROR = {
  EADDRINUSE = "address already in use",
  EISCONN = "already connected",
  EACCES = "permission denied",
  ECONNREFUSED = "connection refused",
  ECONNABORTED = "closed",
  ECONNRESET = "closed",
  ETIMEDOUT = "timeout",
  EAI_AGAIN = "temporary failure in name resolution",
  EAI_BADFLAGS = "invalid value for ai_flags",
  EAI_FAIL = "non-recoverable failure in name resolution",
  EAI_FAMILY = "ai_family not supported",
  EAI_ADDRFAMILY = "Address family for hostname not supported",
  EAI_MEMORY = "memory allocation failure",
  EAI_NONAME = "host or service not provided, or not known",
  EAI_NODATA = "host or service not provided, or not known",
  EAI_OVERFLOW = "argument buffer overflow",
  EAI_PROTOCOL = "resolved protocol is unknown",
  EAI_SERVICE = "service not supported for socket type",
  EAI_SOCKTYPE = "ai_socktype not supported",
  EADDRNOTAVAIL = "Cannot assign requested address",
  EAFNOSUPPORT = "Address family not supported by protocol",
  EALREADY = "Operation already in progress",
  EBADF = "Bad file descriptor",
  ECANCELED = "Operation canceled",
  EHOSTDOWN = "Host is down",
  EHOSTUNREACH = "No route to host",
  EINVAL = "Invalid argument",
  EMFILE = "Too many open files",
  ENETDOWN = "Network is down",
  ENETUNREACH = "Network is unreachable",
  ENFILE = "Too many open files in system",
  ENOBUFS = "No buffer space available",
  ENOMEM = "Cannot allocate memory",
  ENOTCONN = "Transport endpoint is not connected",
  ENOTSOCK = "Socket operation on non-socket",
  EPERM = "Operation not permitted",
  EPIPE = "Broken pipe",
}

-- The message for a failed call that is not a read or write.
local function strerror(code, msg)
  local s = STRERROR[code]
  if s then return s end
  msg = tostring(msg or code or "unknown error")
  return (gsub(msg, "^%l", string.upper))
end

-- Reads and writes: whatever means the connection is gone is "closed"
-- (LuaSocket: recv returning 0, EPIPE, ECONNRESET, ECONNABORTED, and any
-- call on a closed socket).
local CLOSED = {EOF = true, ECANCELED = true, EBADF = true, EPIPE = true,
                ECONNRESET = true, ECONNABORTED = true}

local function ioerror(code, msg)
  if CLOSED[code] then return "closed" end
  return strerror(code, msg)
end

-- gethostbyname's words (socket_hoststrerror) for dns.toip/tohostname.
local HOSTERROR = {
  EAI_AGAIN = "Host name lookup failure",
  EAI_FAIL = "Unknown server error",
}
local function hosterror(code)
  return HOSTERROR[code] or "host not found"
end

-- ------------------------------------------------------ argument checks

local function typename(v)
  return v == nil and "no value" or type(v)
end

-- Our public functions, by name (registered at the end of the file).
local API = {}

-- luaL_argerror, as LuaSocket's C functions raise it: no position, the
-- name the caller used, and `self` not counted in a method call.  fname
-- names the function when the call does not (pcall(s.receive, s, ...)).
local function argerror(n, fname, extra)
  local level = 2
  while true do
    local info = debug.getinfo(level, "fn")
    if info == nil then break end
    if API[info.func] then
      local name = info.name or fname
      if info.namewhat == "method" then
        n = n - 1
        if n == 0 then
          error(sformat("calling '%s' on bad self (%s)", name, extra), 0)
        end
      end
      error(sformat("bad argument #%d to '%s' (%s)", n, name, extra), 0)
    end
    level = level + 1
  end
  error(sformat("bad argument #%d to '%s' (%s)", n, fname, extra), 0)
end

-- luaL_checklstring: strings and numbers (converted).
local function checkstring(v, n, fname)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  argerror(n, fname, "string expected, got " .. typename(v))
end

local function optstring(v, n, fname, def)
  if v == nil then return def end
  return checkstring(v, n, fname)
end

-- luaL_checknumber: numbers and numeric strings.
local function checknumber(v, n, fname)
  local x = tonumber(v)
  if x == nil or (type(v) ~= "number" and type(v) ~= "string") then
    argerror(n, fname, "number expected, got " .. typename(v))
  end
  return x
end

local function optnumber(v, n, fname, def)
  if v == nil then return def end
  return checknumber(v, n, fname)
end

-- A port: a number or a numeric string (LuaSocket hands it to getaddrinfo
-- as a service; service names are not looked up here).
local function toport(v)
  local p = tonumber(v)
  if p == nil or p ~= floor(p) or p < 0 or p > 65535 then return nil end
  return floor(p)
end

-- Awaiting needs a task, and a stack that can yield: checked before any
-- fast path, so the behaviour never depends on what happens to be buffered.
local function need_task(name)
  if current() == nil then
    error(name .. ": not inside a task", 0)
  end
  if not coroutine.isyieldable() then
    error(name .. ": cannot await here: a C function is in the way " ..
          "(attempt to yield across a C-call boundary, e.g. inside " ..
          "table.sort, string.gsub, require or __tostring)", 0)
  end
end

-- ------------------------------------------------------------- waiting

-- A set event: waiting on it is an await that completes at once, so it
-- raises a pending abort or an expired outer timeout (level-triggered).
local CHECKPOINT = spindle.event()
CHECKPOINT:set()

-- Runs f(...) for at most `limit` seconds (nil: no limit).  Returns true
-- and f's results, or false if the limit ran out (f was cancelled at its
-- await; spindle's awaits lose nothing when cancelled).  Any other error,
-- an abort of the task or an outer spindle.timeout included, is raised.
local function timed(limit, f, ...)
  if limit == nil or limit > MAX_WAIT then return true, f(...) end
  local r = pack(pcall(stimeout, limit, f, ...))
  if r[1] then return true, unpack(r, 2, r.n) end
  if not is_timeout(r[2]) then error(r[2], 0) end
  -- Ours or an outer one?  An outer deadline that expired is raised
  -- again by any await in its scope: let it.
  CHECKPOINT:wait()
  return false
end

-- What is left of a call's time: LuaSocket's timeout_getretry, with the
-- start of the call in `start` (spindle.now(), so the virtual clock of a
-- test runtime applies too).  nil: no limit.
local function time_left(self, start)
  local b, t = self._block, self._total
  if b < 0 and t < 0 then return nil end
  local elapsed = now() - start
  if b < 0 then return max(t - elapsed, 0) end
  if t < 0 then return max(b - elapsed, 0) end
  return min(b, max(t - elapsed, 0))
end

-- ------------------------------------------------------------ classes

local methods = {}
local CLASS = {}   -- metatable -> "master" | "client" | "server"
local MT = {}      -- class -> metatable

local function tcp_tostring(self)
  return sformat("tcp{%s}: %p", CLASS[getmetatable(self)], self)
end

local function close_meta(self) self:close() end

for _, cls in ipairs({"master", "client", "server"}) do
  local mt = {__index = methods, __tostring = tcp_tostring,
              __close = close_meta, __name = "tcp{" .. cls .. "}"}
  MT[cls], CLASS[mt] = mt, cls
end

local function setclass(self, cls) setmetatable(self, MT[cls]) end

-- The object at argument 1 of method `name`, of class `cls` ("any" for
-- the group): LuaSocket's auxiliar_checkclass/checkgroup, worded alike.
local function check(self, cls, name)
  local c = CLASS[getmetatable(self)]
  if c == nil or (cls ~= "any" and c ~= cls) then
    argerror(1, name, "tcp{" .. cls .. "} expected")
  end
  return self
end

local function is_tcp(v)
  return type(v) == "table" and CLASS[getmetatable(v)] ~= nil
end

-- Marks an object as being read (receive, accept, a select helper) for
-- as long as a <close> variable holds the object's guard.
local READING = {__close = function(g) g.sock._reading = false end}

local function reading(self, name)
  if self._reading then
    error(name .. ": socket busy (another task is reading this socket)", 0)
  end
  self._reading = true
  return self._rguard
end

local function new_tcp(family)
  local self = {
    _family = family,          -- nil (either), "inet" or "inet6"
    _block = -1, _total = -1,  -- settimeout's two values
    _rbuf = "", _rpos = 1,     -- received, not yet consumed
    _received = 0, _sent = 0, _birth = 0,
    _opt = {},                 -- setoption's values
  }
  self._birth = M.gettime()
  self._rguard = setmetatable({sock = self}, READING)
  return setmetatable(self, MT.master)
end

local function is_ipv4(s)
  return s:match("^%d+%.%d+%.%d+%.%d+$") ~= nil
end

local function family_of(host)
  return sfind(host, ":", 1, true) and "inet6" or "inet"
end

-- ---------------------------------------------------------- the buffer

local function buffered(self) return #self._rbuf - self._rpos + 1 end

-- Appends bytes read from the stream.
local function put(self, data)
  if self._rpos > #self._rbuf then
    self._rbuf, self._rpos = data, 1
  else
    self._rbuf, self._rpos = ssub(self._rbuf, self._rpos) .. data, 1
  end
end

-- Takes up to n buffered bytes (all when n is nil).
local function take(self, n)
  local p, b = self._rpos, self._rbuf
  local avail = #b - p + 1
  if n == nil or n > avail then n = avail end
  if n <= 0 then return "" end
  local s = (p == 1 and n == #b) and b or ssub(b, p, p + n - 1)
  self._rpos = p + n
  self._received = self._received + n
  if self._rpos > #b then self._rbuf, self._rpos = "", 1 end
  return s
end

-- The connect started by a connect with a finite timeout, if still going:
-- waits for it within `limit`.  Returns nil when connected, else an error.
local function wait_connect(self, start)
  local c = self._conn
  if c == nil then return nil end
  if c.state == "pending" then
    local ok = timed(time_left(self, start), c.ev.wait, c.ev)
    if not ok then return "timeout" end
  end
  if c.state == "failed" then return c.err end
  return nil
end

-- Reads more into the (empty) buffer within `limit` seconds.  Returns nil
-- or LuaSocket's error word.
local function fill(self, start)
  local e = wait_connect(self, start)
  if e then return e end
  if self._rerr then  -- found by a select helper
    e, self._rerr = self._rerr, nil
    return e
  end
  local s = self._stream
  if s == nil or self._rshut then return "closed" end
  local limit = time_left(self, start)
  local ok, d, msg, code = timed(limit, s.read_some, s, CHUNK)
  if not ok and limit == 0 then
    -- Never waiting still means looking: the first attempt started the
    -- stream reading and let the loop poll once; take what came.
    ok, d, msg, code = timed(0, s.read_some, s, CHUNK)
  end
  if not ok then return "timeout" end
  if d == nil then return ioerror(code, msg) end
  put(self, d)
  return nil
end

-- LuaSocket's recvraw, recvall and recvline (buffer.c): each appends to
-- parts and returns nil or an error word.
local function recvraw(self, wanted, parts, start)
  local got = 0
  while true do
    local err
    if buffered(self) == 0 then err = fill(self, start) end
    if not err then
      local s = take(self, wanted - got)
      if #s > 0 then parts[#parts + 1] = s; got = got + #s end
    end
    if err then return err end
    if got >= wanted then return nil end
  end
end

local function recvall(self, parts, start)
  local total = 0
  while true do
    local err
    if buffered(self) == 0 then err = fill(self, start) end
    if err then
      if err == "closed" and total > 0 then return nil end
      return err
    end
    local s = take(self)
    parts[#parts + 1] = s
    total = total + #s
  end
end

local function recvline(self, parts, start)
  while true do
    local err
    if buffered(self) == 0 then err = fill(self, start) end
    if err then return err end
    local b, p = self._rbuf, self._rpos
    local nl = sfind(b, "\n", p, true)
    local s = take(self, (nl or #b) - p + 1)
    if nl then s = ssub(s, 1, -2) end
    if sfind(s, "\r", 1, true) then s = gsub(s, "\r", "") end
    parts[#parts + 1] = s
    if nl then return nil end
  end
end

-- ------------------------------------------------------------ methods

-- client:receive([pattern [, prefix]])
function methods:receive(pattern, prefix)
  check(self, "client", "receive")
  prefix = optstring(prefix, 3, "receive", "")
  local n
  if type(pattern) == "number" or
     (type(pattern) == "string" and tonumber(pattern)) then
    n = tonumber(pattern)
    if not (n >= 0) then argerror(2, "receive", "invalid receive pattern") end
  else
    pattern = optstring(pattern, 2, "receive", "l")
  end
  local kind
  if n == nil then
    kind = ssub(pattern, 1, 1) == "*" and ssub(pattern, 2, 2) or
           ssub(pattern, 1, 1)
    if kind ~= "l" and kind ~= "a" then
      argerror(2, "receive", "invalid receive pattern")
    end
  end
  need_task("spindle.socket.tcp:receive")
  local _ <close> = reading(self, "spindle.socket.tcp:receive")
  local start = now()
  local parts = {prefix}
  local err
  if kind == "l" then
    err = recvline(self, parts, start)
  elseif kind == "a" then
    err = recvall(self, parts, start)
  else
    local wanted = floor(n)
    if #prefix == 0 or wanted > #prefix then
      err = recvraw(self, wanted - #prefix, parts, start)
    end
  end
  if err then return nil, err, concat(parts) end
  return concat(parts), nil, nil
end

-- Sends data[i..j] on the stream.  Returns an error word or nil, and how
-- many bytes count as sent.
local function sendraw(self, data, i, j, start)
  local e = wait_connect(self, start)
  if e then return e, 0 end
  local s = self._stream
  if s == nil or self._closed then return "closed", 0 end
  -- Sends from several tasks go out one after the other, whole.
  local m = self._wlock
  if m == nil then m = spindle.mutex(); self._wlock = m end
  local ok, guard = timed(time_left(self, start), m.lock, m)
  if not ok then return "timeout", 0 end
  local _ <close> = guard
  if self._closed then return "closed", 0 end
  local r, msg, code
  if self._wqueued then -- a timed-out send may still be going out
    ok, r, msg, code = timed(time_left(self, start), s.write, s, "")
    if not ok then return "timeout", 0 end
    if not r then return ioerror(code, msg), 0 end
    self._wqueued = false
  end
  local chunk = (i == 1 and j == #data) and data or ssub(data, i, j)
  ok, r, msg, code = timed(time_left(self, start), s.write, s, chunk)
  if not ok then
    self._wqueued = true
    self._sent = self._sent + #chunk
    return "timeout", #chunk
  end
  if not r then return ioerror(code, msg), 0 end
  self._sent = self._sent + #chunk
  return nil, #chunk
end

-- client:send(data [, i [, j]])
function methods:send(data, i, j)
  check(self, "client", "send")
  data = checkstring(data, 2, "send")
  i = optnumber(i, 3, "send", 1)
  j = optnumber(j, 4, "send", -1)
  need_task("spindle.socket.tcp:send")
  local size = #data
  i = i < 0 and -floor(-i) or floor(i) -- C's (long) cast
  j = j < 0 and -floor(-j) or floor(j)
  if i < 0 then i = size + i + 1 end
  if j < 0 then j = size + j + 1 end
  if i < 1 then i = 1 end
  if j > size then j = size end
  local err, sent = nil, 0
  if i <= j then err, sent = sendraw(self, data, i, j, now()) end
  if err then return nil, err, (sent + i - 1) + 0.0 end
  return (sent + i - 1) + 0.0, nil, nil
end

local function apply_options(self, s)
  local o = self._opt
  if o["tcp-nodelay"] then s:set_nodelay(true) end
  if o.keepalive then s:set_keepalive(true) end
end

-- The local address a connect starts from: socket.connect's locaddr, or a
-- master's bind.
local function connect_opts(self)
  local o = {}
  if self._local then
    o.local_host, o.local_port = self._local[1], self._local[2]
  end
  return o
end

-- Resolves host for a connect restricted to one family (tcp4, tcp6, or a
-- bound master): the addresses of that family, or nil, err.
local function addresses(host, family)
  if family == nil then return {host} end
  if is_ipv4(host) or host:find(":", 1, true) then
    if family_of(host) ~= family then return nil, STRERROR.EAI_ADDRFAMILY end
    return {host}
  end
  local list, msg, code = net.resolve(host)
  if not list then return nil, strerror(code, msg) end
  local out = {}
  for _, a in ipairs(list) do
    if a.family == family then out[#out + 1] = a.address end
  end
  if #out == 0 then return nil, STRERROR.EAI_NONAME end
  return out
end

-- Connects to each address in turn (as getaddrinfo's list is tried).
-- Returns the stream, or nil and an error word.
local function connect_any(self, list, port)
  local err = STRERROR.EAI_NONAME
  for _, a in ipairs(list) do
    local s, msg, code = net.connect(a, port, connect_opts(self))
    if s then return s end
    err = (code == "ETIMEDOUT") and "timeout" or strerror(code, msg)
  end
  return nil, err
end

local function connected(self, s)
  self._stream = s
  local host = s:peer()
  if self._family == nil and type(host) == "string" then
    self._family = family_of(host)
  end
  apply_options(self, s)
end

-- master:connect(address, port); also client:connect (LuaSocket's group).
--
-- self._conn records the last connect: {state = "pending" | "done" |
-- "failed", err, reported, ev, task}.  As with connect(2) on Linux, which
-- LuaSocket passes through, the first connect after a connection completed
-- returns 1 again and later ones "already connected"; a failure not yet
-- returned by a connect is returned by the next one, and the connect
-- after that starts a new attempt.
function methods:connect(host, port)
  check(self, "any", "connect")
  host = checkstring(host, 2, "connect")
  port = checkstring(port, 3, "connect")
  need_task("spindle.socket.tcp:connect")
  local start = now()
  if self._closed then return nil, "closed" end
  local c = self._conn
  if c and c.state == "pending" then
    local ok = timed(time_left(self, start), c.ev.wait, c.ev)
    if not ok or c.state == "pending" then return nil, STRERROR.EALREADY end
  end
  if c and c.state == "done" then
    if c.reported then return nil, STRERROR.EISCONN end
    c.reported = true
    return 1.0
  end
  if c and c.state == "failed" and not c.reported then
    c.reported = true
    return nil, c.err
  end
  if self._stream or CLASS[getmetatable(self)] == "server" then
    return nil, STRERROR.EISCONN
  end
  local p = toport(port)
  if p == nil then
    setclass(self, "client")
    return nil, STRERROR.EAI_SERVICE
  end
  if self._lst then -- bound, not listening: connect from that address
    local h, lp = self._lst:local_addr()
    self._lst:close()
    self._lst = nil
    self._local = {h, lp}
  end
  local list, err = addresses(host, self._family)
  setclass(self, "client") -- even when the connect fails, as LuaSocket
  if not list then
    self._conn = {state = "failed", err = err, reported = true}
    return nil, err
  end
  local limit = time_left(self, start)
  if limit == nil then
    local s
    s, err = connect_any(self, list, p)
    if not s then
      self._conn = {state = "failed", err = err, reported = true}
      return nil, err
    end
    connected(self, s)
    self._conn = {state = "done"}
    return 1.0
  end
  -- A finite timeout: the connect runs in its own task and goes on after
  -- the timeout, like LuaSocket's non-blocking connect.
  c = {state = "pending", ev = spindle.event()}
  self._conn = c
  c.task = spindle.spawn(function()
    local s, e = connect_any(self, list, p)
    c.task = nil
    if self._conn ~= c or self._closed then
      if s then s:close() end
      c.state, c.err = "failed", "closed"
    elseif s then
      connected(self, s)
      c.state = "done"
    else
      c.state, c.err = "failed", e
    end
    c.ev:set()
  end)
  c.task:name(sformat("spindle.socket connect %s:%d", host, p))
  local ok = timed(limit, c.ev.wait, c.ev)
  if not ok then return nil, "timeout" end
  if c.state == "failed" then
    c.reported = true
    return nil, c.err
  end
  return 1.0
end
methods.setpeername = methods.connect

-- master:bind(address, port)
function methods:bind(host, port)
  check(self, "master", "bind")
  host = checkstring(host, 2, "bind")
  port = checkstring(port, 3, "bind")
  need_task("spindle.socket.tcp:bind")
  if self._closed then return nil, STRERROR.EBADF end
  if self._lst then return nil, STRERROR.EINVAL end
  local p = toport(port)
  if p == nil then return nil, STRERROR.EAI_SERVICE end
  if host == "*" then
    host = self._family == "inet6" and "::" or "0.0.0.0"
  end
  local list, err
  if is_ipv4(host) or host:find(":", 1, true) then
    if self._family and family_of(host) ~= self._family then
      return nil, STRERROR.EAI_ADDRFAMILY
    end
    list = {host}
  else
    list, err = addresses(host, self._family)
    if not list then return nil, err end
  end
  err = STRERROR.EAI_NONAME
  for _, a in ipairs(list) do
    local l, msg, code = net.listen(a, p)
    if l then
      self._lst = l
      self._family = self._family or family_of(a)
      return 1.0
    end
    err = strerror(code, msg)
  end
  return nil, err
end
methods.setsockname = methods.bind

-- master:listen([backlog]): the bound socket has listened since bind
-- (spindle.net.listen binds and listens at once), so backlog is checked
-- and otherwise the system's (511).
function methods:listen(backlog)
  check(self, "master", "listen")
  optnumber(backlog, 2, "listen", 32)
  if self._lst == nil then return nil, STRERROR.EBADF end
  setclass(self, "server")
  return 1.0
end

local function new_client(stream, family)
  local c = new_tcp(family)
  setclass(c, "client")
  c._stream = stream
  if family == nil then
    local host = stream:peer()
    if type(host) == "string" then c._family = family_of(host) end
  end
  return c
end

-- server:accept()
function methods:accept()
  check(self, "server", "accept")
  need_task("spindle.socket.tcp:accept")
  local _ <close> = reading(self, "spindle.socket.tcp:accept")
  local q = self._accepted
  if q and #q > 0 then
    return new_client(table.remove(q, 1), self._family)
  end
  if self._rerr then
    local e = self._rerr
    self._rerr = nil
    return nil, e
  end
  local l = self._lst
  if l == nil or self._closed then return nil, "closed" end
  local ok, s, msg, code = timed(time_left(self, now()), l.accept, l)
  if not ok then return nil, "timeout" end
  if not s then return nil, ioerror(code, msg) end
  return new_client(s, self._family)
end

-- Closes everything the object holds.  Never waits.
function methods:close()
  check(self, "any", "close")
  if self._closed then return 1.0 end
  self._closed = true
  local s = self._stream
  if s then
    local linger = self._opt.linger
    if linger and linger.on and linger.timeout == 0 then
      s:close_reset()
    else
      s:close()
    end
  end
  if self._lst then self._lst:close() end
  local c = self._conn
  if c and c.state == "pending" then
    c.state, c.err = "failed", "closed"
    if c.task then c.task:abort() end
    c.ev:set()
  end
  if self._accepted then
    for _, a in ipairs(self._accepted) do a:close() end
    self._accepted = nil
  end
  return 1.0
end

-- client:shutdown(["both" | "send" | "receive"])
local HOW = {both = true, send = true, receive = true}
function methods:shutdown(how)
  check(self, "client", "shutdown")
  how = optstring(how, 2, "shutdown", "both")
  if not HOW[how] then
    argerror(2, "shutdown", "invalid option '" .. how .. "'")
  end
  need_task("spindle.socket.tcp:shutdown")
  if how ~= "send" then self._rshut = true end
  local s = self._stream
  if how ~= "receive" and s and not self._closed then
    timed(time_left(self, now()), s.shutdown, s)
  end
  return 1.0
end

local function addr_result(host, port, code, msg)
  if host == nil then return nil, strerror(code, msg) end
  return host, port, family_of(host)
end

function methods:getpeername()
  check(self, "any", "getpeername")
  if self._closed then return nil, STRERROR.EBADF end
  if self._stream then
    local h, p, code = self._stream:peer()
    return addr_result(h, p, code, p)
  end
  if self._lst or self._conn then return nil, STRERROR.ENOTCONN end
  return nil, STRERROR.EBADF
end

function methods:getsockname()
  check(self, "any", "getsockname")
  if self._closed then return nil, STRERROR.EBADF end
  local o = self._stream or self._lst
  if o then
    local h, p, code = o:local_addr()
    return addr_result(h, p, code, p)
  end
  return nil, STRERROR.EBADF
end

function methods:getfamily()
  check(self, "any", "getfamily")
  return self._family == "inet6" and "inet6" or "inet4"
end

-- settimeout(value [, mode]): mode "b" (each call's waits; the default)
-- or "t" ("r") (the whole call).  nil or negative: wait forever.
function methods:settimeout(t, mode)
  check(self, "any", "settimeout")
  t = optnumber(t, 2, "settimeout", -1)
  mode = optstring(mode, 3, "settimeout", "b")
  local m = ssub(mode, 1, 1)
  if m == "b" then
    self._block = t
  elseif m == "t" or m == "r" then
    self._total = t
  else
    argerror(3, "settimeout", "invalid timeout mode")
  end
  return 1.0
end

function methods:gettimeout()
  check(self, "any", "gettimeout")
  return self._block + 0.0, self._total + 0.0
end

local OPTIONS = {
  keepalive = "boolean", reuseaddr = "boolean", ["tcp-nodelay"] = "boolean",
  linger = "table",
  -- known to LuaSocket, not settable on spindle's streams:
  reuseport = false, ["ipv6-v6only"] = false,
}

function methods:setoption(name, value)
  check(self, "any", "setoption")
  name = checkstring(name, 2, "setoption")
  local kind = OPTIONS[name]
  if kind == nil then
    argerror(2, "setoption", "unsupported option `" .. name .. "'")
  end
  if kind == "table" then
    if type(value) ~= "table" then
      argerror(3, "setoption", "table expected, got " .. typename(value))
    end
    local on = value.on
    if on == nil then argerror(3, "setoption", "field 'on' missing in table") end
    value = {on = on and true or false, timeout = tonumber(value.timeout) or 0}
  elseif kind == "boolean" then
    if type(value) ~= "boolean" then
      argerror(3, "setoption", "boolean expected, got " .. typename(value))
    end
  end
  if not kind or self._closed then return nil, "setsockopt failed" end
  if self._family == nil and not (self._stream or self._lst or self._conn) then
    return nil, "setsockopt failed" -- tcp(): no socket until connect or bind
  end
  self._opt[name] = value
  local s = self._stream
  if s then
    local ok, msg, code = true, nil, nil
    if name == "tcp-nodelay" then
      ok, msg, code = s:set_nodelay(value)
    elseif name == "keepalive" then
      ok, msg, code = s:set_keepalive(value)
    end
    if not ok then return nil, strerror(code, msg) end
  end
  return 1.0
end

function methods:getoption(name)
  check(self, "any", "getoption")
  name = checkstring(name, 2, "getoption")
  if name == "error" then return nil end
  if OPTIONS[name] == nil then
    argerror(2, "getoption", "unsupported option `" .. name .. "'")
  end
  if self._closed then return nil, "getsockopt failed" end
  local v = self._opt[name]
  if name == "linger" then
    v = v or {on = false, timeout = 0}
    return {on = v.on, timeout = v.timeout}
  end
  if name == "reuseaddr" and v == nil then return true end -- libuv sets it
  return v or false
end

-- spindle sockets have no descriptor of their own to hand out: select
-- below waits on them; -1 keeps LuaSocket's select from trying.
function methods:getfd()
  check(self, "any", "getfd")
  return -1.0
end

function methods:setfd(fd)
  check(self, "any", "setfd")
  checknumber(fd, 2, "setfd")
end

function methods:dirty()
  check(self, "any", "dirty")
  return buffered(self) > 0
end

function methods:getstats()
  check(self, "client", "getstats")
  return self._received + 0.0, self._sent + 0.0, M.gettime() - self._birth
end

function methods:setstats(received, sent, age)
  check(self, "client", "setstats")
  self._received = optnumber(received, 2, "setstats", self._received)
  self._sent = optnumber(sent, 3, "setstats", self._sent)
  if tonumber(age) then self._birth = M.gettime() - tonumber(age) end
  return 1.0
end

-- ------------------------------------------------ module: TCP, time, DNS

function M.tcp() return new_tcp(nil) end
function M.tcp4() return new_tcp("inet") end
function M.tcp6() return new_tcp("inet6") end

-- socket.connect(address, port [, locaddr [, locport [, family]]])
local FAMILY = {unspec = false, inet = "inet", inet6 = "inet6"}
function M.connect(host, port, locaddr, locport, family)
  host = checkstring(host, 1, "socket.connect")
  port = checkstring(port, 2, "socket.connect")
  locaddr = optstring(locaddr, 3, "socket.connect", nil)
  locport = optstring(locport, 4, "socket.connect", "0")
  family = optstring(family, 5, "socket.connect", "unspec")
  if FAMILY[family] == nil then
    argerror(5, "socket.connect", "invalid option '" .. family .. "'")
  end
  need_task("spindle.socket.connect")
  local s = new_tcp(FAMILY[family] or nil)
  if locaddr then
    local ok, err = s:bind(locaddr, locport)
    if not ok then s:close(); return nil, err end
  end
  local ok, err = s:connect(host, port)
  if not ok then s:close(); return nil, err end
  return s
end

function M.connect4(host, port, locaddr, locport)
  return M.connect(host, port, locaddr, locport, "inet")
end

function M.connect6(host, port, locaddr, locport)
  return M.connect(host, port, locaddr, locport, "inet6")
end

-- socket.bind(address, port [, backlog]) -> a server
function M.bind(host, port, backlog)
  host = checkstring(host, 1, "socket.bind")
  port = checkstring(port, 2, "socket.bind")
  need_task("spindle.socket.bind")
  local family
  if host == "*" then host = "0.0.0.0" end
  if host:find(":", 1, true) then family = "inet6" end
  local s = new_tcp(family)
  s:setoption("reuseaddr", true)
  local ok, err = s:bind(host, port)
  if not ok then s:close(); return nil, err end
  ok, err = s:listen(backlog)
  if not ok then s:close(); return nil, err end
  return s
end

-- The wall clock (UNIX time, microseconds), as LuaSocket's gettimeofday.
M.gettime = net._gettime

-- socket.sleep(seconds): awaits (spindle.sleep); negative is 0.
function M.sleep(n)
  n = checknumber(n, 1, "socket.sleep")
  need_task("spindle.socket.sleep")
  if not (n > 0) then n = 0 end
  if n > MAX_WAIT then n = MAX_WAIT end
  sleep(n)
end

local dns = {}
M.dns = dns

-- The names /etc/hosts gives an IPv4 address: the name and its aliases.
local function hosts_names(ip)
  local text = spindle.fs and spindle.fs.read_file("/etc/hosts")
  if not text then return nil end
  for line in text:gmatch("[^\n]+") do
    line = line:gsub("#.*", "")
    local addr, rest = line:match("^%s*(%S+)%s+(.-)%s*$")
    if addr == ip then
      local names = {}
      for n in rest:gmatch("%S+") do names[#names + 1] = n end
      if #names > 0 then return names end
    end
  end
  return nil
end

-- What gethostbyname returns: the IPv4 addresses and names of host.
local function hostent(host)
  if is_ipv4(host) then
    local names = hosts_names(host) or {host}
    return {name = names[1], alias = {unpack(names, 2)}, ip = {host}}
  end
  local list, _, code = net.resolve(host)
  if not list then return nil, hosterror(code) end
  local ips, seen = {}, {}
  for _, a in ipairs(list) do
    if a.family == "inet" and not seen[a.address] then
      seen[a.address] = true
      ips[#ips + 1] = a.address
    end
  end
  if #ips == 0 then return nil, hosterror("EAI_NONAME") end
  return {name = host, alias = {}, ip = ips}
end

-- dns.toip(name) -> first IPv4 address, {name, alias, ip}
function dns.toip(host)
  host = checkstring(host, 1, "toip")
  need_task("spindle.socket.dns.toip")
  local info, err = hostent(host)
  if not info then return nil, err end
  return info.ip[1], info
end

-- dns.tohostname(address) -> name, {name, alias, ip}.  An address is
-- looked up in /etc/hosts only (no reverse DNS query).
function dns.tohostname(host)
  host = checkstring(host, 1, "tohostname")
  need_task("spindle.socket.dns.tohostname")
  local info, err = hostent(host)
  if not info then return nil, err end
  if is_ipv4(host) and info.name == host then
    return nil, hosterror("EAI_NONAME")
  end
  return info.name, info
end

-- dns.getaddrinfo(name) -> {{family = "inet" | "inet6", addr = ...}, ...}
function dns.getaddrinfo(host)
  host = checkstring(host, 1, "getaddrinfo")
  need_task("spindle.socket.dns.getaddrinfo")
  local list, msg, code = net.resolve(host)
  if not list then return nil, strerror(code, msg) end
  local out = {}
  for i, a in ipairs(list) do out[i] = {family = a.family, addr = a.address} end
  return out
end

function dns.gethostname()
  local name, msg, code = net._gethostname()
  if not name then return nil, strerror(code, msg) end
  return name
end

-- ------------------------------------------------------------- select

-- Is sock ready to read from (or accept on) without waiting?
local function readable(sock)
  if sock._closed then return false end
  local cls = CLASS[getmetatable(sock)]
  if cls == "server" then
    return (sock._accepted and #sock._accepted > 0) or sock._rerr ~= nil
  end
  if cls ~= "client" then return false end
  if buffered(sock) > 0 or sock._rerr then return true end
  local c = sock._conn
  return c ~= nil and c.state == "failed"
end

local function writable(sock)
  if sock._closed or CLASS[getmetatable(sock)] ~= "client" then return false end
  local c = sock._conn
  return c == nil or c.state ~= "pending"
end

-- A helper task that waits until sock can be read (or accepted on) by
-- reading into its buffer, then sets ev.  A cancelled read or accept
-- consumes nothing; a completed one is stored before the task can be
-- interrupted again.
local function read_helper(sock, ev)
  local c = sock._conn
  if c and c.state == "pending" then c.ev:wait() end
  if sock._closed or (c and c.state == "failed") then ev:set(); return end
  if sock._reading then return end -- another task reads it: not ours
  local _ <close> = reading(sock, "select")
  if CLASS[getmetatable(sock)] == "server" then
    local s, msg, code = sock._lst:accept()
    if s then
      sock._accepted = sock._accepted or {}
      sock._accepted[#sock._accepted + 1] = s
      if sock._closed then s:close() end
    else
      sock._rerr = ioerror(code, msg)
    end
  elseif sock._stream then
    local st = sock._stream
    local d, msg, code = st:read_some(CHUNK)
    if d then put(sock, d) else sock._rerr = ioerror(code, msg) end
  else
    return
  end
  ev:set()
end

local function connect_helper(sock, ev)
  sock._conn.ev:wait()
  ev:set()
end

-- The sockets of a select argument: our TCP objects (and wrappers that
-- hold one in _sock); what LuaSocket would skip (no getfd, or a getfd of
-- -1) is skipped.
local function collect(t, argn, out)
  if t == nil then return end
  if type(t) ~= "table" then
    argerror(argn, "socket.select", "table expected, got " .. typename(t))
  end
  local i = 1
  while true do
    local v = t[i]
    if v == nil then break end
    local sock = v
    if not is_tcp(sock) and type(v) == "table" and is_tcp(rawget(v, "_sock")) then
      sock = v._sock
    end
    if is_tcp(sock) then
      out[#out + 1] = {obj = v, sock = sock}
    else
      local getfd = v.getfd
      if getfd ~= nil then
        local fd = getfd(v)
        if type(fd) == "number" and fd >= 0 then
          argerror(argn, "socket.select", "only spindle.socket objects can be " ..
                   "waited on (got a socket with descriptor " ..
                   tostring(fd) .. ")")
        end
      end
    end
    i = i + 1
  end
end

-- The ready ones as LuaSocket returns them: an array that also maps each
-- object to its index.
local function ready(list, test)
  local r, n = {}, 0
  for _, e in ipairs(list) do
    if test(e.sock) and r[e.obj] == nil then
      n = n + 1
      r[n] = e.obj
      r[e.obj] = n + 0.0
    end
  end
  return r, n
end

-- socket.select(recvt, sendt [, timeout])
function M.select(recvt, sendt, timeout)
  timeout = optnumber(timeout, 3, "socket.select", -1)
  local rl, wl = {}, {}
  collect(recvt, 1, rl)
  collect(sendt, 2, wl)
  need_task("spindle.socket.select")
  local r, nr = ready(rl, readable)
  local w, nw = ready(wl, writable)
  if nr + nw > 0 then return r, w end
  local ev = spindle.event()
  local helpers, seen = {}, {}
  for _, e in ipairs(rl) do
    local s = e.sock
    if not seen[s] and not s._closed and CLASS[getmetatable(s)] ~= "master" then
      seen[s] = true
      helpers[#helpers + 1] = spindle.spawn(read_helper, s, ev)
    end
  end
  for _, e in ipairs(wl) do
    local s = e.sock
    if not seen[s] and s._conn and s._conn.state == "pending" then
      seen[s] = true
      helpers[#helpers + 1] = spindle.spawn(connect_helper, s, ev)
    end
  end
  local ok, err = pcall(function()
    if timeout < 0 then
      ev:wait()
    elseif timeout == 0 then
      -- Look without waiting: the helpers read what is buffered, then
      -- the loop polls once and they take what the kernel had.
      spindle.yield()
      spindle.yield()
    else
      timed(min(timeout, MAX_WAIT), ev.wait, ev)
    end
  end)
  -- The helpers end before select returns, so no read is left running
  -- (the caller's next receive would be refused) and every byte a helper
  -- read is in its socket's buffer.
  spindle.shield(function()
    for _, h in ipairs(helpers) do h:abort() end
    for _, h in ipairs(helpers) do h:result() end
  end)
  if not ok then error(err, 0) end
  r, nr = ready(rl, readable)
  w, nw = ready(wl, writable)
  if nr + nw > 0 then return r, w end
  return {}, {}, "timeout"
end

-- ------------------------------------------ exceptions (LuaSocket except)

-- The errors try raises are tables with this metatable: protect turns
-- only those back into nil, message; anything else is raised on.
local TRY_MT = {__tostring = function(e) return tostring(e[1]) end}

function M.newtry(finalizer)
  return function(...)
    if not (...) then
      if finalizer ~= nil then finalizer() end
      error(setmetatable({(select(2, ...))}, TRY_MT), 0)
    end
    return ...
  end
end

M.try = M.newtry()

local function protected(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) == "table" and rawequal(getmetatable(e), TRY_MT) then
    return nil, e[1]
  end
  error(e, 0)
end

function M.protect(f)
  return function(...) return protected(pcall(f, ...)) end
end

-- socket.skip(d, ...): the arguments after the first d
function M.skip(d, ...)
  d = checknumber(d, 1, "socket.skip")
  d = floor(d)
  if d < 0 then return d, ... end
  return select(d + 1, ...)
end

-- ------------------------------------------------ LTN12 sinks and sources

function M.choose(tbl)
  return function(name, opt1, opt2)
    if type(name) ~= "string" then
      name, opt1, opt2 = "default", name, opt1
    end
    local f = tbl[name or "nil"]
    if not f then error("unknown key (" .. tostring(name) .. ")", 3) end
    return f(opt1, opt2)
  end
end

local sourcet, sinkt = {}, {}
M.sourcet, M.sinkt = sourcet, sinkt

-- The wrappers keep getfd/dirty (and, for select, the socket itself).
local function wrapper(sock, call)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
    _sock = sock,
  }, {__call = call})
end

sinkt["close-when-done"] = function(sock)
  return wrapper(sock, function(_, chunk)
    if not chunk then
      sock:close()
      return 1
    end
    return sock:send(chunk)
  end)
end

sinkt["keep-open"] = function(sock)
  return wrapper(sock, function(_, chunk)
    if chunk then return sock:send(chunk) end
    return 1
  end)
end

sinkt["default"] = sinkt["keep-open"]
M.sink = M.choose(sinkt)

sourcet["by-length"] = function(sock, length)
  return wrapper(sock, function()
    if length <= 0 then return nil end
    local chunk, err = sock:receive(min(M.BLOCKSIZE, length))
    if err then return nil, err end
    length = length - #chunk
    return chunk
  end)
end

sourcet["until-closed"] = function(sock)
  local done
  return wrapper(sock, function()
    if done then return nil end
    local chunk, err, partial = sock:receive(M.BLOCKSIZE)
    if not err then return chunk end
    if err == "closed" then
      sock:close()
      done = 1
      return partial
    end
    return nil, err
  end)
end

sourcet["default"] = sourcet["until-closed"]
M.source = M.choose(sourcet)

for name, f in pairs(methods) do API[f] = name end
for name, f in pairs(M) do
  if type(f) == "function" then API[f] = "socket." .. name end
end
for name, f in pairs(dns) do API[f] = name end

-- For spindle.socket.ssl (lua/spindle/socket/ssl.lua): the parts it
-- builds its connection objects from.  Not a public interface.
M._core = {
  methods = methods, check = check, argerror = argerror,
  typename = typename, need_task = need_task, timed = timed,
  time_left = time_left, ioerror = ioerror,
  -- mt's objects count as `cls` for check() and select
  register = function(mt, cls) CLASS[mt] = cls end,
  api = function(f, name) API[f] = name end,
  is_client = function(v)
    return type(v) == "table" and CLASS[getmetatable(v)] == "client"
  end,
  -- A new object of metatable mt that takes over sock's stream, timeouts,
  -- options and counters; sock then reads as closed (LuaSec: setfd(-1)).
  adopt = function(sock, mt)
    local o = new_tcp(sock._family)
    o._stream, o._conn = sock._stream, sock._conn
    o._block, o._total = sock._block, sock._total
    o._received, o._sent, o._birth = sock._received, sock._sent, sock._birth
    o._opt = sock._opt
    sock._stream, sock._closed = nil, true
    return setmetatable(o, mt)
  end,
}

-- spindle.socket.ssl (LuaSec's shape) is loaded on first use.
return setmetatable(M, {__index = function(t, k)
  if k == "ssl" then
    local ssl = require "spindle.socket.ssl"
    rawset(t, "ssl", ssl)
    return ssl
  end
end})
