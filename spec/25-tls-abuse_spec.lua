-- spec/25-tls-abuse_spec.lua -- what a peer can do to a spindle TLS
-- stream (docs/tls.md): garbage instead of a ClientHello, a plain-text
-- client, a renegotiation attempt, a 16 KiB record trickled byte by byte,
-- a peer that stops in the middle of the handshake; timeouts and aborts
-- at every await (connect, handshake, read, write); 16 MiB both ways at
-- once, byte-exact; many concurrent connections.  Each misbehaving peer
-- affects its own stream only, and nothing leaks (descriptors after every
-- spec; memory under ASan).

local T = require "spec.helpers.tls"
local spindle, net, tls, H = T.spindle, T.net, T.tls, T.H
local run, pair = T.run, T.pair

T.setup(_ENV)

-- A TLS listener whose accepted streams echo lines; returns the listener,
-- its port and a table of results (one per connection, in accept order).
local function echo_server(sctx)
  local srv = assert(net.listen("127.0.0.1", 0, {tls = sctx or T.server_ctx()}))
  local _, port = srv:local_addr()
  local results = {}
  spindle.spawn(function()
    while true do
      local s = srv:accept()
      if not s then return end
      local i = #results + 1
      results[i] = "open"
      spindle.spawn(function()
        local ok, msg, code = s:handshake()
        if not ok then
          results[i] = code
          s:close()
          return
        end
        for line in s:lines() do s:write(line, "\n") end
        results[i] = select(3, s:read_line()) or "?"
        s:close()
      end)
    end
  end)
  return srv, port, results
end

local function good_client(port)
  local c <close> = assert(tls.connect("localhost", port, {context = T.client_ctx(), timeout = 10}))
  c:write("still served\n")
  return c:read_line()
end

