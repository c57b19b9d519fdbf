-- spec/helpers/net.lua -- shared by the spec/20-net-*_spec.lua files.
--
--   local N = require "spec.helpers.net"   (see spec/helpers/init.lua)
--   N.spindle, N.net         the module and spindle.net
--   N.run(fn, ...)           fn as the main task of a fresh runtime (real
--                            clock), closed after; re-raises fn's error
--   N.pair()                 client, server-side stream and port of a fresh
--                            loopback TCP connection (inside a task)
--   N.fd_count()             open descriptors of this process
--   N.check_fds(_ENV)        installs setup/before_each/after_each (busted
--                            gives each spec file its own environment, so
--                            the file passes it) so that every spec of the
--                            file leaves the descriptor count as it was

local H = require "spec.helpers"

local N = {}
N.spindle = H.spindle
N.net = N.spindle.net
N.fd_count = H.fd_count

function N.run(fn, ...)
  local rt = N.spindle.runtime()
  local r = table.pack(pcall(rt.run, rt, fn, ...))
  rt:close()
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

function N.pair()
  local srv = assert(N.net.listen("127.0.0.1", 0))
  local _, port = srv:local_addr()
  local acc = N.spindle.spawn(function() return assert(srv:accept()) end)
  local c = assert(N.net.connect("127.0.0.1", port))
  local s = acc:join()
  srv:close()
  return c, s, port
end

function N.check_fds(env)
  -- libuv opens a few process-wide descriptors once (its signal pipe):
  -- let that happen before counting.
  env.setup(function()
    N.run(function() local c, s = N.pair(); c:close(); s:close() end)
  end)
  H.check_fds(env)
end

return N
