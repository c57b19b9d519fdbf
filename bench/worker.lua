-- bench/worker.lua: one measurement in a fresh process.
--
--   lua5.4 bench/worker.lua <lib> <workload> <n>
--
-- <lib> is raw | spindle | luv | luvcb | cqueues (implemented in
-- bench/w_<lib>.lua); <workload> is spawn_join | pingpong | sleep | steady | idle.
-- Prints one line "RESULT {...}" (a Lua table literal) on stdout; run.lua
-- collects it. A process per measurement keeps RSS numbers clean.

local dir = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/"
package.path = dir .. "?.lua;" .. package.path

local lib, workload, n = arg[1], arg[2], tonumber(arg[3])
if not (lib and workload and n) then
  io.stderr:write("usage: lua5.4 bench/worker.lua <lib> <workload> <n>\n")
  os.exit(2)
end
n = math.tointeger(n)

local util = require "util"

local function emit(t)
  t.lib, t.workload, t.n = lib, arg[2], n
  io.stdout:write("RESULT ", util.literal(t), "\n")
  io.stdout:flush()
  -- Skip lua_close: tearing down 100,000 suspended coroutines is not what
  -- is being measured, and some peers would take seconds to do it.
  os.exit(0, false)
end

-- "<workload>_warm": the same workload on a pre-touched heap (run.lua also
-- sets MALLOC_TRIM_THRESHOLD_ so freed memory stays mapped). It separates
-- the runtime's CPU cost from the cost of first-touch page faults, which
-- are very expensive on some VMs. Memory numbers are meaningless there.
local warm = workload:match("_warm$") ~= nil
if warm then workload = workload:gsub("_warm$", "") end

local ok, impl = pcall(require, "w_" .. lib)
if not ok then emit { error = "cannot load: " .. tostring(impl) } end
local run = impl[workload]
if not run then emit { unsupported = true } end

if warm then
  -- Touch about 4 KiB of heap per task in 1 KiB blocks, then free it all.
  local blocks = {}
  for i = 1, 4 * n do blocks[i] = string.rep("x", 1000) end
  blocks = nil
  util.gc()
end

local clock = util.clock
local r = {}

if workload == "spawn_join" then
  util.gc()
  r.base_kib = util.rss_kib()
  local elapsed, sum = run(n, clock)
  r.elapsed_s = elapsed
  r.tasks_per_s = n / elapsed
  r.peak_mib = util.peak_kib() / 1024
  r.peak_bytes_per_task = (util.peak_kib() - r.base_kib) * 1024 / n
  if sum ~= n * (n + 1) // 2 then
    r.error = ("wrong checksum %s, expected %d"):format(tostring(sum), n * (n + 1) // 2)
  end

elseif workload == "pingpong" then
  local elapsed, switches = run(n, clock)
  r.elapsed_s = elapsed
  r.switches_per_s = switches / elapsed
  if switches ~= n then
    r.error = ("counted %s switches, expected %d"):format(tostring(switches), n)
  end

elseif workload == "sleep" then
  -- The same pseudo-random durations, 0..100 ms, for every library.
  math.randomseed(42)
  local dur, own, hr = {}, {}, {}
  for i = 1, n do dur[i] = math.random() * 0.1; own[i] = false; hr[i] = false end
  util.gc()
  r.base_kib = util.rss_kib()
  r.wall_s = run(n, dur, own, hr, clock)
  r.bytes_per_task = (util.peak_kib() - r.base_kib) * 1024 / n
  for i = 1, n do
    if type(own[i]) ~= "number" or type(hr[i]) ~= "number" then
      r.error = ("task %d did not finish its sleep"):format(i)
      emit(r)
    end
  end
  -- A wake counts as early when it is before the deadline by more than
  -- floating-point noise.
  local EPS = 1e-9
  local function stats(lat, prefix)
    local early, min = 0, math.huge
    for i = 1, n do
      local v = lat[i]
      if v < -EPS then early = early + 1 end
      if v < min then min = v end
    end
    table.sort(lat)
    r[prefix .. "p50_ms"] = util.percentile(lat, 0.50) * 1e3
    r[prefix .. "p99_ms"] = util.percentile(lat, 0.99) * 1e3
    r[prefix .. "max_ms"] = lat[n] * 1e3
    r[prefix .. "min_ms"] = min * 1e3
    r[prefix .. "early"] = early
  end
  stats(own, "")
  stats(hr, "hr_")

elseif workload == "steady" then
  -- W6: n tasks re-sleeping random 0-100 ms for STEADY_SECONDS (default 5),
  -- the first second dropped.  CPU per wake is the process's CPU time
  -- (user + system) over the whole run divided by the wakes.
  local T = tonumber(os.getenv("STEADY_SECONDS") or "5")
  math.randomseed(7)
  local lat, k = {}, 0
  local function record(l) k = k + 1; lat[k] = l end
  local cpu0 = util.cpu_s and util.cpu_s() or os.clock()
  local wakes = run(n, T, 1.0, record)
  local cpu = (util.cpu_s and util.cpu_s() or os.clock()) - cpu0
  r.wakes = wakes
  r.cpu_us_per_wake = cpu / wakes * 1e6
  local early = 0
  for i = 1, k do if lat[i] < -1e-9 then early = early + 1 end end
  table.sort(lat)
  r.p50_ms = util.percentile(lat, 0.50) * 1e3
  r.p99_ms = util.percentile(lat, 0.99) * 1e3
  r.max_ms = lat[k] * 1e3
  r.early = early

elseif workload == "idle" then
  util.gc()
  r.base_kib = util.rss_kib()
  local base_heap = collectgarbage("count")
  local t_measured
  local function measure(started)
    util.gc()
    local rss = util.rss_kib()
    r.rss_mib = rss / 1024
    r.bytes_per_task = (rss - r.base_kib) * 1024 / n
    r.heap_bytes_per_task = (collectgarbage("count") - base_heap) * 1024 / n
    if started ~= n then
      r.error = ("only %s of %d tasks were blocked"):format(tostring(started), n)
    end
    t_measured = clock()
  end
  run(n, measure)
  if not t_measured then r.error = "measure() was never called" end
  -- Time from the measurement until the runtime returned (spindle: aborting
  -- and unwinding every sleeper; peers: stopping the loop).
  r.teardown_s = t_measured and clock() - t_measured

else
  r.error = "unknown workload " .. workload
end

emit(r)
