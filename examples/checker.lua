-- checker.lua -- check many network targets concurrently, with a limit on
-- how many run at once and a deadline per target.
--
--   ./build/spindle examples/checker.lua
--
-- To stay self-contained the targets are local: a few servers that greet
-- with a banner, one that accepts but says nothing (too slow), one whose
-- accept queue is full (its connects hang), and a port nobody listens on
-- (refused).  Each check is `connect + read the banner` under
-- spindle.timeout; a semaphore keeps at most LIMIT checks in flight.  The
-- script prints one line per target and a summary, and exits 0.

local spindle = require "spindle"
local net = spindle.net

local LIMIT, DEADLINE = 4, 0.3

-- ---------------------------------------------------------------- targets

local targets, servers = {}, {}

local function greeter(name)
  local srv = assert(net.listen("127.0.0.1", 0))
  servers[#servers + 1] = srv
  spindle.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      spindle.spawn(function()
        local conn <close> = c
        conn:write("220 ", name, " ready\r\n")
        conn:read_line() -- until the checker hangs up
      end)
    end
  end)
  return select(2, srv:local_addr())
end

for i = 1, 8 do
  targets[#targets + 1] = {name = "greeter-" .. i, port = greeter("greeter-" .. i)}
end

do -- accepts, never speaks
  local srv = assert(net.listen("127.0.0.1", 0))
  servers[#servers + 1] = srv
  local held = {}
  spindle.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      held[#held + 1] = c
    end
  end)
  targets[#targets + 1] = {name = "silent", port = select(2, srv:local_addr())}
end

do -- never accepts and its queue is full: connects hang
  local srv = assert(net.listen("127.0.0.1", 0, {backlog = 1}))
  servers[#servers + 1] = srv
  local port = select(2, srv:local_addr())
  local fill = {}
  for _ = 1, 8 do
    local s = net.connect("127.0.0.1", port, {timeout = 0.1})
    if not s then break end
    fill[#fill + 1] = s
  end
  servers[#servers + 1] = {close = function() for _, s in ipairs(fill) do s:close() end end}
  targets[#targets + 1] = {name = "full", port = port}
end

do -- nobody listens
  local srv = assert(net.listen("127.0.0.1", 0))
  local port = select(2, srv:local_addr())
  srv:close()
  targets[#targets + 1] = {name = "closed", port = port}
end

-- ---------------------------------------------------------------- checker

local sem = spindle.semaphore(LIMIT)
local in_flight, max_in_flight = 0, 0

-- One check: "up <banner>" or "down <reason>".
local function check(t)
  local permit <close> = sem:acquire()
  in_flight = in_flight + 1
  max_in_flight = math.max(max_in_flight, in_flight)
  local t0 = spindle.now()
  local ok, res = pcall(spindle.timeout, DEADLINE, function()
    local s <close>, msg, code = net.connect("127.0.0.1", t.port)
    if not s then return "down " .. code end
    local banner, msg2 = s:read_line(512)
    if not banner then return "down " .. msg2 end
    return "up   " .. banner
  end)
  in_flight = in_flight - 1
  if not ok then
    if not spindle.is_timeout(res) then error(res, 0) end
    res = "down timeout"
  end
  return res, spindle.now() - t0
end

local t0 = spindle.now()
local handles = {}
for i, t in ipairs(targets) do handles[i] = spindle.spawn(check, t) end

local up, down = 0, 0
local results = {}
for i, t in ipairs(targets) do
  local res, took = handles[i]:join()
  results[t.name] = res
  if res:sub(1, 2) == "up" then up = up + 1 else down = down + 1 end
  print(("%-10s %-30s %.3f s"):format(t.name, res, took))
end
print(("%d targets, %d up, %d down, at most %d at once, %.2f s in all")
  :format(#targets, up, down, max_in_flight, spindle.now() - t0))

assert(up == 8 and down == 3)
assert(results.silent == "down timeout")
assert(results.full == "down timeout")
assert(results.closed == "down ECONNREFUSED")
assert(max_in_flight <= LIMIT)
for _, s in ipairs(servers) do s:close() end
print("ok")
