-- spec/25-tls_spec.lua -- spindle.tls (docs/tls.md) sentence by sentence,
-- with spindle on both ends: contexts, connect, wrap (STARTTLS), listeners
-- with lazy handshakes, s:handshake(), s:tls_info(), every stream method
-- over TLS, verification failures and their messages, mutual TLS, ALPN,
-- session resumption, close_notify, errors, dump.  Peers written by others
-- (openssl, curl, Python) are in 25-tls-peers_spec.lua; abuse, timeouts,
-- aborts and load in 25-tls-abuse_spec.lua.  Certificates are made at
-- test time (spec/helpers/mkcerts.sh); descriptors are back to where they
-- were after every spec.

local T = require "spec.helpers.tls"
local spindle, net, tls, H = T.spindle, T.net, T.tls, T.H
local run, pair = T.run, T.pair

T.setup(_ENV)

describe("tls.context", function()
  it("makes client and server contexts (userdata with __tostring)", function()
    local c = tls.context()
    assert.matches("^spindle%.tls%.context %(client: ", tostring(c))
    local c2 = T.client_ctx({alpn = {"h2"}, min_version = "1.3", verify = true})
    assert.matches("client", tostring(c2))
    local s = T.server_ctx({ca = T.f("ca.pem"), verify = true, alpn = {"h2", "http/1.1"}})
    assert.matches("^spindle%.tls%.context %(server: ", tostring(s))
    assert.equal("userdata", type(s))
    assert.equal("locked", getmetatable(s))
    -- a CA directory (hashed names) works like a file
    assert.truthy(tls.context({ca = T.f("cadir")}))
  end)

  it("raises at once for a file that cannot be loaded, naming it", function()
    local ok, err = pcall(tls.context, {cert = T.f("nope.pem"), key = T.f("server.key")})
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, T.f("nope.pem")), err)
    assert.truthy(H.msg_has(err, "No such file"), err)
    ok, err = pcall(tls.context, {cert = T.f("server.key"), key = T.f("server.key")})
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, "certificate '" .. T.f("server.key")), err)
    ok, err = pcall(tls.context, {cert = T.f("server.pem"), key = T.f("client.key")})
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, T.f("client.key")), err)
    ok, err = pcall(tls.context, {cert = T.f("server.pem"), key = T.f("missing.key")})
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, T.f("missing.key")), err)
    ok, err = pcall(tls.context, {ca = T.f("nothing-here")})
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, T.f("nothing-here")), err)
    ok, err = pcall(tls.context, {ca = T.f("server.key")}) -- no certificate in it
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, T.f("server.key")), err)
  end)

  it("checks its options", function()
    local bad = {
      {server = true},                          -- a server needs cert and key
      {server = true, cert = T.f("server.pem")},
      {cert = T.f("server.pem")},               -- cert without key
      {min_version = "1.1"},
      {min_version = 1.2},
      {alpn = {}},
      {alpn = "h2"},
      {alpn = {""}},
      {alpn = {string.rep("x", 256)}},
      {verify = "yes"},
      {server = 1},
      {ca = 5},
      {cafile = "x"},                           -- unknown option
    }
    for i, o in ipairs(bad) do
      local ok, err = pcall(tls.context, o)
      assert.is_false(ok, "case " .. i)
      assert.truthy(H.msg_has(err, "bad argument"), err)
    end
    assert.has_error(function() tls.context("x") end)
    assert.has_error(function() tls.context(5) end)
  end)
end)

