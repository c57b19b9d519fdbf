-- spec/36-channel-soak_spec.lua -- a channel soak: 100,000 items through a
-- bounded channel while senders and receivers are aborted at random.
-- Every item whose send returned true is received exactly once or is still
-- queued at the end; no item whose send raised is ever received.
local H = require "spec.helpers"
local spindle = H.spindle

local N = 100000

local function soak(capacity, seed)
  return spindle.test(function()
    math.randomseed(seed)
    local ch = spindle.channel(capacity)
    local sent, received = {}, {}
    local next_item = 0
    local senders, receivers = {}, {}
    local aborted = {senders = 0, receivers = 0, served_then_aborted = 0}

    local function sender()
      while next_item < N do
        next_item = next_item + 1
        local item = next_item
        local ok = ch:send(item) -- raises if aborted while waiting
        if ok then sent[item] = true end
        if spindle._aborting(spindle.current()) then
          aborted.served_then_aborted = aborted.served_then_aborted + 1
        end
        if item % 7 == 0 then spindle.yield() end
      end
    end

    local function receiver()
      while true do
        local v = ch:recv()
        if v == nil then return end
        received[v] = (received[v] or 0) + 1
        if v % 5 == 0 then spindle.yield() end
      end
    end

    for i = 1, 4 do senders[i] = spindle.spawn(sender) end
    for i = 1, 4 do receivers[i] = spindle.spawn(receiver) end

    -- chaos: abort a random sender or receiver now and then, replace it
    while next_item < N do
      for _ = 1, math.random(1, 5) do spindle.yield() end
      local list, f, kind
      if math.random() < 0.5 then
        list, f, kind = senders, sender, "senders"
      else
        list, f, kind = receivers, receiver, "receivers"
      end
      local i = math.random(#list)
      list[i]:abort()
      aborted[kind] = aborted[kind] + 1
      list[i] = spindle.spawn(f)
    end
    spindle.join_all(senders)
    ch:close()
    -- drain what is still queued, then let the receivers end
    local queued = 0
    while true do
      local v = ch:try_recv()
      if v == nil then break end
      received[v] = (received[v] or 0) + 1
      queued = queued + 1
    end
    spindle.join_all(receivers)

    local nsent, nunsent = 0, 0
    for item = 1, N do
      if sent[item] then
        nsent = nsent + 1
        assert(received[item] == 1, ("item %d sent but received %s times")
          :format(item, tostring(received[item])))
      else
        nunsent = nunsent + 1
        assert(received[item] == nil, ("item %d reported unsent but received")
          :format(item))
      end
    end
    assert.is_true(nsent > N / 2)
    assert.is_true(aborted.senders > 100 and aborted.receivers > 100)
    assert.is_true(nunsent > 0) -- some sends were really cut short
  end, {clock = "virtual", timeout = 60})
end

describe("channel soak", function()
  it("100,000 items, random aborts, bounded channel: exactly once or still queued", soak(8, 1))
  it("the same through a rendezvous channel (capacity 0)", soak(0, 2))
  it("the same through an unbounded channel", soak(nil, 3))
end)