-- A plain TCP relay: client <-> relay <-> target.  up(data) and down(data)
-- may reshape each direction; returns the relay's port and a stop function.
local function relay(target, up, down)
  local lst = assert(net.listen("127.0.0.1", 0))
  local _, port = lst:local_addr()
  local tasks = {}
  local function pump(from, to, shape)
    return spindle.spawn(function()
      while true do
        local d = from:read_some()
        if not d then to:shutdown(); return end
        if not shape(d, to) then return end
      end
    end)
  end
  local acc = spindle.spawn(function()
    local a = assert(lst:accept())
    local b = assert(net.connect("127.0.0.1", target))
    tasks[#tasks + 1] = pump(a, b, up)
    tasks[#tasks + 1] = pump(b, a, down)
    tasks.a, tasks.b = a, b
  end)
  return port, function()
    acc:abort()
    for _, t in ipairs(tasks) do t:abort() end
    if tasks.a then tasks.a:close(); tasks.b:close() end
    lst:close()
  end
end

local function pass(d, to) return to:write(d) end
local function trickle(d, to) -- one byte at a time, each its own TCP segment
  for i = 1, #d do
    if not to:write(d:sub(i, i)) then return false end
    spindle.sleep(0)
  end
  return true
end

describe("a TLS listener", function()
  it("survives garbage instead of a ClientHello and goes on serving", function()
    run(function()
      local srv, port, results = echo_server()
      local junk = {
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        string.rep("\0", 4096),
        "\22\3\1\255\255" .. string.rep("A", 1000),      -- a record header claiming 64 KiB
        "\22\3\3\0\5\1\0\0\1\0",                          -- a truncated handshake message
        "\128\46\1\0\2\0\21\0\0\0\16" .. string.rep("B", 60), -- SSLv2-style hello
      }
      math.randomseed(7)
      local rnd = {}
      for i = 1, 2048 do rnd[i] = string.char(math.random(0, 255)) end
      junk[#junk + 1] = table.concat(rnd)
      for _, j in ipairs(junk) do
        local c <close> = assert(net.connect("127.0.0.1", port))
        c:write(j)
        c:shutdown()
        local rest = c:read_all(1 << 20) -- an alert, perhaps; then the close
        assert.is_string(rest)
      end
      assert.equal("still served", good_client(port))
      spindle.sleep(0.05)
      for i = 1, #junk do assert.equal("ETLS", results[i], "junk " .. i) end
      srv:close()
    end)
  end)

  it("a plain-text client fails alone while another client is served", function()
    run(function()
      local srv, port, results = echo_server()
      local plain <close> = assert(net.connect("127.0.0.1", port))
      plain:write("HELO plain text\r\n")
      -- served meanwhile
      assert.equal("still served", good_client(port))
      local answer = plain:read_all(1 << 16) -- a TLS alert, then the close
      assert.is_string(answer)
      spindle.sleep(0.05)
      assert.equal("ETLS", results[1])
      srv:close()
    end)
  end)

  it("refuses renegotiation (openssl s_client's R over TLS 1.2)", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      local p = T.child("openssl", {"s_client", "-connect", "127.0.0.1:" .. port,
        "-CAfile", T.f("ca.pem"), "-servername", "localhost", "-tls1_2", "-state"})
      local s <close> = assert(srv:accept())
      p.stdin:write("hello\n")
      assert.equal("hello", s:read_line())
      p.stdin:write("R\n") -- s_client asks to renegotiate
      local r = table.pack(spindle.timeout(10, s.read_line, s))
      -- refused: the client gives up on this connection (it may go on
      -- instead; either way nothing else is affected)
      assert.truthy(r[1] == nil and r[3] == "ETLS" or r[1] ~= nil)
      local err = p.stderr:read_all()
      assert.truthy(H.msg_has(err, "no renegotiation"), err)
      T.finish(p)
      -- and the listener is fine
      local h = spindle.spawn(function()
        local a <close> = assert(srv:accept())
        a:write("fine\n")
      end)
      local c <close> = assert(tls.connect("localhost", port, {context = T.client_ctx(), timeout = 10}))
      assert.equal("fine", c:read_line())
      h:join()
    end)
  end)
end)

describe("a peer that trickles", function()
  it("a handshake and a 16 KiB record byte by byte arrive intact", function()
    run(function()
      local srv, port = echo_server()
      local rport, stop = relay(port, trickle, pass)
      local c <close> = assert(tls.connect("localhost", rport, {context = T.client_ctx(), timeout = 60}))
      local line = string.rep("0123456789abcdef", 1024):sub(1, 16383)
      c:write(line, "\n") -- one full record, sent one byte per segment
      assert.equal(line, c:read_line(20000))
      c:close()
      stop()
      srv:close()
    end)
  end)
end)

describe("a peer that stops in the middle of the handshake", function()
  it("holds its own stream only; spindle.timeout around s:handshake() ends it", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      -- half a ClientHello, taken from a real one
      local hello
      do
        local l <close> = assert(net.listen("127.0.0.1", 0))
        local _, lp = l:local_addr()
        local h = spindle.spawn(function()
          local a <close> = assert(l:accept())
          return a:read_some()
        end)
        pcall(spindle.timeout, 0.3, tls.connect, "127.0.0.1", lp,
              {context = T.client_ctx()})
        hello = h:join()
      end
      assert.truthy(#hello > 100)
      local c <close> = assert(net.connect("127.0.0.1", port))
      c:write(hello:sub(1, #hello // 2))
      local s <close> = assert(srv:accept())
      local ok, err = pcall(spindle.timeout, 0.2, s.handshake, s)
      assert.is_false(ok)
      assert.truthy(spindle.is_timeout(err))
      -- the others are served meanwhile
      local h = spindle.spawn(function()
        local a <close> = assert(srv:accept())
        a:write("next\n")
      end)
      local g <close> = assert(tls.connect("localhost", port, {context = T.client_ctx(), timeout = 10}))
      assert.equal("next", g:read_line())
      h:join()
      -- the rest of the hello later: the handshake goes on where it was
      c:write(hello:sub(#hello // 2 + 1))
      local h2 = spindle.spawn(function() return s:handshake() end)
      local reply = assert(c:read_some())
      assert.equal("\22\3\3", reply:sub(1, 3)) -- the ServerHello record
      -- (the client behind `hello` is gone: the handshake cannot finish)
      c:close()
      local r = table.pack(h2:join())
      assert.is_nil(r[1])
    end)
  end)

  it("tls.connect's timeout covers a server that stops mid-handshake", function()
    run(function()
      local srv, port = echo_server()
      local head = true
      local rport, stop = relay(port, pass, function(d, to) -- server hello only
        if head then head = false; return to:write(d:sub(1, 20)) end
        return true
      end)
      local c, msg, code = tls.connect("localhost", rport, {context = T.client_ctx(), timeout = 0.3})
      assert.is_nil(c)
      assert.same({"timeout", "ETIMEDOUT"}, {msg, code})
      stop()
      srv:close()
    end)
  end)
end)

describe("aborts and timeouts at every await", function()
  it("connect: aborted or timed out in the TCP connect or in the handshake", function()
    run(function()
      local silent <close> = assert(net.listen("127.0.0.1", 0))
      local _, sport = silent:local_addr()
      local held = {}
      local acc = spindle.spawn(function()
        while true do held[#held + 1] = silent:accept() end
      end)
      -- in the handshake (the server never answers)
      local h = spindle.spawn(function()
        return tls.connect("127.0.0.1", sport, {context = T.client_ctx()})
      end)
      spindle.sleep(0.05)
      assert.equal("waiting", h:status())
      assert.truthy(H.msg_has(spindle.dump(), "tls handshake 127.0.0.1:" .. sport))
      h:abort()
      assert.is_false((h:result()))
      local ok, err = pcall(spindle.timeout, 0.05, tls.connect, "127.0.0.1", sport,
                            {context = T.client_ctx()})
      assert.is_false(ok)
      assert.truthy(spindle.is_timeout(err))
      -- in the TCP connect (aborted at once, before it could complete)
      local h2 = spindle.spawn(function()
        return tls.connect("localhost", sport, {context = T.client_ctx()})
      end)
      spindle.yield()
      h2:abort()
      assert.is_false((h2:result()))
      acc:abort()
      for _, s in ipairs(held) do s:close() end
    end)
  end)

  it("handshake: an aborted s:handshake() can be awaited again", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {tls = T.server_ctx()}))
      local _, port = srv:local_addr()
      local plain <close> = assert(net.connect("127.0.0.1", port))
      local s <close> = assert(srv:accept())
      local h = spindle.spawn(function() return s:handshake() end)
      spindle.sleep(0.02)
      h:abort()
      assert.is_false((h:result()))
      -- now a real client on that same connection, via STARTTLS-style wrap
      local c = spindle.spawn(function()
        return tls.wrap(plain, {context = T.client_ctx(), servername = "localhost", timeout = 10})
      end)
      assert.is_true(s:handshake())
      assert.truthy(c:join())
      s:write("done\n")
      assert.equal("done", plain:read_line())
    end)
  end)

  it("read and write: aborted and timed out, the stream stays usable", function()
    run(function()
      local c, s = pair()
      local r = spindle.spawn(function() return c:read(6) end)
      s:write("abc")
      spindle.sleep(0.02)
      r:abort()
      assert.is_false((r:result()))
      s:write("def")
      assert.equal("abcdef", c:read(6))
      -- more than loopback's socket buffers can take, so the write waits
      local big = string.rep("w", 16 * 1024 * 1024)
      local ok, err = pcall(spindle.timeout, 0.05, c.write, c, big)
      assert.is_false(ok)
      assert.truthy(spindle.is_timeout(err))
      local r2 = spindle.spawn(function() return s:read(#big + 1) end)
      assert.is_true(c:write("!")) -- after the abandoned write, in order
      assert.equal(big .. "!", r2:join())
      c:close(); s:close()
    end)
  end)
end)

describe("bulk", function()
  it("16 MiB each way at once, byte-exact", function()
    run(function()
      local c, s = pair()
      local unit = {}
      for i = 0, 250 do unit[#unit + 1] = string.char((i * 7) % 256) end
      unit = table.concat(unit) -- 251 bytes: records never line up with it
      local n = 16 * 1024 * 1024
      local a = string.rep(unit, n // #unit + 1):sub(1, n)
      local b = a:reverse()
      local w1 = spindle.spawn(function() return c:write(a) end)
      local w2 = spindle.spawn(function() return s:write(b) end)
      local r1 = spindle.spawn(function() return s:read(n) end)
      local got_b = c:read(n)
      assert.is_true(w1:join())
      assert.is_true(w2:join())
      local got_a = r1:join()
      assert.equal(n, #got_a)
      assert.is_true(got_a == a)
      assert.is_true(got_b == b)
      c:close(); s:close()
    end)
  end)
end)

describe("many connections", function()
  it("1,000 concurrent TLS connections (fewer under sanitizers)", function()
    local n = (T.ENV == "plain") and 1000 or 200
    run(function()
      local srv, port, results = echo_server(T.server_ctx())
      local cctx = T.client_ctx()
      local clients = {}
      for i = 1, n do
        clients[i] = spindle.spawn(function()
          local c <close> = assert(tls.connect("localhost", port, {context = cctx, timeout = 60}))
          c:write("client ", i, "\n")
          return c:read_line()
        end)
      end
      for i = 1, n do assert.equal("client " .. i, clients[i]:join()) end
      spindle.sleep(0.05)
      local eof = 0
      for i = 1, n do if results[i] == "EOF" then eof = eof + 1 end end
      assert.equal(n, eof)
      srv:close()
    end)
  end)
end)
