-- spec/28-socket-select_spec.lua -- socket.select on spindle.socket
-- objects (docs/socket.md): it really waits (no polling loop), reports
-- exactly the ready sockets, loses no byte and leaves no helper behind.
-- Loopback only; every spec leaves the descriptors as it found them.

local SH = dofile("spec/helpers/socket.lua")
local H = SH.H
local spindle, socket = SH.spindle, SH.socket

setup(function()
  SH.run(function() -- libuv's process-wide descriptors, before counting
    local l = assert(spindle.net.listen("127.0.0.1", 0))
    local c = assert(spindle.net.connect(l:local_addr()))
    c:close(); l:close()
  end)
end)

H.check_fds(_ENV)

-- A server and n clients connected to it, with the accepted ends.
local function pairs_of(n)
  local srv = assert(socket.bind("127.0.0.1", 0))
  local host, port = srv:getsockname()
  local cs, as = {}, {}
  for i = 1, n do
    cs[i] = assert(socket.connect(host, port))
    as[i] = assert(srv:accept())
  end
  return srv, cs, as
end

local function close_all(...)
  for i = 1, select("#", ...) do
    local x = select(i, ...)
    if type(x) == "table" and x.close then x:close()
    elseif type(x) == "table" then
      for _, s in ipairs(x) do s:close() end
    end
  end
end

