-- spindle_client.lua -- URL N CONCURRENCY: N keep-alive GETs with
-- spindle.http, CONCURRENCY tasks each doing its share one after another.
-- Prints RESULT <n> <wall seconds> <cpu seconds> (CPU: os.clock(), this
-- process, all threads).
local spindle = require "spindle"
local http = spindle.http

local url, n, conc = arg[1], tonumber(arg[2]), tonumber(arg[3])
local done, wall, cpu = 0, nil, nil
spindle.run(function()
  assert(http.get(url)) -- load what loads once
  local t0, c0 = spindle.now(), os.clock()
  local hs = {}
  for i = 1, conc do
    local share = n // conc + (i <= n % conc and 1 or 0)
    hs[i] = spindle.spawn(function()
      for _ = 1, share do
        local res, msg = http.get(url)
        assert(res and res.status == 200, msg)
        done = done + 1
      end
    end)
  end
  for i = 1, conc do hs[i]:join() end
  wall, cpu = spindle.now() - t0, os.clock() - c0
end)
print(("RESULT %d %.6f %.6f"):format(done, wall, cpu))
