-- spec/20-net-tcp_spec.lua -- docs/io.md, TCP: listen, accept, connect,
-- resolve and every stream method, sentence by sentence.  Loopback only;
-- after every test the process has exactly the descriptors it had before.

local N = require "spec.helpers.net"
local spindle, net = N.spindle, N.net
local run, pair, fd_count = N.run, N.pair, N.fd_count

N.check_fds(_ENV)

-- ------------------------------------------------------------ listen

describe("spindle.net.listen", function()
  it("binds, reports host and port, and accepts (the docs/io.md example)", function()
    run(function()
      local srv = assert(net.listen("127.0.0.1", 0))
      local host, port = srv:local_addr()
      assert.equal("127.0.0.1", host)
      assert.is_true(math.type(port) == "integer" and port > 0)
      spindle.spawn(function()
        local c <close> = assert(srv:accept())
        for line in c:lines() do c:write(line, "\n") end
      end)
      local s <close> = assert(net.connect("127.0.0.1", port, {timeout = 5}))
      s:write("hello\n")
      assert.equal("hello", s:read_line())
      srv:close()
    end)
  end)

  it("takes a backlog option and a name such as localhost", function()
    run(function()
      local srv = assert(net.listen("localhost", 0, {backlog = 16, reuseaddr = true}))
      local host, port = srv:local_addr()
      assert.is_string(host)
      local c <close> = assert(net.connect(host, port))
      local a <close> = assert(srv:accept())
      srv:close()
    end)
  end)

  it("listens on IPv6 loopback when the system has it", function()
    run(function()
      local srv = net.listen("::1", 0)
      if not srv then return end -- no IPv6 on this machine
      local host, port = srv:local_addr()
      assert.equal("::1", host)
      local c <close> = assert(net.connect("::1", port))
      local a <close> = assert(srv:accept())
      assert.equal("::1", (a:peer()))
      srv:close()
    end)
  end)

  it("returns nil, message, EADDRINUSE for a port in use", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0))
      local _, port = srv:local_addr()
      local x, msg, code = net.listen("127.0.0.1", port)
      assert.is_nil(x)
      assert.is_string(msg)
      assert.equal("EADDRINUSE", code)
    end)
  end)

  it("accept returns nil, closed, ECANCELED when the listener is closed meanwhile", function()
    run(function()
      local srv = assert(net.listen("127.0.0.1", 0))
      local h = spindle.spawn(function() return table.pack(srv:accept()) end)
      spindle.sleep(0.01)
      srv:close()
      local r = h:join()
      assert.same({n = 3, nil, "closed", "ECANCELED"}, r)
      assert.equal(true, srv:close()) -- idempotent
      local x, msg = srv:accept()
      assert.is_nil(x); assert.equal("closed", msg)
    end)
  end)

  it("a second concurrent accept raises socket busy", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0))
      local h = spindle.spawn(function() return srv:accept() end)
      spindle.sleep(0.01)
      local ok, err = pcall(srv.accept, srv)
      assert.is_false(ok)
      assert.matches("socket busy", err)
      h:abort()
    end)
  end)

  it("is <close>-able and collected listeners release their socket", function()
    local port
    run(function()
      do
        local srv <close> = assert(net.listen("127.0.0.1", 0))
        port = select(2, srv:local_addr())
      end
      local srv2 = assert(net.listen("127.0.0.1", port)) -- free again
      srv2 = nil
      collectgarbage(); collectgarbage()
      spindle.sleep(0.01)
      local srv3 <close> = assert(net.listen("127.0.0.1", port))
    end)
  end)
end)

-- ------------------------------------------------------------ connect

