-- spindle.http_server -- http.serve (docs/http.md#the-server).
--
-- One task per connection; requests on a connection are read, handled and
-- answered one after the other, so keep-alive and pipelined requests are
-- answered in order.  Heads and chunked bodies are parsed in C
-- (csrc/http_server.c over the strict parser of csrc/http_parse.c): this
-- file is the policy -- limits, deadlines, keep-alive, the response.
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
local is_cancelled, shield = spindle.is_cancelled, spindle.shield
local new_head, new_chunked, fail = spindle._http_head, spindle._http_chunked, spindle._http_fail
local concat, pack, unpack = table.concat, table.pack, table.unpack
local type, tostring, pairs, ipairs, pcall, xpcall, error, setmetatable =
  type, tostring, pairs, ipairs, pcall, xpcall, error, setmetatable
local fmt, lower, find = string.format, string.lower, string.find

local M = {}

local REASONS = {
  [100] = "Continue", [101] = "Switching Protocols",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [206] = "Partial Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [408] = "Request Timeout",
  [409] = "Conflict", [411] = "Length Required", [413] = "Content Too Large",
  [414] = "URI Too Long", [415] = "Unsupported Media Type",
  [417] = "Expectation Failed", [422] = "Unprocessable Content",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented",
  [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
}

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

-- The Date header, made once a second.
local date_s, date_t = nil, -1
local function http_date()
  local t = os.time()
  if t ~= date_t then
    date_t = t
    date_s = os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
  end
  return date_s
end

-- A marker raised inside the handler when the request body breaks a limit
-- or the framing: the server answers with its status.
local BodyError = {}
BodyError.__index = BodyError
BodyError.__tostring = function(e) return "http: " .. e.status .. " " .. e.why end

-- ---------------------------------------------------------------- requests

local Request = {}

-- req.header_list ({name, value} pairs in order) is made on first use
-- from the flat list the parser leaves.
function Request.__index(req, k)
  if k == "header_list" then
    local f, list = rawget(req, "_fields"), {}
    for i = 1, #f, 2 do list[#list + 1] = {f[i], f[i + 1]} end
    rawset(req, "header_list", list)
    return list
  end
  return Request[k]
end

-- Bytes from the connection: what the parser left over first.
local function conn_read(conn, max)
  local rest = conn.rest
  if rest ~= "" then
    if #rest <= max then
      conn.rest = ""
      return rest
    end
    conn.rest = rest:sub(max + 1)
    return rest:sub(1, max)
  end
  return conn.s:read_some(max)
end

local function continue_once(req)
  if req._expect and not req._continued then
    req._continued = true
    local ok, msg, code = req._conn.s:write("HTTP/1.1 100 Continue\r\n\r\n")
    if not ok then error(setmetatable({status = 0, why = msg, code = code}, BodyError)) end
  end
end

-- req:read_some([max]) -> bytes, or nil, "eof", "EOF" at the end of the
-- body (or nil, msg, code).  Raises BodyError past max_body or on bad
-- chunked framing (the server answers 413 / 400).
function Request:read_some(max)
  max = max or 65536
  if type(max) ~= "number" or max < 1 then
    error("bad argument #1 to 'read_some' (positive number expected)", 2)
  end
  if self._done then return nil, "eof", "EOF" end
  continue_once(self)
  local conn = self._conn
  if self._left then -- Content-Length
    if self._left == 0 then self._done = true return nil, "eof", "EOF" end
    local data, msg, code = conn_read(conn, math.min(max, self._left))
    if not data then return nil, msg, code end
    self._left = self._left - #data
    if self._left == 0 then self._done = true end
    return data
  end
  -- chunked: feed what comes until some data or the end
  while true do
    local raw, msg, code = conn_read(conn, 65536)
    if not raw then return nil, msg, code end
    local data, done, rest = self._chunked:feed(raw)
    if data == false then
      error(setmetatable({status = done, why = rest}, BodyError))
    end
    conn.rest = rest
    self._seen = self._seen + #data
    if self._seen > self._max_body then
      error(setmetatable({status = 413, why = "body too large"}, BodyError))
    end
    if done then self._done = true end
    if #data > 0 then
      if #data > max then -- keep the decoded part the reader did not ask for
        self._pending = data:sub(max + 1)
        data = data:sub(1, max)
      end
      return data
    end
    if done then return nil, "eof", "EOF" end
  end
end

-- A chunked reader may have read more than asked: serve that first.
local raw_read_some = Request.read_some
function Request:read_some(max)
  local p = self._pending
  if p then
    max = max or 65536
    if #p <= max then self._pending = nil return p end
    self._pending = p:sub(max + 1)
    return p:sub(1, max)
  end
  return raw_read_some(self, max)
end

-- req:body() -> the whole body (bounded by max_body), "" when none.
function Request:body()
  if self._body then return self._body end
  local parts = {}
  while true do
    local data, msg, code = self:read_some(65536)
    if not data then
      if code == "EOF" then break end
      return nil, msg, code
    end
    parts[#parts + 1] = data
  end
  self._body = concat(parts)
  return self._body
end

-- ---------------------------------------------------------------- responses

local Response = {}
Response.__index = Response

local function check_header_value(v)
  if find(v, "[\r\n%z]") then error("http: header value with CR, LF or NUL", 3) end
end

-- The head: status line, headers, the ones the server adds.  Returns the
-- table of strings and what it learned (has length, chunked ...).
local function build_head(res, status, headers, body_len)
  local req, srv = res._req, res._srv
  if type(status) ~= "number" or status < 100 or status > 999 or status % 1 ~= 0 then
    error("http: bad status " .. tostring(status), 3)
  end
  local parts = {"HTTP/1.1 ", tostring(status), " ", REASONS[status] or "Unknown", "\r\n"}
  local has_len, has_te, has_date = false, false, false
  if headers ~= nil then
    if type(headers) ~= "table" then error("http: headers must be a table", 3) end
    for k, v in pairs(headers) do
      if type(k) ~= "string" then error("http: header names must be strings", 3) end
      check_header_value(k)
      local lk = lower(k)
      if lk == "content-length" then has_len = true
      elseif lk == "transfer-encoding" then has_te = true
      elseif lk == "date" then has_date = true
      elseif lk == "connection" then
        if find(lower(tostring(v)), "close", 1, true) then res._close = true end
      end
      if type(v) == "table" then
        for _, one in ipairs(v) do
          one = tostring(one)
          check_header_value(one)
          parts[#parts + 1] = k .. ": " .. one .. "\r\n"
        end
      else
        v = tostring(v)
        check_header_value(v)
        parts[#parts + 1] = k .. ": " .. v .. "\r\n"
      end
    end
  end
  if not has_date then parts[#parts + 1] = "date: " .. http_date() .. "\r\n" end
  local chunked = false
  local no_body = status < 200 or status == 204 or status == 304
  if not has_len and not has_te and not no_body then
    if body_len then
      parts[#parts + 1] = "content-length: " .. body_len .. "\r\n"
    elseif req.version == "1.1" then
      parts[#parts + 1] = "transfer-encoding: chunked\r\n"
      chunked = true
    else
      res._close = true -- HTTP/1.0: the body ends with the connection
    end
  end
  if srv._closing or not req.keep_alive then res._close = true end
  if res._close then
    parts[#parts + 1] = "connection: close\r\n"
  elseif req.version == "1.0" then
    parts[#parts + 1] = "connection: keep-alive\r\n"
  end
  parts[#parts + 1] = "\r\n"
  return parts, chunked
end

local function send(res, ...)
  local ok, msg, code = res._req._conn.s:write(...)
  if not ok then
    res._broken = true
    error(setmetatable({status = 0, why = msg, code = code}, BodyError))
  end
end

-- res:write_head(status, [headers])
function Response:write_head(status, headers)
  if self._started then error("write_head: the head was already sent", 2) end
  local parts, chunked = build_head(self, status, headers, nil)
  self._started = true
  self._chunked = chunked
  self._status = status
  if self._req.method == "HEAD" then self._nobody = true end
  send(self, concat(parts))
end

-- res:write(chunk)
function Response:write(chunk)
  if type(chunk) ~= "string" then error("bad argument #1 to 'write' (string expected)", 2) end
  if self._finished then error("write: the response was finished", 2) end
  if not self._started then self:write_head(200) end
  if #chunk == 0 or self._nobody then return true end
  if self._chunked then
    send(self, fmt("%x\r\n", #chunk), chunk, "\r\n")
  else
    send(self, chunk)
  end
  return true
end

-- res:finish([chunk])
function Response:finish(chunk)
  if self._finished then return true end
  if chunk ~= nil then self:write(chunk) end
  if not self._started then self:write_head(200) end
  self._finished = true
  if self._chunked and not self._nobody then send(self, "0\r\n\r\n") end
  return true
end

-- The handler returned status, headers, body.
local function respond(res, status, headers, body)
  if body ~= nil and type(body) ~= "string" then
    error("http: the body must be a string", 2)
  end
  local req = res._req
  local parts = build_head(res, status, headers, body and #body or 0)
  res._started, res._finished = true, true
  if body and #body > 0 and req.method ~= "HEAD" then
    parts[#parts + 1] = body
  end
  send(res, concat(parts))
end

-- An answer the server makes itself (400, 408, 413, 431, 500 ...).
local function plain(conn, status, close)
  local text = (REASONS[status] or "Error") .. "\n"
  conn.s:write("HTTP/1.1 ", tostring(status), " ", REASONS[status] or "Error",
    "\r\ncontent-type: text/plain\r\ncontent-length: ", tostring(#text),
    "\r\ndate: ", http_date(), close and "\r\nconnection: close" or "",
    "\r\n\r\n", text)
end

-- ---------------------------------------------------------------- connections

-- Reads one head: req, or false, status (malformed / too large), or nil
-- (the peer went away).
local function read_head(conn, hp)
  local req, rest
  if conn.rest ~= "" then
    req, rest = hp:feed(conn.rest)
    conn.rest = ""
  end
  while req == nil do
    local data = conn.s:read_some(65536)
    if not data then return nil end
    req, rest = hp:feed(data)
  end
  if req == false then return false, rest end
  conn.rest = rest
  return req
end

local function peer_of(s)
  local host, port = s:peer()
  if not host then return "?" end
  if port == nil then return host end -- a Unix socket path
  if find(host, ":", 1, true) then return "[" .. host .. "]:" .. port end
  return host .. ":" .. port
end

-- What a handler failure leaves behind: a report like an unobserved task
-- failure (the runtime's on_error, else stderr), with the handler's
-- traceback.
local function report(err, tb, req)
  local h = spawn(fail, err, tb)
  if req then h:name(("http handler %s %s"):format(req.method, req.target)) end
end

local function serve_connection(srv, s)
  local conn = {s = s, rest = "", task = spindle.current()}
  local hp = new_head(srv.max_header, 100)
  local peer, tb
  local function msgh(e) -- where a handler failed, for the report
    if getmetatable(e) ~= BodyError and not is_cancelled(e) then
      tb = debug.traceback(type(e) == "string" and e or tostring(e), 2)
    end
    return e
  end
  while not srv._closing do
    -- 1. the first byte of the next request, within idle_timeout
    if conn.rest == "" then
      srv._idle[conn] = true
      local ok, data = pcall(timeout, srv.idle_timeout, s.read_some, s, 65536)
      srv._idle[conn] = nil
      if not ok then
        if is_timeout(data) then return end
        error(data, 0) -- aborted: the server is closing
      end
      if not data then return end -- the peer closed, or an error
      conn.rest = data
    end
    -- 2. the whole head, within header_timeout of its first byte (most
    --    heads arrive whole: no deadline to set up for those)
    local req, status = hp:feed(conn.rest)
    if req == nil then
      conn.rest = ""
      local ok
      ok, req, status = pcall(timeout, srv.header_timeout, read_head, conn, hp)
      if not ok then
        if is_timeout(req) then pcall(plain, conn, 408, true) return end
        error(req, 0) -- aborted: the server is closing
      end
    elseif req == false then
      conn.rest = ""
    else
      conn.rest = status
      status = nil
    end
    if req == nil then return end
    if req == false then
      pcall(plain, conn, status, true)
      return
    end
    -- 3. the body: its framing and limits
    if req.length and req.length > srv.max_body then
      pcall(plain, conn, 413, true)
      return
    end
    peer = peer or peer_of(s)
    req.peer = peer
    req._conn = conn
    req._expect = req.expect_continue
    req._max_body = srv.max_body
    req._seen = 0
    if req.chunked then
      req._chunked = new_chunked()
    else
      req._left = req.length or 0
      if req._left == 0 then req._done = true end
    end
    setmetatable(req, Request)
    local res = setmetatable({_req = req, _srv = srv}, Response)
    -- 4. the handler
    tb = nil
    local r = pack(xpcall(srv.handler, msgh, req, res))
    if r[1] then
      if not res._started then
        local okr, err = pcall(respond, res, r[2] or 200, r[3], r[4])
        if not okr then
          if getmetatable(err) == BodyError then return end -- peer gone
          report(err, debug.traceback(tostring(err)), req)
          if not res._started then pcall(plain, conn, 500, true) end
          return
        end
      elseif not res._finished then
        local okf = pcall(res.finish, res)
        if not okf then return end
      end
    else
      local err = r[2]
      if is_cancelled(err) then error(err, 0) end
      if getmetatable(err) == BodyError then
        if err.status ~= 0 and not res._started then pcall(plain, conn, err.status, true) end
        return
      end
      report(err, tb, req)
      if not res._started then pcall(plain, conn, 500, true) end
      return
    end
    if res._close or res._broken then return end
    -- 5. what the handler did not read of the body is skipped (small) or
    --    the connection is closed (large)
    if not req._done then
      local skipped = 0
      while not req._done do
        local okd, data = pcall(req.read_some, req, 65536)
        if not okd or not data then return end
        skipped = skipped + #data
        if skipped > 65536 then return end
      end
    end
  end
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
    for conn in pairs(self._idle) do conn.task:abort() end
    local tasks = {}
    for t in pairs(self._tasks) do tasks[#tasks + 1] = t end
    pcall(timeout, grace, function()
      for _, t in ipairs(tasks) do t:result() end
    end)
    for _, t in ipairs(tasks) do t:abort() end
    for _, t in ipairs(tasks) do t:result() end
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
    _idle = {}, _tasks = {},
  }, Server)
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
        local conn_task
        conn_task = spawn(function()
          local _ <close> = s
          local ok, err = pcall(serve_connection, srv, s)
          srv._tasks[conn_task] = nil
          if permit then permit:release() end
          if not ok and not is_cancelled(err) then error(err, 0) end
        end)
        conn_task:name("http connection")
        srv._tasks[conn_task] = true
      end
    end
  end)
  srv._acceptor:name("http accept")
  return srv
end

return M
