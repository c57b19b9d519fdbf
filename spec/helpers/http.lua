-- spec/helpers/http.lua -- peers for the spec/27-http-client*_spec.lua
-- files: servers nobody here wrote, started and stopped by the specs.
--
--   local HT = dofile("spec/helpers/http.lua")
--   HT.spindle, HT.http       the module and spindle.http
--   HT.run(fn, ...)           fn as the main task of a fresh real-clock
--                             runtime, closed after; re-raises fn's error
--   HT.python()               spec/helpers/http_client_peer.py (threaded
--                             http.server): {port, base, stop}
--   HT.nginx(o)               nginx (Debian nginx-light) with its own config
--                             and prefix in a temporary directory, serving
--                             o.files ({name = content}) from <dir>/www:
--                             {port, base, dir, h2port, tlsport, tls1port,
--                             ca, access_log(), stop} (and *base URLs).
--                             o.tls = true adds two HTTPS servers (tlsport:
--                             HTTP/1.1 and h2; tls1port: HTTP/1.1 only)
--                             whose certificate is signed by a CA made at
--                             test time (HT.make_ca); o.h2c = true a
--                             cleartext HTTP/2 (prior knowledge) server
--   HT.make_ca(dir)           openssl: dir/ca.pem, dir/server.pem,
--                             dir/server.key (localhost, 127.0.0.1)
--   HT.check(env)             before/after each spec: descriptors, and
--                             spindle._http_stats() back to zero
--   HT.peer(env, start)       HT.check(env), then start() in setup and its
--                             stop() in teardown; returns a table reading
--                             through to what start() returned (peer.base,
--                             peer.port, ...): local py = HT.peer(_ENV,
--                             HT.python)
--   HT.hanging_port()         a listener whose backlog is full, so that a
--                             connect to it hangs: port, release()
--   HT.stats()                spindle._http_stats()
--   HT.rss_kb()               this process's resident set, KiB
--   HT.serve(opts)            http.serve on 127.0.0.1 and a free port:
--                             srv, base URL, port
--   HT.raw(port, data)        sends data on a new connection, reads until
--                             the server closes: everything it answered
--
-- Children run without LD_PRELOAD (the asan stage preloads the sanitizers
-- into this process; python and nginx must not inherit them) and under
-- `timeout`, so a spec that dies cannot leave a server running for long.

local H = dofile("spec/helpers/init.lua")
local HT = {}
HT.H = H
HT.spindle = H.spindle
HT.http = require "spindle.http"
local spindle = H.spindle

function HT.run(fn, ...)
  local rt = spindle.runtime()
  local r = table.pack(pcall(rt.run, rt, fn, ...))
  rt:close()
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

function HT.stats() return spindle._http_stats() end

HT.sh = nil -- set below

HT.rss_kb = H.rss_kb

-- A shell command line, without the sanitizers; raises if it fails.
local function sh(cmd)
  local r = H.sh("env -u LD_PRELOAD sh -c " .. H.q(cmd), {timeout = 60})
  assert(r.ok, H.describe(r))
  return r
end

HT.sh = sh

local CHILD = "exec env -u LD_PRELOAD timeout -s TERM 900 "

local function kill(pid)
  os.execute("kill " .. pid .. " 2>/dev/null")
end

-- ---------------------------------------------------------------- python

function HT.python()
  local p = assert(io.popen(CHILD .. "python3 spec/helpers/http_client_peer.py"))
  local line = p:read("l")
  local port, pid = (line or ""):match("^(%d+) (%d+)$")
  assert(port, "http_client_peer.py did not start: " .. tostring(line))
  local s = {port = tonumber(port), pid = pid,
             base = "http://127.0.0.1:" .. port}
  function s.stop()
    if s.stopped then return end
    s.stopped = true
    kill(pid)
    p:close()
  end
  return s
end

-- ---------------------------------------------------------------- certificates

function HT.make_ca(dir)
  local q = H.q
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  sh(("cd %s && openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 " ..
      "-subj '/CN=spindle test CA'"):format(q(dir), ec))
  H.write_file(dir .. "/ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\n" ..
               "basicConstraints=CA:FALSE\n")
  sh(("cd %s && openssl req %s -keyout server.key -out server.csr " ..
      "-subj '/CN=localhost' && openssl x509 -req -in server.csr -CA ca.pem " ..
      "-CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext")
     :format(q(dir), ec))
  return dir .. "/ca.pem"
end

-- ---------------------------------------------------------------- nginx

