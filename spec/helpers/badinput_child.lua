-- spec/helpers/badinput_child.lua -- the child process of the bad-input
-- sweep (spec/51-badinput_spec.lua).  A crash must not take busted down,
-- so every call runs here, in a child, and the parent reads which call was
-- the last one started.
--
--   lua5.4 badinput_child.lua groups            one line per group name
--   lua5.4 badinput_child.lua classes           "M name" for every spindle.*
--                                               metatable with a function in
--                                               it; "C name" for each class
--                                               the sweep builds
--   lua5.4 badinput_child.lua GROUP count       "N <calls>"
--   lua5.4 badinput_child.lua GROUP describe ID one line: what call ID does
--   lua5.4 badinput_child.lua GROUP run FROM TO [STRIDE]
--
-- `run` prints "C <id>" before each call, "H <id>" for a call that neither
-- returned nor ended when aborted, "A <id>" if a call ended the sweeping
-- task itself, then "FD <before> <after>" (descriptors, after closing every
-- object and a full collection) and "DONE <calls run>".  The parent runs it
-- in a scratch directory (paths such as "abc" are created there) with
-- absolute module paths.
--
-- A call is (target function, self, argument position, wrong value,
-- context).  Targets: every function of the module tables (the lazily
-- loaded ones forced), the closures the API hands out (iterators, the
-- await callback, spindle.test's function), and every function in every
-- class's metatable, metamethods included.  Values: VALUES below (>= 25),
-- plus, as `self`, one instance of every other class.  Contexts: inside a
-- task (each call in a probe task of its own, aborted if it blocks) and
-- outside any runtime.  Selves: live, closed, foreign (made in another
-- runtime, idle or closed).
io.stdout:setvbuf("line")

local spindle = require "spindle"
local net = spindle.net
local pack, unpack = table.pack, table.unpack

local TERMINAL = {done = true, failed = true, cancelled = true}
local function quiet() end
local FN = function() end -- valid callback; no upvalues (blocking accepts it)

-- ------------------------------------------------------------- descriptors
local function fd_count()
  local n = 0
  for i = 0, 1023 do
    local f = io.open("/proc/self/fdinfo/" .. i)
    if f then n = n + 1; f:close() end
  end
  return n
end

-- ------------------------------------------------------------- runtimes
-- RT: the sweep runs inside its tasks.  FOPEN: an idle runtime (never run
-- again) that owns the "foreign" and "outside" objects.  FCLOSED: made the
-- same way, then closed.
local RT, FOPEN, FCLOSED
local keep = {} -- objects that must stay open until the end
-- the server side of each client stream made by tcp_pair, open as long as
-- the client is reachable (an ephemeron: collected with it)
local peers = setmetatable({}, {__mode = "k"})

-- Runs fn inside a task of the idle runtime rt (stepping it) and returns
-- its results.
local function in_idle(rt, fn)
  local res
  rt:spawn(function() res = pack(fn()) end)
  for _ = 1, 100000 do
    if res then break end
    rt:step()
  end
  assert(res, "in_idle: the task did not finish")
  return unpack(res, 1, res.n)
end

-- ------------------------------------------------------------- classes
local function tcp_pair()
  local srv = assert(net.listen("127.0.0.1", 0))
  local c = assert(net.connect(srv:local_addr()))
  local s = assert(srv:accept())
  srv:close()
  peers[c] = s
  return c
end

-- A response from a peer on loopback that answers one request.
local function http_response(opts)
  local l = assert(spindle.net.listen("127.0.0.1", 0))
  local _, port = l:local_addr()
  spindle.spawn(function()
    local c = l:accept()
    l:close()
    if c then
      c:read_until("\r\n\r\n")
      c:write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
      c:close()
    end
  end)
  return assert(spindle.http.get(("http://127.0.0.1:%d/"):format(port), opts))
end

-- A request and its response, kept from one exchange with http.serve
-- (the exchange is over: their methods must refuse cleanly).
local function http_exchange()
  local got = {}
  local srv = assert(require("spindle.http_server").serve{host = "127.0.0.1", port = 0,
    handler = function(req, res) got.req, got.res = req, res return 204 end})
  local s = assert(net.connect(srv:local_addr()))
  s:write("GET /x?y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  s:read_all()
  s:close()
  srv:close()
  return got
end

-- The HTTP server's connection objects, with the stream each one serves.
local conn_stream = setmetatable({}, {__mode = "k"})
local function http_conn()
  local s = tcp_pair()
  local c = spindle._http_conn((spindle._http_conf({}, FN, FN)), s)
  conn_stream[c] = s
  return c
end

local CLASSES = {
  {name = "spindle.task",
   make = function() return spindle.spawn(spindle.sleep, 1e6) end,
   close = function(h) h:abort() end},
  {name = "spindle.task*", -- a failed task nobody joined yet
   make = function()
     local h = spindle.spawn(error, "failed on purpose", 0)
     spindle.yield(); spindle.yield()
     return h
   end},
  {name = "spindle.runtime",
   make = function() return spindle.runtime{clock = "virtual", on_error = quiet} end,
   close = function(r) r:close() end},
  {name = "spindle.channel", make = function() return spindle.channel(2) end,
   close = function(c) c:close() end},
  {name = "spindle.semaphore", make = function() return spindle.semaphore(2) end},
  {name = "spindle.permit", make = function() return spindle.semaphore(2):acquire() end,
   close = function(p) p:release() end},
  {name = "spindle.mutex", make = function() return spindle.mutex() end},
  {name = "spindle.guard", make = function() return spindle.mutex():lock() end,
   close = function(g) g:unlock() end},
  {name = "spindle.event", make = function() return spindle.event() end},
  {name = "spindle.stream", make = tcp_pair, close = function(s) s:close() end},
  {name = "spindle.listener", make = function() return assert(net.listen("127.0.0.1", 0)) end,
   close = function(l) l:close() end},
  {name = "spindle.net.udp",
   make = function() local u = net.udp(); assert(u:bind("127.0.0.1", 0)); return u end,
   close = function(u) u:close() end},
  {name = "spindle.fs.file", make = function() return assert(spindle.fs.open("file", "r+")) end,
   close = function(f) f:close() end},
  {name = "spindle.process",
   make = function()
     return assert(spindle.process.spawn("sleep", {"60"},
       {stdin = "pipe", stdout = "pipe", stderr = "ignore"}))
   end,
   close = function(p) p:close() end,
   methods = {"close", "kill", "pid", "wait"}}, -- behind an __index function
  {name = "spindle.signal", make = function() return assert(spindle.signal("USR2")) end,
   close = function(s) s:close() end},
  {name = "spindle.scope",
   make = function() -- held open by a background task
     local got = spindle.channel(1)
     spindle.spawn(function()
       spindle.scope(function(s) got:send(s); spindle.sleep(1e6) end)
     end)
     return got:recv()
   end,
   make_closed = function()
     local s0
     spindle.scope(function(s) s0 = s end)
     return s0
   end},
  {name = "spindle.cancelled",
   make = function()
     local h = spindle.spawn(spindle.sleep, 1)
     spindle.yield()
     h:abort()
     local _, e = h:result()
     return e
   end},
  {name = "spindle.timeout",
   make = function()
     local _, e = pcall(spindle.timeout, 0.001, spindle.sleep, 1)
     return e
   end},
  {name = "spindle.http.client_response", make = function() return http_response() end},
  {name = "spindle.http.transfer",
   make = function()
     -- the transfer behind a streamed response, found where the client
     -- keeps it: a weak table in the registry, response -> transfer
     local res = http_response({stream = true})
     local mt = debug.getregistry()["spindle.http.transfer"]
     for _, v in pairs(debug.getregistry()) do
       if type(v) == "table" then
         local x = rawget(v, res)
         if x ~= nil and debug.getmetatable(x) == mt then return x end
       end
     end
     error("no transfer found for a streamed response")
   end},
  {name = "spindle.http.request", make = function() return http_exchange().req end},
  {name = "spindle.http.response", make = function() return http_exchange().res end},
  {name = "spindle.http.conf", make = function() return spindle._http_conf({}, FN, FN) end},
  {name = "spindle.http.conn", make = http_conn,
   close = function(c) conn_stream[c]:close() end},
  {name = "spindle.watch", -- a watch set over two tasks (join_all, race)
   make = function()
     return spindle._watch({spindle.spawn(spindle.sleep, 1e6), spindle.spawn(FN)})
   end},
  {name = "spindle.scope.link", -- a scope's record of a child, reached
   make = function()              -- through debug.getuservalue
     local got = spindle.channel(1)
     spindle.spawn(function()
       spindle.scope(function(s)
         s:spawn(spindle.sleep, 1e6)
         got:send(debug.getuservalue(s, 1)[1])
         spindle.sleep(1e6)
       end)
     end)
     return got:recv()
   end},
  {name = "spindle.tls.context", make = function() return spindle.tls.context({}) end},
  {name = "spindle.watchdog", make = function() return spindle._watchdog(1e6) end,
   close = function(w) w:close() end,
   -- closing a runtime with a live watchdog never returns (a bug, pinned
   -- by spec/51): the "foreign, closed" one is closed before its runtime
   close_before_rt_close = true},
}
local CLASS = {}
for _, c in ipairs(CLASSES) do CLASS[c.name] = c end

local function make_closed(cls)
  if cls.make_closed then return cls.make_closed() end
  local o = cls.make()
  if cls.close then cls.close(o) end
  return o
end

-- Functions of a class: every function in its metatable and in its
-- __index table, sorted by name (pairs order changes from run to run).
local function functions_of(cls)
  local mt = debug.getregistry()[cls.name]
  assert(type(mt) == "table", "no metatable " .. cls.name)
  local list = {}
  for k, v in pairs(mt) do
    if type(v) == "function" then list[#list + 1] = {name = k, fn = v} end
  end
  for _, t in ipairs({mt.__index, mt.methods}) do -- methods: spindle.http.request
    if type(t) == "table" then
      for k, v in pairs(t) do
        if type(v) == "function" then list[#list + 1] = {name = k, fn = v} end
      end
    end
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  for _, m in ipairs(cls.methods or {}) do list[#list + 1] = {name = m, method = true} end
  return list
end

-- Valid arguments after self, by method name (the swept position replaces
-- one of them).
local METHOD_HINTS = {
  name = {"n"}, run = {FN}, spawn = {FN}, step = {0}, send = {1}, try_send = {1},
  read = {1}, read_some = {10}, read_line = {10}, read_until = {"\n", 10},
  read_all = {10}, lines = {10}, write = {"x"}, set_nodelay = {true},
  set_keepalive = {true, 1}, bind = {"127.0.0.1", 0},
  send_to = {"x", "127.0.0.1", 9}, recv_from = {10}, kill = {"TERM"},
  __index = {"stdout"},
}

-- ------------------------------------------------------------- module
local MODULE_HINTS = {
  ["spindle.run"] = {FN}, ["spindle.runtime"] = {{clock = "virtual"}},
  ["spindle.spawn"] = {FN}, ["spindle.sleep"] = {0}, ["spindle.timeout"] = {0.001, FN},
  ["spindle.shield"] = {FN}, ["spindle.scope"] = {FN}, ["spindle.blocking"] = {FN},
  ["spindle.await"] = {function(...) local cb = select(select("#", ...), ...); cb(1) end},
  ["spindle.channel"] = {1}, ["spindle.semaphore"] = {1}, ["spindle.signal"] = {"USR2"},
  ["spindle.is_cancelled"] = {1}, ["spindle.is_timeout"] = {1},
  ["spindle._watchdog"] = {1e6}, ["spindle.test"] = {FN},
  ["spindle.join_all"] = {{}}, ["spindle.race"] = {{}},
  ["spindle.net.listen"] = {"127.0.0.1", 0}, ["spindle.net.connect"] = {"127.0.0.1", 9},
  ["spindle.net.connect_unix"] = {"nosock"}, ["spindle.net.listen_unix"] = {"sock"},
  ["spindle.net.resolve"] = {"localhost"},
  ["spindle.fs.read_file"] = {"file"}, ["spindle.fs.write_file"] = {"out", "x"},
  ["spindle.fs.open"] = {"file", "r"}, ["spindle.fs.stat"] = {"file"},
  ["spindle.fs.lstat"] = {"file"}, ["spindle.fs.remove"] = {"absent"},
  ["spindle.fs.rename"] = {"absent", "absent2"}, ["spindle.fs.mkdir"] = {"dir"},
  ["spindle.fs.list_dir"] = {"."},
  ["spindle.process.spawn"] = {"true", {}}, ["spindle.process.run"] = {"true", {}},
  ["spindle.tls.context"] = {{}}, ["spindle.tls.connect"] = {"127.0.0.1", 9},
  ["spindle._http_conf"] = {{}, FN, FN}, ["spindle._watch"] = {{}},
  -- closures the API hands out
  ["ch:iter() iterator"] = {}, ["s:lines() iterator"] = {},
  ["await callback"] = {1}, ["spindle.test(fn) function"] = {},
}

-- Module targets: {name, get = function() -> fn} (get runs inside a task
-- for the closures, which need one to be made).
local function module_targets()
  local list = {}
  local function walk(prefix, t)
    local keys = {}
    for k, v in pairs(t) do
      if type(k) == "string" and type(v) == "function" then keys[#keys + 1] = k end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local fn = t[k]
      list[#list + 1] = {name = prefix .. k, get = function() return fn end}
    end
  end
  walk("spindle.", spindle)
  for _, lazy in ipairs({"join_all", "race", "test"}) do
    list[#list + 1] = {name = "spindle." .. lazy, get = function() return spindle[lazy] end}
  end
  walk("spindle.net.", spindle.net)
  walk("spindle.fs.", spindle.fs)
  walk("spindle.process.", spindle.process)
  if spindle.tls then walk("spindle.tls.", spindle.tls) end
  list[#list + 1] = {name = "ch:iter() iterator", closure = true, get = function()
    local ch = spindle.channel(); ch:try_send(1); return ch:iter() end}
  list[#list + 1] = {name = "s:lines() iterator", closure = true, get = function()
    return tcp_pair():lines(10) end}
  list[#list + 1] = {name = "await callback", closure = true, get = function()
    local saved
    spindle.await(function(cb) saved = cb; cb() end)
    return saved
  end}
  list[#list + 1] = {name = "spindle.test(fn) function", closure = true, get = function()
    return spindle.test(FN)
  end}
  return list
end

-- ------------------------------------------------------------- values
-- VALUES[i] = {label, make}; make() builds the value (some need a runtime:
-- they are made once, in FOPEN, at start).
local function hostile()
  return setmetatable({}, {
    __index = function() error("hostile __index") end,
    __newindex = function() error("hostile __newindex") end,
    __len = function() error("hostile __len") end,
    __tostring = function() error("hostile __tostring") end,
    __call = function() error("hostile __call") end,
    __eq = function() error("hostile __eq") end,
    __close = function() error("hostile __close") end,
    __gc = function() end,
    __name = "hostile",
  })
end

local VALUES = {
  {"missing", "NONE"}, {"nil", function() return nil end},
  {"true", function() return true end}, {"false", function() return false end},
  {"0", function() return 0 end}, {"-1", function() return -1 end},
  {"1e308", function() return 1e308 end}, {"-0.0", function() return -0.0 end},
  {"NaN", function() return 0 / 0 end}, {"math.huge", function() return math.huge end},
  {"-math.huge", function() return -math.huge end},
  {"math.mininteger", function() return math.mininteger end},
  {"math.maxinteger", function() return math.maxinteger end},
  {"0.5", function() return 0.5 end}, {'""', function() return "" end},
  {"1 MiB string", function() return string.rep("x", 1 << 20) end},
  {'"\\0"', function() return "\0" end}, {'"abc"', function() return "abc" end},
  {"{}", function() return {} end}, {"{1,2,3}", function() return {1, 2, 3} end},
  {"{__index=error}", function() return setmetatable({}, {__index = error}) end},
  {"hostile table", hostile},
  {"a function", function() return function(...) return ... end end},
  {"a coroutine", function() return coroutine.create(FN) end},
  {"a dead coroutine", function() local co = coroutine.create(FN); coroutine.resume(co); return co end},
  {"io.stdout", function() return io.stdout end},
  {"a closed io file", function() local f = io.tmpfile(); f:close(); return f end},
  {"a channel", "OBJ"}, {"a task handle", "OBJ"}, {"a closed stream", "OBJ"},
  {"an idle runtime", "OBJ"}, {"a closed runtime", "OBJ"}, {"a cancel error", "OBJ"},
  {"a timeout error", "OBJ"}, {"the sweep's runtime", "OBJ"},
}
local VAL = {} -- index -> value, built by build_values()

local function build_values()
  local objs = in_idle(FOPEN, function()
    local h = spindle.spawn(FN); h:join()
    local closed_rt = spindle.runtime{clock = "virtual"}; closed_rt:close()
    local s = tcp_pair(); s:close()
    return {["a channel"] = spindle.channel(), ["a task handle"] = h,
            ["a closed stream"] = s,
            ["an idle runtime"] = spindle.runtime{clock = "virtual", on_error = quiet},
            ["a closed runtime"] = closed_rt,
            ["a cancel error"] = CLASS["spindle.cancelled"].make(),
            ["a timeout error"] = CLASS["spindle.timeout"].make()}
  end)
  objs["the sweep's runtime"] = RT
  keep[#keep + 1] = objs["an idle runtime"]
  for i, lv in ipairs(VALUES) do
    if lv[2] == "OBJ" then VAL[i] = objs[lv[1]]
    elseif lv[2] ~= "NONE" then VAL[i] = lv[2]() end
  end
end

-- ------------------------------------------------------------- the plan
-- A call: {ctx = "in"|"out", target = <function record>, self = "value"|
-- "live"|"closed"|"fopen"|"fclosed"|nil (module), pos = n, vi = value
-- index or nil (valid arguments only), other = class name (self is an
-- instance of another class)}.
local function class_calls(cls)
  local calls = {}
  local function add(t) calls[#calls + 1] = t end
  for _, f in ipairs(functions_of(cls)) do
    for _, ctx in ipairs({"in", "out"}) do
      for vi = 1, #VALUES do add{ctx = ctx, f = f, self = "value", pos = 1, vi = vi} end
      for _, other in ipairs(CLASSES) do
        if other ~= cls then add{ctx = ctx, f = f, self = "value", pos = 1, other = other.name} end
      end
      local selves = ctx == "in" and {"live", "closed", "fopen", "fclosed"}
                     or {"fopen", "fclosed"}
      for _, self in ipairs(selves) do
        add{ctx = ctx, f = f, self = self}
        local maxpos = (self == "live" or (ctx == "out" and self == "fopen")) and 4 or 2
        for pos = 2, maxpos do
          for vi = 1, #VALUES do add{ctx = ctx, f = f, self = self, pos = pos, vi = vi} end
        end
      end
    end
  end
  -- run every "in" call first (one RT:run), then the "out" ones
  local ins, outs = {}, {}
  for _, c in ipairs(calls) do
    if c.ctx == "in" then ins[#ins + 1] = c else outs[#outs + 1] = c end
  end
  for _, c in ipairs(outs) do ins[#ins + 1] = c end
  return ins
end

local function module_calls()
  local calls = {}
  for _, ctx in ipairs({"in", "out"}) do
    for _, t in ipairs(module_targets()) do
      calls[#calls + 1] = {ctx = ctx, t = t}
      for pos = 1, 4 do
        for vi = 1, #VALUES do calls[#calls + 1] = {ctx = ctx, t = t, pos = pos, vi = vi} end
      end
    end
  end
  return calls
end

local function groups()
  local list = {"module"}
  for _, c in ipairs(CLASSES) do list[#list + 1] = c.name end
  return list
end

local function calls_of(group)
  if group == "module" then return module_calls() end
  return class_calls(assert(CLASS[group], "unknown group " .. group))
end

local function describe_call(group, c)
  local target = c.t and c.t.name or (group .. " " .. c.f.name)
  local self = c.self and (c.other and ("self = a " .. c.other)
    or c.self == "value" and ("self = " .. VALUES[c.vi][1])
    or ("self " .. c.self)) or nil
  local arg = (c.pos and c.self ~= "value") and (("argument #%d = %s"):format(c.pos, VALUES[c.vi][1]))
    or (not c.pos and not c.vi and "valid arguments") or nil
  local parts = {target, c.ctx == "in" and "inside a task" or "outside any runtime"}
  if self then parts[#parts + 1] = self end
  if arg then parts[#parts + 1] = arg end
  return table.concat(parts, ", ")
end

-- ------------------------------------------------------------- running
local instances -- cache: key -> object (per run of a context)
local others    -- class name -> an instance (per context)

local function hint_of(c)
  if c.t then return MODULE_HINTS[c.t.name] or {} end
  return METHOD_HINTS[c.f.name] or {}
end

-- Builds the argument list of call c; returns fn, args (packed).
local function prepare(group, c, ctx_make)
  local fn, args
  local hint = hint_of(c)
  if c.t then
    if c.t.closure then -- one per context, made in a task
      local key = "closure:" .. c.t.name
      fn = instances[key]
      if fn == nil then
        fn = c.ctx == "in" and c.t.get() or in_idle(FOPEN, c.t.get)
        instances[key] = fn
      end
    else
      fn = c.t.get()
    end
    args = {n = #hint}
    for i, v in ipairs(hint) do args[i] = v end
  else
    local self
    if c.self == "value" then
      if c.other then self = others[c.other] else self = VAL[c.vi] end
    else
      local key = c.ctx .. ":" .. c.self .. ":" .. c.f.name .. ":" .. tostring(c.pos)
      self = instances[key]
      if self == nil then
        self = ctx_make(c.self, CLASS[group], key)
        instances[key] = self
      end
    end
    if c.f.method then
      local ok, m = pcall(function() return self[c.f.name] end)
      fn = ok and type(m) == "function" and m or function(...)
        return getmetatable(self).__index(...) end
    else
      fn = c.f.fn
    end
    args = {self, n = #hint + 1}
    for i, v in ipairs(hint) do args[i + 1] = v end
  end
  if c.pos and not (c.self == "value") then
    if VALUES[c.vi][2] == "NONE" then
      args.n = c.pos - 1
    else
      args[c.pos] = VAL[c.vi]
      if args.n < c.pos then args.n = c.pos end
    end
  elseif c.self == "value" and VALUES[c.vi] and VALUES[c.vi][2] == "NONE" and not c.other then
    args.n = 0
  end
  return fn, args
end

-- Instances for "self" kinds: live/closed in the running context; fopen /
-- fclosed were made before (premade).
local premade = {}

local function make_in(kind, cls, key)
  if kind == "live" then return cls.make() end
  if kind == "closed" then return make_closed(cls) end
  return premade[key]
end

local function make_out(kind, cls, key)
  return premade[key]
end

-- Makes the foreign instances the calls in [from, to] need.
local function premake(group, calls, from, to, stride)
  local cls = CLASS[group]
  if not cls then return end
  for i = from, to, stride do
    local c = calls[i]
    if c.self == "fopen" or c.self == "fclosed" then
      local key = c.ctx .. ":" .. c.self .. ":" .. c.f.name .. ":" .. tostring(c.pos)
      if premade[key] == nil then
        local rt = c.self == "fopen" and FOPEN or FCLOSED
        premade[key] = in_idle(rt, cls.make)
        if c.self == "fclosed" and cls.close_before_rt_close then cls.close(premade[key]) end
      end
    end
  end
end


local function probe(fn, args)
  local h = spindle.spawn(function() return fn(unpack(args, 1, args.n)) end)
  local ok, e = pcall(spindle.timeout, 1, h.result, h)
  if not ok and not spindle.is_timeout(e) then return "aborted" end
  if not TERMINAL[h:status()] then
    h:abort()
    ok, e = pcall(spindle.timeout, 1, h.result, h)
    if not ok and not spindle.is_timeout(e) then return "aborted" end
    -- Work that runs in real time (a child being reaped after a kill)
    -- does not hold the virtual clock: give it real time, up to 2 s, on a
    -- worker thread (the clock stands still while work is in flight).
    for _ = 1, 200 do
      if TERMINAL[h:status()] then break end
      spindle.blocking(function()
        local t = os.clock() + 0.01
        while os.clock() < t do end
      end)
    end
    if not TERMINAL[h:status()] then return "stuck" end
  end
  return "ok"
end

-- Closes an object of one of the classes (nothing else).  What cannot be
-- closed from inside a task (a runtime with live tasks, from inside
-- another runtime) is closed once the sweep's runtime has returned.
local cls_of
local deferred = {}
local function close_obj(o)
  if not cls_of then
    cls_of = {}
    for _, cls in ipairs(CLASSES) do cls_of[debug.getregistry()[cls.name]] = cls end
  end
  local cls = cls_of[debug.getmetatable(o) or false]
  if cls and cls.close and not pcall(cls.close, o) and spindle.current() then
    deferred[#deferred + 1] = o
  end
end
local function close_deferred()
  local list = deferred
  deferred = {}
  for _, o in ipairs(list) do close_obj(o) end
end

-- Descriptor accounting per target: when the target function changes, the
-- objects made for the previous one are closed and dropped, and after a
-- full collection the count must be back where it was:
-- "T <growth> <target> (<context>)" otherwise.
local fd_target, fd_base, fd_ctx
local function account(group, c)
  local name = c and (c.t and c.t.name or (group .. " " .. c.f.name)) or nil
  if name == fd_target and c and c.ctx == fd_ctx then return end
  for k, o in pairs(instances or {}) do close_obj(o); instances[k] = nil end
  collectgarbage(); collectgarbage()
  local n = fd_count()
  -- An aborted call whose work is still on the thread pool (an open) gets
  -- its descriptor, and closes it, when that work lands: on a loaded
  -- machine that can be after the count.  Inside a task, wait in real time
  -- (as probe does) up to 2 s for the count to come back.
  if fd_target and n > fd_base and spindle.current() then
    for _ = 1, 200 do
      spindle.blocking(function()
        local t = os.clock() + 0.01
        while os.clock() < t do end
      end)
      collectgarbage(); collectgarbage()
      n = fd_count()
      if n <= fd_base then break end
    end
  end
  if fd_target and n > fd_base and #deferred == 0 then
    io.write("T ", n - fd_base, " ", fd_target, " (", fd_ctx, ")\n")
  end
  fd_target, fd_base, fd_ctx = name, n, c and c.ctx
end
local function account_reset() fd_target = nil end

local function build_others()
  others = {}
  for _, cls in ipairs(CLASSES) do others[cls.name] = cls.make() end
  account_reset()
end


local function run(group, from, to, stride)
  local calls = calls_of(group)
  to = math.min(to, #calls)
  premake(group, calls, from, to, stride)
  FCLOSED:close()
  local ran = 0
  -- inside a task
  local i = from
  local function inside()
    -- The runtime's HTTP client (a libcurl multi handle and its
    -- descriptors) is made at the first request and kept until the runtime
    -- closes: make it before the descriptors are counted.
    if spindle.http and spindle.http.request then
      pcall(spindle.http.get, "http://127.0.0.1:9/", {timeout = 1})
    end
    build_others()
    instances = {}
    while i <= to and calls[i].ctx == "in" do
      local c = calls[i]
      account(group, c)
      io.write("C ", i, "\n")
      local okp, fn, args = pcall(prepare, group, c, make_in)
      if okp then
        local r = probe(fn, args)
        if r == "stuck" then io.write("H ", i, "\n")
        elseif r == "aborted" then io.write("A ", i, "\n"); i = i + stride; ran = ran + 1; return end
      end
      ran = ran + 1
      i = i + stride
    end
    account(group, nil)
    io.write("P inside\n") -- the calls of this phase are done
    for name, o in pairs(others) do pcall(function() if CLASS[name].close then CLASS[name].close(o) end end) end
  end
  local last_failed, failures = nil, 0
  while i <= to and calls[i].ctx == "in" do
    if failures >= 20 then
      io.write("E ", i, " the sweep's runtime failed 20 times: giving up on this phase\n")
      while i <= to and calls[i].ctx == "in" do i = i + stride end
      break
    end
    local ok, e = pcall(RT.run, RT, inside)
    close_deferred()
    if not ok then
      -- a call broke the sweep's runtime (closed it, say): go on in a new
      -- one, past that call if it happens again at the same place
      io.write("E ", i, " ", (tostring(e):gsub("\n", " ")), "\n")
      failures = failures + 1
      if last_failed == i then i = i + stride end
      last_failed = i
      keep[#keep + 1] = RT
      RT = spindle.runtime{clock = "virtual", on_error = quiet}
    end
  end
  -- outside any runtime
  others = {}
  for _, cls in ipairs(CLASSES) do others[cls.name] = in_idle(FOPEN, cls.make) end
  instances = {}
  account_reset()
  while i <= to do
    local c = calls[i]
    account(group, c)
    io.write("C ", i, "\n")
    local okp, fn, args = pcall(prepare, group, c, make_out)
    if okp then pcall(fn, unpack(args, 1, args.n)) end
    ran = ran + 1
    i = i + stride
  end
  account(group, nil)
  io.write("P outside\n")
  return ran
end

-- ------------------------------------------------------------- main
local mode = arg[1]
local function warm_up()
  -- libuv's process-wide descriptors (signal pipe, thread pool), once
  spindle.run(function()
    local s = tcp_pair(); s:close()
    spindle.blocking(FN)
    spindle.fs.stat(".")
    local p = spindle.process.spawn("true", {}); p:wait(); p:close()
    local sig = spindle.signal("USR2"); sig:close()
    net.resolve("localhost")
  end)
  keep = {}
  collectgarbage(); collectgarbage()
end

local f = assert(io.open("file", "w")); f:write("contents\n"); f:close()

if mode == "groups" then
  for _, g in ipairs(groups()) do print(g) end
  os.exit(0)
end

local function new_runtimes()
  RT = spindle.runtime{clock = "virtual", on_error = quiet}
  FOPEN = spindle.runtime{clock = "virtual", on_error = quiet}
  FCLOSED = spindle.runtime{clock = "virtual", on_error = quiet}
end

if mode == "classes" then
  new_runtimes()
  -- make one of each (some metatables are created on first use)
  RT:run(function()
    local objs = {}
    for _, cls in ipairs(CLASSES) do objs[#objs + 1] = cls.make() end
    spindle.await(function(cb) cb() end)
    for _, t in ipairs(module_targets()) do if t.closure then t.get() end end
    for k, v in pairs(debug.getregistry()) do
      if type(k) == "string" and k:match("^spindle%.") and type(v) == "table" then
        local has = false
        for _, x in pairs(v) do if type(x) == "function" then has = true end end
        if type(v.__index) == "table" then
          for _, x in pairs(v.__index) do if type(x) == "function" then has = true end end
        end
        if has then print("M " .. k) end
      end
    end
    for i, cls in ipairs(CLASSES) do
      local same = rawequal(debug.getmetatable(objs[i]), debug.getregistry()[cls.name])
      print("C " .. cls.name .. " " .. tostring(same))
    end
  end)
  os.exit(0)
end

local group = arg[2] and mode or nil
local sub = arg[2]
if sub == "count" then
  print("N " .. #calls_of(mode))
  os.exit(0)
elseif sub == "describe" then
  local calls = calls_of(mode)
  print(describe_call(mode, calls[tonumber(arg[3])]))
  os.exit(0)
elseif sub == "run" then
  warm_up()
  local before = fd_count()
  new_runtimes()
  build_values()
  local n = run(group, tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5] or 1))
  -- close everything, collect, count descriptors.  Objects of a runtime
  -- are closed by hand first: rt:close() with a live watchdog made by an
  -- ended task never returns (see spec/51-badinput_spec.lua).
  for _, t in ipairs({instances or {}, others or {}, premade}) do
    for _, o in pairs(t) do close_obj(o) end
  end
  instances, others, premade, VAL = nil, nil, nil, nil
  for _, o in ipairs(keep) do
    pcall(function() o:close() end)
  end
  keep = {}
  RT:close(); FOPEN:close()
  RT, FOPEN, FCLOSED = nil, nil, nil
  for _ = 1, 3 do collectgarbage() end
  -- a last run: the library still works
  local ok, e = pcall(spindle.run, function()
    local s = tcp_pair(); s:write("ok\n")
    local ch = spindle.channel(); ch:send(1); assert(ch:recv() == 1)
    s:close()
  end)
  if not ok then print("UNHEALTHY " .. tostring(e)) end
  keep = {}
  collectgarbage(); collectgarbage()
  print("FD " .. before .. " " .. fd_count())
  print("DONE " .. n)
  os.exit(0)
else
  error("usage: badinput_child.lua groups | classes | GROUP count | GROUP describe ID | GROUP run FROM TO [STRIDE]")
end
