-- spec/06-timers_spec.lua -- docs/tasks.md#awaiting-time, timers and the
-- ready queue: sleep never ends early, timers fire in deadline order and FIFO
-- among equal deadlines, a sleeping task costs no libuv handle of its own
-- (checked indirectly with 10,000 concurrent sleeps), sleep(0) is a yield,
-- and the virtual clock (docs/testing.md#the-virtual-clock) only moves when
-- nothing is ready.

local H = require "spec.helpers"
local spindle = H.spindle

local EPS = 1e-6
-- True if a sleep of d that began at t0 was reported over at t1 too early.
-- The only slack is floating-point rounding: t1 - t0 is a difference of two
-- doubles of the clock's magnitude (its origin may be the machine's uptime
-- or, after long virtual sleeps, far beyond), so allow a few ulps of t1.
local function early(t0, t1, d)
  return t1 - t0 < d - (1e-12 + math.abs(t1) * 2 ^ -50)
end

local vrun, rrun, near = H.run_virtual, H.run_real, H.near

-- deterministic pseudo-random numbers (no dependence on math.random's seed)
local function lcg(seed)
  local s = seed
  return function(n)
    s = (s * 1103515245 + 12345) % 2147483648
    return s % n
  end
end

describe("spindle.sleep", function()
  it("never ends early on the virtual clock, and advances it by exactly d", function()
    vrun(function()
      for _, d in ipairs{0, 0.001, 0.002, 0.01, 0.1, 0.25, 1, 1.5, 60, 3600, 86400 * 365} do
        local t0 = spindle.now()
        spindle.sleep(d)
        local dt = spindle.now() - t0
        assert.is_false(early(t0, spindle.now(), d), ("sleep(%g) ended after %g"):format(d, dt))
        assert.is_true(near(dt, d), ("sleep(%g) took %g virtual seconds"):format(d, dt))
      end
    end)
  end)

  it("never ends early for durations below the clock resolution", function()
    vrun(function()
      for _, d in ipairs{1e-9, 1e-6, 0.0001, 0.0005, 0.0015, 0.0101} do
        local t0 = spindle.now()
        spindle.sleep(d)
        local dt = spindle.now() - t0
        assert.is_false(early(t0, spindle.now(), d), ("sleep(%g) ended after %g"):format(d, dt))
        assert.is_true(dt <= d + 0.001 + EPS, ("sleep(%g) took %g"):format(d, dt))
      end
    end)
  end)

  it("never ends early on the real clock either (lower bound only)", function()
    -- no assertion on speed: only that no sleep is reported to end early
    local bad = {}
    rrun(function()
      local hs = {}
      for i = 1, 40 do
        local d = (i % 8) * 0.0025 + 0.001
        hs[i] = spindle.spawn(function()
          local t0 = spindle.now()
          spindle.sleep(d)
          local dt = spindle.now() - t0
          if early(t0, spindle.now(), d) then bad[#bad + 1] = ("%g < %g"):format(dt, d) end
        end)
      end
      -- a busy task makes the loop time stale between polls
      hs[#hs + 1] = spindle.spawn(function()
        for _ = 1, 50 do
          local x = 0
          for k = 1, 20000 do x = x + k end
          spindle.yield()
        end
      end)
      for _, h in ipairs(hs) do h:join() end
      for _ = 1, 10 do
        local t0 = spindle.now()
        spindle.sleep(0.003)
        local dt = spindle.now() - t0
        if early(t0, spindle.now(), 0.003) then bad[#bad + 1] = ("main %g"):format(dt) end
      end
    end)
    assert.are.same({}, bad)
  end)

  it("sleep(0) behaves like yield: other ready tasks run first, time stays", function()
    local order = {}
    vrun(function()
      local t0 = spindle.now()
      local a = spindle.spawn(function()
        order[#order + 1] = "a1"
        spindle.sleep(0)
        order[#order + 1] = "a2"
      end)
      local b = spindle.spawn(function()
        order[#order + 1] = "b1"
        spindle.sleep(0)
        order[#order + 1] = "b2"
      end)
      a:join(); b:join()
      assert.are.equal(t0, spindle.now())
    end)
    assert.are.same({"a1", "b1", "a2", "b2"}, order)
  end)

  it("accepts up to 1e9 seconds and rejects bad durations", function()
    vrun(function()
      local t0 = spindle.now()
      spindle.sleep(1e9)
      assert.is_true(spindle.now() - t0 >= 1e9 - 1e-3)
      for _, d in ipairs{-1, -1e-9, 0 / 0, math.huge, -math.huge, 1e9 + 1, 1e300, "x", {}, true} do
        local ok, e = pcall(spindle.sleep, d)
        assert.is_false(ok, tostring(d))
        assert.is_truthy(string.find(tostring(e), "bad argument #1", 1, true), tostring(e))
        assert.is_truthy(string.find(tostring(e), "sleep", 1, true), tostring(e))
      end
      assert.is_false((pcall(spindle.sleep)))
      spindle.sleep(1) -- still usable
    end)
  end)

  it("raises outside a task", function()
    local ok, e = pcall(spindle.sleep, 1)
    assert.is_false(ok)
    assert.is_truthy(string.find(tostring(e), "not inside a task", 1, true))
    assert.is_truthy(string.find(tostring(e), "sleep", 1, true))
  end)
end)

describe("spindle.now", function()
  it("is monotonic across yields, sleeps and wakes", function()
    local bad = 0
    vrun(function()
      local hs = {}
      for i = 1, 20 do
        hs[i] = spindle.spawn(function()
          local last = spindle.now()
          for k = 1, 20 do
            if k % 3 == 0 then spindle.yield() else spindle.sleep((i * k) % 7 * 0.01) end
            local t = spindle.now()
            if t < last then bad = bad + 1 end
            last = t
          end
        end)
      end
      for _, h in ipairs(hs) do h:join() end
    end)
    assert.are.equal(0, bad)
  end)

  it("does not move on the virtual clock while tasks are ready", function()
    local woke_at
    vrun(function()
      local t0 = spindle.now()
      local sleeper = spindle.spawn(function()
        spindle.sleep(0.001)
        woke_at = spindle.now() - t0
      end)
      local busy = spindle.spawn(function()
        for _ = 1, 1000 do
          spindle.yield()
          assert(spindle.now() == t0, "virtual time moved while a task was ready")
          assert(woke_at == nil, "a timer fired while a task was ready")
        end
      end)
      busy:join()
      assert.are.equal(t0, spindle.now())
      sleeper:join()
      assert.is_true(near(spindle.now() - t0, 0.001))
    end)
    assert.is_true(near(woke_at, 0.001))
  end)
end)

describe("timer order", function()
  it("wakes sleepers in deadline order, whatever the order they slept in", function()
    local order = {}
    vrun(function()
      local ds = {5, 1, 4, 2.5, 3, 0.5, 10, 2, 7, 0.001}
      local hs = {}
      for i, d in ipairs(ds) do
        hs[i] = spindle.spawn(function() spindle.sleep(d); order[#order + 1] = d end)
      end
      for _, h in ipairs(hs) do h:join() end
    end)
    assert.are.same({0.001, 0.5, 1, 2, 2.5, 3, 4, 5, 7, 10}, order)
  end)

  it("wakes 1,000 random deadlines in order, FIFO among equal ones", function()
    local rnd = lcg(42)
    local woke = {}
    local ds = {}
    vrun(function()
      local t0 = spindle.now()
      local hs = {}
      for i = 1, 1000 do
        ds[i] = rnd(50) * 0.01 -- many equal deadlines
        hs[i] = spindle.spawn(function()
          spindle.sleep(ds[i])
          woke[#woke + 1] = i
          assert(not early(t0, spindle.now(), ds[i]), "early wake")
        end)
      end
      for _, h in ipairs(hs) do h:join() end
    end)
    assert.are.equal(1000, #woke)
    for k = 2, #woke do
      local a, b = woke[k - 1], woke[k]
      assert.is_true(ds[a] < ds[b] or (ds[a] == ds[b] and a < b),
        ("task %d (%g) woke before task %d (%g)"):format(a, ds[a], b, ds[b]))
    end
  end)

  it("is FIFO among equal deadlines registered at the same instant", function()
    local order = {}
    vrun(function()
      local hs = {}
      for i = 1, 100 do
        hs[i] = spindle.spawn(function() spindle.sleep(1); order[#order + 1] = i end)
      end
      for _, h in ipairs(hs) do h:join() end
    end)
    for i = 1, 100 do assert.are.equal(i, order[i]) end
  end)

  it("is FIFO among equal deadlines registered at different times", function()
    local order = {}
    vrun(function()
      -- a sleeps 3 at t=0; b sleeps 2 at t=1; c sleeps 1 at t=2: all due at t=3
      local a = spindle.spawn(function() spindle.sleep(3); order[#order + 1] = "a" end)
      local b = spindle.spawn(function()
        spindle.sleep(1); spindle.sleep(2); order[#order + 1] = "b"
      end)
      local c = spindle.spawn(function()
        spindle.sleep(2); spindle.sleep(1); order[#order + 1] = "c"
      end)
      a:join(); b:join(); c:join()
    end)
    assert.are.same({"a", "b", "c"}, order)
  end)

  it("resumes tasks woken together in the order their deadlines were registered", function()
    local order = {}
    vrun(function()
      local s1 = spindle.spawn(function() spindle.sleep(1); order[#order + 1] = "s1" end)
      local s2 = spindle.spawn(function() spindle.sleep(1); order[#order + 1] = "s2" end)
      spindle.yield() -- s1 and s2 register their deadlines first
      spindle.sleep(1)
      order[#order + 1] = "main"
      s1:join(); s2:join()
    end)
    assert.are.same({"s1", "s2", "main"}, order)
  end)

  it("keeps order when sleepers are aborted out of the middle of the heap", function()
    local rnd = lcg(7)
    local woke = {}
    local ds, aborted = {}, {}
    vrun(function()
      local hs = {}
      for i = 1, 2000 do
        ds[i] = rnd(1000) * 0.001 + 0.001
        hs[i] = spindle.spawn(function()
          spindle.sleep(ds[i])
          woke[#woke + 1] = i
        end)
      end
      spindle.yield()
      for i = 1, 2000 do
        if rnd(3) == 0 then aborted[i] = true; assert(hs[i]:abort()) end
      end
      spindle.sleep(0.5)
      for i = 1, 2000 do
        if not aborted[i] and ds[i] > 0.6 and rnd(2) == 0 then
          aborted[i] = true; assert(hs[i]:abort())
        end
      end
      for i = 1, 2000 do pcall(hs[i].join, hs[i]) end
      for i = 1, 2000 do
        assert(hs[i]:status() == (aborted[i] and "cancelled" or "done"))
      end
    end)
    local seen = {}
    for k, i in ipairs(woke) do
      assert.is_nil(aborted[i], "aborted task " .. i .. " woke")
      seen[i] = true
      if k > 1 then
        local a = woke[k - 1]
        assert.is_true(ds[a] < ds[i] or (ds[a] == ds[i] and a < i))
      end
    end
    for i = 1, 2000 do
      if not aborted[i] then assert.is_true(seen[i], "task " .. i .. " never woke") end
    end
  end)

  it("orders sleeps and timeout deadlines on one timeline", function()
    local order = {}
    vrun(function()
      local hs = {}
      for i, d in ipairs{4, 1, 3, 2} do
        if i % 2 == 0 then
          hs[i] = spindle.spawn(function()
            pcall(spindle.timeout, d, spindle.sleep, 100)
            order[#order + 1] = "t" .. d
          end)
        else
          hs[i] = spindle.spawn(function() spindle.sleep(d); order[#order + 1] = "s" .. d end)
        end
      end
      for _, h in ipairs(hs) do h:join() end
    end)
    assert.are.same({"t1", "t2", "s3", "s4"}, order)
  end)
end)

describe("the ready queue", function()
  it("starts spawned tasks in spawn order, and yield goes to the back", function()
    local order = {}
    vrun(function()
      local hs = {}
      for i = 1, 5 do
        hs[i] = spindle.spawn(function()
          for round = 1, 3 do
            order[#order + 1] = i .. ":" .. round
            spindle.yield()
          end
        end)
      end
      for _, h in ipairs(hs) do h:join() end
    end)
    local expect = {}
    for round = 1, 3 do for i = 1, 5 do expect[#expect + 1] = i .. ":" .. round end end
    assert.are.same(expect, order)
  end)

  it("never runs fn inside spawn", function()
    vrun(function()
      local ran = false
      local h = spindle.spawn(function() ran = true end)
      assert.is_false(ran)
      h:join()
      assert.is_true(ran)
    end)
  end)
end)

describe("many sleeping tasks", function()
  it("10,000 concurrent sleeps all end, in order, none early (virtual clock)", function()
    local n = 10000
    local woke, n_early, out_of_order = 0, 0, 0
    vrun(function()
      local t0 = spindle.now()
      local last = -1
      for i = 1, n do
        local d = (i * 7919 % n) * 0.001 + 0.001
        spindle.spawn(function()
          spindle.sleep(d)
          local dt = spindle.now() - t0
          if early(t0, spindle.now(), d) then n_early = n_early + 1 end
          if d < last then out_of_order = out_of_order + 1 end
          last = d
          woke = woke + 1
        end)
      end
      spindle.sleep(n * 0.001 + 1)
    end)
    assert.are.equal(n, woke)
    assert.are.equal(0, n_early)
    assert.are.equal(0, out_of_order)
  end)

  it("10,000 concurrent sleeps on the real clock all end, none early", function()
    local n = 10000
    local woke, n_early = 0, 0
    rrun(function()
      local hs = {}
      for i = 1, n do
        local d = (i % 50) * 0.001 + 0.001
        hs[i] = spindle.spawn(function()
          local t0 = spindle.now()
          spindle.sleep(d)
          if early(t0, spindle.now(), d) then n_early = n_early + 1 end
          woke = woke + 1
        end)
      end
      for i = 1, n do hs[i]:join() end
    end)
    assert.are.equal(n, woke)
    assert.are.equal(0, n_early)
  end)

  it("100,000 tasks can sleep at once, and all can be aborted", function()
    local n = 100000
    local closed = 0
    vrun(function()
      local hs = {}
      local mt = {__close = function() closed = closed + 1 end}
      for i = 1, n do
        hs[i] = spindle.spawn(function()
          local c <close> = setmetatable({}, mt)
          spindle.sleep(3600 + i % 100)
        end)
      end
      spindle.yield()
      assert.are.equal("waiting", hs[1]:status())
      assert.are.equal("waiting", hs[n]:status())
      for i = 1, n do hs[i]:abort() end
      for i = 1, n do pcall(hs[i].join, hs[i]) end
    end)
    assert.are.equal(n, closed)
  end)
end)
