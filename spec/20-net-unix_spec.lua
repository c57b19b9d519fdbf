-- spec/20-net-unix_spec.lua -- api.md §5: Unix domain sockets give the
-- same stream object as TCP (spindle.net.listen_unix / connect_unix).

if not package.searchpath("spindle", package.cpath) then
  package.cpath = "./build/?.so;" .. package.cpath
end
if not package.path:find("./lua/?.lua", 1, true) then
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
end

local spindle = require "spindle"
local net = spindle.net

local PID
do
  local f = assert(io.open("/proc/self/stat"))
  PID = f:read("l"):match("^(%d+)")
  f:close()
end

-- Open descriptors of this process, not counting the pipe of the popen
-- that asks (its write end may still be open in this process for an
-- instant after the fork).
local function fd_count()
  local p = io.popen("sh -c 'readlink /proc/$$/fd/1; ls -l /proc/" .. PID .. "/fd'")
  local me = p:read("l")
  local n = 0
  for line in p:lines() do
    local target = line:match(" %-> (.*)$")
    if target and target ~= me then n = n + 1 end
  end
  p:close()
  return n
end

local function run(fn, ...)
  local rt = spindle.runtime()
  local r = table.pack(pcall(rt.run, rt, fn, ...))
  rt:close()
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

local function sockpath()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".sock"
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  -- a socket file cannot be opened; ask the shell
  return os.execute("test -S '" .. p .. "'") == true
end

setup(function() run(function() end) end)

local fds
before_each(function() collectgarbage(); fds = fd_count() end)
after_each(function()
  collectgarbage(); collectgarbage()
  assert.equal(fds, fd_count(), "descriptors leaked")
end)

describe("Unix sockets", function()
  it("listen_unix, accept and connect_unix echo lines", function()
    local path = sockpath()
    run(function()
      local srv <close> = assert(net.listen_unix(path))
      assert.equal(path, srv:local_addr())
      spindle.spawn(function()
        local c <close> = assert(srv:accept())
        for line in c:lines() do c:write(line, "\n") end
      end)
      local s <close> = assert(net.connect_unix(path, {timeout = 5}))
      assert.matches("unix", tostring(s))
      for i = 1, 10 do
        s:write("line ", i, "\n")
        assert.equal("line " .. i, s:read_line())
      end
      s:shutdown()
      assert.same({n = 3, nil, "eof", "EOF"}, table.pack(s:read_line()))
    end)
    assert.is_false(exists(path), "socket file left behind")
  end)

  it("peer of the client is the path; set_nodelay is not supported", function()
    local path = sockpath()
    run(function()
      local srv <close> = assert(net.listen_unix(path, {backlog = 4}))
      local h = spindle.spawn(function() return assert(srv:accept()) end)
      local s <close> = assert(net.connect_unix(path))
      local a <close> = h:join()
      assert.equal(path, s:peer())
      local ok, msg, code = s:set_nodelay(true)
      assert.is_nil(ok); assert.is_string(msg); assert.equal("ENOTSUP", code)
    end)
  end)

  it("connect_unix to a missing path returns ENOENT", function()
    run(function()
      local s, msg, code = net.connect_unix(sockpath())
      assert.is_nil(s); assert.is_string(msg); assert.equal("ENOENT", code)
    end)
  end)

  it("listen_unix on a path in use returns EADDRINUSE and leaves the file alone", function()
    local path = sockpath()
    run(function()
      local srv <close> = assert(net.listen_unix(path))
      local x, msg, code = net.listen_unix(path)
      assert.is_nil(x); assert.is_string(msg); assert.equal("EADDRINUSE", code)
      assert.is_true(exists(path))
    end)
    assert.is_false(exists(path))
  end)

  it("cancellation and close behave as for TCP", function()
    local path = sockpath()
    run(function()
      local srv <close> = assert(net.listen_unix(path))
      local h = spindle.spawn(function() return assert(srv:accept()) end)
      local s <close> = assert(net.connect_unix(path))
      local a <close> = h:join()
      s:write("par")
      assert.is_false(pcall(spindle.timeout, 0.02, a.read_line, a))
      s:write("tial\n")
      assert.equal("partial", a:read_line())
      local r = spindle.spawn(function() return table.pack(a:read_line()) end)
      spindle.sleep(0.01)
      a:close()
      assert.same({n = 3, nil, "closed", "ECANCELED"}, r:join())
    end)
  end)
end)