describe("tls.connect", function()
  it("connects, handshakes and returns a stream with every method", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      spindle.spawn(function()
        local c <close> = assert(srv:accept())
        assert.equal("hello", c:read_line())
        assert.equal("abc", c:read(3))
        assert.equal("def", c:read_until("--"))
        assert.equal("x\r", c:read_until("\n"))
        c:write("line 1\r\nline 2\n", "tail")
        c:shutdown()
        assert.equal("rest", c:read_all())
      end)
      local s <close> = assert(tls.connect("localhost", port,
                                           {context = T.client_ctx(), timeout = 5}))
      assert.equal("spindle.stream", getmetatable(s).__name)
      assert.matches("^spindle%.stream %(tls over tcp: ", tostring(s))
      assert.is_true(s:write("hello\n", "abcdef--", "x\r\n"))
      assert.equal("line 1", s:read_line())
      local got = {}
      for l in s:lines() do got[#got + 1] = l end
      assert.same({"line 2", "tail"}, got)
      assert.same({nil, "eof", "EOF"}, {s:read_line()})
      assert.same({nil, "eof", "EOF"}, {s:read_some()})
      assert.equal("127.0.0.1", (s:peer()))
      assert.equal("127.0.0.1", (s:local_addr()))
      assert.is_true(s:set_nodelay(true))
      assert.is_true(s:set_keepalive(true, 10))
      s:write("rest")
      assert.is_true(s:shutdown())
    end)
  end)

  it("tls_info reports version, cipher, servername, ALPN and the peer certificate", function()
    run(function()
      local c, s = pair(T.server_ctx({alpn = {"h2", "http/1.1"}}),
                        {alpn = {"http/1.1", "h2"}})
      local info = c:tls_info()
      assert.equal("TLSv1.3", info.version)
      assert.is_string(info.cipher)
      assert.truthy(#info.cipher > 0)
      assert.equal("h2", info.alpn) -- the server's preference wins
      assert.equal("localhost", info.servername)
      assert.is_false(info.resumed)
      local pc = info.peer_certificate
      assert.equal("CN=localhost", pc.subject)
      assert.equal("CN=spindle test CA", pc.issuer)
      assert.is_true(math.type(pc.not_before) == "integer")
      assert.truthy(pc.not_before <= os.time() and os.time() < pc.not_after)
      assert.same({"localhost", "127.0.0.1", "::1"}, pc.san)
      local si = s:tls_info()
      assert.equal("TLSv1.3", si.version)
      assert.equal(info.cipher, si.cipher)
      assert.equal("h2", si.alpn)
      assert.equal("localhost", si.servername) -- what the client sent (SNI)
      assert.is_nil(si.peer_certificate)       -- no client certificate
      c:close(); s:close()
      assert.same({nil, "closed", "EBADF"}, {c:tls_info()})
    end)
  end)

  it("sends no SNI for a numeric address and checks the chain only", function()
    run(function()
      local c, s = pair(nil, {host = "127.0.0.1"})
      assert.is_nil(c:tls_info().servername)
      assert.is_nil(s:tls_info().servername)
      c:close(); s:close()
    end)
  end)

  it("verifies the host name: servername is the SNI and the name checked", function()
    run(function()
      local c, msg, code, srv = pair(nil, {host = "127.0.0.1", servername = "wrong.example"})
      assert.is_nil(c)
      assert.equal("host name mismatch", msg)
      assert.equal("ETLS", code)
      assert.is_nil(srv[1])
      assert.truthy(H.msg_has(srv[2], "alert bad certificate"), srv[2])
      assert.equal("ETLS", srv[3])
      -- a certificate for another name, reached as localhost
      c, msg, code = pair(T.server_ctx({cert = T.f("wrongname.pem"), key = T.f("wrongname.key")}))
      assert.is_nil(c)
      assert.equal("host name mismatch", msg)
      assert.equal("ETLS", code)
      -- servername = false: no SNI and no name check
      c = assert(pair(T.server_ctx({cert = T.f("wrongname.pem"), key = T.f("wrongname.key")}),
                      {servername = false}))
      assert.is_nil(c:tls_info().servername)
      c:close()
    end)
  end)

  it("reports verification failures in words with ETLS", function()
    run(function()
      -- the system store does not know our CA
      local c, msg, code = pair(nil, {context = false})
      assert.is_nil(c)
      assert.equal("certificate verify failed: unable to get local issuer certificate", msg)
      assert.equal("ETLS", code)
      c, msg, code = pair(T.server_ctx({cert = T.f("self.pem"), key = T.f("self.key")}))
      assert.equal("certificate verify failed: self-signed certificate", msg)
      assert.equal("ETLS", code)
      c, msg, code = pair(T.server_ctx({cert = T.f("expired.pem"), key = T.f("expired.key")}))
      assert.equal("certificate verify failed: certificate has expired", msg)
      assert.equal("ETLS", code)
      c, msg, code = pair(nil, {context = T.client_ctx({ca = T.f("other-ca.pem")})})
      assert.equal("certificate verify failed: unable to get local issuer certificate", msg)
      -- verify = false accepts what it cannot check
      c = assert(pair(T.server_ctx({cert = T.f("self.pem"), key = T.f("self.key")}),
                      {context = tls.context({verify = false})}))
      c:close()
      -- context options may be given to connect directly
      c = assert(pair(nil, {context = false, ca = T.f("ca.pem")}))
      c:close()
    end)
  end)

  it("returns the connect errors of spindle.net.connect", function()
    run(function()
      local port = T.free_port()
      local s, msg, code = tls.connect("127.0.0.1", port, {timeout = 5})
      assert.is_nil(s)
      assert.equal("127.0.0.1:" .. port .. ": connection refused", msg)
      assert.equal("ECONNREFUSED", code)
    end)
  end)

  it("a server that hangs up or resets during the handshake", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0)) -- plain
      local _, port = srv:local_addr()
      local h = spindle.spawn(function()
        local a = assert(srv:accept()); a:read_some(); a:close()
      end)
      assert.same({nil, "connection closed during handshake", "ETLS"},
                  {tls.connect("127.0.0.1", port, {context = T.client_ctx()})})
      h:join()
      h = spindle.spawn(function()
        local a = assert(srv:accept()); a:read_some(); a:close_reset()
      end)
      assert.same({nil, "connection reset by peer", "ECONNRESET"},
                  {tls.connect("127.0.0.1", port, {context = T.client_ctx()})})
      h:join()
    end)
  end)

  it("timeout covers the handshake: a server that never answers", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0)) -- plain, silent
      local _, port = srv:local_addr()
      local held
      spindle.spawn(function() held = srv:accept() end)
      local t0 = spindle.now()
      local s, msg, code = tls.connect("127.0.0.1", port, {timeout = 0.2})
      assert.is_nil(s)
      assert.same({"timeout", "ETIMEDOUT"}, {msg, code})
      assert.truthy(spindle.now() - t0 >= 0.19)
      held:close()
    end)
  end)

  it("checks its arguments", function()
    run(function()
      local sctx = T.server_ctx()
      for i, f in ipairs({
        function() tls.connect() end,
        function() tls.connect({}, 1) end,
        function() tls.connect("localhost", "x") end,
        function() tls.connect("localhost", 70000) end,
        function() tls.connect("localhost", 443, 5) end,
        function() tls.connect("localhost", 443, {timeout = -1}) end,
        function() tls.connect("localhost", 443, {context = sctx}) end,
        function() tls.connect("localhost", 443, {context = {}}) end,
        function() tls.connect("localhost", 443, {servername = 1}) end,
        function() tls.connect("localhost", 443, {alpn = {1}}) end,
        function() tls.connect("localhost", 443, {sni = "x"}) end,
      }) do
        local ok, err = pcall(f)
        assert.is_false(ok, "case " .. i)
        assert.truthy(H.msg_has(err, "bad argument"), err)
      end
    end)
    local ok, err = pcall(tls.connect, "localhost", 443)
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, "not inside a task"), err)
  end)
