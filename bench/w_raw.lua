-- bench/w_raw.lua: plain coroutine.create + coroutine.resume, no scheduler.
-- This is the floor every runtime is measured against: what it costs Lua
-- itself to make, run and switch coroutines. No timers, so no sleep.

local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield

local W = {}

local function body(i) return i end

-- "spawn" = create all, then "join" = resume each to completion and collect
-- its result, as a runtime does when main spawns N tasks and joins them.
function W.spawn_join(n, clock)
  local t0 = clock()
  local cos = {}
  for i = 1, n do cos[i] = create(body) end
  local sum = 0
  for i = 1, n do
    local ok, v = resume(cos[i], i)
    if not ok then error(v) end
    sum = sum + v
  end
  return clock() - t0, sum
end

-- Two coroutines that yield in turn; a driver resumes them alternately.
-- Each resume+yield pair is one switch.
function W.pingpong(n, clock)
  local half = n // 2
  local count = 0
  local function pp()
    for _ = 1, half do
      count = count + 1
      yield()
    end
  end
  local t0 = clock()
  local a, b = create(pp), create(pp)
  for _ = 1, half do
    resume(a)
    resume(b)
  end
  resume(a) -- let both return
  resume(b)
  return clock() - t0, count
end

-- N coroutines suspended inside coroutine.yield: the memory floor for an
-- idle task.
function W.idle(n, measure)
  local started = 0
  local function idle()
    started = started + 1
    yield()
  end
  local cos = {}
  for i = 1, n do
    local co = create(idle)
    cos[i] = co
    resume(co)
  end
  measure(started)
  return cos
end

return W
