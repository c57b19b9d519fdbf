-- spec/25-tls-peers_spec.lua -- spindle.tls (docs/tls.md) against peers
-- nobody here wrote: `openssl s_server` and `openssl s_client`, curl, and
-- Python's ssl module (spec/helpers/tls_peer.py).  Each peer is a child
-- process bounded by `timeout`; loopback only.

local T = require "spec.helpers.tls"
local spindle, net, tls, H = T.spindle, T.net, T.tls, T.H
local run = T.run

T.setup(_ENV)

local function python(args)
  return T.child("python3", {"spec/helpers/tls_peer.py", table.unpack(args)})
end

describe("spindle.tls against openssl s_server", function()
  it("connects, verifies, exchanges data both ways", function()
    run(function()
      local p, port = T.s_server({})
      local s <close> = assert(tls.connect("localhost", port,
                                           {context = T.client_ctx(), timeout = 10}))
      local info = s:tls_info()
      assert.equal("TLSv1.3", info.version)
      assert.equal("CN=localhost", info.peer_certificate.subject)
      s:write("from spindle\n")
      assert.truthy(T.wait_line(p.stdout, "^from spindle$"))
      p.stdin:write("from openssl\n")
      assert.equal("from openssl", s:read_line())
      T.finish(p)
      -- the peer died without close_notify: eof, like a plain stream
      assert.same({nil, "eof", "EOF"}, {s:read_line()})
      assert.is_false(s:tls_info().close_notify)
    end)
  end)

  it("speaks TLS 1.2 when the server does; min_version = \"1.3\" refuses it", function()
    run(function()
      local p, port = T.s_server({"-tls1_2"})
      local s = assert(tls.connect("localhost", port, {context = T.client_ctx(), timeout = 10}))
      assert.equal("TLSv1.2", s:tls_info().version)
      s:write("v12\n")
      assert.truthy(T.wait_line(p.stdout, "^v12$"))
      s:close()
      T.finish(p)
      p, port = T.s_server({"-tls1_2"})
      local x, msg, code = tls.connect("localhost", port,
        {context = T.client_ctx({min_version = "1.3"}), timeout = 10})
      assert.is_nil(x)
      assert.equal("ETLS", code)
      assert.truthy(H.msg_has(msg, "protocol version"), msg)
      T.finish(p)
    end)
  end)

  it("negotiates ALPN", function()
    run(function()
      local p, port = T.s_server({"-alpn", "h2,http/1.1"})
      local s <close> = assert(tls.connect("localhost", port,
        {context = T.client_ctx(), alpn = {"http/1.1"}, timeout = 10}))
      assert.equal("http/1.1", s:tls_info().alpn)
      T.finish(p)
    end)
  end)

  it("presents a client certificate when the server requires one", function()
    run(function()
      local p, port = T.s_server({"-Verify", "1", "-CAfile", T.f("ca.pem"),
                                  "-verify_return_error"})
      local cctx = T.client_ctx({cert = T.f("client.pem"), key = T.f("client.key")})
      local s <close> = assert(tls.connect("localhost", port, {context = cctx, timeout = 10}))
      s:write("with cert\n")
      assert.truthy(T.wait_line(p.stdout, "^with cert$"))
      T.finish(p)
      -- without: ETLS (on connect or on the first read)
      p, port = T.s_server({"-Verify", "1", "-CAfile", T.f("ca.pem"),
                            "-verify_return_error"})
      local c, msg, code = tls.connect("localhost", port, {context = T.client_ctx(), timeout = 10})
      if c then msg, code = select(2, c:read_line()); c:close() end
      assert.equal("ETLS", code)
      assert.truthy(H.msg_has(msg, "certificate required"), msg)
      T.finish(p)
    end)
  end)

  it("reports an untrusted server and a wrong name in words", function()
    run(function()
      local p, port = T.s_server({})
      local c, msg, code = tls.connect("localhost", port, {timeout = 10})
      assert.is_nil(c)
      assert.same({"certificate verify failed: unable to get local issuer certificate", "ETLS"}, {msg, code})
      c, msg, code = tls.connect("127.0.0.1", port,
        {context = T.client_ctx(), servername = "example.org", timeout = 10})
      assert.is_nil(c)
      assert.same({"host name mismatch", "ETLS"}, {msg, code})
      T.finish(p)
    end)
  end)
end)