end)

describe("a listener with {tls = server_context}", function()
  it("accept returns TLS streams at once; the handshake runs on the first read", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      assert.matches("tls over tcp", tostring(srv))
      local plain <close> = assert(net.connect("127.0.0.1", port))
      local s <close> = assert(srv:accept()) -- no handshake yet: the client sent nothing
      assert.is_nil(s:tls_info())
      local h = spindle.spawn(function() return s:read_line() end)
      -- the first accepted stream waits for a handshake that never comes;
      -- the second works on its own
      local h2 = spindle.spawn(function()
        local s2 <close> = assert(srv:accept())
        return s2:read_line()
      end)
      local c <close> = assert(tls.connect("localhost", port, {context = T.client_ctx(), timeout = 5}))
      c:write("hi\n")
      assert.equal("hi", h2:join())
      assert.equal("waiting", h:status())
      plain:close()
      local r = table.pack(h:join())
      assert.is_nil(r[1])
      assert.equal("ETLS", r[3])
    end)
  end)

  it("the handshake runs on the first write too (server speaks first)", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      spindle.spawn(function()
        local s <close> = assert(srv:accept())
        assert.is_true(s:write("220 ready\r\n"))
        assert.equal("QUIT", s:read_line())
      end)
      local c <close> = assert(tls.connect("localhost", port, {context = T.client_ctx(), timeout = 5}))
      assert.equal("220 ready", c:read_line())
      c:write("QUIT\r\n")
      assert.same({nil, "eof", "EOF"}, {c:read_line()})
    end)
  end)

  it("s:handshake() returns true, or nil, msg, ETLS; a failure affects only that stream", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      -- a plain-text client
      local plain <close> = assert(net.connect("127.0.0.1", port))
      plain:write("GET / HTTP/1.0\r\n\r\n")
      local bad <close> = assert(srv:accept())
      local ok, msg, code = bad:handshake()
      assert.is_nil(ok)
      assert.equal("http request", msg)
      assert.equal("ETLS", code)
      -- sticky: reads and writes say the same
      assert.same({nil, "http request", "ETLS"}, {bad:read_some()})
      assert.same({nil, "http request", "ETLS"}, {bad:write("x")})
      assert.same({nil, "http request", "ETLS"}, {bad:handshake()})
      -- the listener goes on serving
      local h = spindle.spawn(function()
        local s <close> = assert(srv:accept())
        assert.is_true(s:handshake())
        assert.is_true(s:handshake()) -- again: done already
        s:write("ok\n")
      end)
      local c <close> = assert(tls.connect("localhost", port, {context = T.client_ctx(), timeout = 5}))
      assert.equal("ok", c:read_line())
      h:join()
    end)
  end)

  it("s:handshake() raises on a plain stream and for a second waiter", function()
    run(function()
      local c, s = T.N.pair()
      local ok, err = pcall(c.handshake, c)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "not a TLS stream"), err)
      assert.is_nil(c:tls_info())
      c:close(); s:close()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      local p <close> = assert(net.connect("127.0.0.1", port))
      local a <close> = assert(srv:accept())
      local h = spindle.spawn(function() return a:handshake() end)
      spindle.sleep(0.01)
      ok, err = pcall(a.handshake, a)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "socket busy"), err)
      a:close() -- wakes the waiter
      assert.same({nil, "closed", "ECANCELED"}, {h:join()})
    end)
  end)

  it("takes only a server context", function()
    run(function()
      for _, v in ipairs({tls.context(), {}, "x", 1}) do
        local ok, err = pcall(net.listen, "127.0.0.1", 0, {tls = v})
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "bad argument"), err)
      end
      -- a name resolved first
      local srv <close> = assert(net.listen("localhost", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      local h = spindle.spawn(function()
        local s <close> = assert(srv:accept())
        s:write("named\n")
      end)
      local c <close> = assert(tls.connect("localhost", port, {context = T.client_ctx(), timeout = 5}))
      assert.equal("named", c:read_line())
      h:join()
    end)
  end)
