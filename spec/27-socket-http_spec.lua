-- spec/27-socket-http_spec.lua -- LuaSocket's own socket.http, socket.smtp
-- and ltn12 (Debian's lua-socket, not modified) running on spindle.socket
-- inside tasks, against Python's http.server and smtpd
-- (spec/helpers/http_server.py, smtp_server.py).  docs/socket.md.
-- Loopback only; every spec leaves the descriptors as it found them.

local SH = dofile("spec/helpers/socket.lua")
local H = SH.H
local spindle, socket = SH.spindle, SH.socket

local http = require "socket.http"
local smtp = require "socket.smtp"
local ltn12 = require "ltn12"

local web, dir, base -- the HTTP server, the folder it serves, its URL
local small = "hello from a file\n"
local big -- 1 MiB of varied bytes

setup(function()
  dir = H.tmpname()
  assert(os.execute("mkdir " .. H.q(dir)))
  local t = {}
  for i = 1, 65536 do t[i] = string.char(i * 7 % 256, (i * 13 + 5) % 256) end
  big = table.concat(t):rep(8)
  H.write_file(dir .. "/small.txt", small)
  H.write_file(dir .. "/big.bin", big)
  web = SH.start("http_server.py", H.q(dir))
  base = "http://127.0.0.1:" .. web.port
  SH.run(function() -- libuv's process-wide descriptors, before counting
    local c = assert(socket.connect("127.0.0.1", web.port))
    c:close()
  end)
end)

teardown(function()
  SH.stop(web)
  os.execute("rm -rf " .. H.q(dir))
end)

H.check_fds(_ENV)

-- http.request in table form on spindle.socket; returns the body as a
-- string, then request's results.
local function get(t)
  local parts = {}
  t.create = socket.tcp
  t.sink = t.sink or ltn12.sink.table(parts)
  if t.url:sub(1, 1) == "/" then t.url = base .. t.url end
  local r, code, headers, status = http.request(t)
  return table.concat(parts), r, code, headers, status
end

describe("socket.http on spindle.socket", function()
  it("GET: a small and a 1 MiB file, byte for byte", spindle.test(function()
    local body, r, code, headers, status = get{url = "/small.txt"}
    assert.equal(1, r)
    assert.equal(200, code)
    assert.equal(small, body)
    assert.equal(tostring(#small), headers["content-length"])
    assert.matches("^HTTP/1%.1 200", status)
    body, r, code = get{url = "/big.bin"}
    assert.equal(1, r); assert.equal(200, code)
    assert.equal(#big, #body)
    assert.is_true(body == big)
  end))

  it("a chunked response, with chunk extensions and a trailer", spindle.test(function()
    local body, r, code, headers = get{url = "/chunked?n=40&size=1000"}
    assert.equal(1, r); assert.equal(200, code)
    assert.equal("chunked", headers["transfer-encoding"])
    assert.equal(40000, #body)
    assert.equal(("a"):rep(1000), body:sub(1, 1000))
    assert.equal(("n"):rep(1000), body:sub(13001, 14000))
  end))

  it("POST with ltn12.source.string and a content-length", spindle.test(function()
    local data = ("post data "):rep(1000)
    local body, r, code, headers = get{
      url = "/echo", method = "POST",
      source = ltn12.source.string(data),
      headers = {["content-length"] = #data,
                 ["content-type"] = "text/plain"}}
    assert.equal(1, r); assert.equal(200, code)
    assert.equal(data, body)
    assert.equal("no", headers["x-chunked"])
  end))

  it("POST without a length goes out chunked", spindle.test(function()
    local parts = {}
    for i = 1, 50 do parts[i] = ("part %d;"):format(i) end
    local data = table.concat(parts)
    local body, r, code, headers = get{
      url = "/echo", method = "POST",
      source = ltn12.source.table(parts)}
    assert.equal(1, r); assert.equal(200, code)
    assert.equal("yes", headers["x-chunked"])
    assert.equal(data, body)
  end))

  it("the string form posts a body too", spindle.test(function()
    -- request(url, body) has no `create`: use the table form's generic
    -- form with it, as LuaSocket builds it
    local t = {}
    local reqt = http.genericform(base .. "/echo", "a=1&b=2")
    reqt.create = socket.tcp
    reqt.sink = ltn12.sink.table(t)
    local r, code, headers = http.request(reqt)
    assert.equal(1, r); assert.equal(200, code)
    assert.equal("a=1&b=2", table.concat(t))
    assert.equal("POST", headers["x-method"])
  end))

  it("follows redirects, stops at maxredirects, or not at all", spindle.test(function()
    local body, r, code, headers = get{url = "/redirect?to=/small.txt"}
    assert.equal(1, r); assert.equal(200, code); assert.equal(small, body)
    assert.equal("/small.txt", headers.location)
    body, r, code = get{url = "/hops?n=4"}
    assert.equal(200, code); assert.equal("arrived", body)
    body, r, code, headers = get{url = "/hops?n=9"} -- 5 at most
    assert.equal(302, code); assert.equal("/hops?n=3", headers.location)
    body, r, code, headers = get{url = "/redirect?to=/small.txt", redirect = false}
    assert.equal(302, code); assert.equal("moved", body)
  end))

  it("a 404 or 500 is a response; HEAD has no body", spindle.test(function()
    local body, r, code = get{url = "/status?code=404"}
    assert.equal(1, r); assert.equal(404, code); assert.equal("status 404", body)
    body, r, code = get{url = "/status?code=500"}
    assert.equal(500, code); assert.equal("status 500", body)
    local headers
    body, r, code, headers = get{url = "/small.txt", method = "HEAD"}
    assert.equal(200, code); assert.equal("", body)
    assert.equal(tostring(#small), headers["content-length"])
  end))

  it("a body that ends when the server closes", spindle.test(function()
    local body, r, code = get{url = "/close"}
    assert.equal(1, r); assert.equal(200, code)
    assert.equal("until the end", body)
  end))

  it("20 requests in 20 tasks are in flight at the same time", spindle.test(function()
    -- The server answers none of them until all 20 have arrived (a
    -- barrier): requests that blocked each other could never finish.
    local n, hs = 20, {}
    for i = 1, n do
      hs[i] = spindle.spawn(function()
        local body, r, code = get{url = "/barrier?n=" .. n .. "&key=flight"}
        return code, body, r
      end)
    end
    for _, h in ipairs(hs) do
      local code, body = h:join()
      assert.equal(200, code); assert.equal("together", body)
    end
  end, {timeout = 20}))

  it("http.TIMEOUT bounds each wait: a silent server gives 'timeout'", spindle.test(function()
    local saved = http.TIMEOUT
    http.TIMEOUT = 0.2
    local ok, body, r, code = pcall(get, {url = "/sleep?s=3"})
    http.TIMEOUT = saved
    assert.is_true(ok, body)
    assert.is_nil(r); assert.equal("timeout", code)
  end))

  it("a refused connection is LuaSocket's 'connection refused'", spindle.test(function()
    local l = assert(spindle.net.listen("127.0.0.1", 0))
    local _, port = l:local_addr()
    l:close()
    local _, r, code = get{url = "http://127.0.0.1:" .. port .. "/"}
    assert.is_nil(r); assert.equal("connection refused", code)
  end))

  it("runs unchanged with package.loaded.socket = spindle.socket", function()
    -- A library that does require "socket" gets spindle.socket when it is
    -- put in package.loaded first (docs/socket.md); here socket.http
    -- itself, in its string form, which has no `create`.
    local r = H.lua_child(([[
      package.loaded.socket = require "spindle.socket"
      local spindle = require "spindle"
      local http = require "socket.http"
      assert(require("socket") == require("spindle.socket"))
      spindle.run(function()
        local hs = {}
        for i = 1, 5 do
          hs[i] = spindle.spawn(function()
            return http.request("%s/barrier?n=5&key=child")
          end)
        end
        for i = 1, 5 do
          local body, code = hs[i]:join()
          print(code, body)
        end
        local body, code = http.request("%s/echo", "x=1")
        print(code, body)
      end)
    ]]):format(base, base))
    assert.equal(0, r.code, H.describe(r))
    local _, together = r.stdout:gsub("200\ttogether\n", "")
    assert.equal(5, together, H.describe(r))
    assert.matches("200\tx=1\n", r.stdout)
  end)
end)

describe("socket.smtp on spindle.socket", function()
  local mail

  setup(function() mail = SH.start("smtp_server.py") end)
  teardown(function() SH.stop(mail) end)

  it("sends mail to Python's SMTP server, from several tasks", spindle.test(function()
    local hs = {}
    for i = 1, 3 do
      hs[i] = spindle.spawn(function()
        return smtp.send{
          from = "<sender@localhost>",
          rcpt = {"<a@localhost>", "<b@localhost>"},
          server = "127.0.0.1", port = mail.port, create = socket.tcp,
          source = smtp.message{
            headers = {subject = "test " .. i, to = "a@localhost"},
            body = ("line %d\r\n"):format(i):rep(100)}}
      end)
    end
    for _, h in ipairs(hs) do
      local r, err = h:join()
      assert.equal(1, r, err)
    end
    local seen = {}
    for _ = 1, 3 do
      local line = mail.f:read("l")
      local subject = line:match("SUBJECT (.*)$")
      seen[subject] = line
      assert.matches("^MAIL sender@localhost RCPT a@localhost,b@localhost ", line)
    end
    assert.is_string(seen["test 1"]); assert.is_string(seen["test 3"])
  end))

  it("a refused connection is an error result", spindle.test(function()
    local l = assert(spindle.net.listen("127.0.0.1", 0))
    local _, port = l:local_addr()
    l:close()
    local r, err = smtp.send{from = "<a@localhost>", rcpt = "<b@localhost>",
                             server = "127.0.0.1", port = port,
                             create = socket.tcp}
    assert.is_nil(r); assert.equal("connection refused", err)
  end))
end)
