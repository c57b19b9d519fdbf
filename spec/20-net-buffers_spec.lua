-- spec/20-net-buffers_spec.lua -- docs/io.md "Bounded buffering": a
-- stream's read buffer starts small, grows while reads fill it, and is
-- given back once drained, so an idle connection holds none -- and none of
-- that changes what a read returns.  Large transfers in uneven pieces from
-- python3 (a peer nobody here wrote), read(n) of 1 MiB, read_until across
-- every growth step, small messages after a bulk transfer, the same over
-- TLS, and the memory of 200 idle keep-alive connections; through
-- net._buffers, that an idle stream holds no read buffer and no write
-- request, and that the per-runtime cache they come from stays bounded.  Loopback only;
-- descriptors are back where they were after every spec.

local T = require "spec.helpers.tls"
local spindle, net, H = T.spindle, T.net, T.H
local run, tls_pair = T.run, T.pair
local pair = require("spec.helpers.net").pair

T.setup(_ENV) -- certificates for the TLS specs; checks descriptors

-- Less data under the sanitizers and valgrind.
local MIB = H.ENV == "plain" and 16 or (H.ENV == "asan" and 4 or 1)
-- Under AddressSanitizer freed memory sits in quarantine, so the RSS says
-- nothing about what spindle keeps: there the memory bound is not
-- asserted (every connection's traffic still is).
local RSS_CHECKS = H.ENV == "plain"

-- The byte pattern both sides know: byte k of a transfer is k % 251.
local BLOCK
do
  local b = {}
  for i = 0, 250 do b[#b + 1] = string.char(i) end
  BLOCK = table.concat(b):rep(4200) -- a little more than 1 MiB
end
local function expected(off, n)
  local i = off % 251
  assert(n <= #BLOCK - i)
  return BLOCK:sub(i + 1, i + n)
end

-- python3 without the sanitizer preload of the asan stage.
local function python(src, args)
  local argv = {"-u", "LD_PRELOAD", "timeout", "120", "python3", "-c", src}
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
  return assert(spindle.process.spawn("env", argv,
    {stdin = "ignore", stdout = "pipe", stderr = "inherit"}))
end

local function finish(p)
  local out = p.stdout:read_all()
  p.stdout:close()
  local code = p:wait()
  return code, out
end

-- Connects, sends `total` bytes of the pattern in pieces of 1..maxchunk
-- bytes (seeded), pausing now and then so that reads see partial data,
-- half-closes, waits for the server to close, prints "sent N".
local PATTERN = [==[
import socket, sys, random, time
port, total, seed, maxchunk = map(int, sys.argv[1:5])
rnd = random.Random(seed)
block = bytes(range(251)) * 4200
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
off = 0
while off < total:
    n = min(rnd.randint(1, maxchunk), total - off)
    i = off % 251
    s.sendall(block[i:i + n])
    off += n
    if rnd.random() < 0.02:
        time.sleep(0.002)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print("sent %d" % off, flush=True)
]==]

-- Connects and sends records, each `len` bytes of letters and "\r\n\r\n",
-- for every length on the command line, as one byte stream cut into
-- pieces of 1..maxchunk bytes (seeded) with pauses; then as PATTERN.
local RECORDS = [==[
import socket, sys, random, time
port, seed, maxchunk = map(int, sys.argv[1:4])
lens = [int(a) for a in sys.argv[4:]]
rnd = random.Random(seed)
letters = bytes(range(97, 123)) * 10000
data = b"".join(letters[n % 26:n % 26 + n] + b"\r\n\r\n" for n in lens)
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
off = 0
while off < len(data):
    n = rnd.randint(1, maxchunk)
    s.sendall(data[off:off + n])
    off += n
    if rnd.random() < 0.05:
        time.sleep(0.002)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print("sent %d" % len(data), flush=True)
]==]

local LETTERS = ("abcdefghijklmnopqrstuvwxyz"):rep(10000)
local function record(n) return LETTERS:sub(n % 26 + 1, n % 26 + n) end

-- The lengths of RECORDS: around every size a buffer has (512 inside the
-- stream, then 4 KiB doubling to 64 KiB, then more for a reader that
-- needs it), so that delimiters fall across each boundary.
local LENS = {0, 1, 100}
for _, edge in ipairs({512, 4096, 8192, 16384, 32768, 65536}) do
  for d = -6, 2 do LENS[#LENS + 1] = edge + d end
end
for _, n in ipairs({5, 70000, 3, 150000, 600, 9000, 2}) do LENS[#LENS + 1] = n end

-- A listener and the accepted stream of the python peer.
local function serve_one(src, args)
  local srv = assert(net.listen("127.0.0.1", 0))
  local _, port = srv:local_addr()
  local p = python(src, {port, table.unpack(args)})
  local s = assert(srv:accept())
  srv:close()
  return s, p
end

describe("stream read buffers", function()
  it("a large transfer in uneven pieces arrives whole and in order, read_some of any max", function()
    run(function()
      local total = MIB * 1024 * 1024
      local s, p = serve_one(PATTERN, {total, 11, 70000})
      local maxes = {1, 7, 511, 512, 513, 4096, 65536, 100000, 3000}
      local off, i = 0, 0
      while true do
        i = i + 1
        local max = maxes[i % #maxes + 1]
        local data, msg, code = s:read_some(max)
        if not data then
          assert.equal("eof", msg)
          assert.equal("EOF", code)
          break
        end
        assert.is_true(#data >= 1 and #data <= max)
        if data ~= expected(off, #data) then
          error(("wrong bytes at offset %d (%d bytes)"):format(off, #data))
        end
        off = off + #data
      end
      assert.equal(total, off)
      s:close()
      local code, out = finish(p)
      assert.equal(0, code)
      assert.equal("sent " .. total .. "\n", out)
    end)
  end)

  it("read(n) of 1 MiB from small pieces, after a small read, and read_all of the rest", function()
    run(function()
      local MB = 1024 * 1024
      local total = 3 * MB + 12345
      local s, p = serve_one(PATTERN, {total, 12, 3000})
      assert.equal(expected(0, 10), s:read(10))
      spindle.sleep(0.05) -- bytes pile up behind a small buffer
      assert.equal(expected(10, MB), s:read(MB))
      assert.equal(expected(10 + MB, MB), s:read(MB))
      assert.equal(expected(10 + 2 * MB, 1), s:read(1))
      local rest = assert(s:read_all())
      assert.equal(total - (11 + 2 * MB), #rest)
      local want = {}
      for off = 11 + 2 * MB, total - 1, 65536 do
        want[#want + 1] = expected(off, math.min(65536, total - off))
      end
      assert.is_true(rest == table.concat(want))
      assert.same({nil, "eof", "EOF", ""}, {s:read(1)})
      s:close()
      assert.equal(0, (finish(p)))
    end)
  end)

  it("read_until finds delimiters across every growth step of the buffer", function()
    run(function()
      local s, p = serve_one(RECORDS, {13, 3000, table.unpack(LENS)})
      for _, n in ipairs(LENS) do
        local got, msg = s:read_until("\r\n\r\n", 200000)
        assert(got, msg)
        if got ~= record(n) then
          error(("record of %d bytes: got %d bytes"):format(n, #got))
        end
      end
      assert.same({nil, "eof", "EOF"}, {s:read_until("\r\n\r\n")})
      s:close()
      assert.equal(0, (finish(p)))
    end)
  end)

  it("read_until: a record longer than max is ELINE even while the buffer is small", function()
    run(function()
      local s, p = serve_one(RECORDS, {14, 700, 100, 3000, 7})
      assert.equal(record(100), s:read_until("\r\n\r\n", 1000))
      local x, msg, code = s:read_until("\r\n\r\n", 1000)
      assert.same({nil, "line too long", "ELINE"}, {x, msg, code})
      -- the bytes stay buffered: a larger max takes the record
      assert.equal(record(3000), s:read_until("\r\n\r\n", 4000))
      assert.equal(record(7), s:read_until("\r\n\r\n", 1000))
      s:close()
      assert.equal(0, (finish(p)))
    end)
  end)

  it("small messages after a bulk transfer, and a burst of many at once", function()
    run(function()
      local c, s = pair()
      local big = BLOCK:sub(1, 1024 * 1024)
      local w = spindle.spawn(function() assert(c:write(big)) end)
      local got = {}
      local n = 0
      while n < #big do
        local d = assert(s:read_some())
        got[#got + 1] = d
        n = n + #d
      end
      w:join()
      assert.is_true(table.concat(got) == big)
      for i = 1, 50 do -- one short message at a time: the buffer shrinks back
        c:write("ping ", i, "\n")
        assert.equal("ping " .. i, s:read_line())
      end
      local lines = {}
      for i = 1, 2000 do lines[i] = "line " .. i .. "\n" end
      c:write(table.concat(lines)) -- far more than the first buffer holds
      for i = 1, 2000 do assert.equal("line " .. i, s:read_line()) end
      c:write("tail")
      c:shutdown()
      assert.equal("tail", s:read_all())
      c:close()
      s:close()
    end)
  end)

  it("over TLS: read(n) of 1 MiB, read_until across growth, then short lines", function()
    run(function()
      local c, s = assert(tls_pair())
      local MB = 1024 * 1024
      local w = spindle.spawn(function()
        for off = 0, MB - 1, 10000 do -- records of up to 10,000 bytes
          assert(c:write(expected(off, math.min(10000, MB - off))))
        end
        for _, n in ipairs(LENS) do assert(c:write(record(n), "\r\n\r\n")) end
        for i = 1, 20 do assert(c:write("ping ", i, "\n")) end
      end)
      assert.is_true(s:read(MB) == expected(0, MB))
      for _, n in ipairs(LENS) do
        local got = assert(s:read_until("\r\n\r\n", 200000))
        assert.is_true(got == record(n), "record of " .. n .. " bytes")
      end
      for i = 1, 20 do assert.equal("ping " .. i, s:read_line()) end
      w:join()
      c:close()
      s:close()
    end)
  end)

  -- net._buffers(): what the running runtime's streams hold (read buffer
  -- bytes, write/shutdown requests) and what its cache keeps.
  local function held() return net._buffers() end
  -- Waits (yielding, no clock) until cond() is true; a bounded number of
  -- short sleeps, generous for a loaded machine.
  local function until_(cond, what)
    for _ = 1, 5000 do
      if cond() then return end
      spindle.sleep(0.002)
    end
    error("never: " .. what)
  end

  it("an idle stream holds no buffer and no request; a request/response loop reuses one cached block", function()
    run(function()
      local c, s = pair()
      local b = held()
      assert.same({buffered = 0, requests = 0, cached = 0, cached_requests = 0}, b)
      for i = 1, 200 do
        assert(c:write("GET /", i, " HTTP/1.1\r\n\r\n"))
        assert.equal("GET /" .. i .. " HTTP/1.1", s:read_line())
        assert.equal("", s:read_line())
        assert(s:write("ok ", i, "\n"))
        assert.equal("ok " .. i, c:read_line())
        b = held()
        -- both ends idle again: nothing held; the one block of the first
        -- size both ends read into went back to the cache and came out
        -- of it again for every message (no new block per message)
        assert.equal(0, b.buffered)
        assert.equal(0, b.requests)
        assert.equal(512, b.cached)
        assert.equal(0, b.cached_requests) -- every write went at once
      end
      -- while a read waits for more, the block is held; then given back
      assert(c:write("abc"))
      local r = spindle.spawn(function() return s:read(6) end)
      until_(function() return held().buffered == 512 end, "a buffer held")
      assert(c:write("def"))
      assert.equal("abcdef", r:join())
      assert.equal(0, held().buffered)
      c:close()
      s:close()
    end)
  end)

  it("a write the kernel cannot take holds a request until it completes, a shutdown one until it is done", function()
    run(function()
      local c, s = pair()
      local big = ("x"):rep(8 * 1024 * 1024) -- far more than the socket buffers
      local w = spindle.spawn(function() return c:write(big) end)
      until_(function() return held().requests == 1 end, "a pending write")
      local n = 0
      while n < #big do n = n + #assert(s:read_some()) end
      assert.is_true(w:join())
      local b = held()
      assert.equal(0, b.requests)
      assert.equal(1, b.cached_requests) -- back in the cache, for the next
      assert(c:shutdown())
      b = held()
      assert.equal(0, b.requests)
      assert.equal(1, b.cached_requests) -- the same one, taken and back
      local _, msg, code = s:read_some()
      assert.equal("eof", msg)
      assert.equal("EOF", code)
      assert.equal(0, held().buffered)
      c:close()
      s:close()
    end)
  end)

  it("closing a stream while its write waits gives the request back; the writer gets closed", function()
    run(function()
      for _, how in ipairs({"close", "close_reset", "abort"}) do
        local c, s = pair()
        assert(c:write("hi")) -- a buffer given back: the cache is made
        assert.equal("hi", s:read(2))
        local big = ("y"):rep(8 * 1024 * 1024)
        local w = spindle.spawn(function() return c:write(big) end)
        until_(function() return held().requests == 1 end, "a pending write")
        if how == "abort" then -- the write goes on in the background
          w:abort()
          assert.equal(1, held().requests)
          c:close()
        else
          c[how](c)
          local ok, msg, code = w:join()
          assert.is_nil(ok)
          assert.equal("closed", msg)
          assert.equal("ECANCELED", code)
        end
        -- libuv cancels the write (its callback comes before the close
        -- callback): the request is back, nothing is held
        until_(function() return held().requests == 0 end, "the request back")
        assert.equal(1, held().cached_requests)
        s:close()
      end
    end)
  end)

  it("the cache keeps at most 64 KiB of first-size blocks after 200 streams drained at once", function()
    run(function()
      local N = 200
      local pairs_, readers = {}, {}
      for i = 1, N do
        local c, s = pair()
        pairs_[i] = {c, s}
        assert(c:write("12345"))
        readers[i] = spindle.spawn(function() return s:read(10) end)
      end
      until_(function() return held().buffered == N * 512 end,
             "every stream holds its 5 bytes")
      for i = 1, N do assert(pairs_[i][1]:write("67890")) end
      for i = 1, N do assert.equal("1234567890", readers[i]:join()) end
      local b = held()
      assert.equal(0, b.buffered)
      assert.equal(64 * 1024, b.cached) -- 128 blocks kept, the rest freed
      for i = 1, N do pairs_[i][1]:close(); pairs_[i][2]:close() end
    end)
  end)

  it("over TLS an idle stream holds no read buffer and no request either", function()
    run(function()
      local c, s = assert(tls_pair())
      for i = 1, 20 do
        assert(c:write("ping ", i, "\n"))
        assert.equal("ping " .. i, s:read_line())
        assert(s:write("pong ", i, "\n"))
        assert.equal("pong " .. i, c:read_line())
        local b = held()
        assert.equal(0, b.buffered)
        assert.equal(0, b.requests)
      end
      -- ciphertext the kernel cannot take goes out with a request
      local big = ("z"):rep(4 * 1024 * 1024)
      local w = spindle.spawn(function() return c:write(big) end)
      until_(function() return held().requests == 1 end, "a pending write")
      assert.is_true(s:read(#big) == big)
      assert.is_true(w:join())
      local b = held()
      assert.equal(0, b.buffered)
      assert.equal(0, b.requests)
      assert.is_true(b.cached_requests >= 1)
      c:close()
      s:close()
    end)
  end)

  it("net._buffers outside a runtime raises", function()
    assert.has_error(function() net._buffers() end,
                     "spindle.net._buffers: not inside a runtime")
  end)

  -- In a child process of its own: a fresh heap, so that memory freed by
  -- the specs before cannot hide what the connections take.
  local IDLE = [==[
local spindle = require "spindle"
local net = spindle.net
local N, size = tonumber(arg[1]), tonumber(arg[2])
local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return assert(tonumber(s:match("VmRSS:%s*(%d+)")))
end
local function heap_kb()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end
spindle.run(function()
  local request = ("GET / HTTP/1.1\r\nx: %s\r\n\r\n"):format(("y"):rep(size - 23))
  assert(#request == size)
  local answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
  local srv = assert(net.listen("127.0.0.1", 0, {backlog = 256}))
  local _, port = srv:local_addr()
  local served, tasks = 0, {}
  local acceptor = spindle.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      tasks[#tasks + 1] = spindle.spawn(function()
        local s <close> = c
        while s:read_until("\r\n\r\n") do -- then waits here, idle
          assert(s:write(answer))
          served = served + 1
        end
      end)
    end
  end)
  local function request_on(c)
    assert(c:write(request))
    assert(c:read(#answer) == answer)
  end
  do -- the paths once, before counting
    local c <close> = assert(net.connect("127.0.0.1", port))
    request_on(c)
  end
  spindle.sleep(0.05)
  local rss0, heap0 = rss_kb(), heap_kb()
  local conns = {}
  for i = 1, N do
    conns[i] = assert(net.connect("127.0.0.1", port))
    request_on(conns[i])
    -- the requests read are garbage at once: collect it as we go, so that
    -- the RSS counts what the connections keep
    if i % 10 == 0 then collectgarbage("collect") end
  end
  spindle.sleep(0.1) -- every server task waits in read_until
  local rss1, heap1 = rss_kb(), heap_kb()
  for i = 1, N do request_on(conns[i]) end -- the idle ones still work
  for i = 1, N do conns[i]:close() end
  srv:close()
  acceptor:join()
  for _, t in ipairs(tasks) do t:join() end
  print(("served %d rss %d heap %.0f"):format(served, rss1 - rss0, heap1 - heap0))
end)
]==]

  for _, size in ipairs({60, 3000}) do
    it(("200 idle keep-alive connections after a %d-byte request hold little memory"):format(size), function()
      local N = 200
      local r = H.lua_child(IDLE, {args = N .. " " .. size})
      assert(r.ok, H.describe(r))
      local served, rss, heap = r.stdout:match("^served (%d+) rss (%-?%d+) heap (%-?%d+)")
      assert(served, H.describe(r))
      assert.equal(2 * N + 1, tonumber(served))
      -- what the C side keeps per connection (both ends: two streams),
      -- without the Lua heap (tasks, stream objects); it was about 10 KiB
      -- while every stream kept a 64 KiB buffer, now about 3
      local per = (tonumber(rss) - tonumber(heap)) / N
      if RSS_CHECKS then
        assert.is_true(per <= 5, ("%.2f KiB per idle connection (RSS +%s KiB, Lua heap +%s KiB)")
          :format(per, rss, heap))
      end
    end)
  end
end)