end)

describe("mutual TLS", function()
  it("a server with verify = true requires a client certificate", function()
    run(function()
      local sctx = T.server_ctx({verify = true, ca = T.f("ca.pem")})
      -- without one: ETLS on both sides
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = sctx}))
      local _, port = srv:local_addr()
      local h = spindle.spawn(function()
        local s <close> = assert(srv:accept())
        return s:handshake()
      end)
      local c, msg, code = tls.connect("localhost", port, {context = T.client_ctx(), timeout = 5})
      if c then -- TLS 1.3: the client learns it on its first read
        msg, code = select(2, c:read_some())
        c:close()
      end
      assert.truthy(H.msg_has(msg, "certificate required"), msg)
      assert.equal("ETLS", code)
      assert.same({nil, "peer did not return a certificate", "ETLS"}, {h:join()})
      -- with one: both sides see each other
      local cctx = T.client_ctx({cert = T.f("client.pem"), key = T.f("client.key")})
      local c2, s2 = pair(sctx, {context = cctx})
      assert.truthy(c2, s2)
      assert.equal("CN=spindle client", s2:tls_info().peer_certificate.subject)
      assert.equal("CN=localhost", c2:tls_info().peer_certificate.subject)
      c2:write("x"); assert.equal("x", s2:read(1))
      c2:close(); s2:close()
      -- a client certificate from a CA the server does not trust
      local ctx3 = T.client_ctx({cert = T.f("self.pem"), key = T.f("self.key")})
      local c3, m3, k3, srvres = pair(sctx, {context = ctx3})
      assert.is_nil(c3)
      assert.equal("ETLS", k3)
      assert.truthy(H.msg_has(m3, "alert"), m3)
      assert.same({nil, "certificate verify failed: self-signed certificate", "ETLS"}, srvres)
    end)
  end)
