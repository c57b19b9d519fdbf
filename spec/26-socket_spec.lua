-- spec/26-socket_spec.lua -- spindle.socket, LuaSocket's socket module on
-- spindle (docs/socket.md), sentence by sentence; most scenarios run twice,
-- against LuaSocket itself (Debian's lua-socket, blocking, outside any
-- runtime) and against spindle.socket inside a task, with the same scripted
-- peer (spec/helpers/tcp_peer.py), and must give the same results.
-- Loopback only; every spec leaves the descriptors as it found them.

local SH = dofile("spec/helpers/socket.lua")
local H = SH.H
local spindle, socket, luasocket = SH.spindle, SH.socket, SH.luasocket
local hex, run, norm = SH.hex, SH.run, SH.norm

local peer -- spec/helpers/tcp_peer.py

setup(function()
  peer = SH.start("tcp_peer.py")
  -- libuv opens a few process-wide descriptors once: before counting.
  run(function()
    local l = assert(spindle.net.listen("127.0.0.1", 0))
    local c = assert(spindle.net.connect(l:local_addr()))
    c:close(); l:close()
  end)
end)

teardown(function() SH.stop(peer) end)

H.check_fds(_ENV)

-- Runs scenario(S, port) with LuaSocket and with spindle.socket; both
-- result lists must be the same.  Returns spindle's.
local function both(scenario)
  local want = table.pack(scenario(luasocket, peer.port))
  local got = table.pack(run(scenario, socket, peer.port))
  assert.same(norm(want), norm(got))
  return table.unpack(got, 1, got.n)
end

-- A connection to the peer, which is told `cmd` first.
local function dial(S, port, cmd)
  local c = assert(S.connect("127.0.0.1", port))
  assert(c:send(cmd .. "\n"))
  return c
end

-- Every result of f(...) as a list ("nil" holes kept).
local function all(...) return table.pack(...) end

-- A server, a client connected to it and the accepted end (in a task).
local function trio()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local host, port = srv:getsockname()
  local c = assert(socket.connect(host, port))
  return srv, c, assert(srv:accept())
end

-- ------------------------------------------------------------ the module

