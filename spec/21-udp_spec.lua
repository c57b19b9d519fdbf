-- spec/21-udp_spec.lua -- docs/io.md#udp: spindle.net.udp(), u:bind,
-- u:send_to, u:recv_from([max]) -> data, host, port, u:local_addr,
-- u:close (and <close>, __gc, runtime close).  Loopback only (127.0.0.1
-- and ::1), bounded in count and time.  Receiving is bounded: datagrams
-- nobody waits for stay in the kernel's socket buffer.  After every test
-- the process's open descriptors are back where they started.
local H = require "spec.helpers"
local spindle = H.spindle

local fds = H.fd_count

-- Bytes the kernel holds for the UDP socket bound to 127.0.0.1:port.
local function kernel_rx_queue(port)
  local want = string.format("0100007F:%04X", port)
  for line in io.lines("/proc/net/udp") do
    local loc, rx = line:match("^%s*%d+:%s+(%x+:%x+)%s+%x+:%x+%s+%x+%s+%x+:(%x+)")
    if loc == want then return tonumber(rx, 16) end
  end
  return nil
end

local run = H.run_real
run(function() end) -- libuv's process-wide pipe, opened once

-- A bound receiver and a sender on 127.0.0.1 (or host).
local function pair(host)
  host = host or "127.0.0.1"
  local a = spindle.net.udp()
  assert(a:bind(host, 0))
  local b = spindle.net.udp()
  assert(b:bind(host, 0))
  return a, b
end