end)

describe("ALPN", function()
  it("selects the server's first protocol the client offers, or none", function()
    run(function()
      local sctx = T.server_ctx({alpn = {"h2", "http/1.1"}})
      local c, s = pair(sctx, {alpn = {"http/1.1"}})
      assert.equal("http/1.1", c:tls_info().alpn)
      c:close(); s:close()
      c, s = pair(sctx, {alpn = {"spdy/1"}})
      assert.is_nil(c:tls_info().alpn)
      assert.is_nil(s:tls_info().alpn)
      c:close(); s:close()
      -- from the client context; opts.alpn wins over it
      c, s = pair(sctx, {context = T.client_ctx({alpn = {"http/1.1"}})})
      assert.equal("http/1.1", c:tls_info().alpn)
      c:close(); s:close()
      c, s = pair(sctx, {context = T.client_ctx({alpn = {"http/1.1"}}), alpn = {"h2"}})
      assert.equal("h2", c:tls_info().alpn)
      c:close(); s:close()
    end)
  end)
end)

describe("min_version", function()
  it("\"1.3\" allows TLS 1.3 only; the default allows 1.2 and 1.3", function()
    run(function()
      local c, s = pair(T.server_ctx({min_version = "1.3"}),
                        {context = T.client_ctx({min_version = "1.3"})})
      assert.equal("TLSv1.3", c:tls_info().version)
      c:close(); s:close()
    end)
  end)
end)

describe("session resumption", function()
  it("a client context resumes sessions per servername and port", function()
    run(function()
      local sctx, cctx = T.server_ctx(), T.client_ctx()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = sctx}))
      local _, port = srv:local_addr()
      local h = spindle.spawn(function()
        for _ = 1, 3 do
          local s <close> = assert(srv:accept())
          local l = s:read_line()
          s:write(l, "\n")
          s:read_all()
        end
      end)
      local resumed = {}
      for i = 1, 3 do
        local c <close> = assert(tls.connect("localhost", port, {context = cctx, timeout = 5}))
        c:write("ping\n")
        assert.equal("ping", c:read_line()) -- the session ticket comes with it
        resumed[i] = c:tls_info().resumed
      end
      assert.same({false, true, true}, resumed)
      h:join()
      -- a fresh context has no session to offer
      local h2 = spindle.spawn(function()
        local s <close> = assert(srv:accept())
        s:write("x\n")
        s:read_all()
      end)
      local c <close> = assert(tls.connect("localhost", port, {context = T.client_ctx(), timeout = 5}))
      assert.equal("x", c:read_line())
      assert.is_false(c:tls_info().resumed)
      c:close()
      h2:join()
    end)
  end)
end)