describe("spindle.socket module", function()
  it("is shaped like LuaSocket's socket module", function()
    for _, k in ipairs({"tcp", "tcp4", "tcp6", "connect", "connect4",
                        "connect6", "bind", "gettime", "sleep", "select",
                        "try", "newtry", "protect", "skip", "sink", "source",
                        "choose"}) do
      assert.is_function(socket[k], k)
    end
    for _, k in ipairs({"toip", "tohostname", "gethostname", "getaddrinfo"}) do
      assert.is_function(socket.dns[k], k)
    end
    assert.is_table(socket.sinkt); assert.is_table(socket.sourcet)
    assert.equal(2048, socket.BLOCKSIZE)
    assert.matches("^LuaSocket 3", socket._VERSION)
    assert.matches("spindle", socket._VERSION)
    assert.equal(socket, require("spindle").socket)
  end)

  it("require finds it without LUA_PATH (the copy in the library)", function()
    local r = H.cli("%SCRIPT%", {env = "LUA_PATH=';;'", script = [[
      local s = require "spindle.socket"
      assert(s == require("spindle").socket)
      local srv = assert(s.bind("127.0.0.1", 0))
      print(s._VERSION, tostring(srv):match("^tcp{server}"))
      srv:close()
    ]]})
    assert.equal(0, r.code, H.describe(r))
    assert.matches("LuaSocket 3%.0%.0 %(spindle [%d.]+%)	tcp{server}", r.stdout)
  end)

  it("has the same methods as LuaSocket's TCP objects", function()
    local ours, theirs = socket.tcp(), luasocket.tcp()
    for k in pairs(getmetatable(theirs).__index) do
      if k ~= "class" then assert.is_function(ours[k], k) end
    end
    theirs:close(); ours:close()
  end)

  it("tcp, tcp4 and tcp6 make master objects; tostring as LuaSocket's", function()
    for _, f in ipairs({"tcp", "tcp4", "tcp6"}) do
      local s = socket[f]()
      assert.matches("^tcp{master}: 0x%x+$", tostring(s))
      assert.equal(-1, s:getfd())
      assert.equal(1, s:close())
    end
    assert.equal("inet4", socket.tcp4():getfamily())
    assert.equal("inet6", socket.tcp6():getfamily())
  end)

  it("gettime is the wall clock, with sub-second resolution", function()
    local a = socket.gettime()
    assert.is_true(math.abs(a - os.time()) < 2)
    local b
    repeat b = socket.gettime() until b ~= a
    assert.is_true(b > a and b - a < 0.5)
    assert.equal(luasocket.dns.gethostname(), socket.dns.gethostname())
  end)

  it("sleep awaits: other tasks run meanwhile; negative sleeps are 0", spindle.test(function()
    local ticks = 0
    local h = spindle.spawn(function()
      for _ = 1, 3 do ticks = ticks + 1; spindle.sleep(0.01) end
    end)
    socket.sleep(0.1)
    assert.equal(3, ticks) -- the virtual clock: exact
    h:join()
    local t0 = spindle.now()
    socket.sleep(-1); socket.sleep(0); socket.sleep("0.001")
    assert.is_true(spindle.now() - t0 < 1)
    assert.error_matches(function() socket.sleep("x") end,
      "bad argument #1 to 'sleep' %(number expected, got string%)")
  end, {clock = "virtual"}))

  it("sleep follows the virtual clock of a test runtime", spindle.test(function()
    local t0 = spindle.now()
    socket.sleep(3600)
    assert.is_true(spindle.now() - t0 >= 3600)
  end, {clock = "virtual"}))

  it("try, newtry, protect and skip behave as LuaSocket's", function()
    local function scenario(S)
      local r = {}
      r[1] = all(S.skip(1, "a", "b", "c"))
      r[2] = all(S.skip(0, 1, 2))
      r[3] = all(S.skip(5, 1, 2))
      r[4] = all(S.skip(-1, 1, 2))
      r[5] = all(S.try(1, 2, 3))
      r[6] = all(S.protect(function() S.try(nil, "oops") end)())
      r[7] = all(S.protect(function(a) return a, 2 end)(1))
      local ok, e = pcall(S.protect(function() error("real") end))
      r[8] = {ok, (tostring(e):gsub("^.-:%d+: ", ""))}
      ok, e = pcall(S.protect(function() error({"tbl"}) end))
      r[9] = {ok, type(e), e[1]}
      local fin = 0
      local try = S.newtry(function() fin = fin + 1 end)
      r[10] = all(S.protect(function() try(false, "msg") end)())
      r[11] = {fin}
      r[12] = all(try("ok", 2))
      ok, e = pcall(S.try, nil, "x")
      r[13] = {ok, type(e), e[1]}
      r[14] = all(S.protect(function() S.try(false) end)())
      return r
    end
    assert.same(scenario(luasocket), scenario(socket))
  end)

  it("choose, sink and source are LuaSocket's", function()
    local r = {}
    local f = socket.choose({a = function(x, y) return "a", x, y end,
                             default = function(x) return "d", x end})
    r[1] = all(f("a", 1, 2))
    r[2] = all(f(7))
    assert.same({{n = 3, "a", 1, 2}, {n = 2, "d", 7}}, r)
    assert.error_matches(function() f("zzz") end, "unknown key %(zzz%)")
  end)
end)

-- ------------------------------------------------------ side by side

