-- bench/w_luv.lua: the workloads on luv through bench/luvco.lua (a small
-- coroutine wrapper over luv's callbacks). luv's clock is uv.now() (loop
-- time, via luvco.now()).

local co = require "luvco"
local spawn, yield, sleep, now, run = co.spawn, co.yield, co.sleep, co.now, co.run
local join = co.join

local W = {}

local function body(i) return i end

function W.spawn_join(n, clock)
  local elapsed, sum
  run(function()
    local t0 = clock()
    local hs = {}
    for i = 1, n do hs[i] = spawn(body, i) end
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
      yield()
    end
  end
  run(function()
    local t0 = clock()
    local a, b = spawn(pp), spawn(pp)
    join(a)
    join(b)
    elapsed = clock() - t0
  end)
  return elapsed, count
end

function W.sleep(n, dur, own, hr, clock)
  local function sleeper(i)
    local d = dur[i]
    local t0 = now()
    local h0 = clock()
    sleep(d)
    local h1 = clock()
    local t1 = now()
    own[i] = (t1 - t0) - d
    hr[i] = (h1 - h0) - d
  end
  local wall
  run(function()
    local t0 = clock()
    local hs = {}
    for i = 1, n do hs[i] = spawn(sleeper, i) end
    for i = 1, n do join(hs[i]) end
    wall = clock() - t0
  end)
  return wall
end

function W.idle(n, measure)
  local started = 0
  local function idle()
    started = started + 1
    sleep(3600)
  end
  run(function()
    for _ = 1, n do spawn(idle) end
    while started < n do yield() end
    measure(started)
    co.stop()
  end)
end


-- W6: n tasks each looping sleep(random 0-100 ms) for T seconds, starts
-- spread; wakes after the first `warm` seconds are recorded (lateness by
-- the library's own clock).  Returns the number of wakes.
function W.steady(n, T, warm, record)
  local wakes = 0
  local rnd = math.random
  run(function()
    local t_start = now()
    local t_end, t_warm = t_start + T, t_start + warm
    local function looper()
      sleep(rnd() * 0.1) -- spread the starts
      while true do
        local d = rnd() * 0.1
        local t0 = now()
        if t0 + d > t_end then return end
        sleep(d)
        local t1 = now()
        wakes = wakes + 1
        if t0 >= t_warm then record((t1 - t0) - d) end
      end
    end
    local hs = {}
    for i = 1, n do hs[i] = spawn(looper) end
    for i = 1, n do join(hs[i]) end
  end)
  return wakes
end

return W
