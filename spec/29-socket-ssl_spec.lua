-- spec/29-socket-ssl_spec.lua -- spindle.socket.ssl, LuaSec's `ssl.wrap`
-- shape on spindle.tls (docs/socket.md, TLS): against spindle's own TLS
-- streams and against `openssl s_server`.  Certificates are made at test
-- time (spec/helpers/mkcerts.sh).  Loopback only.

local T = dofile("spec/helpers/tls.lua")
local H, spindle, net, tls = T.H, T.spindle, T.net, T.tls
local socket = require "spindle.socket"
local ssl = socket.ssl

T.setup(_ENV)

-- A spindle.tls listener that echoes lines: its port, and a function that
-- closes it and waits for its tasks.
local function echo_server(ctx)
  local srv = assert(net.listen("127.0.0.1", 0, {tls = ctx or T.server_ctx()}))
  local _, port = srv:local_addr()
  local tasks = {}
  tasks[1] = spindle.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      tasks[#tasks + 1] = spindle.spawn(function()
        for line in c:lines() do c:write(line, "\n") end
        c:close()
      end)
    end
  end)
  return port, function()
    srv:close()
    for _, t in ipairs(tasks) do t:result() end
  end
end

local function client_params(o)
  local p = {mode = "client", protocol = "any", verify = "peer",
             cafile = T.f("ca.pem"), options = "all"}
  for k, v in pairs(o or {}) do p[k] = v end
  return p
end

describe("spindle.socket.ssl", function()
  it("is socket.ssl, loaded on first use", function()
    assert.equal(require("spindle.socket.ssl"), socket.ssl)
    for _, k in ipairs({"wrap", "newcontext"}) do assert.is_function(ssl[k], k) end
  end)

  it("is LuaSec's shape: wrap, sni, dohandshake, then send and receive", spindle.test(function()
    local port, stop = echo_server()
    local sock = assert(socket.connect("127.0.0.1", port))
    local conn = assert(ssl.wrap(sock, client_params()))
    assert.matches("^SSL connection: 0x%x+$", tostring(conn))
    conn:sni("localhost")
    assert.is_true(conn:dohandshake())
    assert.is_true(conn:dohandshake()) -- done: at once
    assert.equal(6, conn:send("hello\n"))
    assert.equal("hello", conn:receive())
    local info = conn:info()
    assert.matches("^TLSv1%.[23]$", info.protocol)
    assert.is_string(info.cipher)
    assert.equal(info.protocol, conn:info("protocol"))
    local cert = conn:getpeercertificate()
    assert.matches("CN=localhost", cert:subject())
    assert.is_true((conn:getpeerverification()))
    -- the wrapped socket gave its stream away: it reads as closed
    assert.same({nil, "closed", "", n = 3}, table.pack(sock:receive()))
    assert.equal(1, conn:close())
    stop()
  end))

  it("verification: an untrusted chain and a wrong name fail the handshake", spindle.test(function()
    local port, stop = echo_server()
    local conn = assert(ssl.wrap(assert(socket.connect("127.0.0.1", port)),
                                 client_params({cafile = false})))
    local ok, err = conn:dohandshake()
    assert.is_nil(ok)
    assert.matches("certificate verify failed", err)
    assert.same({nil, err, n = 2}, table.pack(conn:dohandshake())) -- final
    conn:close()
    conn = assert(ssl.wrap(assert(socket.connect("127.0.0.1", port)), client_params()))
    conn:sni("not-this-host.example")
    ok, err = conn:dohandshake()
    assert.is_nil(ok); assert.equal("host name mismatch", err)
    conn:close()
    -- verify = "none" (LuaSec's default): any certificate
    conn = assert(ssl.wrap(assert(socket.connect("127.0.0.1", port)),
                           {mode = "client", protocol = "tlsv1_2"}))
    assert.is_true(conn:dohandshake())
    assert.matches("^TLSv1%.[23]$", conn:info("protocol")) -- a minimum
    conn:close()
    stop()
  end))

  it("the server side: accept, wrap with mode = 'server', dohandshake", spindle.test(function()
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local h = spindle.spawn(function()
      local c = assert(tls.connect("localhost", port, {context = T.client_ctx(), timeout = 10}))
      c:write("ping\n")
      local r = c:read_line()
      c:close()
      return r
    end)
    local plain = assert(server:accept())
    local conn = assert(ssl.wrap(plain, {mode = "server", protocol = "any",
      certificate = T.f("server.pem"), key = T.f("server.key")}))
    assert.is_true(conn:dohandshake())
    assert.equal("ping", conn:receive())
    conn:send("pong\n")
    assert.equal("pong", h:join())
    conn:close(); server:close()
  end))

  it("a handshake that times out returns 'wantread' and can be waited for again", spindle.test(function()
    -- a peer that says nothing until told to: the handshake waits for it
    local l = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
    local _, port = l:local_addr()
    local go = spindle.event()
    local peer = spindle.spawn(function()
      local s = assert(l:accept())
      go:wait()
      s:handshake()
      s:write("late\n")
      s:read_line()
      s:close()
    end)
    local conn = assert(ssl.wrap(assert(socket.connect("127.0.0.1", port)), client_params()))
    conn:sni("localhost")
    conn:settimeout(0.05)
    -- the server's accept returns at once; its handshake runs only once
    -- it reads or writes -- after `go`: the client cannot finish before
    assert.same({nil, "wantread", n = 2}, table.pack(conn:dohandshake()))
    assert.equal("read", conn:want())
    go:set()
    conn:settimeout(5)
    assert.is_true(conn:dohandshake())
    assert.equal("nothing", conn:want())
    assert.equal("late", conn:receive())
    conn:send("bye\n")
    peer:join()
    conn:close(); l:close()
  end))

  it("before the handshake: 'closed'; outside a task: raises", function()
    local sock = socket.tcp()
    assert.error_matches(function() ssl.wrap(sock, client_params()) end, "client expected")
    T.run(function()
      local port, stop = echo_server()
      local conn = assert(ssl.wrap(assert(socket.connect("127.0.0.1", port)), client_params()))
      assert.same({nil, "closed", "", n = 3}, table.pack(conn:receive()))
      conn:close(); stop()
    end)
    local bad = {ssl.newcontext({mode = "client", protocol = "tlsv1"})}
    assert.same({nil, "invalid protocol (tlsv1)"}, bad)
    assert.same({nil, "invalid mode"}, {ssl.newcontext({})})
  end)

  it("talks to openssl s_server, and select waits on a connection", spindle.test(function()
    local port = T.free_port()
    local p = T.child("openssl", {"s_server", "-accept", "127.0.0.1:" .. port,
      "-cert", T.f("server.pem"), "-key", T.f("server.key"), "-www", "-naccept", "1"})
    local sock
    for _ = 1, 100 do
      sock = socket.connect("127.0.0.1", port)
      if sock then break end
      spindle.sleep(0.05)
    end
    assert(sock, "openssl s_server did not start")
    local conn = assert(ssl.wrap(sock, client_params()))
    conn:sni("localhost")
    assert.is_true(conn:dohandshake())
    conn:send("GET / HTTP/1.0\r\n\r\n")
    local r = socket.select({conn}, nil, 10)
    assert.equal(conn, r[1])
    local status = conn:receive()
    assert.matches("^HTTP/1%.0 200", status)
    local rest, err, partial = conn:receive("*a")
    assert.is_true((rest or partial):find("s_server", 1, true) ~= nil)
    conn:close()
    T.finish(p)
  end, {timeout = 20}))
end)