-- A port nothing listens on right now (the system's choice).
function HT.free_port()
  local socket = require "socket"
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function wait_listening(port, what)
  local socket = require "socket"
  for _ = 1, 200 do
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    if ok then return true end
    H.pause(0.05)
  end
  error(what .. " does not listen on port " .. port)
end

function HT.nginx(o)
  o = o or {}
  local dir = H.tmpname()
  sh("mkdir -p " .. H.q(dir .. "/www") .. " && chmod 755 " .. H.q(dir) ..
     " " .. H.q(dir .. "/www"))
  for name, content in pairs(o.files or {}) do
    H.write_file(dir .. "/www/" .. name, content)
  end
  sh("chmod -R a+rX " .. H.q(dir .. "/www"))
  local s = {dir = dir, port = HT.free_port()}
  s.base = "http://127.0.0.1:" .. s.port
  local servers = {([[
    server {
      listen 127.0.0.1:%d;
      root %s/www;
      location /status/ { return 404; }
    }]]):format(s.port, dir)}
  if o.h2c then
    s.h2port = HT.free_port()
    s.h2base = "http://127.0.0.1:" .. s.h2port
    servers[#servers + 1] = ([[
    server {
      listen 127.0.0.1:%d http2;
      root %s/www;
    }]]):format(s.h2port, dir)
  end
  if o.tls then
    s.ca = HT.make_ca(dir)
    s.tlsport = HT.free_port()
    s.tlsbase = "https://localhost:" .. s.tlsport
    servers[#servers + 1] = ([[
    server {
      listen 127.0.0.1:%d ssl http2;
      ssl_certificate %s/server.pem;
      ssl_certificate_key %s/server.key;
      root %s/www;
    }]]):format(s.tlsport, dir, dir, dir)
    -- and one that speaks only HTTP/1.1 over TLS
    s.tls1port = HT.free_port()
    s.tls1base = "https://localhost:" .. s.tls1port
    servers[#servers + 1] = ([[
    server {
      listen 127.0.0.1:%d ssl;
      ssl_certificate %s/server.pem;
      ssl_certificate_key %s/server.key;
      root %s/www;
    }]]):format(s.tls1port, dir, dir, dir)
  end
  local id = io.popen("id -u")
  local root = id:read("l") == "0"
  id:close()
  local user = root and "user root;\n" or "" -- workers read our files
  H.write_file(dir .. "/nginx.conf", ([[
%sworker_processes 1;
error_log stderr crit;
pid %s/nginx.pid;
events { worker_connections 8192; }
worker_rlimit_nofile 16384;
http {
  log_format conn '$connection $connection_requests $request';
  access_log %s/access.log conn;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  default_type application/octet-stream;
%s
}
]]):format(user, dir, dir, dir, dir, dir, dir, dir, table.concat(servers, "\n")))
  local p = assert(io.popen(CHILD .. "nginx -p " .. H.q(dir) .. " -c " ..
                            H.q(dir .. "/nginx.conf") .. " -e stderr " ..
                            "-g 'daemon off;'"))
  local ok, err = pcall(function()
    wait_listening(s.port, "nginx")
    if s.h2port then wait_listening(s.h2port, "nginx (h2c)") end
    if s.tlsport then wait_listening(s.tlsport, "nginx (tls)") end
    if s.tls1port then wait_listening(s.tls1port, "nginx (tls, 1.1)") end
  end)
  local function stop()
    if s.stopped then return end
    s.stopped = true
    local pid = H.read_file(dir .. "/nginx.pid")
    if pid and pid:match("%d+") then kill(pid:match("%d+")) end
    p:close()
    os.execute("rm -rf " .. H.q(dir))
  end
  s.stop = stop
  if not ok then
    stop()
    error(err, 0)
  end
  -- The access log: an array of {connection, requests, request line}.
  function s.access_log()
    local t = {}
    for line in io.lines(dir .. "/access.log") do
      local c, n, req = line:match("^(%d+) (%d+) (.*)$")
      if c then t[#t + 1] = {conn = c, n = tonumber(n), request = req} end
    end
    return t
  end
  return s
end

-- ---------------------------------------------------------------- checks

-- Each spec of the file (or describe block) leaves the descriptor count
-- and every curl object (clients, easy handles, poll handles, transfers)
-- as it found them.  A first request made here opens what libcurl and
-- libuv open once per process.
function HT.serve(opts)
  opts.host = opts.host or "127.0.0.1"
  opts.port = 0
  local srv = assert(require("spindle.http_server").serve(opts))
  local host, port = srv:local_addr()
  return srv, ("http://%s:%d"):format(host, port), port
end

function HT.raw(port, data)
  local s <close> = assert(spindle.net.connect("127.0.0.1", port))
  if data then assert(s:write(data)) end
  return s:read_all(1 << 22) or ""
end

function HT.check(env)
  env.setup(function()
    HT.run(function() HT.http.get("http://127.0.0.1:1/") end)
  end)
  H.check_fds(env)
  env.after_each(function()
    collectgarbage(); collectgarbage()
    local st = HT.stats()
    env.assert.same({clients = 0, easy = 0, socks = 0, transfers = 0,
                     buffered = 0}, st)
  end)
end

-- The file's peer: checked like HT.check, started once for the file (or
-- describe block) and stopped after it.
function HT.peer(env, start)
  HT.check(env)
  local srv
  env.setup(function() srv = start() end)
  env.teardown(function() if srv then srv.stop() end end)
  return setmetatable({}, {__index = function(_, k)
    assert(srv, "the peer is used before its setup")
    return srv[k]
  end})
end

-- A listener with a full backlog that never accepts: further SYNs are
-- dropped, so a connect to port hangs.  release() closes it all.
function HT.hanging_port()
  local srv = assert(spindle.net.listen("127.0.0.1", 0, {backlog = 1}))
  local _, port = srv:local_addr()
  local held = {}
  for i = 1, 8 do
    held[i] = spindle.spawn(spindle.net.connect, "127.0.0.1", port,
                            {timeout = 0.3})
  end
  for i = 1, 8 do held[i] = held[i]:join() end
  return port, function()
    for i = 1, 8 do if held[i] then held[i]:close() end end
    srv:close()
  end
end

return HT
