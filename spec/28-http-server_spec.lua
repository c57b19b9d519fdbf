-- http.serve (docs/http.md#the-server), driven by curl and by raw sockets.
local HT = dofile("spec/helpers/http.lua")
local H = HT.H
local spindle = H.spindle
local net = spindle.net
local start = HT.serve
local serve = require("spindle.http_server").serve

local function run(fn) return H.run_real(fn) end
run(function() end) -- libuv's process-wide pipe, opened once

local function hello(req)
  return 200, {["content-type"] = "text/plain"}, "hello " .. req.path
end

-- curl, without the sanitizer preload of the asan stage (a preloaded
-- ASan runtime deadlocks curl at start)
local function curl(...)
  local code, out, err = spindle.process.run("env",
    {"-u", "LD_PRELOAD", "curl", "-sS", ...})
  return code, out, err
end

-- Sends raw bytes, then reads everything until the server closes.
local function raw(port, data, o)
  o = o or {}
  local s <close> = assert(net.connect("127.0.0.1", port))
  if data then assert(s:write(data)) end
  if o.shutdown then s:shutdown() end
  local out = s:read_all(1 << 20)
  return out or ""
end

local function status_of(text) return tonumber(text:match("^HTTP/1%.%d (%d%d%d)")) end

describe("http.serve with curl", function()
  H.check_fds(_ENV)

  it("answers a GET with a status, headers and a body", function()
    run(function()
      local srv <close>, base = start{handler = function(req)
        assert.equal("GET", req.method)
        assert.equal("/a b", req.path)
        assert.equal("x=1&y", req.query)
        assert.equal("/a%20b?x=1&y", req.target)
        assert.equal("1.1", req.version)
        assert.truthy(req.peer:match("^127%.0%.0%.1:%d+$"))
        assert.truthy(req.headers["user-agent"]:find("curl", 1, true))
        assert.equal("host", req.header_list[1][1])
        assert.truthy(req.header_list[1][2]:find("127.0.0.1", 1, true))
        return 201, {["x-thing"] = "yes", ["content-type"] = "text/plain"}, "made"
      end}
      local code, out = curl("-i", base .. "/a%20b?x=1&y")
      assert.equal(0, code)
      assert.truthy(out:find("^HTTP/1.1 201 Created\r\n"), out)
      assert.truthy(out:find("x-thing: yes\r\n", 1, true), out)
      assert.truthy(out:find("content-length: 4\r\n", 1, true), out)
      assert.truthy(out:find("\r\n\r\nmade$"), out)
    end)
  end)

  it("keeps the connection alive: two URLs, one connect", function()
    run(function()
      local srv <close>, base = start{handler = hello}
      local code, out, err = curl("-v", base .. "/one", base .. "/two")
      assert.equal(0, code)
      assert.equal("hello /onehello /two", out)
      local _, connects = err:gsub("Connected to", "")
      assert.equal(1, connects, err)
      assert.truthy(err:find("Re%-using existing connection"), err)
    end)
  end)

  it("HEAD gets the headers and the length, no body", function()
    run(function()
      local srv <close>, base = start{handler = hello}
      local code, out = curl("-I", base .. "/head")
      assert.equal(0, code)
      assert.truthy(out:find("content-length: 11\r\n", 1, true), out)
      assert.truthy(out:find("\r\n\r\n$"), out)
    end)
  end)

  it("HTTP/1.0: answered and closed", function()
    run(function()
      local srv <close>, base = start{handler = hello}
      local code, out = curl("-i", "--http1.0", base .. "/old")
      assert.equal(0, code)
      assert.truthy(out:find("connection: close\r\n", 1, true), out)
      assert.truthy(out:find("hello /old$"), out)
    end)
  end)

  it("reads chunked uploads and Expect: 100-continue bodies", function()
    run(function()
      local srv <close>, base = start{handler = function(req)
        return 200, nil, ("%s:%d"):format(req.method, #req:body())
      end}
      local data = string.rep("0123456789", 20000) -- 200 KB: curl sends Expect
      local f = H.tmpname()
      H.write_file(f, data)
      local code, out = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@" .. f, base .. "/up")
      assert.equal(0, code)
      assert.equal("POST:200000", out)
      code, out = curl("--data-binary", "@" .. f, base .. "/up")
      assert.equal(0, code)
      assert.equal("POST:200000", out)
      H.remove(f)
    end)
  end)

  it("streams a response with chunked encoding", function()
    run(function()
      local srv <close>, base = start{handler = function(_, res)
        res:write_head(200, {["content-type"] = "text/plain"})
        for i = 1, 5 do
          res:write(("line %d\n"):format(i))
          spindle.sleep(0.001)
        end
        res:finish("end\n")
      end}
      local code, out = curl("-i", base .. "/s")
      assert.equal(0, code)
      assert.truthy(out:find("transfer-encoding: chunked\r\n", 1, true), out)
      assert.truthy(out:find("line 1\nline 2\nline 3\nline 4\nline 5\nend\n$"), out)
    end)
  end)

  it("a handler that raises gets a 500, and the error is reported", function()
    local reported
    H.run_with({on_error = function(err) reported = err end}, function()
      local srv <close>, base = start{handler = function() error("handler bug") end}
      local code, out = curl("-i", base .. "/boom")
      assert.equal(0, code)
      assert.truthy(out:find("^HTTP/1.1 500"), out)
      spindle.sleep(0.01)
    end)
    assert.truthy(tostring(reported):find("handler bug", 1, true))
  end)
end)

describe("http.serve with raw sockets", function()
  H.check_fds(_ENV)

  it("answers pipelined requests in order", function()
    run(function()
      local srv <close>, _, port = start{handler = function(req)
        if req.path == "/slow" then spindle.sleep(0.05) end
        return 200, nil, req.path
      end}
      local out = raw(port,
        "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" ..
        "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n" ..
        "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local a, b, c = out:find("/slow", 1, true), out:find("/fast", 1, true),
        out:find("/last", 1, true)
      assert.truthy(a and b and c, out)
      assert.is_true(a < b and b < c, out)
      local _, n = out:gsub("HTTP/1%.1 200", "")
      assert.equal(3, n)
    end)
  end)

  it("malformed requests get 400 and the connection is closed", function()
    run(function()
      local srv <close>, _, port = start{handler = hello}
      for _, bad in ipairs({
        "GET / HTTP/1.1\nHost: x\n\n",                       -- bare LF
        "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",       -- obs-fold
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",                -- space before colon
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",                             -- no Host
        "GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n",
      }) do
        local out = raw(port, bad)
        assert.equal(400, status_of(out), ("%q -> %q"):format(bad, out))
        assert.truthy(out:find("connection: close", 1, true))
      end
      assert.equal(505, status_of(raw(port, "GET / HTTP/2.0\r\nHost: x\r\n\r\n")))
      assert.equal(501, status_of(raw(port,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")))
      -- chunked not last: the length cannot be known (RFC 9112 6.3)
      assert.equal(400, status_of(raw(port,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")))
    end)
  end)

  it("limits: 431 for a large head, 413 for a large body", function()
    run(function()
      local srv <close>, _, port = start{handler = function(req) return 200, nil, req:body() end,
                                         max_header = 1024, max_body = 1000}
      local big = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " .. string.rep("a", 2000) .. "\r\n\r\n"
      assert.equal(431, status_of(raw(port, big)))
      local body = string.rep("b", 2000)
      assert.equal(413, status_of(raw(port,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" .. body)))
      -- chunked bodies are counted as they come
      local chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "7d0\r\n" .. body .. "\r\n0\r\n\r\n"
      assert.equal(413, status_of(raw(port, chunked)))
      assert.equal(200, status_of(raw(port,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")))
    end)
  end)

  it("a trickling peer is cut by the absolute head deadline (408)", function()
    run(function()
      local srv <close>, _, port = start{handler = hello, header_timeout = 0.3}
      local s <close> = assert(net.connect("127.0.0.1", port))
      local t0 = spindle.now()
      local head = "GET / HTTP/1.1\r\nHost: x\r\nX-A: "
      local ok = true
      for i = 1, 200 do -- a byte every 20 ms would take 4 s
        if not s:write(head:sub(i, i) ~= "" and head:sub(i, i) or "a") then ok = false break end
        spindle.sleep(0.02)
        if spindle.now() - t0 > 2 then break end
      end
      local out = s:read_all(65536) or ""
      assert.equal(408, status_of(out), out)
      assert.is_true(spindle.now() - t0 < 1.5)
      local _ = ok
    end)
  end)

  it("an idle keep-alive connection is closed after idle_timeout", function()
    run(function()
      local srv <close>, _, port = start{handler = hello, idle_timeout = 0.2}
      local s <close> = assert(net.connect("127.0.0.1", port))
      s:write("GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.truthy(s:read_until("hello /x"))
      local t0 = spindle.now()
      assert.same({nil, "eof", "EOF"}, {s:read_some()})
      assert.is_true(spindle.now() - t0 < 1)
    end)
  end)

  it("max_connections: further connections wait", function()
    run(function()
      local inside, most = 0, 0
      local srv <close>, base = start{max_connections = 2, handler = function()
        inside = inside + 1
        most = math.max(most, inside)
        spindle.sleep(0.05)
        inside = inside - 1
        return 200, {connection = "close"}, "ok"
      end}
      local hs = {}
      for i = 1, 6 do hs[i] = spindle.spawn(curl, base .. "/" .. i) end
      for i = 1, 6 do assert.equal(0, (hs[i]:join())) end
      assert.equal(2, most)
    end)
  end)

  it("close(grace) lets requests in progress finish and closes idle connections", function()
    run(function()
      local entered = spindle.event()
      local srv, base, port = start{handler = function(req)
        if req.path == "/slow" then entered:set() spindle.sleep(0.1) end
        return 200, nil, "done " .. req.path
      end}
      local idle = assert(net.connect("127.0.0.1", port))
      idle:write("GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.truthy(idle:read_until("done /warm"))
      local slow = spindle.spawn(curl, "-i", base .. "/slow")
      entered:wait()
      local t0 = spindle.now()
      srv:close(2)
      assert.is_true(spindle.now() - t0 < 1)
      local code, out = slow:join()
      assert.equal(0, code)
      assert.truthy(out:find("connection: close", 1, true), out)
      assert.truthy(out:find("done /slow$"), out)
      assert.same({nil, "eof", "EOF"}, {idle:read_some()})
      idle:close()
      assert.is_nil((net.connect("127.0.0.1", port)))
    end)
  end)

  it("close aborts what does not finish within grace", function()
    run(function()
      local entered = spindle.event()
      local srv, base = start{handler = function() entered:set() spindle.sleep(10) return 200 end}
      local c = spindle.spawn(curl, base .. "/hang")
      entered:wait()
      local t0 = spindle.now()
      srv:close(0.1)
      assert.is_true(spindle.now() - t0 < 1)
      assert.is_true((c:join()) ~= 0) -- curl saw the connection close
    end)
  end)

  it("checks its options", function()
    run(function()
      assert.has_error(function() serve{port = 0} end)
      assert.has_error(function() serve{handler = hello, timout = 1} end)
      assert.has_error(function() serve{handler = hello, max_body = -1} end)
      assert.has_error(function() serve("x") end)
    end)
  end)
end)

describe("http.serve over TLS", function()
  local T = dofile("spec/helpers/tls.lua")
  T.setup(_ENV)

  it("serves HTTPS to curl trusting a private CA, keep-alive included", function()
    run(function()
      local srv <close>, _, port = start{tls = T.server_ctx(), handler = hello}
      local base = ("https://localhost:%d"):format(port)
      local code, out, err = curl("-v", "--cacert", T.f("ca.pem"), base .. "/one", base .. "/two")
      assert.equal(0, code, err)
      assert.equal("hello /onehello /two", out)
      local _, connects = err:gsub("Connected to", "")
      assert.equal(1, connects, err)
    end)
  end)

  it("a client that fails its handshake affects only its own connection", function()
    run(function()
      local srv <close>, _, port = start{tls = T.server_ctx(), handler = hello}
      -- plain HTTP to the HTTPS port: that connection fails alone
      local s <close> = assert(net.connect("127.0.0.1", port))
      s:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local r = s:read_all() or ""
      assert.falsy(r:find("^HTTP/"), r) -- no answer in plain HTTP
      local code, out = curl("--cacert", T.f("ca.pem"), ("https://localhost:%d/ok"):format(port))
      assert.equal(0, code)
      assert.equal("hello /ok", out)
    end)
  end)
end)
