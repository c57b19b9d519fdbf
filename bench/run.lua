-- bench/run.lua: spindle side by side with raw coroutines, luv and cqueues.
--
--   lua5.4 bench/run.lua [--quick] [--repeat N] [--libs a,b,...]
--                        [--workloads a,b,...]
--
-- Every (workload, library) measurement runs in its own child process
--   lua5.4 bench/worker.lua <lib> <workload> <n>
-- so RSS numbers are clean; each is repeated (default 5 times, interleaved)
-- and the median is reported. Prints markdown tables, ratios, and PASS/MISS
-- for the targets of issue 2 section 5. Run from anywhere; children run
-- from the repository root and load a copy of build/spindle.so taken when
-- the run starts (LUA_CPATH), so one run never mixes two builds.
--
-- Exit status: 0, or 1 if a measurement failed (crash, wrong result,
-- library missing). A missed target does not fail the run.

local USAGE = [[
usage: lua5.4 bench/run.lua [options]
  --quick            small n, 1 repeat (a smoke run)
  --repeat N         repeats per measurement (default 5; --quick: 1)
  --libs a,b         subset of: raw,spindle,luv,luvcb,cqueues
  --workloads a,b    subset of: spawn_join,spawn_join_warm,pingpong,sleep,
                     sleep_warm,steady,idle
  --callgrind        also count instructions per task / per switch with
                     valgrind --tool=callgrind (stable on a noisy machine)
  --data FILE        also write each workload's headline median per library
                     as tab-separated lines (workload, library, key,
                     higher-is-better 1/0, median) for bench/plot.lua
]]

local WORKLOADS = {
  { id = "spawn_join", n = 100000, quick = 10000,
    title = "spawn+join %s tasks (main spawns all, then joins each)",
    libs = { "raw", "spindle", "luv", "cqueues" },
    cols = {
      { "tasks_per_s", "tasks/s", "rate", spread = true },
      { "peak_mib", "peak RSS MiB", "%.1f" },
      { "peak_bytes_per_task", "peak B/task", "%.0f" },
    },
    ratio = { key = "tasks_per_s", higher = true } },
  { id = "spawn_join_warm", n = 100000, quick = 10000, warm = true,
    title = "spawn+join %s tasks on a warm heap (info: no first-touch page faults)",
    libs = { "raw", "spindle", "luv", "cqueues" },
    cols = {
      { "tasks_per_s", "tasks/s", "rate", spread = true },
    },
    ratio = { key = "tasks_per_s", higher = true } },
  { id = "pingpong", n = 1000000, quick = 100000,
    title = "yield ping-pong between two tasks, %s switches",
    libs = { "raw", "spindle", "luv", "cqueues" },
    cols = {
      { "switches_per_s", "switches/s", "rate", spread = true },
      { "elapsed_s", "time s", "%.3f" },
    },
    ratio = { key = "switches_per_s", higher = true } },
  { id = "sleep", n = 100000, quick = 10000,
    title = "%s tasks sleeping random 0-100 ms (lateness by the library's clock; hr = uv.hrtime)",
    libs = { "spindle", "luv", "luvcb", "cqueues" },
    cols = {
      { "wall_s", "wall s", "%.3f" },
      { "p50_ms", "p50 ms", "%.1f", spread = true },
      { "p99_ms", "p99 ms", "%.1f", spread = true },
      { "max_ms", "max ms", "%.1f" },
      { "early", "early", "%d", agg = "max" },
      { "hr_p50_ms", "hr p50 ms", "%.1f" },
      { "hr_p99_ms", "hr p99 ms", "%.1f" },
      { "hr_min_ms", "hr min ms", "%.2f", agg = "min" },
      { "hr_early", "hr early", "%d", agg = "max" },
      { "bytes_per_task", "B/task", "%.0f" },
    },
    ratio = { key = "bytes_per_task", higher = false } },
  { id = "sleep_warm", n = 100000, quick = 10000, warm = true,
    title = "%s tasks sleeping random 0-100 ms on a warm heap (info)",
    libs = { "spindle", "luv", "luvcb", "cqueues" },
    cols = {
      { "wall_s", "wall s", "%.3f" },
      { "p50_ms", "p50 ms", "%.1f", spread = true },
      { "p99_ms", "p99 ms", "%.1f", spread = true },
      { "max_ms", "max ms", "%.1f" },
      { "early", "early", "%d", agg = "max" },
      { "hr_p99_ms", "hr p99 ms", "%.1f" },
      { "hr_early", "hr early", "%d", agg = "max" },
    } },
  { id = "steady", n = 10000, quick = 2000,
    title = "W6: %s tasks each re-sleeping random 0-100 ms for 5 s, starts spread, first second dropped",
    libs = { "spindle", "luv", "cqueues" },
    cols = {
      { "p50_ms", "p50 ms", "%.2f", spread = true },
      { "p99_ms", "p99 ms", "%.2f", spread = true },
      { "max_ms", "max ms", "%.1f" },
      { "early", "early", "%d", agg = "max" },
      { "wakes", "wakes", "%d" },
      { "cpu_us_per_wake", "CPU µs/wake", "%.2f", spread = true },
    },
    ratio = { key = "cpu_us_per_wake", higher = false } },
  { id = "idle", n = 100000, quick = 10000,
    title = "%s idle tasks blocked in sleep(3600)",
    libs = { "raw", "spindle", "luv", "luvcb", "cqueues" },
    cols = {
      { "bytes_per_task", "RSS B/task", "%.0f", spread = true },
      { "heap_bytes_per_task", "Lua heap B/task", "%.0f" },
      { "rss_mib", "RSS MiB", "%.1f" },
      { "teardown_s", "teardown s", "%.3f" },
    },
    ratio = { key = "bytes_per_task", higher = false } },
}

