-- spec/helpers/tls.lua -- shared by the spec/25-tls*_spec.lua files.
--
--   local T = require "spec.helpers.tls"
--   T.spindle, T.net, T.tls, T.H (spec/helpers/init.lua)
--   T.setup(_ENV)         makes the certificates (spec/helpers/mkcerts.sh)
--                         in a temporary folder for the spec file, removes
--                         it after, and checks descriptors after each spec
--   T.f(name)             path of a certificate file ("ca.pem" ...)
--   T.server_ctx([o])     a server context: server.pem, plus options o
--   T.client_ctx([o])     a client context trusting ca.pem, plus o
--   T.run(fn, ...)        fn as the main task of a fresh real-clock runtime
--   T.pair([sctx], [o])   (in a task) a TLS client and the accepted server
--                         stream, handshaken: c, s, port; or nil, msg, code
--                         of the client and the server's (ok, msg, code)
--   T.free_port()         a port that was free a moment ago (for peers
--                         that need one on their command line)
--   T.child(file, args)   a child process with pipes, run under `timeout`
--   T.run_cmd(file, args) spindle.process.run of a peer, the same way
--   T.finish(p)           closes its pipes, kills it, reaps it
--   T.wait_line(stream, pat, secs)  reads lines until one matches pat

local H = require "spec.helpers"
local N = require "spec.helpers.net"
local T = {H = H, N = N, spindle = H.spindle, net = H.spindle.net,
           tls = H.spindle.tls}
local spindle, net, tls = T.spindle, T.net, T.tls

T.run = H.run_real
T.ENV = H.ENV

function T.setup(env)
  env.setup(function()
    local p = assert(io.popen("mktemp -d /tmp/spindle-tls.XXXXXX"))
    T.dir = p:read("l")
    p:close()
    local r = H.sh("sh spec/helpers/mkcerts.sh " .. H.q(T.dir))
    assert(r.ok, H.describe(r))
  end)
  env.teardown(function()
    if T.dir then os.execute("rm -rf " .. H.q(T.dir)) end
  end)
  N.check_fds(env)
end

function T.f(name) return T.dir .. "/" .. name end

local function merge(a, b) -- false: remove the default
  for k, v in pairs(b or {}) do
    if v == false and k ~= "verify" and k ~= "servername" then v = nil end
    a[k] = v
  end
  return a
end

function T.server_ctx(o)
  return tls.context(merge({server = true, cert = T.f("server.pem"),
                            key = T.f("server.key")}, o))
end

function T.client_ctx(o)
  return tls.context(merge({ca = T.f("ca.pem")}, o))
end

function T.pair(sctx, o)
  local srv = assert(net.listen("127.0.0.1", 0, {tls = sctx or T.server_ctx()}))
  local _, port = srv:local_addr()
  local acc = spindle.spawn(function()
    local s = assert(srv:accept())
    return s, s:handshake()
  end)
  o = merge({context = T.client_ctx(), timeout = 10}, o)
  local host = o.host or "localhost"
  o.host = nil
  local c, msg, code = tls.connect(host, port, o)
  local s, ok, smsg, scode = acc:join()
  srv:close()
  if not (c and ok) then
    s:close()
    if c then
      -- TLS 1.3: a client learns about a rejected certificate on its
      -- first read
      msg, code = select(2, c:read_some())
      c:close()
    end
    return nil, msg, code, {ok, smsg, scode}
  end
  return c, s, port
end

function T.free_port()
  local l = assert(net.listen("127.0.0.1", 0))
  local _, port = l:local_addr()
  l:close()
  return port
end

-- Peers run without the sanitizer preload of the asan stage (an ASan'd
-- spindle.so preloaded into curl deadlocks it at start), under `timeout`.
local function argv(file, args, secs)
  local a = {"-u", "LD_PRELOAD", "timeout", "-k", "2", tostring(secs or 30), file}
  for _, v in ipairs(args) do a[#a + 1] = v end
  return a
end

function T.child(file, args, secs)
  return assert(spindle.process.spawn("env", argv(file, args, secs),
    {stdin = "pipe", stdout = "pipe", stderr = "pipe"}))
end

-- spindle.process.run(file, args) for a peer: code, stdout, stderr.
function T.run_cmd(file, args, secs)
  return spindle.process.run("env", argv(file, args, secs))
end

function T.finish(p)
  p.stdin:close()
  p:kill()
  local code, sig = p:wait()
  p.stdout:close()
  p.stderr:close()
  return code, sig
end

-- Reads lines of stream until one matches pat (a Lua pattern); returns
-- it, or nil and everything read.
function T.wait_line(stream, pat, secs)
  local seen = {}
  local ok, line = pcall(spindle.timeout, secs or 10, function()
    for l in stream:lines() do
      seen[#seen + 1] = l
      if l:match(pat) then return l end
    end
  end)
  if ok and line then return line end
  return nil, table.concat(seen, "\n")
end

-- openssl s_server on a free port; returns the process and the port once
-- it accepts.  args: extra arguments.
function T.s_server(args)
  for _ = 1, 5 do
    local port = T.free_port()
    local a = {"s_server", "-accept", "127.0.0.1:" .. port,
               "-cert", T.f("server.pem"), "-key", T.f("server.key")}
    for _, v in ipairs(args or {}) do a[#a + 1] = v end
    local p = T.child("openssl", a)
    if T.wait_line(p.stdout, "^ACCEPT") then return p, port end
    T.finish(p)
  end
  error("openssl s_server did not start")
end

return T