describe("tls.wrap (STARTTLS)", function()
  it("upgrades a plain connection on both sides, bytes read ahead included", function()
    run(function()
      local sctx, cctx = T.server_ctx(), T.client_ctx()
      local srv <close> = assert(net.listen("127.0.0.1", 0))
      local _, port = srv:local_addr()
      local h = spindle.spawn(function()
        local p = assert(srv:accept())
        p:write("220 hello\r\n")
        assert.equal("STARTTLS", p:read_line())
        p:write("220 go ahead\r\n")
        local s <close> = assert(tls.wrap(p, {server = true, context = sctx, timeout = 5}))
        assert.equal(p, s) -- the same object, now speaking TLS
        for line in s:lines() do s:write("> ", line, "\n") end
      end)
      local p = assert(net.connect("127.0.0.1", port))
      assert.equal("220 hello", p:read_line())
      p:write("STARTTLS\r\n")
      assert.equal("220 go ahead", p:read_line())
      local s = assert(tls.wrap(p, {context = cctx, servername = "localhost", timeout = 5}))
      assert.equal("localhost", s:tls_info().servername)
      s:write("one\ntwo\n")
      assert.equal("> one", s:read_line())
      assert.equal("> two", s:read_line())
      p:close() -- closing one closes both
      assert.same({nil, "closed", "EBADF"}, {s:read_line()})
      h:join()
    end)
  end)

  it("feeds the handshake with bytes the plain stream had buffered", function()
    run(function()
      local sctx = T.server_ctx()
      local srv <close> = assert(net.listen("127.0.0.1", 0))
      local _, port = srv:local_addr()
      local h = spindle.spawn(function()
        local p = assert(srv:accept())
        assert.equal("STARTTLS", p:read_line())
        spindle.sleep(0.05) -- the ClientHello is in p's buffer by now
        local s <close> = assert(tls.wrap(p, {server = true, context = sctx}))
        return s:read_line()
      end)
      local p = assert(net.connect("127.0.0.1", port))
      p:write("STARTTLS\n") -- and the handshake right after, no reply awaited
      local s <close> = assert(tls.wrap(p, {context = T.client_ctx(), servername = "localhost"}))
      s:write("after\n")
      assert.equal("after", h:join())
    end)
  end)

  it("fails with ETLS and closes the stream when the peer is not TLS", function()
    run(function()
      local c, s = T.N.pair()
      local h = spindle.spawn(function()
        s:write("this is not TLS at all\r\n\r\n")
        s:read_all()
        s:close()
      end)
      local r = table.pack(tls.wrap(c, {context = T.client_ctx()}))
      assert.is_nil(r[1])
      assert.equal("ETLS", r[3])
      assert.is_string(r[2])
      assert.same({nil, "closed", "EBADF"}, {c:read_some()})
      h:join()
    end)
  end)

  it("checks its arguments", function()
    run(function()
      local c, s = T.N.pair()
      for i, f in ipairs({
        function() tls.wrap() end,
        function() tls.wrap({}) end,
        function() tls.wrap(c, 5) end,
        function() tls.wrap(c, {server = true}) end,                  -- no context
        function() tls.wrap(c, {server = true, context = tls.context()}) end,
        function() tls.wrap(c, {context = T.server_ctx()}) end,
        function() tls.wrap(c, {server = true, context = T.server_ctx(), servername = "x"}) end,
        function() tls.wrap(c, {bogus = true}) end,
      }) do
        local ok, err = pcall(f)
        assert.is_false(ok, "case " .. i)
        assert.truthy(H.msg_has(err, "bad argument"), err)
      end
      c:close(); s:close()
      assert.same({nil, "closed", "EBADF"}, {tls.wrap(c)})
    end)
  end)
end)

