-- bench/sync_bench.lua -- synchronisation primitives (issue 4).
--
--   lua5.4 bench/sync_bench.lua [--quick] [--repeat N]
--
-- 1. Ping-pong between two tasks, in one run, median of N (default 3):
--      spindle  two spindle.channel()s, A sends, B receives and answers
--      cqueues  two cqueues.condition variables and a shared turn flag,
--               tasks made with cq:wrap -- the way cqueues code signals
--      luv      a small coroutine wrapper over luv (the same design as
--               bench/luvco.lua: ready ring drained by a uv_idle, tagged
--               yields) with a condition variable (waiter list + schedule)
--    Every round trip is two task switches; reported as switches/s, and
--    the ratios spindle/cqueues (target >= 2) and spindle/luv.
-- 2. 100,000 tasks blocked on one spindle.event(): RSS per task =
--    (VmRSS with all of them waiting - VmRSS before the first) / N, after
--    two full collections, in a fresh child process (target <= 1.3 KiB).
--    Also the Lua heap per task, and the time to wake them all.
--
-- Needs build/spindle.so, lua-cqueues and lua-luv.  Prints markdown.

local here = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
package.cpath = here .. "/build/?.so;" .. package.cpath
package.path = here .. "/lua/?.lua;" .. here .. "/lua/?/init.lua;" .. package.path

local spindle = require "spindle"
local uv = require "luv"

local util = dofile(here .. "/bench/util.lua")
local clock, rss_kib = util.clock, util.rss_kib

-- ---------------------------------------------------------------- ping-pong

local function pp_spindle(n)
  return spindle.run(function()
    local a2b, b2a = spindle.channel(), spindle.channel()
    local t0 = clock()
    local b = spindle.spawn(function()
      for _ = 1, n do b2a:send(a2b:recv()) end
    end)
    for i = 1, n do
      a2b:send(i)
      assert(b2a:recv() == i)
    end
    b:join()
    return clock() - t0
  end)
end

local function pp_cqueues(n)
  local cqueues = require "cqueues"
  local condition = require "cqueues.condition"
  local cq = cqueues.new()
  local ca, cb = condition.new(), condition.new()
  local turn, count, t0 = 1, 0, nil
  cq:wrap(function()
    t0 = clock()
    for _ = 1, n do
      while turn ~= 1 do ca:wait() end
      turn = 2
      count = count + 1
      cb:signal()
    end
  end)
  cq:wrap(function()
    for _ = 1, n do
      while turn ~= 2 do cb:wait() end
      turn = 1
      ca:signal()
    end
  end)
  assert(cq:loop())
  assert(count == n)
  return clock() - t0
end

-- A coroutine wrapper over luv in the style of bench/luvco.lua, plus a
-- condition variable.
local function pp_luv(n)
  local SUSPEND = {}
  local ready, head, tail = {}, 1, 0
  local idle = uv.new_idle()
  local idle_on = false
  local resume, yield = coroutine.resume, coroutine.yield
  local current
  local function drain()
    local stop = tail
    while head <= stop do
      local co = ready[head]
      ready[head] = nil
      head = head + 1
      current = co
      local ok, err = resume(co)
      if not ok then error(err) end
    end
    if head > tail then idle:stop(); idle_on = false end
  end
  local function schedule(co)
    tail = tail + 1
    ready[tail] = co
    if not idle_on then idle_on = true; idle:start(drain) end
  end
  local function spawn(fn) schedule(coroutine.create(fn)) end
  local function cond() return {} end
  local function wait(c)
    c[#c + 1] = current
    yield(SUSPEND)
  end
  local function signal(c)
    local n_ = #c
    for i = 1, n_ do schedule(c[i]); c[i] = nil end
  end
  local ca, cb = cond(), cond()
  local turn, count, t0 = 1, 0, nil
  spawn(function()
    t0 = clock()
    for _ = 1, n do
      while turn ~= 1 do wait(ca) end
      turn = 2
      count = count + 1
      signal(cb)
    end
  end)
  spawn(function()
    for _ = 1, n do
      while turn ~= 2 do wait(cb) end
      turn = 1
      signal(ca)
    end
  end)
  uv.run("default")
  idle:close()
  uv.run("default")
  assert(count == n)
  return clock() - t0
end

-- ---------------------------------------------------------------- memory

local function blocked_child(n)
  collectgarbage("collect"); collectgarbage("collect")
  local base = rss_kib()
  local heap0 = collectgarbage("count")
  local r = spindle.run(function()
    local ev = spindle.event()
    for _ = 1, n do spindle.spawn(ev.wait, ev) end
    spindle.yield() -- every task has run once and waits now
    assert(spindle.stats().live == n + 1)
    collectgarbage("collect"); collectgarbage("collect")
    local rss = rss_kib()
    local heap = collectgarbage("count")
    local t0 = clock()
    ev:set()
    spindle.yield()
    local wake = clock() - t0
    return {rss = (rss - base) * 1024 / n, heap = (heap - heap0) * 1024 / n,
            wake = wake}
  end)
  io.write(("RESULT %.1f %.1f %.6f\n"):format(r.rss, r.heap, r.wake))
  os.exit(0, false)
end

-- ---------------------------------------------------------------- main

local quick, reps = false, 3
local i = 1
while arg and arg[i] do
  if arg[i] == "--quick" then quick = true; reps = 1
  elseif arg[i] == "--repeat" then i = i + 1; reps = tonumber(arg[i])
  elseif arg[i] == "--blocked" then i = i + 1; blocked_child(tonumber(arg[i])) end
  i = i + 1
end

local N = quick and 100000 or 1000000 -- round trips
local names = {"spindle", "cqueues", "luv"}
local fns = {spindle = pp_spindle, cqueues = pp_cqueues, luv = pp_luv}
local rates = {spindle = {}, cqueues = {}, luv = {}}
for _ = 1, reps do -- interleaved repeats
  for _, name in ipairs(names) do
    local secs = fns[name](N)
    rates[name][#rates[name] + 1] = 2 * N / secs
  end
end

print(("## ping-pong between two tasks (%d round trips, median of %d)\n")
  :format(N, reps))
print("| library | switches/s | spindle ÷ this |")
print("|---|---:|---:|")
local med = {}
for _, name in ipairs(names) do med[name] = util.median(rates[name]) end
for _, name in ipairs(names) do
  print(("| %s | %.0f | %.2f |"):format(name, med[name], med.spindle / med[name]))
end
local ratio = med.spindle / med.cqueues
print(("\nspindle channel ÷ cqueues condition: %.2f× — target ≥ 2×: %s\n")
  :format(ratio, ratio >= 2 and "PASS" or "MISS"))

local B = quick and 10000 or 100000
local cmd = ("lua5.4 %q --blocked %d"):format(arg[0], B)
local per = {}
for _ = 1, reps do
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  local rss, heap, wake = out:match("RESULT (%S+) (%S+) (%S+)")
  assert(rss, "child failed: " .. out)
  per[#per + 1] = {tonumber(rss), tonumber(heap), tonumber(wake)}
end
table.sort(per, function(a, b) return a[1] < b[1] end)
local m = per[(#per + 1) // 2]
print(("## %d tasks blocked on one spindle.event() (median of %d)\n"):format(B, reps))
print("| RSS B/task | Lua heap B/task | wake all (set + one turn) |")
print("|---:|---:|---:|")
print(("| %.0f | %.0f | %.1f ms |"):format(m[1], m[2], m[3] * 1e3))
print(("\nRSS per blocked task ≤ 1.3 KiB (1331 B): %s"):format(m[1] <= 1331 and "PASS" or "MISS"))
