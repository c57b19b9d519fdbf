-- bench/idle_breakdown.lua: where the bytes of an idle spindle task go.
--
--   lua5.4 bench/idle_breakdown.lua [n]          (n = 100000 by default)
--
-- Measures, each case in its own process (so RSS numbers are clean), the
-- Lua heap (collectgarbage "count") and the resident set (VmRSS) per object
-- after two full collections, against a baseline taken in the same process
-- once the libraries are loaded:
--
--   raw        a coroutine suspended in coroutine.yield, kept in an array
--              (W5's floor: bench/w_raw.lua)
--   pcall      a coroutine whose body is pcall(f) and f is suspended in
--              coroutine.yield: the frame shape of a spindle task (task_body
--              is a C function that calls the body with a yieldable pcall),
--              kept in an array
--   spawned    spindle tasks spawned and not started yet: the handle (the
--              task record in a userdata, its function in the user value)
--              and its slot in the anchors table
--   idle       spindle tasks blocked in spindle.sleep(3600) (W5)
--
-- and prints the differences that name the components: the task_body
-- frame (pcall - raw), the handle (spawned - the array slot), and what is
-- left (the timer heap entry, which lives outside the Lua heap).
-- Children run from the repository root with the module from ./build.

local N = math.tointeger(tonumber(arg[1] or "100000"))
local ROOT = arg[0]:match("^(.*)/bench/[^/]*$") or "."

local function rss_kib()
  local f = assert(io.open("/proc/self/status", "r"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+) kB"))
end

local function gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- Child: one case, prints "<heap bytes per object> <rss bytes per object>".
if arg[2] then
  local case, n = arg[2], N
  local spindle = case:match("^s") and require "spindle" or nil
  local base_rss, base_heap
  local function base()
    gc()
    base_rss, base_heap = rss_kib(), collectgarbage("count")
  end
  local function measure()
    gc()
    local heap = (collectgarbage("count") - base_heap) * 1024 / n
    local rss = (rss_kib() - base_rss) * 1024 / n
    io.write(("%.1f %.1f\n"):format(heap, rss))
    io.flush()
    os.exit(0, false) -- tearing down is not measured
  end
  local yield = coroutine.yield
  if case == "raw" or case == "pcall" then
    local function idle() yield() end
    base()
    local cos = {}
    for i = 1, n do
      local co
      if case == "raw" then
        co = coroutine.create(idle)
        assert(coroutine.resume(co))
      else
        co = coroutine.create(pcall)
        assert(coroutine.resume(co, idle))
      end
      cos[i] = co
    end
    measure()
  elseif case == "spawned" then
    local function body() end
    spindle.run(function()
      base()
      for _ = 1, n do spindle.spawn(body) end
      measure()
    end)
  elseif case == "sidle" then
    local started = 0
    local function idle()
      started = started + 1
      spindle.sleep(3600)
    end
    spindle.run(function()
      base()
      for _ = 1, n do spindle.spawn(idle) end
      while started < n do spindle.yield() end
      measure()
    end)
  end
  error("unknown case " .. case)
end

-- Parent: run every case, print the table.
local function run(case)
  local cmd = ("cd '%s' && LUA_CPATH='./build/?.so;;' " ..
    "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' lua5.4 bench/idle_breakdown.lua %d %s")
    :format(ROOT, N, case)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  local heap, rss = out:match("^(%S+) (%S+)")
  assert(heap, case .. ": no result: " .. out)
  return tonumber(heap), tonumber(rss)
end

local r = {}
for _, c in ipairs { "raw", "pcall", "spawned", "sidle" } do
  r[c] = { run(c) }
end
-- The array (raw, pcall) and the anchors table (spawned, idle) grow the
-- same way: one 16-byte slot per object, the table's array part rounded up
-- to a power of two.  What an empty table slot costs, measured the same way:
local slot = 16 * (1 << math.ceil(math.log(N, 2))) / N

local function row(name, h, s, what)
  io.write(("| %s | %.0f | %.0f |%s\n"):format(name, h, s,
    what and " " .. what .. " |" or ""))
end
io.write(("%d objects each; bytes per object, Lua heap and RSS\n\n"):format(N))
io.write("| measured | Lua heap | RSS | what |\n| --- | ---: | ---: | --- |\n")
row("raw coroutine in yield", r.raw[1], r.raw[2], "lua_State, 45-slot stack, 2 CallInfo, array slot")
row("coroutine in pcall → yield", r.pcall[1], r.pcall[2], "the same + 1 CallInfo (a C frame)")
row("spindle task, spawned", r.spawned[1], r.spawned[2], "handle (task record + 1 user value) + anchors slot")
row("spindle task in sleep (W5)", r.sidle[1], r.sidle[2], "")
io.write("\n| component of an idle task | Lua heap | RSS |\n| --- | ---: | ---: |\n")
row("coroutine (as raw, array slot included)", r.raw[1], r.raw[2])
row("task_body frame (pcall − raw)", r.pcall[1] - r.raw[1], r.pcall[2] - r.raw[2])
row("handle userdata (spawned − table slot)", r.spawned[1] - slot, r.spawned[2] - slot)
local rest_h = r.sidle[1] - r.pcall[1] - (r.spawned[1] - slot)
local rest_s = r.sidle[2] - r.pcall[2] - (r.spawned[2] - slot)
row("rest: timer heap entry (C memory), …", rest_h, rest_s)
row("**total over raw**", r.sidle[1] - r.raw[1], r.sidle[2] - r.raw[2])
