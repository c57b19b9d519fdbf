-- spindle.socket.ssl -- LuaSec's `ssl` shape on spindle.tls
-- (docs/socket.md, TLS).
--
--   local ssl = require "spindle.socket.ssl"   -- or socket.ssl
--   local conn = assert(ssl.wrap(sock, {mode = "client", verify = "peer",
--                                       cafile = "ca.pem"}))
--   conn:sni("localhost")
--   assert(conn:dohandshake())
--   conn:send("..."); conn:receive()
--
-- ssl.wrap takes a connected spindle.socket client and returns a
-- connection object that has the client's methods (receive, send,
-- settimeout, close, dirty, getstats ...; select waits on it) plus LuaSec's
-- dohandshake, sni, info, getalpn, getpeercertificate, getpeerverification
-- and want.  The socket it wrapped gives its stream to the connection and
-- reads as closed from then on, as LuaSec's does (setfd(-1)).
--
-- The handshake is spindle.tls.wrap on the stream (the stream object itself
-- turns into a TLS stream); a dohandshake that times out leaves it running
-- and returns nil, "wantread", and the next dohandshake waits for it.

local spindle = require "spindle"
local socket = require "spindle.socket"

local tls = spindle.tls
local C = socket._core
local now = spindle.now
local sformat = string.format

local M = {_VERSION = "1.2.0 (spindle " .. spindle.version .. ")"}

-- ---------------------------------------------------------- contexts

local CTX_MT = {__name = "SSL:Context",
                __tostring = function(c) return sformat("SSL context: %p", c) end}

local PROTOCOLS = {any = "1.2", sslv23 = "1.2", tlsv1_2 = "1.2",
                   tlsv1_3 = "1.3"}

-- verify: "none" | "peer" | {"peer", "fail_if_no_peer_cert", ...}
local function wants_verify(v)
  if v == nil then return false end
  if type(v) == "string" then v = {v} end
  if type(v) ~= "table" then return nil end
  local on = false
  for _, x in ipairs(v) do
    if x == "peer" or x == "fail_if_no_peer_cert" then on = true
    elseif x ~= "none" and x ~= "client_once" then return nil end
  end
  return on
end

-- ssl.newcontext(params) -> context, or nil, msg
function M.newcontext(cfg)
  if type(cfg) ~= "table" then
    C.argerror(1, "newcontext", "table expected, got " .. C.typename(cfg))
  end
  local mode = cfg.mode
  if mode ~= "client" and mode ~= "server" then
    return nil, "invalid mode"
  end
  local minv = PROTOCOLS[cfg.protocol or "any"]
  if minv == nil then
    return nil, "invalid protocol (" .. tostring(cfg.protocol) .. ")"
  end
  local verify = wants_verify(cfg.verify)
  if verify == nil then return nil, "invalid verify option" end
  local opts = {server = mode == "server", min_version = minv,
                verify = verify}
  opts.cert, opts.key = cfg.certificate, cfg.key
  opts.ca = cfg.cafile or cfg.capath
  if type(cfg.alpn) == "string" then
    opts.alpn = {cfg.alpn}
  elseif type(cfg.alpn) == "table" then
    opts.alpn = cfg.alpn
  elseif cfg.alpn ~= nil then
    return nil, "invalid ALPN parameter"
  end
  local ok, ctx = pcall(tls.context, opts)
  if not ok then return nil, tostring(ctx) end
  return setmetatable({_ctx = ctx, _mode = mode}, CTX_MT)
end

-- --------------------------------------------------------- connections

local methods = setmetatable({}, {__index = C.methods})
local CONN_MT = {__index = methods, __close = function(c) c:close() end,
                 __name = "SSL:Connection"}
function CONN_MT.__tostring(c)
  return sformat("SSL connection: %p%s", c, c._closed and " (closed)" or "")
end
C.register(CONN_MT, "client")

-- ssl.wrap(sock, params | context) -> connection, or nil, msg
function M.wrap(sock, cfg)
  if not C.is_client(sock) then
    C.argerror(1, "wrap", "spindle.socket client expected")
  end
  local ctx, msg = cfg, nil
  if getmetatable(cfg) ~= CTX_MT then
    ctx, msg = M.newcontext(cfg)
    if not ctx then return nil, msg end
  end
  if sock._closed or not sock._stream then return nil, "closed" end
  if sock._rpos <= #sock._rbuf then
    return nil, "data received before the handshake would be lost"
  end
  local conn = C.adopt(sock, CONN_MT) -- takes the stream; sock reads closed
  conn._tlsctx, conn._mode = ctx._ctx, ctx._mode
  return conn
end