describe("TCP objects, side by side with LuaSocket", function()
  it("receive: lines (every CR dropped), byte counts, prefixes, all", function()
    both(function(S, port)
      local c = dial(S, port, "close " ..
        hex("hello\r\nwor\rld\nxyz" .. "bcdef" .. "line\r\n" .. "rest\r\nof it"))
      local r = {}
      r[#r + 1] = all(c:receive())
      r[#r + 1] = all(c:receive("*l"))
      r[#r + 1] = all(c:receive(3))
      r[#r + 1] = all(c:receive(5, "PRE"))      -- 2 more bytes
      r[#r + 1] = all(c:receive(2, "PREFIX"))   -- prefix longer: as is
      r[#r + 1] = all(c:receive("1"))           -- numeric string
      r[#r + 1] = all(c:receive(0))
      r[#r + 1] = all(c:receive("*l", "P:"))
      r[#r + 1] = all(c:receive("*a"))
      r[#r + 1] = all(c:receive("*a"))
      r[#r + 1] = all(c:receive())
      r[#r + 1] = all(c:receive(4))
      r[#r + 1] = all(c:receive(0))
      r[#r + 1] = all(c:getstats())
      r[#r][3] = nil -- the age differs
      c:close()
      return r
    end)
  end)

  it("receive: the last line without a newline, *a with a prefix", function()
    both(function(S, port)
      local r = {}
      local c = dial(S, port, "close " .. hex("abc"))
      r[1] = all(c:receive())
      c:close()
      c = dial(S, port, "close -")
      r[2] = all(c:receive("*a", "PFX"))
      c:close()
      c = dial(S, port, "close " .. hex("x\n"))
      r[3] = all(c:receive("*a", "P"))
      r[4] = all(c:receive("*a"))
      c:close()
      return r
    end)
  end)

  it("receive: 'l' and 'a' without the '*' (LuaSocket 3.1) too", spindle.test(function()
    local srv, c, a = trio()
    a:send("one\r\ntwo\nthree")
    a:close()
    assert.equal("one", c:receive("l"))
    assert.equal("two", c:receive("line"))
    assert.same({"three", nil, nil, n = 3}, table.pack(c:receive("a")))
    assert.same({nil, "closed", "", n = 3}, table.pack(c:receive("all")))
    c:close(); srv:close()
  end))

  it("receive: bad patterns raise", function()
    both(function(S, port)
      local c = dial(S, port, "close -")
      local r = {}
      for i, p in ipairs({"x", -1, {}}) do
        local ok, e = pcall(c.receive, c, p)
        r[i] = {ok, (tostring(e):gsub("to '[^']*'", "to '?'"))}
      end
      c:close()
      return r
    end)
  end)

  it("send(data, i, j): the index of the last byte sent", function()
    both(function(S, port)
      local c = dial(S, port, "count")
      local r = {}
      r[#r + 1] = all(c:send("hello"))
      r[#r + 1] = all(c:send("abcdef", 2, 4))
      r[#r + 1] = all(c:send("abcdef", -2))
      r[#r + 1] = all(c:send("abcdef", 5, 2))
      r[#r + 1] = all(c:send("abcdef", 0, 100))
      r[#r + 1] = all(c:send("abcdef", 2.7, 3.2))
      r[#r + 1] = all(c:send(""))
      r[#r + 1] = all(c:send(12345))
      r[#r + 1] = all(c:shutdown("send"))
      r[#r + 1] = all(c:receive("*a"))
      r[#r + 1] = all(c:getstats())
      r[#r][3] = nil
      c:close()
      return r
    end)
  end)

  it("settimeout(0.1): nil, 'timeout' and the partial result", function()
    both(function(S, port)
      local c = dial(S, port, "hold 2 " .. hex("abc\nde"))
      local r = {}
      r[#r + 1] = all(c:settimeout(0.1))
      r[#r + 1] = all(c:receive())
      r[#r + 1] = all(c:receive(10))
      r[#r + 1] = all(c:receive("*a"))
      r[#r + 1] = all(c:receive("*l", "pre"))
      r[#r + 1] = all(c:gettimeout())
      c:close()
      return r
    end)
  end)

  it("settimeout(0) never waits: what is there, then 'timeout'", function()
    both(function(S, port)
      local c = dial(S, port, "hold 2 " .. hex("xy"))
      S.sleep(0.2)
      local r = {}
      c:settimeout(0)
      r[#r + 1] = all(c:receive(5))
      r[#r + 1] = all(c:receive(1))
      r[#r + 1] = all(c:receive())
      c:settimeout(0, "t")
      r[#r + 1] = all(c:receive(1, "p"))
      c:close()
      return r
    end)
  end)

  it("a peer that closes (FIN or reset): 'closed', with the partial result", function()
    both(function(S, port)
      local r = {}
      local c = dial(S, port, "close " .. hex("data"))
      S.sleep(0.1)
      r[1] = all(c:receive(10))
      r[2] = all(c:receive(10))
      r[3] = all(c:send("x"))
      c:close()
      c = dial(S, port, "reset -")
      S.sleep(0.2)
      r[4] = all(c:receive())
      r[5] = all(c:send("x"))
      c:close()
      return r
    end)
  end)

  it("after close: 'closed' from I/O, and the other methods' answers", function()
    both(function(S, port)
      local c = dial(S, port, "send " .. hex("buffered"))
      local r = {}
      r[#r + 1] = all(c:receive(0)) -- something arrives in the buffer
      r[#r + 1] = all(c:dirty())
      r[#r + 1] = all(c:close())
      r[#r + 1] = all(c:close())
      r[#r + 1] = all(c:receive(3))
      r[#r + 1] = all(c:receive())
      r[#r + 1] = all(c:send("x"))
      r[#r + 1] = all(c:send("abc", 2))
      r[#r + 1] = all(c:getpeername())
      r[#r + 1] = all(c:getsockname())
      r[#r + 1] = all(c:getfd())
      r[#r + 1] = all(c:dirty())
      r[#r + 1] = all(c:settimeout(1))
      r[#r + 1] = all(c:setoption("tcp-nodelay", true))
      r[#r + 1] = all(tostring(c))
      return r
    end)
  end)

  it("connect, bind, listen, accept and the address methods", function()
    both(function(S)
      local r = {}
      local srv = S.tcp()
      r[#r + 1] = all(tostring(srv))
      r[#r + 1] = all(srv:getsockname())
      r[#r + 1] = all(srv:getpeername())
      r[#r + 1] = all(srv:setoption("reuseaddr", true))
      r[#r + 1] = all(srv:bind("127.0.0.1", 0))
      local host, port, fam = srv:getsockname()
      r[#r + 1] = {host, math.type(tonumber(port)), fam}
      r[#r + 1] = all(srv:listen(5))
      r[#r + 1] = all(tostring(srv))
      r[#r + 1] = all(srv:getpeername())
      local c = S.tcp()
      r[#r + 1] = all(c:connect("127.0.0.1", port))
      r[#r + 1] = all(tostring(c))
      r[#r + 1] = all(c:connect("127.0.0.1", port))
      local a = assert(srv:accept())
      r[#r + 1] = all(tostring(a))
      local ph, pp, pf = c:getpeername()
      r[#r + 1] = {ph, math.type(pp), pp == tonumber(port), pf}
      local lh, lp = c:getsockname()
      local ah, ap = a:getpeername()
      r[#r + 1] = {lh == ah, tonumber(lp) == ap}
      r[#r + 1] = all(a:send("ping\n"))
      r[#r + 1] = all(c:receive())
      r[#r + 1] = all(a:getstats())
      r[#r][3] = nil
      srv:settimeout(0.05)
      r[#r + 1] = all(srv:accept())
      a:close(); c:close(); srv:close()
      r[#r + 1] = all(srv:accept())
      return r
    end)
  end)

  it("methods of the wrong class raise as LuaSocket's do", function()
    both(function(S)
      local r = {}
      local m = S.tcp()
      local srv = assert(S.bind("127.0.0.1", 0))
      local function try(obj, name, ...)
        local ok, e = pcall(obj[name], obj, ...)
        r[#r + 1] = {name, ok, (tostring(e):gsub("to '[^']*'", "to '?'"))}
      end
      try(m, "receive"); try(m, "send", "x"); try(m, "accept")
      try(m, "getstats"); try(m, "shutdown")
      try(srv, "send", "x"); try(srv, "receive"); try(srv, "bind", "*", 0)
      try(srv, "listen")
      local h, p = srv:getsockname()
      local c = assert(S.connect(h, p))
      try(c, "bind", "*", 0); try(c, "listen"); try(c, "accept")
      try(c, "shutdown", "bogus")
      try(m, "settimeout", 1, "x")
      try(m, "setoption", "bogus", true)
      try(m, "setoption", "linger", true)
      c:close(); srv:close(); m:close()
      return r
    end)
  end)

  it("setoption accepts tcp-nodelay, keepalive, reuseaddr and linger", function()
    both(function(S, port)
      local c = dial(S, port, "send -")
      local r = {}
      r[#r + 1] = all(c:setoption("tcp-nodelay", true))
      r[#r + 1] = all(c:setoption("keepalive", true))
      r[#r + 1] = all(c:setoption("reuseaddr", true))
      r[#r + 1] = all(c:setoption("linger", {on = true, timeout = 0}))
      r[#r + 1] = all(c:getoption("tcp-nodelay"))
      r[#r + 1] = all(c:getoption("keepalive"))
      r[#r + 1] = all(c:close()) -- linger 0: a reset, the peer does not care
      return r
    end)
  end)

  it("errors: refused, unknown host, address in use, bad service", function()
    both(function(S)
      local r = {}
      local srv = assert(S.bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      r[#r + 1] = all(S.bind("127.0.0.1", port))
      srv:close()
      r[#r + 1] = all(S.connect("127.0.0.1", port))
      r[#r + 1] = all(S.connect("no-such-host.invalid", 80))
      r[#r + 1] = all(S.tcp():connect("127.0.0.1", "no-service"))
      r[#r + 1] = all(S.tcp():bind("127.0.0.1", "no-service"))
      r[#r + 1] = all(S.tcp4():connect("::1", port))
      r[#r + 1] = all(S.tcp6():bind("127.0.0.1", 0))
      r[#r + 1] = all(S.tcp():listen())
      r[#r + 1] = all(S.connect("127.0.0.1", port, "127.0.0.1", 0))
      local ok, e = pcall(S.connect, "127.0.0.1", 1, nil, nil, "bogus")
      r[#r + 1] = {ok, e}
      ok, e = pcall(S.connect, "127.0.0.1")
      r[#r + 1] = {ok, e}
      return r
    end)
  end)

  it("dns.toip, tohostname and getaddrinfo", function()
    both(function(S)
      local r = {}
      r[#r + 1] = all(S.dns.toip("localhost"))
      r[#r + 1] = all(S.dns.toip("127.0.0.1"))
      r[#r + 1] = all(S.dns.toip("no-such-host.invalid"))
      r[#r + 1] = all(S.dns.toip("::1"))
      r[#r + 1] = all(S.dns.tohostname("127.0.0.1"))
      r[#r + 1] = all(S.dns.tohostname("no-such-host.invalid"))
      r[#r + 1] = all(S.dns.getaddrinfo("no-such-host.invalid"))
      local list = S.dns.getaddrinfo("127.0.0.1")
      r[#r + 1] = list
      return r
    end)
  end)

  it("select: ready sockets as an array and a map; 'timeout' when none", function()
    both(function(S, port)
      local a = dial(S, port, "send " .. hex("x"))
      local b = dial(S, port, "send -")
      S.sleep(0.1)
      local function names(t)
        local out = {}
        for i, v in ipairs(t) do out[i] = (v == a and "a" or v == b and "b") end
        out.ia, out.ib = t[a], t[b]
        return out
      end
      local r = {}
      local rt, wt, err = S.select({a, b}, nil, 1)
      r[#r + 1] = {names(rt), names(wt), err}
      rt, wt, err = S.select({b}, {a, b}, 1)
      r[#r + 1] = {names(rt), names(wt), err}
      rt, wt, err = S.select({b}, nil, 0.05)
      r[#r + 1] = {names(rt), names(wt), err}
      rt, wt, err = S.select(nil, nil, 0)
      r[#r + 1] = {names(rt), names(wt), err}
      rt, wt, err = S.select({{}, b}, {}, 0)
      r[#r + 1] = {names(rt), names(wt), err}
      r[#r + 1] = all(a:receive(1))
      local ok, e = pcall(S.select, 1)
      r[#r + 1] = {ok, e}
      ok, e = pcall(S.select, nil, nil, "x")
      r[#r + 1] = {ok, e}
      a:close(); b:close()
      return r
    end)
  end)
end)

-- ----------------------------------------------------- spindle's parts

describe("spindle.socket in tasks", function()
  it("raises 'not inside a task' outside a task", function()
    local c = socket.tcp()
    local calls = {
      function() c:connect("127.0.0.1", 1) end,
      function() c:receive() end,
      function() c:send("x") end,
      function() socket.connect("127.0.0.1", 1) end,
      function() socket.bind("127.0.0.1", 0) end,
      function() socket.select({c}, nil, 0) end,
      function() socket.sleep(0) end,
      function() socket.dns.toip("localhost") end,
    }
    for i, f in ipairs(calls) do
      local ok, e = pcall(f)
      assert.is_false(ok, i)
      if not H.msg_has(e, "not inside a task", "tcp{client} expected") then
        error(("call %d: %s"):format(i, tostring(e)))
      end
    end
    local ok, e = pcall(c.connect, c, "127.0.0.1", 1)
    assert.is_false(ok)
    assert.matches("spindle%.socket%.tcp:connect: not inside a task", e)
    ok, e = pcall(socket.sleep, 1)
    assert.matches("spindle%.socket%.sleep: not inside a task", e)
    -- what never awaits works anywhere
    assert.equal(1, c:settimeout(1))
    assert.equal(-1, c:getfd())
    assert.is_false(c:dirty())
    assert.equal(1, c:close())
  end)

  it("checks its arguments as LuaSocket does (luaL_argerror's words)", spindle.test(function()
    local srv, c, a = trio()
    local m = socket.tcp()
    local cases = {
      {function() c:send(nil) end, "bad argument #1 to 'send' %(string expected, got no value%)"},
      {function() c:send("x", {}) end, "bad argument #2 to 'send' %(number expected, got table%)"},
      {function() c:receive(5, {}) end, "bad argument #2 to 'receive' %(string expected, got table%)"},
      {function() c:settimeout("x") end, "bad argument #1 to 'settimeout' %(number expected, got string%)"},
      {function() m:connect(nil, 1) end, "bad argument #1 to 'connect' %(string expected, got no value%)"},
      {function() m:bind("127.0.0.1") end, "bad argument #2 to 'bind' %(string expected, got no value%)"},
      {function() m.receive(m) end, "bad argument #1 to 'receive' %(tcp{client} expected%)"},
      {function() m:receive() end, "calling 'receive' on bad self %(tcp{client} expected%)"},
      {function() socket.tcp().close({}) end, "bad argument #1 to 'close' %(tcp{any} expected%)"},
      {function() socket.connect() end, "bad argument #1 to 'connect' %(string expected, got no value%)"},
      {function() socket.select({}, {}, {}) end, "bad argument #3 to 'select' %(number expected, got table%)"},
      {function() socket.dns.toip() end, "bad argument #1 to 'toip' %(string expected, got no value%)"},
      {function() socket.skip("x") end, "bad argument #1 to 'skip' %(number expected, got string%)"},
    }
    for i, case in ipairs(cases) do
      local ok, e = pcall(case[1])
      assert.is_false(ok, i)
      if not tostring(e):match(case[2]) then
        error(("case %d: %s"):format(i, tostring(e)))
      end
    end
    m:close(); c:close(); a:close(); srv:close()
  end))

  it("raises, naming the method, where a C function is in the way", spindle.test(function()
    local srv, c, a = trio()
    a:send("abc\n")
    assert.equal("abc", c:receive()) -- works here
    a:send("def\n")
    socket.sleep(0.05)
    local ok, e = pcall(table.sort, {1, 2, 3}, function() c:receive() return false end)
    assert.is_false(ok)
    assert.matches("tcp:receive: cannot await here", e)
    assert.equal("def", c:receive()) -- nothing was consumed
    c:close(); a:close(); srv:close()
  end))

  it("a waiting receive does not block the other tasks", spindle.test(function()
    local srv, c, a = trio()
    local ticks = 0
    local ticker = spindle.spawn(function()
      while true do ticks = ticks + 1; spindle.sleep(0.01) end
    end)
    -- the line is sent only once the ticker ran 5 times: the receive
    -- below can only return if the ticker ran while it waited
    spindle.spawn(function()
      while ticks < 5 do spindle.sleep(0.01) end
      a:send("late\n")
    end)
    assert.equal("late", c:receive())
    assert.is_true(ticks >= 5)
    ticker:abort()
    c:close(); a:close(); srv:close()
  end))

  it("nil or negative timeouts wait as long as it takes", spindle.test(function()
    local srv, c, a = trio()
    for _, t in ipairs({-1, false}) do
      c:settimeout(t or nil)
      spindle.spawn(function() spindle.sleep(0.15); a:send("x") end)
      assert.equal("x", c:receive(1))
    end
    c:close(); a:close(); srv:close()
  end))

  it("settimeout(0.05) against a silent peer: 'timeout' and the partial", spindle.test(function()
    local srv, c, a = trio()
    a:send("part")
    c:settimeout(0.05)
    local t0 = spindle.now()
    assert.same({nil, "timeout", "part", n = 3}, table.pack(c:receive(10)))
    assert.is_true(spindle.now() - t0 >= 0.05)
    -- nothing was lost: what comes next continues the stream
    a:send("more\n")
    assert.same({"more", nil, nil, n = 3}, table.pack(c:receive()))
    -- accept on a server with nobody connecting
    srv:settimeout(0.05)
    assert.same({nil, "timeout", n = 2}, table.pack(srv:accept()))
    c:close(); a:close(); srv:close()
  end))

  it("timeouts follow a test's virtual clock: an hour passes at once", spindle.test(function()
    local srv, c, a = trio()
    c:settimeout(3600)
    local t0 = spindle.now()
    assert.same({nil, "timeout", "", n = 3}, table.pack(c:receive()))
    assert.is_true(spindle.now() - t0 >= 3600)
    c:close(); a:close(); srv:close()
  end, {clock = "virtual", timeout = 10}))

  it("block and total timeouts bound a trickling peer's call", spindle.test(function()
    local srv, c, a = trio()
    local trickle = spindle.spawn(function()
      while true do a:send("."); spindle.sleep(0.02) end
    end)
    for _, mode in ipairs({"b", "t"}) do
      c:settimeout(nil, "b"); c:settimeout(nil, "t")
      c:settimeout(0.15, mode)
      local t0 = spindle.now()
      local r, err, partial = c:receive(1e6)
      assert.is_nil(r); assert.equal("timeout", err)
      assert.matches("^%.+$", partial)
      assert.is_true(spindle.now() - t0 >= 0.15)
      assert.is_true(spindle.now() - t0 < 3)
    end
    trickle:abort()
    c:close(); a:close(); srv:close()
  end))

  it("an outer spindle.timeout is raised, not turned into 'timeout'", spindle.test(function()
    local srv, c, a = trio()
    c:settimeout(10)
    local ok, e = pcall(spindle.timeout, 0.05, c.receive, c)
    assert.is_false(ok)
    assert.is_true(spindle.is_timeout(e))
    -- and an abort while waiting unwinds the task
    local h = spindle.spawn(function() return c:receive() end)
    spindle.sleep(0.02)
    h:abort()
    local okj, ej = h:result()
    assert.is_false(okj); assert.is_true(spindle.is_cancelled(ej))
    a:send("intact\n")
    assert.equal("intact", c:receive())
    c:close(); a:close(); srv:close()
  end))

  it("close wakes a task waiting in receive, accept or connect", spindle.test(function()
    local srv, c, a = trio()
    a:send("pa")
    local hr = spindle.spawn(function() return table.pack(c:receive(10)) end)
    local ha = spindle.spawn(function() return table.pack(srv:accept()) end)
    spindle.sleep(0.05)
    c:close(); srv:close()
    assert.same({nil, "closed", "pa", n = 3}, hr:join())
    assert.same({nil, "closed", n = 2}, ha:join())
    a:close()
  end))

  it("a connect that times out goes on (LuaSocket's non-blocking connect)", spindle.test(function()
    local srv = assert(socket.bind("127.0.0.1", 0))
    local host, port = srv:getsockname()
    local c = socket.tcp()
    c:settimeout(0)
    assert.same({nil, "timeout", n = 2}, table.pack(c:connect(host, port)))
    assert.matches("^tcp{client}", tostring(c))
    local _, w = socket.select(nil, {c}, 5)
    assert.equal(c, w[1])
    -- as connect(2): once more 1, then "already connected"
    assert.same({1, n = 1}, table.pack(c:connect(host, port)))
    assert.same({nil, "already connected", n = 2}, table.pack(c:connect(host, port)))
    local a = assert(srv:accept())
    c:settimeout(nil)
    assert.equal(3, c:send("hi\n"))
    assert.equal("hi", a:receive())
    a:close(); c:close()
    -- closed while still connecting: the attempt is dropped
    local d = socket.tcp()
    d:settimeout(0)
    d:connect(host, port)
    d:close()
    assert.same({nil, "closed", "", n = 3}, table.pack(d:receive()))
    srv:close()
  end))

  it("a refused non-blocking connect reports the error on the next connect", spindle.test(function()
    local srv = assert(socket.bind("127.0.0.1", 0))
    local host, port = srv:getsockname()
    srv:close()
    local c = socket.tcp()
    c:settimeout(0)
    assert.same({nil, "timeout", n = 2}, table.pack(c:connect(host, port)))
    local r = socket.select({c}, nil, 5)
    assert.equal(c, r[1])
    c:settimeout(1)
    assert.same({nil, "connection refused", n = 2}, table.pack(c:connect(host, port)))
    c:close()
  end))

  it("connect from a local address: socket.connect's locaddr, or bind first", spindle.test(function()
    local srv = assert(socket.bind("127.0.0.1", 0))
    local host, port = srv:getsockname()
    local c = assert(socket.connect(host, port, "127.0.0.1", 0))
    local a = assert(srv:accept())
    local lh, lp = c:getsockname()
    local ph, pp = a:getpeername()
    assert.equal(lh, ph); assert.equal(lp, pp)
    c:close(); a:close()
    local m = socket.tcp()
    assert.equal(1, m:bind("127.0.0.1", 0))
    local _, bp = m:getsockname()
    assert.equal(1, m:connect(host, port))
    a = assert(srv:accept())
    assert.equal(bp, select(2, a:getpeername()))
    m:close(); a:close(); srv:close()
  end))

  it("spindle.net.connect's local_host and local_port (what locaddr uses)", spindle.test(function()
    local net = spindle.net
    local l = assert(net.listen("127.0.0.1", 0))
    local host, port = l:local_addr()
    local c = assert(net.connect(host, port, {local_host = "127.0.0.1"}))
    local a = assert(l:accept())
    assert.equal(select(2, c:local_addr()), select(2, a:peer()))
    local lp = select(2, c:local_addr())
    c:close(); a:close()
    -- the local end of an existing connection to the same peer: the
    -- system refuses (the same four addresses cannot be used twice)
    local keep = assert(net.connect(host, port, {local_host = "127.0.0.1", local_port = 0}))
    local ka = assert(l:accept())
    local _, kp = keep:local_addr()
    local x, msg, code = net.connect(host, port, {local_host = "127.0.0.1", local_port = kp})
    assert.is_nil(x); assert.is_string(msg)
    assert.is_true(code == "EADDRINUSE" or code == "EADDRNOTAVAIL", code)
    -- an address of the other family: nothing to try
    x, msg, code = net.connect(host, port, {local_host = "::1"})
    assert.is_nil(x); assert.equal("EAFNOSUPPORT", code)
    assert.error_matches(function() net.connect(host, port, {local_host = "localhost"}) end,
      "option 'local_host' must be a numeric IPv4 or IPv6 address")
    assert.error_matches(function() net.connect(host, port, {local_port = 1}) end,
      "option 'local_port' needs 'local_host'")
    assert.error_matches(function() net.connect(host, port, {local_host = "127.0.0.1", local_port = -1}) end,
      "option 'local_port' must be an integer 0..65535")
    assert.is_true(lp > 0)
    keep:close(); ka:close(); l:close()
  end))

  it("tcp6 and connect work over ::1 when the system has IPv6", spindle.test(function()
    local srv = socket.bind("::1", 0)
    if not srv then return end -- no IPv6 here
    local host, port, fam = srv:getsockname()
    assert.equal("::1", host); assert.equal("inet6", fam)
    local c = socket.tcp6()
    assert.equal(1, c:connect("::1", port))
    assert.equal("inet6", c:getfamily())
    local a = assert(srv:accept())
    assert.equal("inet6", select(3, a:getpeername()))
    c:close(); a:close(); srv:close()
  end))

  it("a send that times out keeps its bytes queued, in order", spindle.test(function()
    local srv, c, a = trio()
    local big = string.rep("x", 8 * 1024 * 1024)
    c:settimeout(0)
    local r, err, last = c:send(big)
    assert.is_nil(r); assert.equal("timeout", err)
    assert.equal(#big, last) -- queued: counted as sent
    -- the next send waits for the queued bytes first (here: times out
    -- without queueing anything)
    r, err, last = c:send("tail", 1)
    assert.same({nil, "timeout", 0}, {r, err, last})
    local reader = spindle.spawn(function() return a:receive(#big + 4) end)
    c:settimeout(nil)
    assert.equal(4, c:send("tail"))
    local got = reader:join()
    assert.equal(#big + 4, #got)
    assert.equal("tail", got:sub(-4))
    c:close(); a:close(); srv:close()
  end))

  it("shutdown: send, receive and both", spindle.test(function()
    local srv, c, a = trio()
    a:send("buffered")
    socket.sleep(0.05)
    assert.equal(1, c:shutdown("receive"))
    assert.same({nil, "closed", "", n = 3}, table.pack(c:receive(100)))
    assert.equal(6, c:send("still\n"))
    assert.equal("still", a:receive())
    assert.equal(1, c:shutdown())
    assert.same({nil, "closed", "", n = 3}, table.pack(a:receive()))
    assert.equal(1, c:shutdown("send"))
    c:close(); a:close(); srv:close()
  end))

  it("sends from several tasks go out whole, one after the other", spindle.test(function()
    local srv, c, a = trio()
    local hs = {}
    for i = 1, 8 do
      hs[i] = spindle.spawn(function()
        return c:send((string.char(64 + i)):rep(300000))
      end)
    end
    local got = spindle.spawn(function() return a:receive(8 * 300000) end)
    for i = 1, 8 do assert.equal(300000, hs[i]:join()) end
    local data = got:join()
    assert.equal(8 * 300000, #data)
    local seen = {}
    for k = 0, 7 do
      local block = data:sub(k * 300000 + 1, (k + 1) * 300000)
      local ch = block:sub(1, 1)
      assert.equal(ch:rep(300000), block)
      assert.is_nil(seen[ch]); seen[ch] = true
    end
    c:close(); a:close(); srv:close()
  end))

  it("a second task receiving on the same socket raises 'socket busy'", spindle.test(function()
    local srv, c, a = trio()
    local first = spindle.spawn(function() return c:receive() end)
    spindle.sleep(0.02)
    local ok, e = pcall(c.receive, c)
    assert.is_false(ok)
    assert.matches("tcp:receive: socket busy", e)
    a:send("line\n")
    assert.equal("line", first:join())
    a:send("again\n")
    assert.equal("again", c:receive()) -- not busy any more
    c:close(); a:close(); srv:close()
  end))

  it("protect passes an abort on; it is not turned into nil, msg", spindle.test(function()
    local srv, c, a = trio()
    local f = socket.protect(function()
      local line = socket.try(c:receive())
      return line
    end)
    local h = spindle.spawn(f)
    spindle.sleep(0.02)
    h:abort()
    local ok, e = h:result()
    assert.is_false(ok); assert.is_true(spindle.is_cancelled(e))
    a:close()
    assert.same({nil, "closed", n = 2}, table.pack(f()))
    c:close(); srv:close()
  end))

  it("many connections at once, all closed after", spindle.test(function()
    local srv = assert(socket.bind("127.0.0.1", 0))
    local host, port = srv:getsockname()
    spindle.spawn(function()
      for _ = 1, 50 do
        local a = assert(srv:accept())
        spindle.spawn(function()
          local line = a:receive()
          a:send(line .. "!\n")
          a:close()
        end)
      end
    end)
    local hs = {}
    for i = 1, 50 do
      hs[i] = spindle.spawn(function()
        local c = assert(socket.connect(host, port))
        c:settimeout(5)
        c:send("n" .. i .. "\n")
        local r = c:receive()
        c:close()
        return r
      end)
    end
    for i, h in ipairs(hs) do assert.equal("n" .. i .. "!", h:join()) end
    srv:close()
  end))

  it("sink and source work with LuaSocket's ltn12", spindle.test(function()
    local ltn12 = require "ltn12"
    local srv, c, a = trio()
    local data = string.rep("0123456789", 1000)
    assert.equal(1, ltn12.pump.all(ltn12.source.string(data),
                                   socket.sink("close-when-done", c)))
    local t = {}
    assert.equal(1, ltn12.pump.all(socket.source("by-length", a, 5000),
                                   (ltn12.sink.table(t))))
    assert.equal(data:sub(1, 5000), table.concat(t))
    t = {}
    assert.equal(1, ltn12.pump.all(socket.source("until-closed", a),
                                   (ltn12.sink.table(t))))
    assert.equal(data:sub(5001), table.concat(t))
    srv:close()
  end))
end)
