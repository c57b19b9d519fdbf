-- spec/helpers/socket.lua -- shared by the spindle.socket specs
-- (spec/26-socket*_spec.lua).
--
--   local SH = dofile("spec/helpers/socket.lua")
--   SH.spindle, SH.socket     the module and spindle.socket
--   SH.luasocket              LuaSocket's own socket module (Debian's)
--   SH.start(script, args)    runs spec/helpers/<script> (python3) in the
--                             background: returns {port, pid, f}; f is its
--                             stdout after the first line ("PORT PID")
--   SH.stop(p)                kills it and closes its pipe
--   SH.hex(s)                 s hex-encoded ("-" for ""), for tcp_peer.py
--   SH.run(fn, ...)           fn as the main task of a fresh runtime (real
--                             clock), closed after; re-raises fn's error
--   SH.norm(v)                a result with "0x..." addresses replaced by
--                             "0xADDR" and function names in argument
--                             errors by '?' (for comparing with LuaSocket)
--
-- The python peers are started outside any runtime (setup) and killed in
-- teardown, so their pipes are open before and after every spec and the
-- descriptor checks of H.check_fds see no difference.

local H = dofile("spec/helpers/init.lua")

local SH = {}
SH.H = H
SH.spindle = H.spindle
SH.socket = require "spindle.socket"

do -- LuaSocket itself, whatever package.loaded.socket holds now
  local saved = package.loaded.socket
  if saved == SH.socket then package.loaded.socket = nil end
  SH.luasocket = require "socket"
  if saved == SH.socket then package.loaded.socket = saved end
end

function SH.start(script, args)
  -- Without LD_PRELOAD: under the sanitizer stage the preloaded runtime
  -- would report the leaks of python3's wrapper scripts (pyenv's bash).
  local cmd = ("exec env -u LD_PRELOAD python3 -W ignore spec/helpers/%s %s")
              :format(script, args or "")
  local f = assert(io.popen(cmd, "r"))
  local line = f:read("l")
  assert(line, "spec/helpers/" .. script .. " did not start")
  local port, pid = line:match("^(%d+) (%d+)$")
  assert(port, "unexpected first line from " .. script .. ": " .. line)
  return {port = tonumber(port), pid = tonumber(pid), f = f}
end

function SH.stop(p)
  if p and p.pid then
    os.execute("kill " .. p.pid .. " 2>/dev/null")
    p.f:close()
    p.pid = nil
  end
end

function SH.hex(s)
  if s == "" then return "-" end
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

function SH.run(fn, ...)
  local rt = SH.spindle.runtime()
  local r = table.pack(pcall(rt.run, rt, fn, ...))
  rt:close()
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

function SH.norm(v)
  if type(v) == "string" then
    -- addresses, and function names (LuaSocket's C functions are
    -- 'socket.core.x' or '?' where ours name themselves)
    return (v:gsub("0x%x+", "0xADDR"):gsub("to '[^']*' %(", "to '?' ("))
  end
  if type(v) == "table" then
    local t = {}
    for k, x in pairs(v) do t[k] = SH.norm(x) end
    return t
  end
  return v
end

return SH