local LIB_NAMES = {
  raw = "raw coroutines",
  spindle = "spindle",
  luv = "luv + coroutine wrapper",
  luvcb = "luv callbacks",
  cqueues = "cqueues",
}
local LIB_ORDER = { "raw", "spindle", "luv", "luvcb", "cqueues" }

-- Options -----------------------------------------------------------------

local opts = { quick = false }
do
  local i = 1
  local function list(s)
    local t = {}
    for w in s:gmatch("[^,%s]+") do t[w] = true end
    return t
  end
  while i <= #arg do
    local a = arg[i]
    if a == "--quick" then opts.quick = true
    elseif a == "--repeat" then opts.rep = math.tointeger(tonumber(arg[i + 1])); i = i + 1
    elseif a == "--libs" then opts.libs = list(arg[i + 1] or ""); i = i + 1
    elseif a == "--workloads" then opts.workloads = list(arg[i + 1] or ""); i = i + 1
    elseif a == "--callgrind" then opts.callgrind = true
    elseif a == "--data" and arg[i + 1] then opts.data = arg[i + 1]; i = i + 1
    elseif a == "-h" or a == "--help" then io.write(USAGE); os.exit(0)
    else io.stderr:write("unknown option ", a, "\n", USAGE); os.exit(2) end
    i = i + 1
  end
  if opts.rep == nil then opts.rep = opts.quick and 1 or 5 end
  if not opts.rep or opts.rep < 1 then io.stderr:write(USAGE); os.exit(2) end
end

local ROOT = arg[0]:match("^(.*)/bench/[^/]*$") or "."

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function capture(cmd)
  local p = io.popen(cmd, "r")
  if not p then return nil end
  local out = p:read("a")
  p:close()
  return out
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

local ENV = "LUA_CPATH='./build/?.so;;' LUA_PATH='./lua/?.lua;./lua/?/init.lua;;'"

-- Every child of one run loads the same spindle.so: a copy taken at the
-- start, so a rebuild in the middle of a run cannot mix two builds.
local SNAPSHOT, BUILD_ID
if exists(ROOT .. "/build/spindle.so") then
  local dir = capture("mktemp -d 2>/dev/null")
  dir = dir and dir:match("^(%S+)")
  if dir and os.execute(("cp %s %s/spindle.so"):format(
      sh_quote(ROOT .. "/build/spindle.so"), sh_quote(dir))) then
    SNAPSHOT = dir
    ENV = ("LUA_CPATH=%s LUA_PATH='./lua/?.lua;./lua/?/init.lua;;'")
      :format(sh_quote(dir .. "/?.so;;"))
    BUILD_ID = (capture("sha1sum " .. sh_quote(dir .. "/spindle.so")) or "")
      :match("^(%x+)")
  end
end

-- For the warm-heap variants: glibc keeps freed memory mapped, and mid-size
-- blocks come from the (pre-touched) heap rather than fresh mmaps.
local WARM_ENV = "MALLOC_TRIM_THRESHOLD_=4294967295 MALLOC_MMAP_THRESHOLD_=33554432"

