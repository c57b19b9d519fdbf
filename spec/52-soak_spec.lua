-- spec/52-soak_spec.lua -- long runs that must not grow (issue 9):
--
--   * spawn/abort cycles through every kind of wait (channel, event,
--     semaphore, mutex, join, timeout, scope, shield, tcp read, sleep,
--     ready, never started), each task holding a <close> value: 200,000
--     cycles (1,000,000 with SPINDLE_DEEP=1);
--   * a TCP server that wraps each connection's read in
--     pcall(spindle.timeout, ...) -- half the peers say nothing and are
--     timed out, half are answered: 20,000 connections (150,000 deep).
--
-- Both on the virtual clock (no time is waited for).  After a 10% warm-up,
-- the Lua heap after a full collection must stay within +-5% of its first
-- sample and the RSS must not grow by more than 5% over any earlier sample
-- (a drop is fine: glibc returns pages when it likes).  Under ASan freed
-- memory sits in quarantine, so there the heap check alone stands.
-- spec/90-soak_spec.lua has the original 200,000-cycle soak over the three
-- simplest states; this one covers the waits of every subsystem.
local H = dofile("spec/helpers/init.lua")
local spindle = H.spindle
local net = spindle.net

local pack, unpack = table.pack, table.unpack
local DEEP = os.getenv("SPINDLE_DEEP") == "1"

local SCALE = ({plain = 1, asan = 0.25, valgrind = 0.05})[H.ENV] or 1
local CYCLES = DEEP and 1000000 or math.floor(200000 * SCALE)
local CONNS = DEEP and 150000 or math.floor(20000 * SCALE)

local rss_kb, heap_kb, check_flat = H.rss_kb, H.heap_kb, H.check_flat

local function check_no_growth(what, samples, tol)
  -- RSS only in the plain run: ASan's quarantine and memcheck's queue of
  -- freed blocks grow it by design (the heap checks run everywhere).
  if H.ENV == "asan" or H.ENV == "valgrind" then return end
  H.check_no_growth(what, samples, tol)
end

-- Calls sample() 20 times, evenly, after the first 10% of n steps.
local function sampler(n, sample)
  local warm, every = n // 10, math.max(1, (n - n // 10) // 19)
  return function(i)
    if i >= warm and (i - warm) % every == 0 then sample() end
  end
end

