-- spec/53-floods_spec.lua -- slow peers and floods (issue 9), with python3
-- as the peer (a real one nobody here wrote), loopback only, real clock:
--
--   * slowloris: ten peers trickle a never-ending request head, one byte
--     every 20 ms; a server that reads each head under one absolute
--     deadline (spindle.timeout around the whole read, the pattern of
--     docs/io.md "Deadlines against slow peers") cuts each at the deadline
--     although bytes kept arriving, and answers a normal client meanwhile;
--   * 100 MB without a newline to a read_line reader: ELINE once `max`
--     bytes are buffered, the peer held back by TCP flow control, then the
--     reader drains it all with read_some -- memory stays bounded
--     throughout (peak RSS measured with VmHWM);
--   * a UDP flood to a reader that takes one datagram every 10 ms: the
--     kernel drops what does not fit, spindle buffers nothing; memory
--     stays bounded and the reader still gets the end marker.
local H = dofile("spec/helpers/init.lua")
local spindle = H.spindle
local net = spindle.net

local SLOW = H.ENV ~= "plain" -- sanitizers: more slack, less data
local FLOOD_MB = H.ENV == "valgrind" and 10 or 100
-- Under AddressSanitizer freed memory sits in quarantine (256 MB), so the
-- RSS says nothing about what spindle keeps: there the RSS bounds are not
-- asserted (the results and the flow-control checks still are).
local RSS_CHECKS = H.ENV ~= "asan"

