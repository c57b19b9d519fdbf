-- bench/blocking_bench.lua: spindle.blocking next to luv's thread pool, and
-- the cost of preemption (issue 12, target 5).
--
--   lua5.4 bench/blocking_bench.lua [--quick] [--rounds N] [--only blocking|preempt]
--
-- 1. 1,000 small jobs (a sum of 1..2,000 each), all queued at once:
--    spindle.blocking, one task per job (spawn, then join each; worker
--    states reused) vs luv's uv.new_work + work:queue (luv keeps one Lua
--    state per pool thread).  Both share one libuv thread pool (the same
--    libuv.so).  Each round runs both, in alternating order; the table
--    shows medians of jobs/s (wall clock) and of CPU time per job (the
--    whole process: utime + stime of every thread, by os.clock()), which is
--    steadier than wall time on a shared machine, and the median of the
--    rounds' spindle/luv ratios.  Target: jobs/s >= 1.0x luv.
-- 2. A CPU-bound loop in one task, with preempt = 10000 and without:
--    pairs of rounds in alternating order, the overhead of preemption in
--    CPU time as the median of the pairs' ratios.  Target: <= 5%.
-- Prints markdown tables and PASS/MISS.  Needs build/spindle.so and
-- lua-luv (Debian).
package.cpath = "./build/?.so;" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local spindle = require "spindle"
local uv = require "luv"
local median = dofile("bench/util.lua").median -- sorts in place

local quick, rounds, only = false, nil, nil
do
  local i = 1
  while arg[i] do
    if arg[i] == "--quick" then quick = true
    elseif arg[i] == "--rounds" then i = i + 1; rounds = tonumber(arg[i])
    elseif arg[i] == "--only" then i = i + 1; only = arg[i]
    else error("unknown argument " .. arg[i]) end
    i = i + 1
  end
end
local JOBS = quick and 200 or 1000
local ROUNDS = rounds or (quick and 3 or 15)
local LOOP = quick and 2e6 or 5e6

local function job(n)
  local s = 0
  for i = 1, n do s = s + i end
  return s
end

-- One runtime for every round, as a program has: its worker states are
-- made once and reused.
local rt = spindle.runtime()

-- Each round returns wall seconds and CPU seconds.
local function spindle_round()
  local c0, t0 = os.clock(), uv.hrtime()
  rt:run(function()
    local hs = {}
    for i = 1, JOBS do hs[i] = spindle.spawn(spindle.blocking, job, 2000) end
    for i = 1, JOBS do assert(hs[i]:join() == 2001000) end
  end)
  return (uv.hrtime() - t0) / 1e9, os.clock() - c0
end

local function luv_round()
  local done = 0
  local work = uv.new_work(function(n)
    local s = 0
    for i = 1, n do s = s + i end
    return s
  end, function(s)
    assert(s == 2001000)
    done = done + 1
  end)
  local c0, t0 = os.clock(), uv.hrtime()
  for _ = 1, JOBS do work:queue(2000) end
  while done < JOBS do uv.run("once") end
  return (uv.hrtime() - t0) / 1e9, os.clock() - c0
end

local function cpu_round(preempt)
  local r = spindle.runtime(preempt and {preempt = 10000} or nil)
  local t0 = os.clock()
  local s = r:run(function()
    local s = 0
    for i = 1, LOOP do s = s + i % 7 end
    return s
  end)
  r:close()
  assert(s > 0)
  return os.clock() - t0
end

local function load() -- the 1-minute load average, or "?"
  local f = io.open("/proc/loadavg")
  if not f then return "?" end
  local s = f:read("l")
  f:close()
  return s:match("^(%S+)")
end

print(("load average at start: %s; %d rounds, alternating order\n"):format(
  load(), ROUNDS))

if only ~= "preempt" then
  local sw, sc, lw, lc = {}, {}, {}, {}
  spindle_round(); luv_round() -- warm the pools and the thread pool
  for r = 1, ROUNDS do
    if r % 2 == 1 then
      sw[r], sc[r] = spindle_round()
      lw[r], lc[r] = luv_round()
    else
      lw[r], lc[r] = luv_round()
      sw[r], sc[r] = spindle_round()
    end
  end
  -- each round's pair (spindle's and luv's, back to back) as a ratio: the
  -- median of these is what the machine's drift disturbs least
  local rw, rc = {}, {}
  for r = 1, ROUNDS do rw[r] = lw[r] / sw[r]; rc[r] = sc[r] / lc[r] end
  local s, l = JOBS / median(sw), JOBS / median(lw)
  local scpu, lcpu = median(sc) / JOBS * 1e6, median(lc) / JOBS * 1e6
  local ratio, cratio = median(rw), median(rc)
  print(("## spindle.blocking, %d small jobs (median of %d rounds)\n"):format(
    JOBS, ROUNDS))
  print("| library | jobs/s | CPU µs per job |\n| --- | ---: | ---: |")
  print(("| spindle.blocking (task per job) | %.0f | %.2f |"):format(s, scpu))
  print(("| luv new_work/queue | %.0f | %.2f |"):format(l, lcpu))
  print(("\nratio spindle / luv (median of the rounds' ratios): jobs/s " ..
         "%.2fx  %s (target >= 1.0x); CPU per job %.2fx"):format(
    ratio, ratio >= 1.0 and "PASS" or "MISS", cratio))
end

if only ~= "blocking" then
  -- many short pairs, alternating order, a new runtime each round (so that
  -- no one memory layout favours either side): the median of the pairs'
  -- ratios is what the machine's drift disturbs least
  local PAIRS = rounds and rounds * 2 + 1 or (quick and 5 or 81)
  local plain, pre, over = {}, {}, {}
  cpu_round(false); cpu_round(true)
  for r = 1, PAIRS do
    if r % 2 == 1 then
      plain[r] = cpu_round(false)
      pre[r] = cpu_round(true)
    else
      pre[r] = cpu_round(true)
      plain[r] = cpu_round(false)
    end
    over[r] = pre[r] / plain[r] - 1
  end
  local p0, p1, o = median(plain), median(pre), median(over)
  print(("\n## preempt = 10000 on a CPU-bound loop, %d iterations " ..
         "(median of %d pairs of rounds)\n"):format(LOOP, PAIRS))
  print(("| runtime | CPU s per round |\n| --- | ---: |\n| plain | %.4f |\n" ..
         "| preempt = 10000 | %.4f |"):format(p0, p1))
  print(("\noverhead (median of the pairs' ratios) = %.1f%%  %s (target <= 5%%)")
    :format(o * 100, o <= 0.05 and "PASS" or "MISS"))
end
rt:close()