describe("spindle.net.connect", function()
  it("returns nil, message, ECONNREFUSED when nobody listens", function()
    run(function()
      local srv = assert(net.listen("127.0.0.1", 0))
      local _, port = srv:local_addr()
      srv:close()
      spindle.sleep(0.01)
      local s, msg, code = net.connect("127.0.0.1", port)
      assert.is_nil(s)
      assert.equal("127.0.0.1:" .. port .. ": connection refused", msg)
      assert.equal("ECONNREFUSED", code)
    end)
  end)

  it("resolves names asynchronously and tries every address", function()
    run(function()
      -- localhost may resolve to ::1 too; only 127.0.0.1 listens, so a
      -- connect that stopped at the first refused address would fail
      local srv <close> = assert(net.listen("127.0.0.1", 0))
      local _, port = srv:local_addr()
      local other = spindle.spawn(function() spindle.sleep(0); return "ran" end)
      local s <close> = assert(net.connect("localhost", port, {timeout = 5}))
      assert.equal("ran", other:join())
      local a <close> = assert(srv:accept())
      assert.equal("127.0.0.1", (s:peer()))
    end)
  end)

  it("returns an error for a name that does not resolve", function()
    run(function()
      local s, msg, code = net.connect("no-such-host.invalid", 80, {timeout = 10})
      assert.is_nil(s)
      assert.is_string(msg)
      assert.matches("^EAI_", code)
    end)
  end)

  it("times out with nil, timeout, ETIMEDOUT (timeout option)", function()
    run(function()
      -- a listener that never accepts with a backlog of 1: once its queue
      -- is full the kernel drops new SYNs, so a connect hangs
      local srv <close> = assert(net.listen("127.0.0.1", 0, {backlog = 1}))
      local _, port = srv:local_addr()
      local held, got = {}, nil
      for _ = 1, 8 do
        local s, msg, code = net.connect("127.0.0.1", port, {timeout = 0.2})
        if not s then got = {msg, code}; break end
        held[#held + 1] = s
      end
      assert.same({"timeout", "ETIMEDOUT"}, got)
      for _, s in ipairs(held) do s:close() end
    end)
  end)

  it("can be aborted while connecting; nothing leaks", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0, {backlog = 1}))
      local _, port = srv:local_addr()
      local held = {}
      for _ = 1, 8 do
        local h = spindle.spawn(function() return net.connect("127.0.0.1", port) end)
        spindle.sleep(0.05)
        if h:status() == "waiting" then
          assert.is_true(h:abort())
          assert.equal("cancelled", (select(2, h:result())) and "cancelled")
          break
        end
        held[#held + 1] = h:join()
      end
      for _, s in ipairs(held) do s:close() end
    end)
  end)

  it("checks its arguments", function()
    run(function()
      assert.has_error(function() net.connect({}, 2) end)
      assert.has_error(function() net.connect("127.0.0.1", "x") end)
      assert.has_error(function() net.connect("127.0.0.1", 70000) end)
      assert.has_error(function() net.connect("127.0.0.1", 80, {timeout = "1"}) end)
      assert.has_error(function() net.connect("127.0.0.1", 80, {timeout = 0}) end)
      assert.has_error(function() net.connect("127.0.0.1", 80, {timeout = -1}) end)
      assert.has_error(function() net.connect("127.0.0.1", 80, {timeout = 0 / 0}) end)
      assert.has_error(function() net.connect("127.0.0.1", 80, 5) end)
      assert.has_error(function() net.connect_unix({}) end)
      assert.has_error(function() net.listen_unix(nil) end)
      assert.has_error(function() net.resolve() end)
      assert.has_error(function() net.listen("127.0.0.1", -1) end)
      assert.has_error(function() net.listen("127.0.0.1", 0, {backlog = 0}) end)
    end)
    local ok, err = pcall(net.connect, "127.0.0.1", 80)
    assert.is_false(ok)
    assert.matches("not inside a task", err)
  end)
end)

-- ------------------------------------------------------------ resolve

