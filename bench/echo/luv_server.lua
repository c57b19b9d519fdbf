-- bench/echo/luv_server.lua -- the luv (callback) echo server.
--   lua5.4 bench/echo/luv_server.lua [port]
-- Reading pauses while more than 1 MiB of echo is queued.
local uv = require "luv"
local srv = uv.new_tcp()
assert(srv:bind("127.0.0.1", tonumber(arg[1]) or 0))
assert(srv:listen(1024, function(err)
  assert(not err, err)
  local c = uv.new_tcp()
  srv:accept(c)
  c:nodelay(true)
  local function reader(rerr, data)
    if rerr or not data then c:close() return end
    c:write(data)
    if c:get_write_queue_size() > 1048576 then
      c:read_stop()
      c:write("", function() c:read_start(reader) end)
    end
  end
  c:read_start(reader)
end))
io.stdout:write("port ", srv:getsockname().port, "\n")
io.stdout:flush()
uv.run()