-- Before the handshake there is no TLS to speak: LuaSec's "closed".
local base_receive, base_send = C.methods.receive, C.methods.send

function methods:receive(pattern, prefix)
  C.check(self, "client", "receive")
  if self._hs ~= "done" then
    C.need_task("spindle.socket.ssl:receive")
    return nil, "closed", ""
  end
  return base_receive(self, pattern, prefix)
end

function methods:send(data, i, j)
  C.check(self, "client", "send")
  if self._hs ~= "done" then
    C.need_task("spindle.socket.ssl:send")
    return nil, "closed", 0.0
  end
  return base_send(self, data, i, j)
end

function methods:sni(name)
  C.check(self, "client", "sni")
  if type(name) ~= "string" then
    C.argerror(1, "sni", "string expected, got " .. C.typename(name))
  end
  self._sni = name
end

local function hs_error(code, msg)
  if code == "ETLS" then return msg end
  return C.ioerror(code, msg)
end

-- conn:dohandshake() -> true, or nil, msg ("wantread" when the timeout
-- ran out: call again to go on waiting).  The handshake runs in a task of
-- its own (spindle.tls.wrap, which closes the stream if it is cancelled),
-- so a timeout only stops the waiting, as a LuaSec non-blocking handshake.
function methods:dohandshake()
  C.check(self, "client", "dohandshake")
  C.need_task("spindle.socket.ssl:dohandshake")
  local s = self._stream
  if self._closed or s == nil then return nil, "closed" end
  local hs = self._hs
  if hs == "done" then return true end
  if hs == nil then
    hs = {ev = spindle.event()}
    self._hs = hs
    local o = {context = self._tlsctx, server = self._mode == "server"}
    if self._mode == "client" then o.servername = self._sni or false end
    hs.task = spindle.spawn(function()
      local r, msg, code = tls.wrap(s, o)
      hs.task = nil
      if r then
        hs.ok = true
      else
        hs.err = hs_error(code, msg)
      end
      hs.ev:set()
    end)
    hs.task:name("spindle.socket.ssl handshake")
  end
  local ok = C.timed(C.time_left(self, now()), hs.ev.wait, hs.ev)
  if not ok then return nil, "wantread" end
  if self._closed then return nil, "closed" end
  if not hs.ok then return nil, hs.err end
  self._hs = "done"
  return true
end

function methods:want()
  C.check(self, "client", "want")
  local hs = self._hs
  return (type(hs) == "table" and not hs.ev:is_set()) and "read" or "nothing"
end

-- close also stops a handshake still running
function methods:close()
  C.check(self, "any", "close")
  local hs = self._hs
  if type(hs) == "table" and hs.task then hs.task:abort() end
  return C.methods.close(self)
end

-- conn:info([field]): protocol, cipher, and what spindle.tls tells
function methods:info(field)
  C.check(self, "client", "info")
  local s = self._stream
  local i = s and self._hs == "done" and s:tls_info()
  if not i then return nil end
  local info = {protocol = i.version, cipher = i.cipher, alpn = i.alpn,
                servername = i.servername, resumed = i.resumed}
  if field then return info[field] end
  return info
end

function methods:getalpn()
  C.check(self, "client", "getalpn")
  return self:info("alpn")
end

function methods:getsniname()
  C.check(self, "client", "getsniname")
  return self:info("servername")
end

-- A certificate object in LuaSec's shape, from tls_info().peer_certificate
local CERT_MT = {__index = {}}
function CERT_MT.__index:subject() return self._c.subject end
function CERT_MT.__index:issuer() return self._c.issuer end
function CERT_MT.__index:notbefore() return os.date("!%b %d %H:%M:%S %Y GMT", self._c.not_before) end
function CERT_MT.__index:notafter() return os.date("!%b %d %H:%M:%S %Y GMT", self._c.not_after) end
function CERT_MT.__index:extensions()
  local san = {}
  for i, v in ipairs(self._c.san or {}) do san[i] = v end
  return {["2.5.29.17"] = {dNSName = san}}
end

function methods:getpeercertificate()
  C.check(self, "client", "getpeercertificate")
  local s = self._stream
  local i = s and self._hs == "done" and s:tls_info()
  local c = i and i.peer_certificate
  if not c then return nil end
  return setmetatable({_c = c}, CERT_MT)
end

-- Verification failures end the handshake in spindle.tls, so a
-- connection that got here passed what its context asked for.
function methods:getpeerverification()
  C.check(self, "client", "getpeerverification")
  if self._hs ~= "done" then return false, {} end
  return true
end

for name, f in pairs(M) do
  if type(f) == "function" then C.api(f, "ssl." .. name) end
end
for name, f in pairs(methods) do C.api(f, name) end

return M
