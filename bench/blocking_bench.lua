-- bench/blocking_bench.lua: spindle.blocking next to luv's thread pool, and
-- the cost of preemption (issue 12, targets 5).
--
--   lua5.4 bench/blocking_bench.lua [--quick]
--
-- 1. 1,000 small jobs (a sum of 1..2,000 each), all queued at once:
--    spindle.blocking (worker states reused) vs luv's uv.new_work +
--    work:queue (luv keeps one Lua state per pool thread).  Jobs/s,
--    median of 5 interleaved rounds; target >= 1.0x luv.
-- 2. A CPU-bound loop in one task, with preempt = 10000 and without:
--    overhead of the count hook; target <= 5%.
-- Prints a markdown table and PASS/MISS.  Needs build/spindle.so and
-- lua-luv (Debian).
package.cpath = "./build/?.so;" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local spindle = require "spindle"
local uv = require "luv"
local median = dofile("bench/util.lua").median

local quick = arg[1] == "--quick"
local JOBS = quick and 200 or 1000
local ROUNDS = quick and 1 or 5

local function job(n)
  local s = 0
  for i = 1, n do s = s + i end
  return s
end

-- One runtime for every round, as a program has: its worker states are
-- made once and reused.
local rt = spindle.runtime()

local function spindle_round()
  local t0 = uv.hrtime()
  rt:run(function()
    local hs = {}
    for i = 1, JOBS do hs[i] = spindle.spawn(spindle.blocking, job, 2000) end
    for i = 1, JOBS do assert(hs[i]:join() == 2001000) end
  end)
  return JOBS / ((uv.hrtime() - t0) / 1e9)
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
  local t0 = uv.hrtime()
  for _ = 1, JOBS do work:queue(2000) end
  while done < JOBS do uv.run("once") end
  return JOBS / ((uv.hrtime() - t0) / 1e9)
end

local function cpu_round(preempt)
  local rt = spindle.runtime(preempt and {preempt = 10000} or nil)
  local t0 = os.clock()
  rt:run(function()
    local s = 0
    for i = 1, (quick and 2e6 or 2e7) do s = s + i % 7 end
    return s
  end)
  rt:close()
  return os.clock() - t0
end

local sp, lv, plain, pre = {}, {}, {}, {}
spindle_round(); luv_round() -- warm the pools and the thread pool
for r = 1, ROUNDS do
  sp[r] = spindle_round()
  lv[r] = luv_round()
  plain[r] = cpu_round(false)
  pre[r] = cpu_round(true)
end
rt:close()
local s, l = median(sp), median(lv)
local p0, p1 = median(plain), median(pre)
print(("## spindle.blocking, %d small jobs (median of %d)\n"):format(JOBS, ROUNDS))
print("| library | jobs/s |\n| --- | ---: |")
print(("| spindle.blocking | %.0f |"):format(s))
print(("| luv new_work/queue | %.0f |"):format(l))
print(("\nratio spindle / luv = %.2fx  %s (target >= 1.0x)"):format(
  s / l, s / l >= 1.0 and "PASS" or "MISS"))
print(("\n## preempt = 10000 on a CPU-bound loop (median of %d)\n"):format(ROUNDS))
print(("| plain | %.3f s CPU |\n| preempt = 10000 | %.3f s CPU |"):format(p0, p1))
print(("\noverhead = %.1f%%  %s (target <= 5%%)"):format(
  (p1 / p0 - 1) * 100, p1 / p0 <= 1.05 and "PASS" or "MISS"))