local function child(lib, workload, n, warm)
  local cmd = ("cd %s && %s %s timeout 600 lua5.4 bench/worker.lua %s %s %d 2>&1")
    :format(sh_quote(ROOT), ENV, warm and WARM_ENV or "", lib, workload, n)
  local p = assert(io.popen(cmd, "r"))
  local result, other = nil, {}
  for line in p:lines() do
    local lit = line:match("^RESULT (.*)$")
    if lit then
      local f = load("return " .. lit, "=result", "t", {})
      result = f and f()
    else
      other[#other + 1] = line
    end
  end
  local _, how, code = p:close()
  if not result then
    result = { error = ("no result (%s %s): %s"):format(how, tostring(code),
      table.concat(other, " | "):sub(1, 300)) }
  end
  return result
end

-- Header ------------------------------------------------------------------

local function machine()
  local cpu, cores = "?", 0
  local f = io.open("/proc/cpuinfo")
  if f then
    for line in f:lines() do
      local m = line:match("^model name%s*:%s*(.-)%s*$")
      if m then cpu = m; cores = cores + 1 end
    end
    f:close()
  end
  local mem = "?"
  f = io.open("/proc/meminfo")
  if f then
    local kb = tonumber(f:read("a"):match("MemTotal:%s*(%d+)"))
    if kb then mem = ("%.0f GiB"):format(kb / 1048576) end
    f:close()
  end
  local kernel = (capture("uname -r") or "?"):gsub("%s+$", "")
  return ("%s, %d cores, %s RAM, Linux %s"):format(cpu, cores, mem, kernel)
end

local function versions()
  local probe = ([[cd %s && %s lua5.4 -e '
    local v = {_VERSION}
    local ok, uv = pcall(require, "luv")
    v[#v+1] = ok and ("libuv " .. uv.version_string()) or "luv missing"
    local ok2, cq = pcall(require, "cqueues")
    v[#v+1] = ok2 and ("cqueues " .. tostring(cq.VERSION)) or "cqueues missing"
    local ok3, sp = pcall(require, "spindle")
    local sv = ok3 and tostring(sp._VERSION or sp.VERSION or sp.version or "(built)")
    v[#v+1] = ok3 and (sv:find("spindle", 1, true) and sv or "spindle " .. sv)
      or "spindle missing"
    io.write(table.concat(v, ", "))' 2>&1]]):format(sh_quote(ROOT), ENV)
  local lua = (capture("lua5.4 -v 2>&1") or ""):match("Lua [%d.]+") or "?"
  local out = capture(probe) or "?"
  return (out:gsub("^Lua 5%.4", lua))
end

local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return "?" end
  local s = f:read("l") or "?"
  f:close()
  return s:match("^(%S+ %S+ %S+)") or s
end

local function commit()
  local c = capture("git -C " .. sh_quote(ROOT) .. " rev-parse --short HEAD 2>/dev/null")
  return c and c:match("%x+") or "?"
end

-- Run ---------------------------------------------------------------------

local plan = {}
for _, w in ipairs(WORKLOADS) do
  if not opts.workloads or opts.workloads[w.id] then
    w.size = opts.quick and w.quick or w.n
    w.active = {}
    for _, lib in ipairs(w.libs) do
      if not opts.libs or opts.libs[lib] then w.active[#w.active + 1] = lib end
    end
    plan[#plan + 1] = w
  end
end

local spindle_built = exists(ROOT .. "/build/spindle.so")

io.write("# spindle benchmarks\n\n")
io.write(("%s, commit %s, %s\n"):format(os.date("!%Y-%m-%d %H:%M UTC"), commit(),
  opts.quick and "--quick (smoke run)" or "full run"))
io.write("machine: ", machine(), "\n")
if BUILD_ID then
  io.write("spindle.so: sha1 ", BUILD_ID:sub(1, 12), " (copied at start; every child loads that copy)\n")
end
io.write("versions: ", versions(), "\n")
io.write("load average at start: ", loadavg(), "\n")
io.write(("each cell: median of %d run%s, one process per run\n"):format(
  opts.rep, opts.rep == 1 and "" or "s"))
if not spindle_built then
  io.write("NOTE: build/spindle.so not found -- build it first; spindle is skipped\n")
end
io.write("\n")
io.flush()

local results = {} -- results[workload][lib] = { run1, run2, ... }
local total, done = 0, 0
for _, w in ipairs(plan) do total = total + #w.active * opts.rep end
local failed = false

for rep = 1, opts.rep do
  for _, w in ipairs(plan) do
    results[w.id] = results[w.id] or {}
    for _, lib in ipairs(w.active) do
      done = done + 1
      io.stderr:write(("[%d/%d] %s %s %d (run %d)\n"):format(done, total, lib, w.id, w.size, rep))
      local r
      if lib == "spindle" and not spindle_built then
        r = { error = "build/spindle.so not built" }
      else
        r = child(lib, w.id, w.size, w.warm)
      end
      if r.error then
        failed = true
        io.stderr:write("  error: ", r.error, "\n")
      end
      local list = results[w.id][lib] or {}
      results[w.id][lib] = list
      list[#list + 1] = r
    end
  end
end

-- Report ------------------------------------------------------------------

local function aggregate(list, key, how)
  local vals = {}
  for _, r in ipairs(list or {}) do
    if not r.error and not r.unsupported and type(r[key]) == "number" then
      vals[#vals + 1] = r[key]
    end
  end
  if #vals == 0 then return nil end
  table.sort(vals)
  if how == "max" then return vals[#vals], vals end
  if how == "min" then return vals[1], vals end
  local m = #vals
  local med = m % 2 == 1 and vals[(m + 1) // 2] or (vals[m // 2] + vals[m // 2 + 1]) / 2
  return med, vals
end

local function fmt_rate(v)
  if v >= 1e6 then return ("%.2f M"):format(v / 1e6) end
  if v >= 1e3 then return ("%.1f k"):format(v / 1e3) end
  return ("%.0f"):format(v)
end

local function fmt(v, f)
  if v == nil then return "-" end
  if f == "rate" then return fmt_rate(v) end
  if f == "%d" then return ("%d"):format(math.floor(v + 0.5)) end
  return f:format(v)
end

local function median_of(wid, lib, key, how)
  return (aggregate(results[wid] and results[wid][lib], key, how))
end

local function thousands(n)
  local s = tostring(n)
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

for _, w in ipairs(plan) do
  io.write("## ", w.title:format(thousands(w.size)), "\n\n")
  local head = { "library" }
  local rule = { "---" }
  for _, c in ipairs(w.cols) do
    head[#head + 1] = c[2]
    rule[#rule + 1] = "---:"
    if c.spread then head[#head + 1] = "±"; rule[#rule + 1] = "---:" end
  end
  io.write("| ", table.concat(head, " | "), " |\n| ", table.concat(rule, " | "), " |\n")
  for _, lib in ipairs(w.active) do
    local list = results[w.id][lib]
    local row = { LIB_NAMES[lib] }
    local err
    for _, r in ipairs(list) do err = err or r.error end
    for _, c in ipairs(w.cols) do
      local v, vals = aggregate(list, c[1], c.agg)
      row[#row + 1] = fmt(v, c[3])
      if c.spread then
        -- spread of the runs around the median, in percent
        row[#row + 1] = (vals and #vals > 1 and v ~= 0)
          and ("%.0f%%"):format((vals[#vals] - vals[1]) / 2 / math.abs(v) * 100) or ""
      end
    end
    if err then row[1] = row[1] .. " (ERROR)" end
    io.write("| ", table.concat(row, " | "), " |\n")
  end
  io.write("\n")
  local ratio = w.ratio or {}
  local sp = ratio.key and median_of(w.id, "spindle", ratio.key)
  if sp then
    local parts = {}
    for _, lib in ipairs(w.active) do
      local v = lib ~= "spindle" and median_of(w.id, lib, ratio.key)
      if v and v ~= 0 then
        parts[#parts + 1] = ("spindle / %s = %.2f×"):format(lib, sp / v)
      end
    end
    if #parts > 0 then
      io.write(("ratios (%s, %s is better): %s\n\n"):format(ratio.key,
        ratio.higher and "higher" or "lower", table.concat(parts, ", ")))
    end
  end
  local errors = 0
  for _, lib in ipairs(w.active) do
    for i, r in ipairs(results[w.id][lib]) do
      if r.error then
        io.write(("error: %s run %d: %s\n"):format(lib, i, r.error))
        errors = errors + 1
      end
    end
  end
  if errors > 0 then io.write("\n") end
end

-- Headline medians for bench/plot.lua (--data) ----------------------------

if opts.data then
  local f = assert(io.open(opts.data, "w"))
  for _, w in ipairs(plan) do
    local ratio = w.ratio or {}
    for _, lib in ipairs(ratio.key and w.active or {}) do
      local v = median_of(w.id, lib, ratio.key)
      if v then
        f:write(("%s\t%s\t%s\t%d\t%.6g\n"):format(w.id, lib, ratio.key,
          ratio.higher and 1 or 0, v))
      end
    end
  end
  f:close()
end

-- Instruction counts (--callgrind) -----------------------------------------

-- Instructions per task (per switch) = the difference between a run with n
-- and one with n/10, divided by 0.9 n: start-up and loading cancel out.
local cg = {}
if opts.callgrind then
  local CG = {
    { id = "spawn_join", n = 20000, unit = "tasks",
      title = "instructions per spawned+joined task" },
    { id = "pingpong", n = 200000, unit = "switches",
      title = "instructions per switch" },
  }
  local function count(lib, wid, n)
    local cmd = ("cd %s && %s valgrind --tool=callgrind --callgrind-out-file=/dev/null "
      .. "lua5.4 bench/worker.lua %s %s %d 2>&1"):format(sh_quote(ROOT), ENV, lib, wid, n)
    local out = capture(cmd) or ""
    local ir = out:match("Collected%s*:%s*(%d+)")
    if not ir or not out:find("RESULT", 1, true) or out:find("error=", 1, true) then
      return nil, out:sub(1, 300)
    end
    return tonumber(ir)
  end
  for _, c in ipairs(CG) do
    if not opts.workloads or opts.workloads[c.id] then
      io.write("## callgrind: ", c.title, " (n = ", thousands(c.n), " minus n = ",
        thousands(c.n // 10), ")\n\n| library | instructions | × raw |\n| --- | ---: | ---: |\n")
      local per = {}
      for _, lib in ipairs({ "raw", "spindle", "luv", "cqueues" }) do
        if (not opts.libs or opts.libs[lib]) and (lib ~= "spindle" or spindle_built) then
          io.stderr:write(("[callgrind] %s %s\n"):format(lib, c.id))
          local a, err = count(lib, c.id, c.n)
          local b = a and count(lib, c.id, c.n // 10)
          if a and b then
            per[lib] = (a - b) / (c.n - c.n // 10)
          else
            failed = true
            io.stderr:write("  error: ", tostring(err), "\n")
          end
          local v = per[lib]
          io.write(("| %s | %s | %s |\n"):format(LIB_NAMES[lib],
            v and ("%.0f"):format(v) or "error",
            (v and per.raw) and ("%.2f"):format(v / per.raw) or "-"))
        end
      end
      cg[c.id] = per
      io.write("\n")
      local sp = per.spindle
      if sp then
        local parts = {}
        for _, lib in ipairs({ "raw", "luv", "cqueues" }) do
          if per[lib] then
            parts[#parts + 1] = ("spindle / %s = %.2f×"):format(lib, per[lib] / sp)
          end
        end
        io.write("speed ratios from instruction counts (", c.unit,
          " per instruction): ", table.concat(parts, ", "), "\n\n")
      end
    end
  end
end

-- Targets (issue 2, section 5) --------------------------------------------

io.write("## targets (issue 2 §5)\n\n")
io.write("load average at end: ", loadavg(), "\n\n")
local function target(label, ok, measured)
  local status = ok == nil and "SKIP" or ok and "PASS" or "MISS"
  io.write(("- %-4s %s — measured %s\n"):format(status, label, measured))
end

local function ratio_target(label, wid, key, peer, need)
  local s, p = median_of(wid, "spindle", key), median_of(wid, peer, key)
  if not (s and p) then return target(label, nil, "n/a") end
  local r = s / p
  target(label, r >= need, ("%.2f× (%s vs %s)"):format(r, fmt_rate(s), fmt_rate(p)))
end

ratio_target("spawn+join ≥ 0.5× raw", "spawn_join", "tasks_per_s", "raw", 0.5)
ratio_target("spawn+join ≥ 3× cqueues", "spawn_join", "tasks_per_s", "cqueues", 3)
ratio_target("switches ≥ 0.5× raw", "pingpong", "switches_per_s", "raw", 0.5)
do
  local p99 = median_of("sleep", "spindle", "p99_ms")
  target("sleep lateness p99 ≤ 20 ms (spindle.now)", p99 and p99 <= 20,
    p99 and ("%.1f ms (uv.hrtime: %.1f ms)"):format(p99,
      median_of("sleep", "spindle", "hr_p99_ms") or 0/0) or "n/a")
  local early = median_of("sleep", "spindle", "early", "max")
  local hr_early = median_of("sleep", "spindle", "hr_early", "max")
  local hr_min = median_of("sleep", "spindle", "hr_min_ms", "min")
  target("sleep never early (spindle.now)", early and early == 0,
    early and ("%d early wakes in the worst run"):format(early) or "n/a")
  target("sleep never early (independent uv.hrtime)", hr_early and hr_early == 0,
    hr_early and ("%d early wakes in the worst run, min lateness %.3f ms")
      :format(hr_early, hr_min) or "n/a")
  local b = median_of("idle", "spindle", "bytes_per_task")
  target("≤ 1.3 KiB RSS per idle task", b and b <= 1.3 * 1024,
    b and ("%.0f B (%.2f KiB)"):format(b, b / 1024) or "n/a")
end
io.write("\n## targets (issue 12)\n\n")
ratio_target("W1 spawn+join ≥ 1.0× raw", "spawn_join", "tasks_per_s", "raw", 1.0)
ratio_target("W2 switches ≥ 0.9× raw", "pingpong", "switches_per_s", "raw", 0.9)
do
  local b = median_of("idle", "spindle", "bytes_per_task")
  target("W5 idle task ≤ 1,280 B RSS", b and b <= 1280,
    b and ("%.0f B"):format(b) or "n/a")
  local s, l = median_of("sleep", "spindle", "p99_ms"), median_of("sleep", "luv", "p99_ms")
  target("W3 burst lateness p99 ≤ luv+coroutines' p99", s and l and s <= l,
    s and l and ("%.1f ms vs %.1f ms"):format(s, l) or "n/a")
  local p99 = median_of("steady", "spindle", "p99_ms")
  target("W6 steady lateness p99 ≤ 2 ms", p99 and p99 <= 2,
    p99 and ("%.2f ms"):format(p99) or "n/a")
  local e = median_of("steady", "spindle", "early", "max")
  target("W6 never early", e and e == 0, e and ("%d early"):format(e) or "n/a")
  local c, q = median_of("steady", "spindle", "cpu_us_per_wake"),
    median_of("steady", "cqueues", "cpu_us_per_wake")
  target("W6 CPU per wake ≤ 0.6× cqueues", c and q and c / q <= 0.6,
    c and q and ("%.2f× (%.2f vs %.2f µs)"):format(c / q, c, q) or "n/a")
end
do -- the same checks without first-touch page faults (not targets)
  local info = {}
  local function r(wid, key, peer)
    local s, p = median_of(wid, "spindle", key), median_of(wid, peer, key)
    return s and p and ("%.2f×"):format(s / p)
  end
  local a, b = r("spawn_join_warm", "tasks_per_s", "raw"),
    r("spawn_join_warm", "tasks_per_s", "cqueues")
  if a then info[#info + 1] = "spawn+join spindle/raw " .. a end
  if b then info[#info + 1] = "spawn+join spindle/cqueues " .. b end
  local p99 = median_of("sleep_warm", "spindle", "p99_ms")
  if p99 then info[#info + 1] = ("sleep p99 %.1f ms"):format(p99) end
  local e = median_of("sleep_warm", "spindle", "hr_early", "max")
  if e then info[#info + 1] = ("%d early (hrtime)"):format(e) end
  if #info > 0 then
    io.write("- info: on a warm heap: ", table.concat(info, ", "), "\n")
  end
  local sj, pp = cg.spawn_join or {}, cg.pingpong or {}
  local parts = {}
  if sj.spindle and sj.raw then
    parts[#parts + 1] = ("spawn+join spindle/raw %.2f×"):format(sj.raw / sj.spindle)
  end
  if sj.spindle and sj.cqueues then
    parts[#parts + 1] = ("spawn+join spindle/cqueues %.2f×"):format(sj.cqueues / sj.spindle)
  end
  if pp.spindle and pp.raw then
    parts[#parts + 1] = ("switches spindle/raw %.2f×"):format(pp.raw / pp.spindle)
  end
  if #parts > 0 then
    io.write("- info: by instruction count (callgrind): ", table.concat(parts, ", "), "\n")
  end
end
io.write("\n")
if SNAPSHOT then os.execute("rm -rf " .. sh_quote(SNAPSHOT)) end
os.exit(failed and 1 or 0)
