-- spindle.http_server -- http.serve (docs/http.md#the-server).
--
-- One task per connection; requests on a connection are read, handled and
-- answered one after the other, so keep-alive and pipelined requests are
-- answered in order.  The connection's task and all the work of a request
-- are C's (csrc/http_server.c over the strict parser of
-- csrc/http_parse.c: the loop around the handler, heads parsed in the
-- stream's buffer, deadlines, request and response objects, the answer);
-- this file is the rest of the policy -- options, accepting, graceful
-- close.
--
-- Deadlines.  A keep-alive connection waits for the first byte of its next
-- request at most idle_timeout seconds (then it is closed quietly).  From
-- that byte on, the whole head must arrive within header_timeout seconds,
-- an absolute deadline a trickling peer cannot extend (then 408 and
-- close).  Bodies are read by the handler, under its own deadlines.
--
-- Closing.  srv:close(grace) stops accepting, closes idle connections at
-- once, lets requests in progress finish for up to grace seconds (their
-- responses say "connection: close"), aborts the rest, and returns once
-- every connection task has ended.
local spindle = require "spindle"

local net = spindle.net
local spawn, timeout, is_timeout = spindle.spawn, spindle.timeout, spindle.is_timeout
local shield = spindle.shield
local new_conf, fail = spindle._http_conf, spindle._http_fail
local type, tostring, pairs, ipairs, pcall, error, setmetatable =
  type, tostring, pairs, ipairs, pcall, error, setmetatable

local M = {}

local OPTIONS = {
  host = "string", port = "number", tls = "userdata", handler = "function",
  max_header = "number", max_body = "number", header_timeout = "number",
  idle_timeout = "number", max_connections = "number", backlog = "number",
}

local function argerr(msg) error("bad argument #1 to 'serve' (" .. msg .. ")", 4) end

local function check_options(opts)
  if type(opts) ~= "table" then argerr("table expected, got " .. type(opts)) end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then argerr("unknown option '" .. tostring(k) .. "'") end
    if type(v) ~= want then
      argerr(("option '%s' must be a %s"):format(k, want))
    end
  end
  if opts.handler == nil then argerr("option 'handler' is required") end
  local function positive(k, int)
    local v = opts[k]
    if v ~= nil and (not (v > 0) or v > 1e9 or (int and v ~= math.floor(v))) then
      argerr(("option '%s' must be a positive %s"):format(k, int and "integer" or "number"))
    end
  end
  for _, k in ipairs({"max_header", "max_body", "max_connections", "backlog"}) do
    positive(k, true)
  end
  positive("header_timeout")
  positive("idle_timeout")
  if opts.max_header and (opts.max_header < 64 or opts.max_header > 0x7fffffff) then
    argerr("option 'max_header' must be from 64 to 2^31")
  end
end

-- ---------------------------------------------------------------- connections

-- What a handler failure leaves behind: a report like an unobserved task
-- failure (the runtime's on_error, else stderr), with the handler's
-- traceback.
local function report(err, tb, req)
  local h = spawn(fail, err, tb)
  if req then h:name(("http handler %s %s"):format(req.method, req.target)) end
end

-- ---------------------------------------------------------------- the server

local Server = {}
Server.__index = Server

function Server:local_addr()
  return self._listener:local_addr()
end

-- srv:close([grace]): see the top of the file.
function Server:close(grace)
  if grace ~= nil and (type(grace) ~= "number" or not (grace >= 0) or grace > 1e9) then
    error("bad argument #1 to 'close' (non-negative number expected)", 2)
  end
  grace = grace or 5
  if self._closed then
    if self._closer then self._closer:result() end
    return true
  end
  self._closed = true
  self._closing = true
  self._closer = spindle.current()
  self._listener:close()
  shield(function()
    self._acceptor:abort() -- it may wait for a connection slot
    self._acceptor:result()
    self._conf:close() -- connections waiting for a request end now
    local tasks = self._conf:tasks()
    pcall(timeout, grace, function()
      for _, t in ipairs(tasks) do
        local ok, err = pcall(t.result, t)
        if not ok and is_timeout(err) then return end
      end
    end)
    for _, t in ipairs(tasks) do t:abort() end
    for _, t in ipairs(tasks) do pcall(t.result, t) end
  end)
  return true
end

Server.__close = function(self) self:close() end

function M.serve(opts)
  check_options(opts)
  local srv = setmetatable({
    handler = opts.handler,
    max_header = opts.max_header or 16384,
    max_body = opts.max_body or 1048576,
    header_timeout = opts.header_timeout or 10,
    idle_timeout = opts.idle_timeout or 60,
  }, Server)
  -- run(conn) is a connection's task, conf:conn(permit, stream) its
  -- connection (csrc/http_server.c)
  srv._conf, srv._run = new_conf(srv, srv.handler, report)
  local lopts = {backlog = opts.backlog}
  if opts.tls ~= nil then lopts.tls = opts.tls end
  local listener, msg, code = net.listen(opts.host or "127.0.0.1", opts.port or 0, lopts)
  if not listener then return nil, msg, code end
  srv._listener = listener
  local limit = opts.max_connections and spindle.semaphore(opts.max_connections)
  srv._acceptor = spawn(function()
    while true do
      local permit = limit and limit:acquire()
      local s, msg = listener:accept()
      if not s then
        if permit then permit:release() end
        if srv._closing or msg == "closed" then return end
        spindle.sleep(0.01) -- EMFILE and the like: accept backs off too
      else
        spawn(srv._run, srv._conf:conn(permit, s)):name("http connection")
      end
    end
  end)
  srv._acceptor:name("http accept")
  return srv
end

return M
