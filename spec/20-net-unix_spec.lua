-- spec/20-net-unix_spec.lua -- docs/io.md#streams: Unix domain sockets give the
-- same stream object as TCP (spindle.net.listen_unix / connect_unix).

local N = require "spec.helpers.net"
local spindle, net = N.spindle, N.net
local run, pair, fd_count = N.run, N.pair, N.fd_count

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

N.check_fds(_ENV)

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