describe("spindle.net.resolve", function()
  it("returns an array of {address, family}", function()
    run(function()
      local r = assert(net.resolve("localhost"))
      assert.is_true(#r >= 1)
      for _, a in ipairs(r) do
        assert.is_string(a.address)
        assert.is_true(a.family == "inet" or a.family == "inet6")
      end
      local n = assert(net.resolve("127.0.0.1"))
      assert.same({{address = "127.0.0.1", family = "inet"}}, n)
      local x, msg, code = net.resolve("no-such-host.invalid")
      assert.is_nil(x); assert.is_string(msg); assert.matches("^EAI_", code)
    end)
  end)

  it("can be aborted while resolving", function()
    run(function()
      local h = spindle.spawn(net.resolve, "localhost")
      spindle.yield()
      h:abort()
      assert.is_false((h:result()))
    end)
  end)
end)

-- ------------------------------------------------------------ reads

describe("stream reads", function()
  it("read(n) returns exactly n bytes; at EOF first nil, eof, EOF, partial", function()
    run(function()
      local c, s = pair()
      c:write("abcdefgh")
      c:shutdown()
      assert.equal("abc", s:read(3))
      assert.equal("", s:read(0))
      assert.equal("def", s:read(3))
      assert.same({n = 4, nil, "eof", "EOF", "gh"}, table.pack(s:read(3)))
      assert.same({n = 4, nil, "eof", "EOF", ""}, table.pack(s:read(1)))
      c:close(); s:close()
    end)
  end)

  it("read_some returns 1..max bytes as soon as any are there", function()
    run(function()
      local c, s = pair()
      c:write("hello")
      local got = s:read_some()
      assert.is_true(#got >= 1 and #got <= 5)
      while #got < 5 do got = got .. s:read_some() end
      assert.equal("hello", got)
      c:write("0123456789")
      local a = s:read_some(4)
      assert.is_true(#a >= 1 and #a <= 4)
      c:close()
      local rest = a
      while true do
        local d, msg, code = s:read_some(4)
        if not d then assert.equal("eof", msg); assert.equal("EOF", code); break end
        assert.is_true(#d <= 4)
        rest = rest .. d
      end
      assert.equal("0123456789", rest)
      s:close()
    end)
  end)

  it("read_line strips \\n and a trailing \\r, returns the last unterminated line, then eof", function()
    run(function()
      local c, s = pair()
      c:write("one\ntwo\r\n\nthree")
      c:shutdown()
      assert.equal("one", s:read_line())
      assert.equal("two", s:read_line())
      assert.equal("", s:read_line())
      assert.equal("three", s:read_line())
      assert.same({n = 3, nil, "eof", "EOF"}, table.pack(s:read_line()))
      c:close(); s:close()
    end)
  end)

  it("read_line: a line longer than max is ELINE and its bytes stay buffered", function()
    run(function()
      local c, s = pair()
      c:write("0123456789\nok\n")
      assert.same({n = 3, nil, "line too long", "ELINE"}, table.pack(s:read_line(5)))
      assert.equal("0123456789", s:read_line(10)) -- exactly max is fine
      assert.equal("ok", s:read_line(5))
      -- a long line that is still arriving is reported once max is passed
      c:write(string.rep("x", 100))
      assert.same({n = 3, nil, "line too long", "ELINE"}, table.pack(s:read_line(50)))
      assert.equal(string.rep("x", 100), s:read(100))
      c:close(); s:close()
    end)
  end)

  it("read_line's default max is 65536", function()
    run(function()
      local c, s = pair()
      local w = spindle.spawn(function()
        c:write(string.rep("a", 65536), "\n", string.rep("b", 65537), "\n")
      end)
      assert.equal(65536, #s:read_line())
      assert.same({n = 3, nil, "line too long", "ELINE"}, table.pack(s:read_line()))
      assert.equal(65537, #s:read_line(70000))
      w:join()
      c:close(); s:close()
    end)
  end)

  it("read_until consumes the delimiter and does not return it", function()
    run(function()
      local c, s = pair()
      c:write("a::b::::c")
      c:shutdown()
      assert.equal("a", s:read_until("::"))
      assert.equal("b", s:read_until("::"))
      assert.equal("", s:read_until("::"))
      assert.equal("c", s:read_until("::"))
      assert.same({n = 3, nil, "eof", "EOF"}, table.pack(s:read_until("::")))
      c:close(); s:close()
    end)
  end)

  it("read_until finds a delimiter split across packets and honours max", function()
    run(function()
      local c, s = pair()
      local w = spindle.spawn(function()
        c:write("head\r"); spindle.sleep(0.01)
        c:write("\n\r"); spindle.sleep(0.01)
        c:write("\nbody\r\n\r\n")
      end)
      assert.equal("head", s:read_until("\r\n\r\n"))
      assert.same({n = 3, nil, "line too long", "ELINE"}, table.pack(s:read_until("\r\n\r\n", 3)))
      assert.equal("body", s:read_until("\r\n\r\n", 4))
      w:join()
      c:close(); s:close()
    end)
  end)

  it("read_all returns everything until EOF", function()
    run(function()
      local c, s = pair()
      local data = string.rep("0123456789", 100000)
      local w = spindle.spawn(function() c:write(data); c:close() end)
      assert.equal(data, s:read_all())
      assert.equal("", s:read_all())
      w:join()
      s:close()
    end)
  end)

  it("read_all with max: too long is nil, too long, ENOBUFS and keeps the bytes", function()
    run(function()
      local c, s = pair()
      c:write("0123456789")
      c:close()
      assert.same({n = 3, nil, "too long", "ENOBUFS"}, table.pack(s:read_all(5)))
      assert.equal("0123456789", s:read_all(10))
      s:close()
    end)
  end)

  it("lines iterates over read_line; the reason it stopped is read_line's next result", function()
    run(function()
      local c, s = pair()
      c:write("a\nb\r\nc")
      c:shutdown()
      local got = {}
      for line in s:lines() do got[#got + 1] = line end
      assert.same({"a", "b", "c"}, got)
      assert.equal("eof", select(2, s:read_line()))
      c:close(); s:close()
    end)
  end)

  it("lines(max) stops at a line that is too long", function()
    run(function()
      local c, s = pair()
      c:write("ab\nabcdef\n")
      c:shutdown()
      local got = {}
      for line in s:lines(3) do got[#got + 1] = line end
      assert.same({"ab"}, got)
      assert.equal("ELINE", select(3, s:read_line(3)))
      assert.equal("abcdef", s:read_line())
      c:close(); s:close()
    end)
  end)

  it("checks read arguments", function()
    run(function()
      local c, s = pair()
      assert.has_error(function() s:read() end)
      assert.has_error(function() s:read(-1) end)
      assert.has_error(function() s:read_some(0) end)
      assert.has_error(function() s:read_line("x") end)
      assert.has_error(function() s:read_until("") end)
      assert.has_error(function() s:write({}) end)
      assert.has_error(function() s.read_line({}) end)
      c:close(); s:close()
    end)
  end)
end)

-- ------------------------------------------------------------ writes

describe("stream writes", function()
  it("write takes several strings and numbers and returns true", function()
    run(function()
      local c, s = pair()
      assert.is_true(c:write("a", "b", 1, 2.5, "\n"))
      assert.equal("ab12.5", s:read_line())
      assert.is_true(c:write())
      local many = {}
      for i = 1, 40 do many[i] = tostring(i % 10) end
      assert.is_true(c:write(table.unpack(many)))
      assert.equal(table.concat(many), s:read(40))
      c:close(); s:close()
    end)
  end)

  it("write returns only when the kernel accepted everything (backpressure)", function()
    run(function()
      local c, s = pair()
      local big = string.rep("x", 16 * 1024 * 1024)
      local done = false
      local w = spindle.spawn(function() assert(c:write(big)); done = true end)
      spindle.sleep(0.2)
      assert.is_false(done, "write returned while the peer read nothing")
      local n = 0
      while n < #big do n = n + #s:read_some() end
      w:join()
      assert.is_true(done)
      assert.equal(#big, n)
      c:close(); s:close()
    end)
  end)

  it("a reader that never reads stops reading: buffering is bounded", function()
    run(function()
      local c, s = pair()
      -- s reads one line with a small max and then stops reading: the
      -- writer must stay blocked (kernel buffers only), not be drained
      -- into the runtime's memory
      local done = false
      local w = spindle.spawn(function()
        c:write("first\n", string.rep("y", 32 * 1024 * 1024))
        done = true
      end)
      assert.equal("first", s:read_line(10))
      spindle.sleep(0.3)
      assert.is_false(done)
      s:close()
      c:close()
      w:join()
    end)
  end)

  it("shutdown half-closes the write side; the other direction still works", function()
    run(function()
      local c, s = pair()
      c:write("request")
      assert.is_true(c:shutdown())
      assert.is_true(c:shutdown()) -- again: still true
      assert.equal("request", s:read_all())
      s:write("response")
      s:close()
      assert.equal("response", c:read_all())
      local ok, msg, code = c:write("late")
      assert.is_nil(ok); assert.is_string(msg); assert.is_string(code)
      c:close()
    end)
  end)

  it("writing to a peer that closed returns an error, never SIGPIPE", function()
    run(function()
      local c, s = pair()
      s:close()
      local ok, msg, code
      for _ = 1, 100 do
        ok, msg, code = c:write(string.rep("z", 65536))
        if not ok then break end
        spindle.sleep(0.005)
      end
      assert.is_nil(ok)
      assert.is_true(code == "EPIPE" or code == "ECONNRESET", code)
      -- the error sticks
      assert.is_nil((c:write("x")))
      c:close()
    end)
  end)
end)

-- ------------------------------------------------------------ close and misc

describe("stream close and options", function()
  it("close is idempotent; __close and __gc close too", function()
    run(function()
      local c, s = pair()
      assert.is_true(c:close())
      assert.is_true(c:close())
      assert.same({n = 3, nil, "closed", "EBADF"}, table.pack(c:read_line()))
      assert.same({n = 3, nil, "closed", "EBADF"}, table.pack(c:write("x")))
      assert.equal("eof", select(2, s:read_line()))
      do local s2 <close> = s end
      assert.equal("closed", select(2, s:read_some()))
      local c2, s2 = pair()
      c2, s2 = nil, nil
      collectgarbage(); collectgarbage()
    end)
  end)

  it("closing wakes a blocked reader and writer with nil, closed, ECANCELED", function()
    run(function()
      local c, s = pair()
      local r = spindle.spawn(function() return table.pack(s:read_line()) end)
      local w = spindle.spawn(function()
        return table.pack(s:write(string.rep("w", 32 * 1024 * 1024)))
      end)
      spindle.sleep(0.05)
      assert.equal("waiting", r:status())
      assert.equal("waiting", w:status())
      s:close()
      assert.same({n = 3, nil, "closed", "ECANCELED"}, r:join())
      assert.same({n = 3, nil, "closed", "ECANCELED"}, w:join())
      c:close()
    end)
  end)

  it("a second concurrent reader raises socket busy", function()
    run(function()
      local c, s = pair()
      local r = spindle.spawn(function() return s:read_line() end)
      spindle.sleep(0.05)
      local ok, err = pcall(s.read_some, s)
      assert.is_false(ok); assert.matches("socket busy", err)
      c:write("line\n")
      assert.equal("line", r:join())
      s:close(); c:close()
    end)
  end)

  it("concurrent writers are queued first come, first served, never interleaved", function()
    run(function()
      local c, s = pair()
      local N = 4 * 1024 * 1024 -- far more than the kernel takes at once
      local order = {}
      local function writer(tag, n)
        local ok = s:write(string.rep(tag, n))
        order[#order + 1] = tag
        return ok
      end
      local hs = {}
      for i, tag in ipairs({"a", "b", "c", "d"}) do
        hs[i] = spindle.spawn(writer, tag, i == 3 and 10 or N)
      end
      spindle.sleep(0.02)
      hs[4]:abort() -- queued: its bytes are never sent
      local got = {}
      local reader = spindle.spawn(function()
        local total = 0
        while total < 3 * N + 10 - N do
          local d = assert(c:read_some(1 << 20))
          got[#got + 1] = d
          total = total + #d
        end
      end)
      for i = 1, 3 do assert.is_true(hs[i]:join()) end
      assert.is_false((hs[4]:result()))
      reader:join()
      local all = table.concat(got)
      assert.equal(string.rep("a", N) .. string.rep("b", N) .. string.rep("c", 10), all)
      assert.same({"a", "b", "c"}, order)
      s:close(); c:close()
    end)
  end)

  it("a shutdown waits for the writes queued before it", function()
    run(function()
      local c, s = pair()
      local big = string.rep("z", 2 * 1024 * 1024)
      local w = spindle.spawn(function() return s:write(big) end)
      local sh = spindle.spawn(function() return s:shutdown() end)
      local data = assert(c:read_all(8 * 1024 * 1024))
      assert.equal(#big, #data)
      assert.is_true(w:join())
      assert.is_true(sh:join())
      s:close(); c:close()
    end)
  end)

  it("peer and local_addr return host and port", function()
    run(function()
      local c, s, port = pair()
      local h, p = c:peer()
      assert.equal("127.0.0.1", h); assert.equal(port, p)
      local h2, p2 = s:local_addr()
      assert.equal("127.0.0.1", h2); assert.equal(port, p2)
      assert.same({c:local_addr()}, {s:peer()})
      c:close(); s:close()
      assert.equal("closed", select(2, c:peer()))
    end)
  end)

  it("set_nodelay and set_keepalive return true", function()
    run(function()
      local c, s = pair()
      assert.is_true(c:set_nodelay(true))
      assert.is_true(c:set_nodelay(false))
      assert.is_true(c:set_keepalive(true, 30))
      assert.is_true(c:set_keepalive(true))
      assert.is_true(c:set_keepalive(false))
      assert.has_error(function() c:set_keepalive(true, 0) end)
      c:close(); s:close()
    end)
  end)

  it("tostring names the stream and says when it is closed", function()
    run(function()
      local c, s = pair()
      assert.matches("tcp", tostring(c))
      c:close()
      assert.matches("closed", tostring(c))
      s:close()
    end)
  end)

  it("streams left open are closed with the runtime", function()
    local keep = {}
    run(function()
      local c, s = pair()
      keep[1], keep[2] = c, s
      keep[3] = assert(net.listen("127.0.0.1", 0))
    end)
    assert.matches("closed", tostring(keep[1]))
    assert.matches("closed", tostring(keep[3]))
  end)

  it("a stream belongs to its runtime: another runtime's task gets an error", function()
    local a = spindle.runtime()
    local c, s
    a:spawn(function() c, s = pair() end)
    for _ = 1, 1000 do
      if a:step(0.01) == 0 then break end
    end
    assert.is_not_nil(c)
    local b = spindle.runtime()
    local ok, err = pcall(b.run, b, function() return c:read_line() end)
    b:close()
    assert.is_false(ok)
    assert.matches("another runtime", err)
    a:close()
    assert.matches("closed", tostring(c))
    assert.matches("closed", tostring(s))
  end)

  it("spindle.dump says what each task awaits", function()
    run(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0))
      local _, port = srv:local_addr()
      local c, s = pair()
      local tasks = {
        spindle.spawn(function() srv:accept() end),
        spindle.spawn(function() s:read_line() end),
        spindle.spawn(function() s:write(string.rep("x", 32 * 1024 * 1024)) end),
      }
      spindle.sleep(0.05)
      local d = spindle.dump()
      assert.matches("tcp accept 127%.0%.0%.1:" .. port, d)
      local _, cport = c:local_addr()
      assert.matches("tcp read 127%.0%.0%.1:" .. cport, d)
      assert.matches("tcp write 127%.0%.0%.1:", d)
      for _, h in ipairs(tasks) do h:abort() end
      c:close(); s:close()
    end)
  end)

  it("awaits outside a task raise", function()
    local keep
    run(function() keep = {pair()} end)
    local ok, err = pcall(keep[1].read_line, keep[1])
    assert.is_false(ok); assert.matches("not inside a task", err)
  end)

  it("an await behind a C call raises a clear error even when data is buffered", function()
    run(function()
      local c, s = pair()
      c:write("ready\n")
      spindle.sleep(0.01)
      local ok, err = pcall(table.sort, {1, 2, 3}, function(a, b)
        s:read_line()
        return a < b
      end)
      assert.is_false(ok)
      assert.matches("read_line", err)
      assert.matches("C%-call boundary", err)
      assert.equal("ready", s:read_line()) -- nothing was consumed
      c:close(); s:close()
    end)
  end)
end)
