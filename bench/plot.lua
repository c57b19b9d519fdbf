-- bench/plot.lua: turns the medians `bench/run.lua --data FILE` wrote into a
-- bar chart (SVG, by gnuplot): for each workload, every library's headline
-- figure relative to spindle's (spindle = 1; higher is better whichever way
-- the figure itself goes, so a bar below 1 is a library doing worse than
-- spindle on that workload).
--
--   lua5.4 bench/run.lua --data /tmp/bench.tsv > /tmp/bench.md
--   lua5.4 bench/plot.lua /tmp/bench.tsv docs/performance.svg
--
-- Needs gnuplot (Debian package `gnuplot-nox`; `make bench` installs it).

local data, out = arg[1], arg[2]
if not data or not out then
  io.stderr:write("usage: lua5.4 bench/plot.lua DATA.tsv OUT.svg\n")
  os.exit(2)
end

local LIBS = { "spindle", "raw", "luv", "luvcb", "cqueues" }
local NAMES = { spindle = "spindle", raw = "raw coroutines", luv = "luv (coroutines)",
  luvcb = "luv (callbacks)", cqueues = "cqueues" }
local LABELS = { spawn_join = "spawn+join", spawn_join_warm = "spawn+join (warm)",
  pingpong = "switches", sleep = "memory/sleeper", sleep_warm = "sleep (warm)",
  steady = "CPU per wake", idle = "memory/idle task" }

local rows, order = {}, {}
for line in assert(io.open(data)):lines() do
  local w, lib, _, higher, v = line:match("^(%S+)\t(%S+)\t(%S+)\t([01])\t(%S+)$")
  if w then
    if not rows[w] then rows[w] = { higher = higher == "1" }; order[#order + 1] = w end
    rows[w][lib] = tonumber(v)
  end
end

local used = {}
local tmp = os.tmpname()
local f = assert(io.open(tmp, "w"))
local head = { "workload" }
for _, lib in ipairs(LIBS) do head[#head + 1] = ("%q"):format(NAMES[lib]) end
f:write(table.concat(head, " "), "\n")
local n = 0
for _, w in ipairs(order) do
  local r = rows[w]
  local sp = r.spindle
  if sp and sp > 0 then
    n = n + 1
    local cells = { ("%q"):format(LABELS[w] or w) }
    for _, lib in ipairs(LIBS) do
      local v = r[lib]
      if v and v > 0 then
        used[lib] = true
        cells[#cells + 1] = ("%.4f"):format(r.higher and v / sp or sp / v)
      else
        cells[#cells + 1] = "-"
      end
    end
    f:write(table.concat(cells, " "), "\n")
  end
end
f:close()
if n == 0 then
  io.stderr:write("plot.lua: no workload with a spindle figure in ", data, "\n")
  os.remove(tmp)
  os.exit(1)
end

local cols = {}
for i, lib in ipairs(LIBS) do
  if used[lib] then
    cols[#cols + 1] = ("'%s' using %d:xtic(1) title columnheader(%d)"):format(tmp, i + 1, i + 1)
  end
end
local script = table.concat({
  "set terminal svg size 900,450 dynamic font 'sans,11' background '#ffffff'",
  ("set output '%s'"):format(out:gsub("'", "")),
  "set datafile missing '-'",
  "set style data histograms",
  "set style histogram clustered gap 1",
  "set style fill solid 0.85 border -1",
  "set boxwidth 0.9",
  "set ylabel 'relative to spindle (spindle = 1, higher is better)'",
  "set yrange [0:*]",
  "set grid ytics",
  "set key top right",
  "set xtics nomirror rotate by -15",
  "set title 'spindle and its peers, one run of bench/run.lua'",
  "plot " .. table.concat(cols, ", "),
}, "\n")
local p = assert(io.popen("gnuplot", "w"))
p:write(script, "\n")
local ok = p:close()
os.remove(tmp)
if not ok then
  io.stderr:write("plot.lua: gnuplot failed\n")
  os.exit(1)
end
io.write("wrote ", out, "\n")
