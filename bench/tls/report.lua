-- bench/tls/report.lua -- the report of bench/tls/run.sh: medians per
-- server and mode, ratios against the C server and cqueues, PASS/MISS for
-- the targets of issue 10.
--
--   lua5.4 bench/tls/report.lua HEADER RESULTS
--
-- HEADER: key=value lines (date, machine, versions, parameters...).
-- RESULTS: one line per measurement, "server=S round=R mode=M key=value ..."
-- as printed by bench/tls/client.c (plus error=... or skipped=1 lines).
-- Exit status 1 when any measurement failed.

local header, results = {}, {}
for line in io.lines((assert(arg[1], "usage: report.lua HEADER RESULTS"))) do
  local k, v = line:match("^([%w_]+)=(.*)$")
  if k then header[k] = v end
end

local failed, skipped = false, {}
local runs = {} -- runs[server][mode] = { {key = value, ...}, ... }
local proto
for line in io.lines((assert(arg[2], "usage: report.lua HEADER RESULTS"))) do
  local r = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
  if r.skipped then
    skipped[r.server] = true
  elseif r.server and r.mode then
    if r.error or (r.errors and r.errors ~= 0) then failed = true end
    runs[r.server] = runs[r.server] or {}
    runs[r.server][r.mode] = runs[r.server][r.mode] or {}
    table.insert(runs[r.server][r.mode], r)
    if r.proto and r.proto ~= "?" and not proto then
      proto = ("%s, %s, %s"):format(r.proto, r.cipher, r.group)
    end
  end
end