describe("openssl s_client against a spindle TLS server", function()
  local function s_client(port, extra)
    local a = {"s_client", "-connect", "127.0.0.1:" .. port, "-CAfile", T.f("ca.pem"),
               "-servername", "localhost", "-verify_return_error", "-state", "-ign_eof"}
    for _, v in ipairs(extra or {}) do a[#a + 1] = v end
    return T.child("openssl", a)
  end

  it("is served; close sends close_notify, which s_client sees", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx({alpn = {"http/1.1"}})}))
      local _, port = srv:local_addr()
      local p = s_client(port, {"-alpn", "http/1.1"})
      local s = assert(srv:accept())
      p.stdin:write("hello\n")
      assert.equal("hello", s:read_line())
      local info = s:tls_info()
      assert.equal("TLSv1.3", info.version)
      assert.equal("localhost", info.servername)
      assert.equal("http/1.1", info.alpn)
      s:write("HELLO\n")
      assert.truthy(T.wait_line(p.stdout, "^HELLO$"))
      s:close()
      local err = p.stderr:read_all()
      assert.truthy(H.msg_has(err, "SSL3 alert read:warning:close notify"), err)
      T.finish(p)
    end)
  end)

  it("TLS 1.2 and a client certificate", function()
    run(function()
      local sctx = T.server_ctx({verify = true, ca = T.f("ca.pem")})
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = sctx}))
      local _, port = srv:local_addr()
      local p = s_client(port, {"-tls1_2", "-cert", T.f("client.pem"), "-key", T.f("client.key")})
      local s <close> = assert(srv:accept())
      assert.is_true(s:handshake())
      assert.equal("TLSv1.2", s:tls_info().version)
      assert.equal("CN=spindle client", s:tls_info().peer_certificate.subject)
      p.stdin:write("mtls\n")
      assert.equal("mtls", s:read_line())
      T.finish(p)
      -- the same without a certificate: this client alone fails
      p = s_client(port, {"-tls1_2"})
      local s2 <close> = assert(srv:accept())
      assert.same({nil, "peer did not return a certificate", "ETLS"}, {s2:handshake()})
      T.finish(p)
    end)
  end)
end)

describe("curl against a spindle HTTPS server", function()
  -- a minimal HTTP/1.1 responder over a TLS stream
  local function serve(srv, n)
    return spindle.spawn(function()
      for _ = 1, n do
        local s <close> = assert(srv:accept())
        local req = s:read_line()
        if req then
          repeat local l = s:read_line() until l == nil or l == ""
          local body = "you asked for " .. req:match("^%S+ (%S+)")
          s:write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ",
                  #body, "\r\nConnection: close\r\n\r\n", body)
        end
      end
    end)
  end

  it("gets a response over HTTPS, verified against our CA, with ALPN", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0,
        {tls = T.server_ctx({alpn = {"http/1.1"}})}))
      local _, port = srv:local_addr()
      local h = serve(srv, 2)
      local code, out, err = T.run_cmd("curl", {"-sS", "--max-time", "20",
        "--cacert", T.f("ca.pem"), "https://localhost:" .. port .. "/hello"})
      assert.equal(0, code, err)
      assert.equal("you asked for /hello", out)
      code, out, err = T.run_cmd("curl", {"-sS", "--max-time", "20",
        "--tlsv1.2", "--tls-max", "1.2", "--cacert", T.f("ca.pem"),
        "https://127.0.0.1:" .. port .. "/v12"})
      assert.equal(0, code, err)
      assert.equal("you asked for /v12", out)
      h:join()
    end)
  end)

  it("curl refuses our certificate under the wrong name; the server goes on", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      local h = spindle.spawn(function()
        local bad <close> = assert(srv:accept())
        local r1 = table.pack(bad:read_line())
        local good <close> = assert(srv:accept())
        local req = good:read_line()
        repeat local l = good:read_line() until l == nil or l == ""
        good:write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        return r1, req
      end)
      local code = T.run_cmd("curl", {"-sS", "--max-time", "20",
        "--cacert", T.f("ca.pem"), "--resolve", "other.example:" .. port .. ":127.0.0.1",
        "https://other.example:" .. port .. "/"})
      assert.are_not.equal(0, code)
      local code2, out = T.run_cmd("curl", {"-sS", "--max-time", "20",
        "--cacert", T.f("ca.pem"), "https://localhost:" .. port .. "/x"})
      assert.equal(0, code2)
      assert.equal("ok", out)
      local r1, req = h:join()
      -- curl checks the name after the handshake and hangs up: ETLS or
      -- eof, for that stream only
      assert.is_nil(r1[1])
      assert.truthy(r1[3] == "ETLS" or r1[3] == "EOF", r1[3])
      assert.equal("GET /x HTTP/1.1", req)
    end)
  end)
