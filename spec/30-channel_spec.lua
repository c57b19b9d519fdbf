-- spec/30-channel_spec.lua -- docs/sync.md#channels: spindle.channel, and its
-- cancellation safety (docs/sync.md).
local H = require "spec.helpers"
local spindle = H.spindle
local T = H.vtest

local function err_of(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok)
  return err
end

describe("§4 spindle.channel", function()
  it("is FIFO", T(function()
    local ch = spindle.channel()
    for i = 1, 100 do assert.is_true(ch:send(i)) end
    for i = 1, 100 do assert.equal(i, ch:recv()) end
  end))

  it("capacity nil means unbounded: send never waits", T(function()
    local ch = spindle.channel()
    for i = 1, 10000 do assert.is_true(ch:try_send(i)) end
    assert.equal(10000, #ch)
    assert.is_nil(ch:capacity())
    for i = 1, 10000 do assert.equal(i, ch:try_recv()) end
    assert.equal(0, #ch)
  end))

  it("send waits while full and returns true once there is room", T(function()
    local ch = spindle.channel(2)
    assert.equal(2, ch:capacity())
    local log = {}
    local h = spindle.spawn(function()
      for i = 1, 4 do
        log[#log + 1] = "send " .. i .. " " .. tostring(ch:send(i))
      end
    end)
    spindle.sleep(1)
    assert.same({"send 1 true", "send 2 true"}, log)
    assert.equal("waiting", h:status())
    assert.equal(2, #ch)
    assert.equal(1, ch:recv())
    spindle.sleep(1)
    assert.same({"send 1 true", "send 2 true", "send 3 true"}, log)
    assert.equal(2, ch:recv())
    assert.equal(3, ch:recv())
    assert.equal(4, ch:recv())
    h:join()
  end))

  it("recv waits for a value", T(function()
    local ch = spindle.channel(1)
    local h = spindle.spawn(function() return ch:recv() end)
    spindle.sleep(1)
    assert.equal("waiting", h:status())
    ch:send("v")
    assert.equal("v", h:join())
  end))

  it("capacity 0 is a rendezvous: send waits for a receiver", T(function()
    local ch = spindle.channel(0)
    assert.same({nil, "full"}, {ch:try_send(1)})
    local sent = false
    local s = spindle.spawn(function() sent = ch:send("x") end)
    spindle.sleep(1)
    assert.is_false(sent)
    assert.equal("x", ch:recv())
    s:join()
    assert.is_true(sent)
    local r = spindle.spawn(function() return ch:recv() end)
    spindle.yield()
    assert.is_true(ch:try_send("y"))
    assert.equal("y", r:join())
  end))

  it("send returns nil, 'closed' on a closed channel", T(function()
    local ch = spindle.channel(1)
    ch:close()
    assert.same({nil, "closed"}, {ch:send(1)})
    assert.same({nil, "closed"}, {ch:try_send(1)})
  end))

  it("a sender waiting on a full channel gets nil, 'closed' when it is closed", T(function()
    local ch = spindle.channel(1)
    ch:send(1)
    local h = spindle.spawn(function() return table.pack(ch:send(2)) end)
    spindle.yield()
    ch:close()
    assert.same({n = 2, nil, "closed"}, h:join())
    assert.equal(1, ch:recv()) -- the unsent value never entered the queue
    assert.same({nil, "closed"}, {ch:recv()})
  end))

  it("recv drains queued values after close, then returns nil, 'closed'", T(function()
    local ch = spindle.channel()
    ch:send("a"); ch:send("b")
    ch:close()
    assert.is_true(ch:is_closed())
    assert.equal("a", ch:recv())
    assert.equal("b", ch:try_recv())
    assert.same({nil, "closed"}, {ch:recv()})
    assert.same({nil, "closed"}, {ch:recv()})
    assert.same({nil, "closed"}, {ch:try_recv()})
  end))

  it("close wakes every waiting receiver with nil, 'closed'", T(function()
    local ch = spindle.channel()
    local hs = {}
    for i = 1, 3 do hs[i] = spindle.spawn(function() return table.pack(ch:recv()) end) end
    spindle.yield()
    ch:close()
    ch:close() -- idempotent
    for i = 1, 3 do assert.same({n = 2, nil, "closed"}, hs[i]:join()) end
  end))

  it("try_send and try_recv never wait", T(function()
    local ch = spindle.channel(1)
    assert.same({nil, "empty"}, {ch:try_recv()})
    assert.is_true(ch:try_send(1))
    assert.same({nil, "full"}, {ch:try_send(2)})
    assert.equal(1, ch:try_recv())
    -- they work outside tasks too
    local ch2 = spindle.channel()
    spindle.spawn(function() end):join()
    assert.is_true(ch2:try_send(5))
  end))

  it("#ch is the number of queued values", T(function()
    local ch = spindle.channel(3)
    assert.equal(0, #ch)
    ch:send(1); ch:send(2)
    assert.equal(2, #ch)
    ch:recv()
    assert.equal(1, #ch)
  end))

  it("nil cannot be sent", T(function()
    local ch = spindle.channel()
    assert.is_true(H.msg_has(err_of(ch.send, ch, nil), "cannot send nil"))
    assert.is_true(H.msg_has(err_of(ch.send, ch), "bad argument"))
    assert.is_true(H.msg_has(err_of(ch.try_send, ch, nil), "cannot send nil"))
    assert.equal(0, #ch)
    -- false and every other value can
    for _, v in ipairs({false, 0, "", {}, print}) do
      ch:send(v)
      assert.equal(v, ch:recv())
    end
  end))

  it("for v in ch:iter() receives until closed", T(function()
    local ch = spindle.channel(2)
    spindle.spawn(function()
      for i = 1, 10 do ch:send(i) end
      ch:close()
    end)
    local got = {}
    for v in ch:iter() do got[#got + 1] = v end
    assert.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, got)
  end))

  it("serves waiting receivers first come, first served", T(function()
    local ch = spindle.channel()
    local log = {}
    for i = 1, 5 do
      spindle.spawn(function() local v = ch:recv(); log[#log + 1] = i .. ":" .. v end)
    end
    spindle.yield()
    for i = 1, 5 do ch:send("v" .. i) end
    spindle.sleep(1)
    assert.same({"1:v1", "2:v2", "3:v3", "4:v4", "5:v5"}, log)
  end))

  it("serves waiting senders first come, first served", T(function()
    local ch = spindle.channel(1)
    ch:send(0)
    for i = 1, 5 do spindle.spawn(function() ch:send(i) end) end
    spindle.yield()
    local got = {}
    for _ = 0, 5 do got[#got + 1] = ch:recv() end
    assert.same({0, 1, 2, 3, 4, 5}, got)
  end))

  it("grows and shrinks its ring without losing order", T(function()
    local ch = spindle.channel()
    local n, k = 0, H.scale(1000) -- 100 under valgrind: still grows the ring
    for round = 1, 3 do
      for i = 1, 5 * k * round do ch:send(n + i) end
      for i = 1, 4 * k * round do assert.equal(n + i, ch:recv()) end
      for i = 1, k * round do assert.equal(n + 4 * k * round + i, ch:recv()) end
      n = n + 5 * k * round
      -- interleaved, wrapping around
      for i = 1, 100 do ch:send(i); ch:send(-i); assert.equal(i, ch:recv()); assert.equal(-i, ch:recv()) end
    end
    assert.equal(0, #ch)
  end))

  it("checks its arguments", function()
    assert.is_true(H.msg_names(err_of(spindle.channel, -1), "channel"))
    assert.is_true(H.msg_names(err_of(spindle.channel, 1.5), "channel"))
    assert.is_true(H.msg_names(err_of(spindle.channel, "x"), "channel"))
    local ch = spindle.channel()
    assert.is_true(H.msg_has(err_of(ch.recv, {}), "spindle.channel"))
    assert.is_true(H.msg_has(err_of(ch.send, ch, 1), "not inside a task"))
    assert.is_true(H.msg_has(err_of(ch.recv, ch), "not inside a task"))
  end)

  it("names itself in tostring", function()
    local ch = spindle.channel(4)
    ch:try_send(1)
    assert.equal("spindle.channel (1 queued, capacity 4)", tostring(ch))
    ch:close()
    assert.equal("spindle.channel (1 queued, capacity 4, closed)", tostring(ch))
    assert.equal("spindle.channel (0 queued, unbounded)", tostring(spindle.channel()))
  end)

  it("closes as a <close> variable", T(function()
    local ch
    do
      local c <close> = spindle.channel()
      ch = c
    end
    assert.is_true(ch:is_closed())
  end))

  it("recv raises the timeout of spindle.timeout", T(function()
    local ch = spindle.channel()
    local ok, err = pcall(spindle.timeout, 5, ch.recv, ch)
    assert.is_false(ok)
    assert.is_true(spindle.is_timeout(err))
    ch:send(1) -- the timed-out receiver is gone: the value stays queued
    assert.equal(1, #ch)
  end))
end)

describe("§4 channel: a task aborted while waiting loses nothing", function()
  it("an aborted receiver takes no value; the next receiver gets it", T(function()
    local ch = spindle.channel()
    local a = spindle.spawn(function() return ch:recv() end)
    local b = spindle.spawn(function() return ch:recv() end)
    spindle.yield()
    a:abort()
    ch:send("v")
    assert.equal("v", b:join())
    assert.is_true(spindle.is_cancelled(select(2, a:result())))
    assert.equal(0, #ch)
  end))

  it("an aborted sender's value is not sent, and send raised", T(function()
    local ch = spindle.channel(1)
    ch:send("first")
    local raised
    local s = spindle.spawn(function()
      local ok, err = pcall(ch.send, ch, "second")
      raised = not ok and spindle.is_cancelled(err)
    end)
    spindle.yield()
    s:abort()
    s:result()
    assert.is_true(raised)
    assert.equal("first", ch:recv())
    assert.same({nil, "empty"}, {ch:try_recv()})
  end))

  it("a receiver handed a value and aborted before it resumes still returns it", T(function()
    local ch = spindle.channel()
    local got, after
    local r = spindle.spawn(function()
      got = ch:recv()
      after = pcall(spindle.yield) -- the abort is delivered here
    end)
    spindle.yield()
    assert.equal("waiting", r:status())
    ch:send("x") -- handed to r; r is ready now
    assert.equal("ready", r:status())
    r:abort()
    local ok, err = r:result()
    assert.is_false(ok)
    assert.is_true(spindle.is_cancelled(err))
    assert.equal("x", got)
    assert.is_false(after)
  end))

  it("a sender whose value was taken and aborted before it resumes sees true", T(function()
    local ch = spindle.channel(1)
    ch:send(1)
    local result
    local s = spindle.spawn(function()
      result = table.pack(ch:send(2))
      spindle.yield()
    end)
    spindle.yield()
    assert.equal(1, ch:recv()) -- 2 moves into the queue, s is served
    s:abort()
    s:result()
    assert.same({n = 1, true}, result)
    assert.equal(2, ch:recv())
  end))

  it("a timeout that expires after a receiver was served does not lose the value", T(function()
    local ch = spindle.channel()
    local r = spindle.spawn(function()
      return spindle.timeout(1, function() return ch:recv() end)
    end)
    spindle.sleep(0.5)
    ch:send("in time")
    assert.equal("in time", r:join())
  end))
end)
