-- bench/util.lua: helpers shared by the benchmark children and the
-- stand-alone benchmarks (bench/sync_bench.lua, bench/blocking_bench.lua).
--
-- Every child (bench/worker.lua) uses the same stopwatch -- luv's
-- uv.hrtime(), a monotonic nanosecond clock -- so throughput numbers are
-- comparable across libraries, and reads memory from /proc/self/status.

local M = {}

local hrtime = require("luv").hrtime

-- Seconds from an arbitrary origin, monotonic, nanosecond resolution.
function M.clock() return hrtime() * 1e-9 end

-- Values from /proc/self/status in KiB: VmRSS (current) and VmHWM (peak).
local function status(field)
  local f = assert(io.open("/proc/self/status", "r"))
  local text = f:read("a")
  f:close()
  return tonumber(text:match(field .. ":%s*(%d+) kB"))
end
function M.rss_kib() return status("VmRSS") end
function M.peak_kib() return status("VmHWM") end

-- A full collection, twice (finalizers may free more on the second pass).
function M.gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- Percentile p (0..1) of an array that is already sorted.
function M.percentile(sorted, p)
  local n = #sorted
  if n == 0 then return nil end
  local i = math.ceil(p * n)
  if i < 1 then i = 1 end
  return sorted[i]
end

-- The median of an array of numbers (sorts it in place; the lower middle
-- of an even count).
function M.median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

-- Serialise a flat table of numbers/strings/booleans as one Lua literal.
function M.literal(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    local s
    if type(v) == "string" then s = string.format("%q", v)
    elseif math.type(v) == "float" then s = string.format("%.17g", v)
      if s == "inf" or s == "-inf" or s == "nan" or s == "-nan" then
        s = string.format("%q", s)
      end
    else s = tostring(v) end
    parts[#parts + 1] = k .. "=" .. s
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

return M