local function status_kb(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return assert(tonumber(s:match(field .. ":%s*(%d+)")), "no " .. field)
end

-- Resets the peak RSS (VmHWM) to the current RSS; false if not possible.
local function reset_peak()
  local f = io.open("/proc/self/clear_refs", "w")
  if not f then return false end
  local ok = f:write("5")
  f:close()
  return ok ~= nil
end

-- Peak RSS since the reset (or, without clear_refs, the highest sample).
local peak_sampled = 0
local function sample_peak()
  local r = status_kb("VmRSS")
  if r > peak_sampled then peak_sampled = r end
end

-- python3 without the sanitizer preload of the asan stage (LeakSanitizer
-- would report python's own leaks and change its exit status).
local function python(src, args, opts)
  local argv = {"-u", "LD_PRELOAD", "python3", "-c", src}
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
  opts = opts or {}
  opts.stdout = opts.stdout or "pipe"
  opts.stderr = opts.stderr or "inherit"
  opts.stdin = "ignore"
  return assert(spindle.process.spawn("env", argv, opts))
end

-- A peer that trickles a request head that never ends: the request line,
-- then "X-a: b\r\n" forever, one byte every `interval` seconds.  When the
-- server drops it, it prints "cut <seconds> <bytes>"; after `limit`
-- seconds it gives up: "not cut <bytes>".
local SLOWLORIS = [[
import socket, sys, time
port, interval, limit = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
head = b"GET / HTTP/1.1\r\n"
t0 = time.monotonic()
sent = 0
try:
    while time.monotonic() - t0 < limit:
        data = head[sent:sent + 1] if sent < len(head) else b"X-a: b\r\n"[(sent - len(head)) % 8:][:1]
        s.send(data)
        sent += 1
        time.sleep(interval)
    print("not cut %d" % sent, flush=True)
except OSError:
    print("cut %.3f %d" % (time.monotonic() - t0, sent), flush=True)
]]

-- Sends `total` bytes of "x" (no newline) and half-closes; prints "sent N"
-- then waits for the server to close.
local BIGSEND = [[
import socket, sys
port, total = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
chunk = b"x" * (1 << 20)
sent = 0
try:
    while sent < total:
        n = min(len(chunk), total - sent)
        s.sendall(chunk[:n])
        sent += n
    s.shutdown(socket.SHUT_WR)
    print("sent %d" % sent, flush=True)
    s.recv(1)
except OSError as e:
    print("error %s after %d" % (e, sent), flush=True)
]]

-- Floods a UDP port with 1 KiB datagrams for `seconds`, prints "sent N",
-- then sends "END" every 10 ms (until killed).
local UDPFLOOD = [[
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * 1024
sent = 0
t0 = time.monotonic()
while time.monotonic() - t0 < seconds:
    for _ in range(100):
        try:
            s.sendto(payload, ("127.0.0.1", port))
            sent += 1
        except OSError:
            pass
print("sent %d" % sent, flush=True)
while True:
    s.sendto(b"END", ("127.0.0.1", port))
    time.sleep(0.01)
]]

-- A request head: lines up to an empty one, at most 100 lines of 8 KiB.
local function read_head(s)
  local lines = {}
  while true do
    local line, err = s:read_line(8192)
    if not line then return nil, err end
    if line == "" then return lines end
    if #lines == 100 then return nil, "too many header lines" end
    lines[#lines + 1] = line
  end
end

describe("slow peers and floods", function()
  setup(function()
    -- libuv's process-wide descriptors, once
    H.run_real(function()
      local p = python("pass", {})
      p:wait(); p:close()
      local srv = assert(net.listen("127.0.0.1", 0)); srv:close()
    end)
  end)
  H.check_fds(_ENV)

  it("an absolute deadline cuts ten trickling peers; a normal client is served meanwhile", function()
    local DEADLINE = 0.5
    local SLACK = SLOW and 5 or 1.5
    local PEERS = 10
    local cuts, fast = {}, nil
    H.run_real(function()
      local srv = assert(net.listen("127.0.0.1", 0))
      local _, port = srv:local_addr()
      local handlers = {}
      local function handle(s, i)
        local s <close> = s
        local t0 = spindle.now()
        local got = 0
        local ok, head, err = pcall(spindle.timeout, DEADLINE, function()
          local h, e = read_head(s)
          return h, e
        end)
        local elapsed = spindle.now() - t0
        if ok and head then
          s:write("HTTP/1.1 204 No Content\r\n\r\n")
          return {served = true, lines = #head, elapsed = elapsed}
        end
        if not ok then
          assert(spindle.is_timeout(head), tostring(head))
          -- how much of the head had arrived: what is buffered now
          got = #(s:read_some(65536) or "")
          s:close_reset()
          return {cut = true, elapsed = elapsed, buffered = got}
        end
        return {error = err, elapsed = elapsed}
      end
      local acceptor = spindle.spawn(function()
        for i = 1, PEERS + 1 do
          local s = assert(srv:accept())
          handlers[#handlers + 1] = spindle.spawn(handle, s, i)
        end
      end)
      local peers = {}
      for i = 1, PEERS do
        peers[i] = python(SLOWLORIS, {port, 0.02, 10})
      end
      spindle.sleep(0.1) -- the slow peers are connected and trickling
      local t0 = spindle.now()
      local c <close> = assert(net.connect("127.0.0.1", port))
      c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local status = c:read_line()
      fast = {status = status, elapsed = spindle.now() - t0}
      acceptor:join()
      local results = {}
      for i, h in ipairs(handlers) do results[i] = h:join() end
      for i, p in ipairs(peers) do
        local out = p.stdout:read_all()
        local code = p:wait()
        p:close()
        cuts[#cuts + 1] = {peer = out, code = code}
      end
      srv:close()
      local n_cut = 0
      for _, r in ipairs(results) do
        if r.cut then
          n_cut = n_cut + 1
          assert.is_true(r.elapsed >= DEADLINE - 0.002,
            ("cut before the deadline: %.3f s"):format(r.elapsed))
          assert.is_true(r.elapsed <= DEADLINE + SLACK,
            ("cut %.3f s after the deadline"):format(r.elapsed - DEADLINE))
        else
          assert.is_true(r.served == true, "a handler ended with " .. tostring(r.error))
        end
      end
      assert.are.equal(PEERS, n_cut)
    end)
    assert.are.equal("HTTP/1.1 204 No Content", fast.status)
    assert.is_true(fast.elapsed < DEADLINE, ("the normal client waited %.3f s"):format(fast.elapsed))
    for i, c in ipairs(cuts) do
      local secs, bytes = c.peer:match("^cut (%S+) (%d+)")
      assert.is_truthy(secs, "peer " .. i .. " was not cut: " .. c.peer)
      -- it kept sending up to the cut: more bytes than fit in one read
      -- timeout of a naive server, yet cut at the deadline
      assert.is_true(tonumber(bytes) >= 10, "peer " .. i .. " sent only " .. bytes .. " bytes")
      assert.are.equal(0, c.code)
    end
  end)

  it(("%d MB without a newline to a read_line reader: ELINE, flow control, bounded memory"):format(FLOOD_MB), function()
    local TOTAL = FLOOD_MB * 1024 * 1024
    local LIMIT_KB = 24 * 1024
    local m = {}
    collectgarbage(); collectgarbage()
    H.run_real(function()
      local srv = assert(net.listen("127.0.0.1", 0))
      local _, port = srv:local_addr()
      local p = python(BIGSEND, {port, TOTAL})
      local s <close> = assert(srv:accept())
      srv:close()
      local rss0 = status_kb("VmRSS")
      local have_peak = reset_peak()
      peak_sampled = rss0
      local line, err, code = s:read_line()
      m.eline = {line, err, code}
      -- the peer is held back: nothing more is read while nobody asks
      spindle.sleep(0.3)
      sample_peak()
      local ok = pcall(spindle.timeout, 0.05, p.stdout.read_some, p.stdout)
      m.peer_blocked = not ok
      m.rss_held = status_kb("VmRSS") - rss0
      -- a second read_line: the bytes are still there, same answer
      local l2, e2, c2 = s:read_line()
      m.eline2 = {l2, e2, c2}
      -- drain everything
      local n = 0
      while true do
        local d, e = s:read_some(65536)
        if not d then m.drain_end = e break end
        n = n + #d
        if n % (8 * 1024 * 1024) < 65536 then sample_peak() end
      end
      m.received = n
      sample_peak()
      m.peak = (have_peak and status_kb("VmHWM") or peak_sampled) - rss0
      s:close() -- the peer waits for this, then exits
      m.peer = p.stdout:read_all()
      m.code = p:wait()
      p:close()
    end)
    print(("\n  flood: %d MB; RSS +%d KiB while the peer was held; peak RSS +%d KiB while draining")
      :format(FLOOD_MB, m.rss_held, m.peak))
    assert.are.same({nil, "line too long", "ELINE"}, m.eline)
    assert.are.same({nil, "line too long", "ELINE"}, m.eline2)
    assert.is_true(m.peer_blocked, "the peer finished sending while nobody read: buffered?")
    if RSS_CHECKS then
      assert.is_true(m.rss_held < 4096, ("RSS grew %d KiB while the peer was held"):format(m.rss_held))
      assert.is_true(m.peak < LIMIT_KB, ("peak RSS grew %d KiB draining %d MB"):format(m.peak, FLOOD_MB))
    end
    assert.are.equal(TOTAL, m.received)
    assert.are.equal("eof", m.drain_end)
    assert.are.equal("sent " .. TOTAL .. "\n", m.peer)
    assert.are.equal(0, m.code)
  end)

  it("a UDP flood to a slow reader: the kernel drops, spindle buffers nothing", function()
    local SECONDS = 1.5
    local LIMIT_KB = 8 * 1024
    local m = {received = 0}
    collectgarbage(); collectgarbage()
    H.run_real(function()
      local u = net.udp()
      assert(u:bind("127.0.0.1", 0))
      local _, port = u:local_addr()
      local rss0 = status_kb("VmRSS")
      local have_peak = reset_peak()
      peak_sampled = rss0
      local p = python(UDPFLOOD, {port, SECONDS})
      local t0 = spindle.now()
      while true do
        local d = spindle.timeout(20, u.recv_from, u, 2048)
        if d == "END" then break end
        m.received = m.received + 1
        if m.received % 20 == 0 then sample_peak() end
        spindle.sleep(0.01) -- a slow reader
      end
      m.elapsed = spindle.now() - t0
      sample_peak()
      m.peak = (have_peak and status_kb("VmHWM") or peak_sampled) - rss0
      p:kill("KILL")
      m.peer = p.stdout:read_all()
      p:wait()
      p:close()
      -- the socket still works
      local v = net.udp()
      assert(v:send_to("after", "127.0.0.1", port))
      local d
      repeat d = u:recv_from(2048) until d ~= "END"
      m.after = d
      v:close(); u:close()
    end)
    local sent = tonumber(m.peer:match("sent (%d+)"))
    print(("\n  udp flood: %s datagrams sent in %.1f s, %d received by a reader taking one per 10 ms; peak RSS +%d KiB")
      :format(tostring(sent), SECONDS, m.received, m.peak))
    assert.is_truthy(sent, "the flooder printed: " .. m.peer)
    assert.is_true(sent > 20 * m.received, "no flood: sent " .. sent .. ", received " .. m.received)
    if RSS_CHECKS then
      assert.is_true(m.peak < LIMIT_KB, ("peak RSS grew %d KiB during the flood"):format(m.peak))
    end
    assert.are.equal("after", m.after)
  end)
end)