-- Median of key over the good runs of server/mode, and the runs' values.
local function median(server, mode, key)
  local vals = {}
  for _, r in ipairs((runs[server] or {})[mode] or {}) do
    if not r.error and type(r[key]) == "number" then vals[#vals + 1] = r[key] end
  end
  if #vals == 0 then return nil end
  table.sort(vals)
  local m = #vals
  return m % 2 == 1 and vals[(m + 1) // 2] or (vals[m // 2] + vals[m // 2 + 1]) / 2,
    vals
end

local function spread(server, mode, key)
  local v, vals = median(server, mode, key)
  if not v or #vals < 2 or v == 0 then return "" end
  return ("%.0f%%"):format((vals[#vals] - vals[1]) / 2 / math.abs(v) * 100)
end

local function errors_of(server, mode)
  local n = 0
  for _, r in ipairs((runs[server] or {})[mode] or {}) do
    if r.error or (r.errors and r.errors ~= 0) then n = n + 1 end
  end
  return n
end

local function f(v, fmt) return v and fmt:format(v) or "-" end

local function ratio(a, b) return (a and b and b ~= 0) and a / b or nil end

local NAMES = { c = "C (libuv + OpenSSL memory BIOs)", cqueues = "cqueues + luaossl",
  spindle = "spindle" }
local servers = {}
for s in (header.servers or "c cqueues spindle"):gmatch("%S+") do
  servers[#servers + 1] = s
end

local P = {}
for k, v in (header.params or ""):gmatch("([%w_]+)=(%S+)") do P[k] = v end

io.write("# TLS echo benchmarks (bench/tls)\n\n")
io.write(("%s, commit %s, %s\n"):format(header.date or "?", header.commit or "?",
  P.rounds == "1" and "1 round" or ((P.rounds or "?") .. " rounds, interleaved; each cell the median")))
if (header.params or ""):find("quick", 1, true) then io.write("--quick (smoke run)\n") end
io.write("machine: ", header.machine or "?", "\n")
io.write(("versions: %s, libuv %s, %s, lua-cqueues %s, lua-luaossl %s\n"):format(
  header.openssl or "?", header.libuv or "?", header.lua or "?",
  header.cqueues or "?", header.luaossl or "?"))
io.write("negotiated: ", proto or "?", "; certificate P-256 ECDSA\n")
io.write("pinning: ", header.pinning or "?", "\n")
io.write("spindle: ", header.spindle_bin or "?", " (copied at start)\n")
io.write(("load average at start: %s, at end: %s\n\n"):format(
  header.load_start or "?", header.load_end or "?"))

local function not_measured(s)
  if s == "spindle" and (skipped.spindle or header.spindle_note ~= "") then
    return "not yet measured (" .. (header.spindle_note ~= "" and header.spindle_note
      or "skipped") .. ")"
  end
  return nil
end

local client_bound = {}

-- One table: cols = { {key, title, fmt, spread?}, ... }, then for each
-- rks = { {key, name}, ... } its ratio against C and against cqueues.
local function table_for(mode, title, cols, rks)
  io.write("## ", title, "\n\n")
  local head, rule = { "server" }, { "---" }
  for _, c in ipairs(cols) do
    head[#head + 1] = c[2]
    rule[#rule + 1] = "---:"
    if c[4] then head[#head + 1] = "±"; rule[#rule + 1] = "---:" end
  end
  for _, rk in ipairs(rks) do
    for _, peer in ipairs({ "c", "cqueues" }) do
      head[#head + 1] = rk[2] .. " ÷ " .. (peer == "c" and "C" or peer)
      rule[#rule + 1] = "---:"
    end
  end
  io.write("| ", table.concat(head, " | "), " |\n| ", table.concat(rule, " | "), " |\n")
  for _, s in ipairs(servers) do
    local row = { NAMES[s] or s }
    local nm = not_measured(s)
    if nm then
      row[#row + 1] = nm
      for _ = 3, #head do row[#row + 1] = "" end
    else
      for _, c in ipairs(cols) do
        row[#row + 1] = f((median(s, mode, c[1])), c[3])
        if c[4] then row[#row + 1] = spread(s, mode, c[1]) end
      end
      for _, rk in ipairs(rks) do
        for _, peer in ipairs({ "c", "cqueues" }) do
          local r = ratio(median(s, mode, rk[1]), median(peer, mode, rk[1]))
          row[#row + 1] = r and ("%.2f"):format(r) or "-"
        end
      end
      local e = errors_of(s, mode)
      if e > 0 then row[1] = row[1] .. (" (%d failed)"):format(e) end
      local cpu = median(s, mode, "client_cpu_pct")
      if cpu and cpu >= 90 then client_bound[#client_bound + 1] = mode .. "/" .. s end
    end
    io.write("| ", table.concat(row, " | "), " |\n")
  end
  io.write("\n")
end

table_for("hs", ("handshakes: %s clients, each looping connect + full handshake + one 64 B echo + close, %s s")
  :format(P.hs_conns or "?", P.secs or "?"), {
    { "hs_per_s", "handshakes/s", "%.0f", true },
    { "server_us_per_hs", "server CPU µs/hs", "%.0f", true },
    { "client_cpu_pct", "client CPU %", "%.0f" },
    { "p50_us", "p50 µs", "%.0f" },
    { "p99_us", "p99 µs", "%.0f" },
  }, { { "hs_per_s", "hs/s" }, { "server_us_per_hs", "CPU/hs" } })
local ec, es = (P.echo or ""):match("^(%d+)x(%d+)B$")
table_for("echo", ("echo: %s connections, each sending %s B and waiting for its echo, %s s")
  :format(ec or "?", es or "?", P.secs or "?"), {
    { "rt_per_s", "round trips/s", "%.0f", true },
    { "server_us_per_rt", "server CPU µs/rt", "%.2f", true },
    { "client_cpu_pct", "client CPU %", "%.0f" },
    { "p50_us", "p50 µs", "%.0f" },
    { "p99_us", "p99 µs", "%.0f" },
  }, { { "rt_per_s", "rt/s" }, { "server_us_per_rt", "CPU/rt" } })
table_for("bulk", ("bulk: %s MiB each way through one connection"):format(P.mib or "?"), {
    { "mb_per_s", "MB/s", "%.1f", true },
    { "server_us_per_mb", "server CPU µs/MB", "%.0f", true },
    { "client_cpu_pct", "client CPU %", "%.0f" },
  }, { { "mb_per_s", "MB/s" }, { "server_us_per_mb", "CPU/MB" } })
io.write("Ratios: a rate ÷ a peer's rate (higher is better); CPU ÷ a peer's CPU ",
  "(lower is better).\n\n")

if #client_bound > 0 then
  io.write("client-bound (the client used ≥ 90 % of its core, so the rate is the ",
    "client's limit; compare server CPU instead): ", table.concat(client_bound, ", "), "\n\n")
end

io.write("## targets (issue 10)\n\n")
local function target(label, ok, measured)
  io.write(("- %s %s — %s\n"):format(ok == nil and "n/a " or ok and "PASS" or "MISS",
    label, measured))
end
local function check(label, mode, key, peer, need, lower, fmt)
  local nm = not_measured("spindle")
  if nm then return target(label, nil, nm) end
  local s, p = median("spindle", mode, key), median(peer, mode, key)
  local r = ratio(s, p)
  if not r then return target(label, nil, "no measurement") end
  target(label, lower and r <= need or (not lower and r >= need),
    ("measured %.3f× (" .. fmt .. " vs " .. fmt .. ")"):format(r, s, p))
end
check("handshakes/s ≥ 0.9× C", "hs", "hs_per_s", "c", 0.9, false, "%.0f")
check("echo round trips/s ≥ 0.9× C", "echo", "rt_per_s", "c", 0.9, false, "%.0f")
check("server CPU per round trip ≤ 1.1× C", "echo", "server_us_per_rt", "c", 1.1, true, "%.2f µs")
check("bulk MB/s ≥ 0.9× C", "bulk", "mb_per_s", "c", 0.9, false, "%.1f")
check("bulk MB/s ≥ 1.5× cqueues", "bulk", "mb_per_s", "cqueues", 1.5, false, "%.1f")
do -- server CPU per unit of work, for the record (not targets)
  local parts = {}
  for _, x in ipairs({ { "hs", "server_us_per_hs", "per handshake" },
                       { "bulk", "server_us_per_mb", "per MB" } }) do
    for _, peer in ipairs({ "c", "cqueues" }) do
      local r = not not_measured("spindle")
        and ratio(median("spindle", x[1], x[2]), median(peer, x[1], x[2]))
      if r then
        parts[#parts + 1] = ("server CPU %s spindle/%s %.2f×"):format(x[3],
          peer == "c" and "C" or peer, r)
      end
    end
  end
  local r = ratio(median("cqueues", "bulk", "mb_per_s"), median("c", "bulk", "mb_per_s"))
  if r then parts[#parts + 1] = ("bulk cqueues/C %.2f×"):format(r) end
  r = ratio(median("cqueues", "hs", "server_us_per_hs"), median("c", "hs", "server_us_per_hs"))
  if r then parts[#parts + 1] = ("server CPU per handshake cqueues/C %.2f×"):format(r) end
  if #parts > 0 then io.write("- info: ", table.concat(parts, ", "), "\n") end
end
io.write("\n")
if failed then
  io.write("some measurements failed (see the tables' \"failed\" marks and stderr)\n")
end
os.exit(failed and 1 or 0)
