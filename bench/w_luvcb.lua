-- bench/w_luvcb.lua: luv with plain callbacks, no coroutines -- a "task" is
-- a uv_timer and its callback closure. Only the timer workloads make sense
-- here; it shows what a bare libuv timer costs from Lua. Clock: uv.now().

local uv = require "luv"
local new_timer, uv_now, ceil = uv.new_timer, uv.now, math.ceil

local W = {}

function W.sleep(n, dur, own, hr, clock)
  local wall, fired, t_start = nil, 0, nil
  local function start_all()
    t_start = clock()
    for i = 1, n do
      local d = dur[i]
      local timer = new_timer()
      local t0 = uv_now()
      local h0 = clock()
      timer:start(ceil(d * 1000), 0, function()
        local h1 = clock()
        local t1 = uv_now()
        timer:close()
        own[i] = (t1 - t0) * 1e-3 - d
        hr[i] = (h1 - h0) - d
        fired = fired + 1
        if fired == n then wall = clock() - t_start end
      end)
    end
  end
  -- Start the timers from inside the running loop, as a server would.
  local kick = new_timer()
  kick:start(0, 0, function() kick:close(); start_all() end)
  uv.run("default")
  return wall
end

function W.idle(n, measure)
  local started = 0
  local function cb() end
  for _ = 1, n do
    local timer = new_timer()
    timer:start(3600 * 1000, 0, function() cb(timer) end)
    started = started + 1
  end
  measure(started)
end

return W