describe("spindle.net.udp", function()
  H.check_fds(_ENV)

  it("binds, reports its local address, and sends and receives datagrams", function()
    run(function()
      local a, b = pair()
      local _ca <close> = a
      local _cb <close> = b
      local ah, ap = a:local_addr()
      assert.are.equal("127.0.0.1", ah)
      assert.is_true(math.type(ap) == "integer" and ap > 0)
      local bh, bp = b:local_addr()
      assert.is_true(b:send_to("hello", ah, ap))
      local data, host, port = a:recv_from()
      assert.are.equal("hello", data)
      assert.are.equal(bh, host)
      assert.are.equal(bp, port)
      -- and back
      assert.is_true(a:send_to("world", host, port))
      assert.are.same({"world", ah, ap}, {b:recv_from()})
    end)
  end)

  it("works over IPv6 loopback", function()
    run(function()
      local a, b = pair("::1")
      local _ca <close> = a
      local _cb <close> = b
      local ah, ap = a:local_addr()
      assert.are.equal("::1", ah)
      assert.is_true(b:send_to("six", "::1", ap))
      local data, host = a:recv_from()
      assert.are.equal("six", data)
      assert.are.equal("::1", host)
    end)
  end)

  it("keeps datagram boundaries; empty, binary and large datagrams", function()
    run(function()
      local a, b = pair()
      local _ca <close> = a
      local _cb <close> = b
      local _, ap = a:local_addr()
      local bin = {}
      for i = 0, 255 do bin[#bin + 1] = string.char(i) end
      bin = table.concat(bin)
      local msgs = {"", "one", bin, ("z"):rep(60000), "last"}
      for _, m in ipairs(msgs) do assert.is_true(b:send_to(m, "127.0.0.1", ap)) end
      for _, m in ipairs(msgs) do
        local got = a:recv_from()
        assert.are.equal(#m, #got)
        assert.is_true(got == m)
      end
    end)
  end)

  it("recv_from(max) truncates a longer datagram; the rest is discarded", function()
    run(function()
      local a, b = pair()
      local _ca <close> = a
      local _cb <close> = b
      local _, ap = a:local_addr()
      b:send_to("abcdef", "127.0.0.1", ap)
      b:send_to("next", "127.0.0.1", ap)
      assert.are.equal("abc", (a:recv_from(3)))
      assert.are.equal("next", (a:recv_from(100)))
    end)
  end)

  it("recv_from waits for a datagram while other tasks run", function()
    run(function()
      local a, b = pair()
      local _ca <close> = a
      local _cb <close> = b
      local _, ap = a:local_addr()
      local ticks = 0
      local reader = spindle.spawn(function() return a:recv_from() end)
      for _ = 1, 3 do spindle.sleep(0.01); ticks = ticks + 1 end
      assert.are.equal("waiting", reader:status())
      b:send_to("late", "127.0.0.1", ap)
      assert.are.equal("late", (reader:join()))
      assert.are.equal(3, ticks)
    end)
  end)

  it("serves concurrent readers first come, first served", function()
    run(function()
      local a, b = pair()
      local _ca <close> = a
      local _cb <close> = b
      local _, ap = a:local_addr()
      local hs = {}
      for i = 1, 5 do hs[i] = spindle.spawn(function() return (a:recv_from()) end) end
      spindle.sleep(0.01)
      for i = 1, 5 do b:send_to("m" .. i, "127.0.0.1", ap) end
      for i = 1, 5 do assert.are.equal("m" .. i, hs[i]:join()) end
    end)
  end)

  it("buffers nothing nobody asked for: unread datagrams stay in the kernel", function()
    run(function()
      local a, b = pair()
      local _ca <close> = a
      local _cb <close> = b
      local _, ap = a:local_addr()
      for i = 1, 100 do assert.is_true(b:send_to("d" .. i, "127.0.0.1", ap)) end
      spindle.sleep(0.02)
      local q0 = kernel_rx_queue(ap)
      assert.is_true(q0 ~= nil and q0 > 0)
      assert.are.equal("d1", (a:recv_from()))
      spindle.sleep(0.02)
      local q1 = kernel_rx_queue(ap)
      -- only the one datagram asked for left the kernel
      assert.is_true(q1 > 0 and q1 < q0, ("%d -> %d"):format(q0, q1))
      for i = 2, 100 do assert.are.equal("d" .. i, (a:recv_from())) end
      assert.are.equal(0, kernel_rx_queue(ap))
    end)
  end)

  it("an aborted reader loses nothing: the next datagram goes to the next reader", function()
    run(function()
      local a, b = pair()
      local _ca <close> = a
      local _cb <close> = b
      local _, ap = a:local_addr()
      local h = spindle.spawn(function() return a:recv_from() end)
      spindle.sleep(0.01)
      h:abort()
      local ok, err = h:result()
      assert.is_false(ok)
      assert.is_true(spindle.is_cancelled(err))
      b:send_to("kept", "127.0.0.1", ap)
      assert.are.equal("kept", (a:recv_from()))
    end)
  end)

  it("a timeout on recv_from raises and leaves the socket usable", function()
    run(function()
      local a, b = pair()
      local _ca <close> = a
      local _cb <close> = b
      local _, ap = a:local_addr()
      local ok, err = pcall(spindle.timeout, 0.03, a.recv_from, a)
      assert.is_false(ok)
      assert.is_true(spindle.is_timeout(err))
      b:send_to("after", "127.0.0.1", ap)
      assert.are.equal("after", (spindle.timeout(2, a.recv_from, a)))
    end)
  end)

  it("close wakes a reader with nil, 'closed', 'ECANCELED'; later calls say closed", function()
    run(function()
      local a = spindle.net.udp()
      assert(a:bind("127.0.0.1", 0))
      local h = spindle.spawn(function() return a:recv_from() end)
      spindle.sleep(0.01)
      assert.is_true(a:close())
      assert.is_true(a:close())
      assert.are.same({nil, "closed", "ECANCELED"}, {h:join()})
      assert.are.same({nil, "closed", "ECANCELED"}, {a:recv_from()})
      assert.are.same({nil, "closed", "ECANCELED"}, {a:send_to("x", "127.0.0.1", 9)})
      assert.are.same({nil, "closed", "ECANCELED"}, {a:bind("127.0.0.1", 0)})
      assert.are.same({nil, "closed", "ECANCELED"}, {a:local_addr()})
      assert.truthy(tostring(a):find("closed", 1, true))
    end)
  end)

  it("is closed by <close>, __gc and the runtime's close", function()
    run(function()
      local before = fds()
      do
        local u <close> = spindle.net.udp()
        assert(u:bind("127.0.0.1", 0))
        assert.are.equal(before + 1, fds())
      end
      spindle.sleep(0) -- close callbacks run on the next poll
      assert.are.equal(before, fds())
      do local u = spindle.net.udp(); assert(u:bind("127.0.0.1", 0)); u = nil end
      collectgarbage(); collectgarbage()
      spindle.sleep(0)
      assert.are.equal(before, fds())
    end)
    local keep
    run(function()
      keep = spindle.net.udp()
      assert(keep:bind("127.0.0.1", 0))
      spindle.spawn(function() keep:recv_from() end) -- aborted at the end
    end)
    assert.are.same({nil, "closed", "ECANCELED"}, {run(function() return keep:recv_from() end)})
  end)

  it("I/O failures return nil, message, code", function()
    run(function()
      local a, b = pair()
      local _ca <close> = a
      local _cb <close> = b
      local _, ap = a:local_addr()
      local c <close> = spindle.net.udp()
      local ok, msg, code = c:bind("127.0.0.1", ap)
      assert.is_nil(ok)
      assert.are.equal("string", type(msg))
      assert.are.equal("EADDRINUSE", code)
      ok, msg, code = b:send_to(("x"):rep(70000), "127.0.0.1", ap)
      assert.is_nil(ok)
      assert.are.equal("EMSGSIZE", code)
      ok, msg, code = b:send_to("x", "no-such-host.invalid", ap)
      assert.is_nil(ok)
      assert.are.equal("string", type(msg))
      assert.truthy(code:find("^EAI_"), code)
      local d <close> = spindle.net.udp()
      local h, msg2, code2 = d:local_addr() -- not bound yet
      assert.is_nil(h)
      assert.are.equal("string", type(msg2))
      assert.are.equal("string", type(code2))
    end)
  end)

  it("accepts 'localhost' (127.0.0.1) and '*' (0.0.0.0) without resolving", function()
    run(function()
      local a <close> = spindle.net.udp()
      assert.is_true(a:bind("*", 0))
      local _, ap = a:local_addr()
      local b <close> = spindle.net.udp()
      assert.is_true(b:send_to("lh", "localhost", ap))
      assert.are.equal("lh", (a:recv_from()))
    end)
  end)

  it("resolves names for bind and send_to (the first address)", function()
    run(function()
      local a = spindle.net.udp()
      local _ca <close> = a
      assert.is_true(a:bind("LOCALHOST", 0)) -- not special-cased: resolved
      local host, port = a:local_addr()
      assert.truthy(host == "127.0.0.1" or host == "::1", host)
      local b = spindle.net.udp()
      local _cb <close> = b
      assert.is_true(b:send_to("by name", "LOCALHOST", port))
      assert.are.equal("by name", (a:recv_from()))
      local c = spindle.net.udp()
      local _cc <close> = c
      local ok, msg, code = c:bind("no-such-host.invalid", 0)
      assert.is_nil(ok)
      assert.are.equal("string", type(msg))
      assert.truthy(code:find("^EAI_"), code)
    end)
  end)

  it("an abort while a name is being resolved is cancelled at once and leaks nothing", function()
    run(function()
      local u = spindle.net.udp()
      local _cu <close> = u
      local hs = {}
      for i = 1, 5 do
        hs[i] = spindle.spawn(function() return u:send_to("x", "no-such-host.invalid", 9) end)
      end
      spindle.yield()
      for i = 1, 5 do hs[i]:abort() end
      for i = 1, 5 do
        local ok, err = hs[i]:result()
        assert.is_false(ok)
        assert.is_true(spindle.is_cancelled(err))
      end
    end)
  end)

  it("spindle.dump names a waiting recv_from and its address", function()
    run(function()
      local u = spindle.net.udp()
      local _cu <close> = u
      assert(u:bind("127.0.0.1", 0))
      local _, port = u:local_addr()
      local h = spindle.spawn(function() return u:recv_from() end)
      spindle.sleep(0.01)
      assert.truthy(spindle.dump():find("udp recv_from 127.0.0.1:" .. port, 1, true))
      h:abort()
    end)
  end)

  it("raises for bad arguments, outside a runtime and outside a task", function()
    run(function()
      local u <close> = spindle.net.udp()
      for _, args in ipairs{{"127.0.0.1", -1}, {"127.0.0.1", 65536}, {"127.0.0.1", 1.5},
                            {{}, 1}, {"127.0.0.1"}} do
        local ok, err = pcall(u.bind, u, table.unpack(args, 1, 2))
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "bad argument"), err)
        ok, err = pcall(u.send_to, u, "x", table.unpack(args, 1, 2))
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "bad argument"), err)
      end
      for _, max in ipairs{0, -1, 0.5, "x"} do
        local ok, err = pcall(u.recv_from, u, max)
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "bad argument"), err)
      end
      local ok, err = pcall(u.send_to, u, {}, "127.0.0.1", 9)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "bad argument"), err)
      ok, err = pcall(u.recv_from, {})
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "bad argument"), err)
    end)
    local ok, err = pcall(spindle.net.udp)
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, "not inside a runtime"), err)
    local keep
    run(function() keep = spindle.net.udp() end)
    ok, err = pcall(keep.recv_from, keep)
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, "not inside a task"), err)
  end)
end)