end)

describe("Python's ssl module", function()
  it("a spindle client against a Python server: echo, then close_notify", function()
    run(function()
      local p = python({"server", T.f("server.pem"), T.f("server.key"), "--alpn", "x,y"})
      local port = tonumber(assert(T.wait_line(p.stdout, "^PORT")):match("%d+"))
      local s <close> = assert(tls.connect("localhost", port,
        {context = T.client_ctx(), alpn = {"y"}, timeout = 10}))
      assert.equal("y", s:tls_info().alpn)
      assert.matches("^HELLO TLSv1.3 y %-$", (T.wait_line(p.stdout, "^HELLO")))
      s:write("one\ntwo\n")
      assert.equal("ONE", s:read_line())
      assert.equal("TWO", s:read_line())
      assert.is_true(s:shutdown()) -- close_notify: Python sees end of file
      assert.truthy(T.wait_line(p.stdout, "^EOF"))
      assert.same({nil, "eof", "EOF"}, {s:read_line()})
      assert.is_true(s:tls_info().close_notify)
      T.finish(p)
    end)
  end)

  it("a server that closes TCP without close_notify reads as eof", function()
    run(function()
      local p = python({"server", T.f("server.pem"), T.f("server.key"), "--abrupt"})
      local port = tonumber(assert(T.wait_line(p.stdout, "^PORT")):match("%d+"))
      local s <close> = assert(tls.connect("localhost", port, {context = T.client_ctx(), timeout = 10}))
      s:write("x\n")
      assert.equal("X", s:read_line())
      s:shutdown()
      assert.same({nil, "eof", "EOF"}, {s:read_line()})
      assert.is_false(s:tls_info().close_notify) -- a truncation attack looks like this
      T.finish(p)
    end)
  end)

  it("mutual TLS with a Python server", function()
    run(function()
      local p = python({"server", T.f("server.pem"), T.f("server.key"), "--ca", T.f("ca.pem")})
      local port = tonumber(assert(T.wait_line(p.stdout, "^PORT")):match("%d+"))
      local cctx = T.client_ctx({cert = T.f("client.pem"), key = T.f("client.key")})
      local s <close> = assert(tls.connect("localhost", port, {context = cctx, timeout = 10}))
      assert.matches("spindle_client$", (T.wait_line(p.stdout, "^HELLO")))
      s:write("m\n")
      assert.equal("M", s:read_line())
      T.finish(p)
    end)
  end)

  it("a Python client against a spindle server", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      local p = python({"client", tostring(port), T.f("ca.pem"), "localhost", "alpha", "beta"})
      local s <close> = assert(srv:accept())
      for line in s:lines() do s:write("<", line, ">\n") end
      assert.is_true(s:tls_info().close_notify) -- Python's unwrap()
      s:close() -- our close_notify, which unwrap() waits for
      local out = p.stdout:read_all()
      assert.truthy(H.msg_has(out, "HELLO TLSv1.3"), out)
      assert.truthy(H.msg_has(out, "GOT <alpha>\nGOT <beta>\nBYE"), out)
      T.finish(p)
    end)
  end)

  it("a Python client that distrusts the server fails; the server sees ETLS", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      local p = python({"client", tostring(port), T.f("other-ca.pem"), "localhost", "x"})
      local s <close> = assert(srv:accept())
      local ok, msg, code = s:handshake()
      assert.is_nil(ok)
      assert.equal("ETLS", code)
      assert.truthy(H.msg_has(msg, "alert"), msg)
      local out = p.stdout:read_all()
      assert.truthy(H.msg_has(out, "ERROR CERTIFICATE_VERIFY_FAILED"), out)
      T.finish(p)
    end)
  end)
end)