describe("soak", function()
  setup(function() -- libuv's process-wide descriptors, once
    H.run_virtual(function() assert(net.listen("127.0.0.1", 0)):close() end)
  end)
  H.check_fds(_ENV)

  it(("%d spawn/abort cycles through every kind of wait keep heap and RSS flat"):format(CYCLES), function()
    local heap, rss = {}, {}
    local opened, closed, wrong = 0, 0, {}
    heap_kb()
    local cpu = os.clock()
    H.run_virtual(function()
      -- shared things the tasks block on
      local ch = spindle.channel()
      local ev = spindle.event()
      local sem = spindle.semaphore(1)
      local held = sem:acquire()
      local m = spindle.mutex()
      local guard = m:lock()
      local forever = spindle.spawn(spindle.sleep, 1e9)
      local srv = assert(net.listen("127.0.0.1", 0))
      local client = assert(net.connect(srv:local_addr()))
      local server = assert(srv:accept())
      srv:close()

      local mt = {__close = function() closed = closed + 1 end}
      local function res()
        opened = opened + 1
        return setmetatable({}, mt)
      end
      local WAITS = {
        function() local _ <close> = res(); spindle.sleep(3600) end,
        function() local _ <close> = res(); spindle.yield(); spindle.sleep(3600) end,
        function() local _ <close> = res(); ch:recv() end,
        function() local _ <close> = res(); ev:wait() end,
        function() local _ <close> = res(); local p <close> = sem:acquire() end,
        function() local _ <close> = res(); local g <close> = m:lock() end,
        function() local _ <close> = res(); forever:join() end,
        function() local _ <close> = res(); spindle.timeout(3600, spindle.sleep, 7200) end,
        function()
          local _ <close> = res()
          spindle.scope(function(s)
            s:spawn(function() local _ <close> = res(); ev:wait() end)
            s:spawn(function() local _ <close> = res(); ch:recv() end)
            spindle.sleep(3600)
          end)
        end,
        function()
          local _ <close> = res()
          spindle.shield(spindle.yield)
          spindle.sleep(3600)
        end,
        function() local _ <close> = res(); server:read_line() end,
        function() error("never runs") end, -- aborted before it starts
      }
      local K = #WAITS
      local YIELDS = {[9] = 2, [K] = 0}
      local sample = sampler(CYCLES, function()
        for _ = 1, 3 do spindle.yield() end -- let aborted tasks unwind
        heap[#heap + 1] = heap_kb()
        rss[#rss + 1] = rss_kb()
      end)
      local t0 = spindle.now()
      for i = 1, CYCLES do
        local k = i % K + 1
        local h = spindle.spawn(WAITS[k])
        -- the task reaches its wait (the scope's children theirs)
        for _ = 1, YIELDS[k] or 1 do spindle.yield() end
        if not h:abort() then wrong[#wrong + 1] = "abort returned false, cycle " .. i end
        if i % 1009 == 0 then
          local ok, e = h:result()
          if ok or not spindle.is_cancelled(e) or spindle.is_timeout(e) then
            wrong[#wrong + 1] = ("cycle %d (wait %d): %s %s"):format(i, k, tostring(ok), tostring(e))
          end
        end
        sample(i)
      end
      for _ = 1, 3 do spindle.yield() end
      -- the shared things still work and lost nothing
      assert(spindle.now() == t0, "virtual time moved: something waited")
      assert(ch:try_send(1) and ch:recv() == 1, "channel broken")
      held:release()
      assert(sem:available() == 1, "a permit leaked")
      guard:unlock()
      assert(not m:is_locked(), "the mutex stayed locked")
      client:write("still\n")
      assert(server:read_line() == "still", "the stream lost or kept bytes")
      forever:abort()
      client:close(); server:close()
    end)
    local cpu_s = os.clock() - cpu
    assert.are.same({}, wrong)
    assert.are.equal(opened, closed)
    check_flat("Lua heap", heap, 0.05)
    check_no_growth("RSS", rss, 0.05)
    print(("\n  soak: %d cycles, %d <close> values, %.1f s CPU; heap %.0f..%.0f KiB; RSS %d..%d KiB")
      :format(CYCLES, opened, cpu_s, math.min(unpack(heap)), math.max(unpack(heap)),
        math.min(unpack(rss)), math.max(unpack(rss))))
  end)

  it(("%d connections, each read in pcall(spindle.timeout, ...), keep heap and RSS flat"):format(CONNS), function()
    local heap, rss = {}, {}
    local answered, timed_out, wrong = 0, 0, {}
    heap_kb()
    local cpu = os.clock()
    H.run_virtual(function()
      local srv = assert(net.listen("127.0.0.1", 0, {backlog = 512}))
      local host, port = srv:local_addr()
      local function handler(s)
        local ok, line = pcall(spindle.timeout, 1, s.read_line, s, 100)
        if ok and line == "ping" then
          answered = answered + 1
          s:write("pong\n")
        elseif not ok and spindle.is_timeout(line) then
          timed_out = timed_out + 1
        else
          wrong[#wrong + 1] = "handler: " .. tostring(ok) .. " " .. tostring(line)
        end
        s:close()
      end
      local acceptor = spindle.spawn(function()
        while true do
          local s = srv:accept()
          if not s then break end
          spindle.spawn(handler, s)
        end
      end)
      local function client(i)
        local c, err = net.connect(host, port)
        if not c then wrong[#wrong + 1] = "connect: " .. tostring(err); return end
        if i % 2 == 0 then
          c:write("ping\n")
          local l = c:read_line()
          if l ~= "pong" then wrong[#wrong + 1] = "client got " .. tostring(l) end
        else
          local l, e = c:read_line() -- the server times out and closes
          if l ~= nil or e ~= "eof" then wrong[#wrong + 1] = "silent client got " .. tostring(l) .. " " .. tostring(e) end
        end
        c:close_reset() -- after the server's FIN: no TIME_WAIT left behind
      end
      local BATCH = 100
      local sample = sampler(CONNS // BATCH, function()
        heap[#heap + 1] = heap_kb()
        rss[#rss + 1] = rss_kb()
      end)
      local done = 0
      for b = 1, CONNS // BATCH do
        local hs = {}
        for j = 1, BATCH do hs[j] = spindle.spawn(client, done + j) end
        for j = 1, BATCH do hs[j]:join() end
        done = done + BATCH
        sample(b)
        if #wrong > 20 then break end
      end
      srv:close()
      acceptor:join()
    end)
    local cpu_s = os.clock() - cpu
    assert.are.same({}, wrong)
    assert.are.equal(CONNS // 2, answered)
    assert.are.equal(CONNS // 2, timed_out)
    check_flat("Lua heap", heap, 0.05)
    check_no_growth("RSS", rss, 0.05)
    print(("\n  soak: %d connections (%d timed out), %.1f s CPU; heap %.0f..%.0f KiB; RSS %d..%d KiB")
      :format(CONNS, timed_out, cpu_s, math.min(unpack(heap)), math.max(unpack(heap)),
        math.min(unpack(rss)), math.max(unpack(rss))))
  end)
end)