describe("socket.select", function()
  it("waits until one of several sockets is readable, and names only it", spindle.test(function()
    local srv, cs, as = pairs_of(3)
    spindle.spawn(function() spindle.sleep(0.1); as[2]:send("x") end)
    local t0 = spindle.now()
    local r, w, err = socket.select(cs, nil, 5)
    assert.is_true(spindle.now() - t0 >= 0.09)
    assert.is_nil(err)
    assert.equal(1, #r); assert.equal(cs[2], r[1]); assert.equal(1, r[cs[2]])
    assert.same({}, w)
    assert.equal("x", cs[2]:receive(1))
    close_all(srv, cs, as)
  end))

  it("waits without polling: a 0.3 s wait costs a handful of loop turns", spindle.test(function()
    local srv, cs, as = pairs_of(4)
    local polls = spindle.stats().polls
    local r, w, err = socket.select({cs[1], cs[2], cs[3], cs[4], srv}, nil, 0.3)
    assert.same({}, r); assert.same({}, w); assert.equal("timeout", err)
    assert.is_true(spindle.stats().polls - polls < 20)
    close_all(srv, cs, as)
  end))

  it("a timeout of 0 looks without waiting; nil waits forever", spindle.test(function()
    local srv, cs, as = pairs_of(1)
    assert.same({{}, {}, "timeout"}, {socket.select(cs, nil, 0)})
    as[1]:send("now")
    socket.sleep(0.05)
    local r = socket.select(cs, nil, 0) -- what the kernel had is seen
    assert.equal(cs[1], r[1])
    assert.equal("now", cs[1]:receive(3))
    spindle.spawn(function() spindle.sleep(0.1); as[1]:send("later") end)
    r = socket.select(cs, nil) -- no timeout
    assert.equal(cs[1], r[1])
    local t0 = spindle.now()
    assert.same({{}, {}, "timeout"}, {socket.select(nil, nil, 0.1)})
    assert.is_true(spindle.now() - t0 >= 0.09)
    close_all(srv, cs, as)
  end))

  it("buffered bytes (dirty) make a socket ready at once", spindle.test(function()
    local srv, cs, as = pairs_of(1)
    as[1]:send("abcdef")
    assert.equal("ab", cs[1]:receive(2))
    assert.is_true(cs[1]:dirty())
    local r = socket.select(cs, nil, 0)
    assert.equal(cs[1], r[1])
    close_all(srv, cs, as)
  end))

  it("what select read is received in order, nothing lost", spindle.test(function()
    local srv, cs, as = pairs_of(2)
    local sent = {}
    spindle.spawn(function()
      for i = 1, 40 do
        local k = i % 2 + 1
        local s = ("%d,"):format(i)
        sent[k] = (sent[k] or "") .. s
        as[k]:send(s)
        if i % 5 == 0 then spindle.sleep(0.01) end
      end
      as[1]:close(); as[2]:close()
    end)
    local got, index, open = {"", ""}, {[cs[1]] = 1, [cs[2]] = 2}, {cs[1], cs[2]}
    while #open > 0 do
      local r = socket.select(open, nil, 5)
      assert.is_true(#r > 0)
      for _, c in ipairs(r) do
        local k = index[c]
        local data, err, partial = c:receive(3)
        got[k] = got[k] .. (data or partial)
        if err == "closed" then
          for i, x in ipairs(open) do
            if x == c then table.remove(open, i) break end
          end
        end
      end
    end
    assert.equal(sent[1], got[1]); assert.equal(sent[2], got[2])
    close_all(srv, cs)
  end))

  it("a server is readable when a connection waits; accept takes it", spindle.test(function()
    local srv = assert(socket.bind("127.0.0.1", 0))
    local host, port = srv:getsockname()
    spindle.spawn(function()
      spindle.sleep(0.05)
      local c = assert(socket.connect(host, port))
      c:send("first\n")
      c:close()
    end)
    local r = socket.select({srv}, nil, 5)
    assert.equal(srv, r[1])
    srv:settimeout(0)
    local a = assert(srv:accept())
    assert.equal("first", a:receive())
    assert.same({nil, "timeout", n = 2}, table.pack(srv:accept()))
    a:close(); srv:close()
  end))

  it("sendt: connected clients are writable at once", spindle.test(function()
    local srv, cs, as = pairs_of(2)
    local r, w = socket.select(cs, cs, 1)
    assert.same({}, r)
    assert.equal(2, #w)
    assert.equal(1, w[w[1]]); assert.equal(2, w[w[2]])
    close_all(srv, cs, as)
  end))

  it("closing a socket wakes a select on it", spindle.test(function()
    local srv, cs, as = pairs_of(1)
    spindle.spawn(function() spindle.sleep(0.05); as[1]:close() end)
    local r = socket.select(cs, nil, 5)
    assert.equal(cs[1], r[1])
    assert.same({nil, "closed", "", n = 3}, table.pack(cs[1]:receive()))
    close_all(srv, cs)
  end))

  it("closed sockets are skipped, as LuaSocket skips a descriptor of -1", spindle.test(function()
    local srv, cs, as = pairs_of(1)
    cs[1]:close()
    assert.same({{}, {}, "timeout"}, {socket.select(cs, cs, 0.05)})
    close_all(srv, as)
  end))

  it("leaves no task behind, also when it is aborted or timed out", spindle.test(function()
    local srv, cs, as = pairs_of(3)
    local n = #spindle.tasks()
    socket.select(cs, nil, 0.05)
    assert.equal(n, #spindle.tasks())
    local h = spindle.spawn(function() return socket.select(cs, nil, 10) end)
    spindle.sleep(0.05)
    h:abort()
    assert.is_false((h:result()))
    local ok, e = pcall(spindle.timeout, 0.05, socket.select, cs, nil, 10)
    assert.is_false(ok); assert.is_true(spindle.is_timeout(e))
    spindle.yield()
    assert.equal(n, #spindle.tasks())
    -- and the sockets are still whole
    as[3]:send("after\n")
    assert.equal("after", cs[3]:receive())
    close_all(srv, cs, as)
  end))

  it("a socket another task is reading does not make select fail", spindle.test(function()
    local srv, cs, as = pairs_of(2)
    local reader = spindle.spawn(function() return cs[1]:receive() end)
    spindle.sleep(0.02)
    spindle.spawn(function() spindle.sleep(0.05); as[2]:send("2") end)
    local r = socket.select(cs, nil, 5)
    assert.equal(cs[2], r[1])
    as[1]:send("one\n")
    assert.equal("one", reader:join())
    close_all(srv, cs, as)
  end))

  it("takes LuaSocket's source/sink wrappers; refuses foreign sockets", spindle.test(function()
    local srv, cs, as = pairs_of(1)
    local src = socket.source("until-closed", cs[1])
    as[1]:send("x")
    local r = socket.select({src}, nil, 5)
    assert.equal(src, r[1])
    -- LuaSocket's tcp() has no descriptor until it connects: skipped, as
    -- LuaSocket's own select skips it; one with a descriptor is refused
    local real = SH.luasocket.tcp()
    assert.same({{}, {}, "timeout"}, {socket.select({real}, nil, 0)})
    real:close()
    local s2 = assert(SH.luasocket.bind("127.0.0.1", 0))
    local ok, e = pcall(socket.select, {s2}, nil, 0)
    s2:close()
    assert.is_false(ok)
    assert.matches("only spindle.socket objects", e)
    close_all(srv, cs, as)
  end))

  it("runs a LuaSocket-style select loop server for many clients", spindle.test(function()
    local srv = assert(socket.bind("127.0.0.1", 0))
    local host, port = srv:getsockname()
    local server = spindle.spawn(function()
      local set, served = {srv}, 0
      while served < 10 do
        local r = socket.select(set, nil, 5)
        assert(#r > 0, "select timed out")
        for _, s in ipairs(r) do
          if s == srv then
            set[#set + 1] = assert(srv:accept())
          else
            local line, err = s:receive()
            if line then
              s:send(line:upper() .. "\n")
            else
              assert(err == "closed", err)
              for i, x in ipairs(set) do
                if x == s then table.remove(set, i) break end
              end
              s:close()
              served = served + 1
            end
          end
        end
      end
      srv:close()
    end)
    local clients = {}
    for i = 1, 10 do
      clients[i] = spindle.spawn(function()
        local c = assert(socket.connect(host, port))
        local out = {}
        for j = 1, 3 do
          c:send(("c%d-%d\n"):format(i, j))
          out[j] = c:receive()
        end
        c:close()
        return table.concat(out, " ")
      end)
    end
    for i, h in ipairs(clients) do
      assert.equal(("C%d-1 C%d-2 C%d-3"):format(i, i, i), h:join())
    end
    server:join()
  end))
end)
