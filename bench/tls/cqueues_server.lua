-- bench/tls/cqueues_server.lua -- the cqueues + luaossl TLS echo server.
--   lua5.4 bench/tls/cqueues_server.lua CERT KEY [port]
-- Prints "port N", then echoes every connection: starttls with a luaossl
-- server context, then read(-65536) / write / flush, as in
-- bench/echo/cqueues_server.lua, plus TCP_NODELAY.
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
local context = require "openssl.ssl.context"
local x509 = require "openssl.x509"
local pkey = require "openssl.pkey"

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local ctx = context.new("TLS", true)
ctx:setOptions(context.OP_NO_SSLv2 | context.OP_NO_SSLv3
               | context.OP_NO_TLSv1 | context.OP_NO_TLSv1_1)
assert(ctx:setCertificate(x509.new(slurp(arg[1]), "PEM")))
assert(ctx:setPrivateKey(pkey.new(slurp(arg[2]), "PEM")))

local srv = socket.listen("127.0.0.1", tonumber(arg[3]) or 0)
srv:listen()
local _, _, port = srv:localname()
io.stdout:write("port ", port, "\n")
io.stdout:flush()
local cq = cqueues.new()
cq:wrap(function()
  -- TCP_NODELAY on every accepted socket (cqueues clears it by default):
  -- the session tickets and the echo are separate small writes, which
  -- Nagle's algorithm would hold for a delayed ACK (40 ms per handshake).
  for c in srv:clients { nodelay = true } do
    cq:wrap(function()
      c:setmode("b", "b")
      if c:starttls(ctx) then
        while true do
          local data = c:read(-65536)
          if not data then break end
          if not c:write(data) then break end
          c:flush()
        end
      end
      c:close()
    end)
  end
end)
assert(cq:loop())
