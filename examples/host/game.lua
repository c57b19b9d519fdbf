-- examples/host/game.lua -- the "game" script driven by host.c: an echo
-- server and 50 client tasks that talk to it over loopback TCP with timers
-- in between, while the host steps the runtime once a frame.
local spindle = require "spindle"

local CLIENTS, MESSAGES = 50, 30

local srv = assert(spindle.net.listen("127.0.0.1", 0))
local _, port = srv:local_addr()

local server = spindle.spawn(function()
  while true do
    local c = srv:accept()
    if not c then return end
    spindle.spawn(function()
      local conn <close> = c
      for line in conn:lines() do conn:write(line, "\n") end
    end)
  end
end)

local clients = {}
for i = 1, CLIENTS do
  clients[i] = spindle.spawn(function()
    local s <close> = assert(spindle.net.connect("127.0.0.1", port))
    for m = 1, MESSAGES do
      spindle.sleep(0.001 * ((i * 7 + m * 13) % 20)) -- 0..19 ms
      local msg = ("client %d message %d"):format(i, m)
      assert(s:write(msg, "\n"))
      assert(s:read_line() == msg, "echo mismatch")
    end
    spindle.next_step() -- wait for a frame, as game code does
    return MESSAGES
  end)
end

local total = 0
for _, h in ipairs(clients) do total = total + h:join() end
srv:close()
server:abort()
print(("game: %d clients exchanged %d messages"):format(CLIENTS, total))
assert(total == CLIENTS * MESSAGES)
