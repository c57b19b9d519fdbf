-- spec/20-net-cancel_spec.lua -- cancellation safety of stream operations
-- (issue 3, docs/io.md): aborting or timing out a task blocked in read_*
-- loses no buffered byte and leaves the stream usable; an aborted write
-- finishes in the background, in order, and the next write waits for it;
-- I/O that completes at once still yields to others
-- (docs/blocking.md#io-fairness).

local N = require "spec.helpers.net"
local spindle, net = N.spindle, N.net
local run, pair, fd_count = N.run, N.pair, N.fd_count

N.check_fds(_ENV)

describe("a read that times out", function()
  it("keeps the bytes that had arrived (read_line)", function()
    run(function()
      local c, s = pair()
      c:write("hel")
      local ok, err = pcall(spindle.timeout, 0.05, s.read_line, s)
      assert.is_false(ok)
      assert.is_true(spindle.is_timeout(err))
      c:write("lo\nnext\n")
      assert.equal("hello", s:read_line())
      assert.equal("next", s:read_line())
      c:close(); s:close()
    end)
  end)

  it("keeps the bytes that had arrived (read(n), read_until, read_all)", function()
    run(function()
      local c, s = pair()
      c:write("abc")
      assert.is_false(pcall(spindle.timeout, 0.05, s.read, s, 6))
      c:write("def")
      assert.equal("abcdef", s:read(6))
      c:write("x-")
      assert.is_false(pcall(spindle.timeout, 0.05, s.read_until, s, "--"))
      c:write("-y")
      assert.equal("x", s:read_until("--"))
      assert.is_false(pcall(spindle.timeout, 0.05, s.read_all, s))
      c:write("z")
      c:close()
      assert.equal("yz", s:read_all())
      s:close()
    end)
  end)

  it("with a timeout around many reads, never loses or duplicates a byte", function()
    run(function()
      local c, s = pair()
      local sent = {}
      local w = spindle.spawn(function()
        for i = 1, 200 do
          local line = ("line %d %s"):format(i, string.rep("x", i % 37))
          sent[#sent + 1] = line
          -- in pieces, with pauses, so reads time out in the middle
          c:write(line:sub(1, 3)); spindle.sleep(0.001)
          c:write(line:sub(4), "\n")
        end
        c:shutdown()
      end)
      local got = {}
      while true do
        local ok, line, msg = pcall(spindle.timeout, 0.0005, s.read_line, s)
        if ok then
          if not line then assert.equal("eof", msg); break end
          got[#got + 1] = line
        else
          assert.is_true(spindle.is_timeout(line))
        end
      end
      w:join()
      assert.same(sent, got)
      c:close(); s:close()
    end)
  end)
end)

describe("a read with another delimiter after a timed-out one", function()
  it("searches the buffer from its start", function()
    run(function()
      local c, s = pair()
      c:write("first\nsecond:")
      -- read_until scans all of it for "::", finds none, times out
      assert.is_false(pcall(spindle.timeout, 0.02, s.read_until, s, "::"))
      assert.equal("first", s:read_line())
      c:write(":third\n")
      assert.equal("second", s:read_until("::"))
      assert.equal("third", s:read_line())
      c:close(); s:close()
    end)
  end)
end)

describe("an aborted reader", function()
  it("leaves the stream usable by another task, bytes intact", function()
    run(function()
      local c, s = pair()
      local r = spindle.spawn(function() return s:read(10) end)
      c:write("12345")
      spindle.sleep(0.02)
      assert.equal("waiting", r:status())
      assert.is_true(r:abort())
      assert.is_false((r:result()))
      c:write("67890")
      local r2 = spindle.spawn(function() return s:read(10) end)
      assert.equal("1234567890", r2:join())
      c:close(); s:close()
    end)
  end)

  it("a read that completed before the abort was delivered keeps its data", function()
    run(function()
      local c, s = pair()
      local got
      local r = spindle.spawn(function()
        got = s:read_line()
        spindle.sleep(1) -- the abort is raised here
      end)
      spindle.sleep(0.01)
      c:write("data\n")
      spindle.sleep(0.01) -- r's read completes and it goes to sleep
      r:abort()
      r:result()
      assert.equal("data", got)
      c:close(); s:close()
    end)
  end)
end)

describe("an aborted or timed-out write", function()
  it("finishes in the background; the next write follows it in order", function()
    run(function()
      local c, s = pair()
      local big = string.rep("a", 8 * 1024 * 1024)
      local ok, err = pcall(spindle.timeout, 0.05, c.write, c, big)
      assert.is_false(ok)
      assert.is_true(spindle.is_timeout(err))
      -- the next write waits for the abandoned one, then goes out after it
      local w = spindle.spawn(function() return c:write("tail") end)
      spindle.sleep(0.02)
      assert.equal("waiting", w:status())
      local total = #big + 4
      local data = {}
      local n = 0
      while n < total do
        local d = assert(s:read_some())
        data[#data + 1] = d
        n = n + #d
      end
      assert.is_true(w:join())
      data = table.concat(data)
      assert.equal(total, #data)
      assert.equal(big, data:sub(1, #big))
      assert.equal("tail", data:sub(-4))
      c:close(); s:close()
    end)
  end)

  it("an abort of the writer task also lets shutdown wait for the data", function()
    run(function()
      local c, s = pair()
      local big = string.rep("b", 8 * 1024 * 1024)
      local w = spindle.spawn(function() return c:write(big) end)
      spindle.sleep(0.02)
      assert.is_true(w:abort())
      local sh = spindle.spawn(function() return c:shutdown() end)
      local all = s:read_all()
      assert.equal(#big, #all)
      assert.is_true(sh:join())
      c:close(); s:close()
    end)
  end)

  it("closing the stream ends an abandoned write", function()
    run(function()
      local c, s = pair()
      local ok = pcall(spindle.timeout, 0.02, c.write, c, string.rep("c", 32 * 1024 * 1024))
      assert.is_false(ok)
      c:close()
      s:close()
    end)
  end)
end)

describe("shield", function()
  it("lets a write finish despite an abort", function()
    run(function()
      local c, s = pair()
      local big = string.rep("d", 4 * 1024 * 1024)
      local res
      local w = spindle.spawn(function()
        res = spindle.shield(function() return c:write(big) end)
      end)
      spindle.sleep(0.01)
      w:abort()
      local all = {}
      local n = 0
      while n < #big do local d = s:read_some(); all[#all + 1] = d; n = n + #d end
      w:result()
      assert.is_true(res)
      c:close(); s:close()
    end)
  end)
end)

describe("fairness", function()
  it("a task reading a fast stream lets the others run", function()
    run(function()
      local c, s = pair()
      local data = string.rep("q\n", 5000)
      c:write(data)
      c:shutdown()
      local ticks = 0
      local ticker = spindle.spawn(function()
        while true do ticks = ticks + 1; spindle.yield() end
      end)
      spindle.sleep(0.05) -- all of it is buffered in the kernel by now
      local lines = 0
      local before = ticks
      for _ in s:lines() do lines = lines + 1 end
      assert.equal(5000, lines)
      assert.is_true(ticks - before >= 5000 // 128 - 1, "ticker starved")
      ticker:abort()
      c:close(); s:close()
    end)
  end)
end)

describe("runtime shutdown", function()
  it("aborts tasks blocked in accept, read, write and connect and closes it all", function()
    run(function()
      local srv = assert(net.listen("127.0.0.1", 0, {backlog = 1}))
      local _, port = srv:local_addr()
      local c, s = pair()
      spindle.spawn(function() srv:accept() end)
      spindle.spawn(function() s:read_line() end)
      spindle.spawn(function() c:write(string.rep("x", 32 * 1024 * 1024)) end)
      for _ = 1, 5 do spindle.spawn(function() net.connect("127.0.0.1", port) end) end
      spindle.spawn(net.resolve, "localhost")
      spindle.sleep(0.05)
      -- main returns: everything above is aborted and unwound
    end)
  end)
end)