describe("a TLS stream", function()
  it("close sends close_notify; the peer sees eof and tls_info().close_notify", function()
    run(function()
      local c, s = pair()
      c:write("bye")
      c:close()
      assert.equal("bye", s:read_all())
      assert.is_true(s:tls_info().close_notify)
      assert.same({nil, "eof", "EOF"}, {s:read_some()})
      -- writing after the peer's close_notify still works (the peer is gone)
      s:close()
    end)
  end)

  it("shutdown sends close_notify and half-closes; the other direction goes on", function()
    run(function()
      local c, s = pair()
      c:write("question")
      assert.is_true(c:shutdown())
      assert.is_true(c:shutdown())
      assert.equal("question", s:read_all())
      assert.is_true(s:tls_info().close_notify)
      s:write("answer")
      s:close()
      assert.equal("answer", c:read_all())
      c:close()
    end)
  end)

  it("has one reader; writes arrive whole and in order", function()
    run(function()
      local c, s = pair()
      local r = spindle.spawn(function() return c:read(4) end)
      spindle.sleep(0.01)
      local ok, err = pcall(c.read_some, c)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "socket busy"), err)
      s:write("abcd")
      assert.equal("abcd", r:join())
      -- several pieces per write, several writes, bigger than a record
      local big = string.rep("x", 300000)
      local w = spindle.spawn(function()
        for i = 1, 5 do
          assert.is_true(s:write(("<%d>"):format(i), big, ("</%d>"):format(i)))
        end
      end)
      local got = c:read(5 * (#big + 7))
      w:join()
      local order = {}
      for open, body, close in got:gmatch("<(%d)>(x*)</(%d)>") do
        assert.equal(open, close)
        assert.equal(#big, #body)
        order[#order + 1] = tonumber(open)
      end
      assert.same({1, 2, 3, 4, 5}, order)
      c:close(); s:close()
    end)
  end)

  it("close wakes a blocked reader and writer with nil, closed, ECANCELED", function()
    run(function()
      local c, s = pair()
      local r = spindle.spawn(function() return c:read_line() end)
      local w = spindle.spawn(function() return c:write(string.rep("z", 32 * 1024 * 1024)) end)
      spindle.sleep(0.05)
      assert.equal("waiting", r:status())
      assert.equal("waiting", w:status())
      c:close()
      assert.same({nil, "closed", "ECANCELED"}, {r:join()})
      assert.same({nil, "closed", "ECANCELED"}, {w:join()})
      s:close()
    end)
  end)

  it("a cancelled read consumes nothing", function()
    run(function()
      local c, s = pair()
      s:write("hel")
      local ok, err = pcall(spindle.timeout, 0.05, c.read_line, c)
      assert.is_false(ok)
      assert.truthy(spindle.is_timeout(err))
      s:write("lo\n")
      assert.equal("hello", c:read_line())
      local h = spindle.spawn(function() return c:read(10) end)
      s:write("12345")
      spindle.sleep(0.02)
      h:abort()
      s:write("67890")
      assert.equal("1234567890", c:read(10))
      c:close(); s:close()
    end)
  end)

  it("an aborted write completes in order in the background", function()
    run(function()
      local c, s = pair()
      local big = string.rep("a", 8 * 1024 * 1024)
      local w = spindle.spawn(function() return c:write(big) end)
      spindle.sleep(0.02)
      assert.equal("waiting", w:status()) -- nobody reads: backpressure
      w:abort()
      assert.is_false((w:result()))
      assert.equal("cancelled", w:status())
      local w2 = spindle.spawn(function() return c:write("after") end)
      local got = s:read(#big + 5)
      assert.is_true(w2:join())
      assert.equal(#big + 5, #got)
      assert.equal(big, got:sub(1, #big))
      assert.equal("after", got:sub(-5))
      c:close(); s:close()
    end)
  end)

  it("buffers at most what a reader asked for, counted in plaintext", function()
    run(function()
      local c, s = pair()
      -- the client floods; the server reads short lines slowly
      local total = 16 * 1024 * 1024
      local line = string.rep("y", 99) .. "\n"
      local w = spindle.spawn(function() return c:write(string.rep(line, total // 100)) end)
      assert.equal(string.rep("y", 99), s:read_line(100))
      spindle.sleep(0.2)
      -- the writer is held back by TCP flow control: the runtime did not
      -- read 16 MiB on its behalf
      assert.equal("waiting", w:status())
      local n = 1
      while n < total // 100 do
        local l = assert(s:read_line(100))
        assert.equal(99, #l)
        n = n + 1
      end
      assert.is_true(w:join())
      c:close(); s:close()
    end)
  end)

  it("a big write to a stop-and-go reader completes", function()
    run(function()
      local c, s = pair()
      local n = 8 * 1024 * 1024
      local w = spindle.spawn(function() return c:write(string.rep("s", n)) end)
      for _ = 1, 4 do -- stop and go: the kernel's buffers fill, then drain
        spindle.sleep(0.05)
        assert.equal(n // 4, #s:read(n // 4))
      end
      assert.is_true(w:join())
      c:close(); s:close()
    end)
  end)

  it("read_line over the limit: ELINE, bytes kept", function()
    run(function()
      local c, s = pair()
      c:write(string.rep("q", 50), "\n")
      assert.same({nil, "line too long", "ELINE"}, {s:read_line(10)})
      assert.equal(string.rep("q", 50), s:read_line())
      c:close(); s:close()
    end)
  end)

  it("is named in spindle.dump(): tls handshake, tls read", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      local p <close> = assert(net.connect("127.0.0.1", port))
      local a <close> = assert(srv:accept())
      local h = spindle.spawn(function() return a:handshake() end)
      spindle.sleep(0.01)
      local d = spindle.dump()
      assert.truthy(H.msg_has(d, "tls handshake 127.0.0.1:"), d)
      h:abort()
      local c, s = pair()
      local r = spindle.spawn(function() return c:read_line() end)
      spindle.sleep(0.01)
      d = spindle.dump()
      assert.truthy(H.msg_has(d, "tls read 127.0.0.1:"), d)
      r:abort()
      c:close(); s:close()
    end)
  end)
end)
