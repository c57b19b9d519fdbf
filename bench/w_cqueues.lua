-- bench/w_cqueues.lua: the same workloads written the way cqueues wants:
-- one controller (cqueues.new()), tasks started with cq:wrap, cqueues.sleep
-- for timers, cqueues.poll() (no arguments) to yield, and a condition
-- variable to wait for a task's end. cqueues' own clock is
-- cqueues.monotime().

local cqueues = require "cqueues"
local condition = require "cqueues.condition"

local poll, sleep, monotime = cqueues.poll, cqueues.sleep, cqueues.monotime
local new_condition = condition.new

local W = {}

-- A join handle as a cqueues user would write one: the task stores its
-- result and signals a condition that is only created if someone had to
-- wait (the cheapest honest version).
local function runner(h, fn, ...)
  h.value = fn(...)
  h.done = true
  local c = h.cond
  if c then c:signal() end
end

local function spawn(cq, fn, ...)
  local h = { done = false }
  cq:wrap(runner, h, fn, ...)
  return h
end

local function join(h)
  while not h.done do
    local c = h.cond
    if not c then c = new_condition(); h.cond = c end
    c:wait()
  end
  return h.value
end

local function run(main)
  local cq = cqueues.new()
  cq:wrap(main, cq)
  assert(cq:loop())
end

local function body(i) return i end

function W.spawn_join(n, clock)
  local elapsed, sum
  run(function(cq)
    local t0 = clock()
    local hs = {}
    for i = 1, n do hs[i] = spawn(cq, body, i) end
    local s = 0
    for i = 1, n do s = s + join(hs[i]) end
    elapsed = clock() - t0
    sum = s
  end)
  return elapsed, sum
end

function W.pingpong(n, clock)
  local elapsed, count = nil, 0
  local half = n // 2
  local function pp()
    for _ = 1, half do
      count = count + 1
      poll()
    end
  end
  run(function(cq)
    local t0 = clock()
    local a, b = spawn(cq, pp), spawn(cq, pp)
    join(a)
    join(b)
    elapsed = clock() - t0
  end)
  return elapsed, count
end

function W.sleep(n, dur, own, hr, clock)
  local function sleeper(i)
    local d = dur[i]
    local t0 = monotime()
    local h0 = clock()
    sleep(d)
    local h1 = clock()
    local t1 = monotime()
    own[i] = (t1 - t0) - d
    hr[i] = (h1 - h0) - d
  end
  local wall
  run(function(cq)
    local t0 = clock()
    local hs = {}
    for i = 1, n do hs[i] = spawn(cq, sleeper, i) end
    for i = 1, n do join(hs[i]) end
    wall = clock() - t0
  end)
  return wall
end

function W.idle(n, measure)
  local cq = cqueues.new()
  local started, finished = 0, false
  local function idle()
    started = started + 1
    sleep(3600)
  end
  cq:wrap(function()
    for _ = 1, n do cq:wrap(idle) end
    while started < n do poll() end
    measure(started)
    finished = true
  end)
  while not finished do assert(cq:step()) end
end


-- W6 (see w_spindle.lua).
function W.steady(n, T, warm, record)
  local wakes = 0
  local rnd = math.random
  run(function(cq)
    local t_start = monotime()
    local t_end, t_warm = t_start + T, t_start + warm
    local function looper()
      sleep(rnd() * 0.1)
      while true do
        local d = rnd() * 0.1
        local t0 = monotime()
        if t0 + d > t_end then return end
        sleep(d)
        local t1 = monotime()
        wakes = wakes + 1
        if t0 >= t_warm then record((t1 - t0) - d) end
      end
    end
    local hs = {}
    for i = 1, n do hs[i] = spawn(cq, looper) end
    for i = 1, n do join(hs[i]) end
  end)
  return wakes
end

return W
