-- http.serve's request and response objects and its connection loop
-- (docs/http.md#requests, #responses, #what-the-server-does-for-you),
-- driven by raw sockets on loopback.
local HT = dofile("spec/helpers/http.lua")
local H = HT.H
local spindle = H.spindle
local net = spindle.net
local raw = HT.raw

local function run(fn) return H.run_real(fn) end
run(function() end) -- libuv's process-wide pipe, opened once

local function status_of(text) return tonumber(text:match("^HTTP/1%.%d (%d%d%d)")) end

-- Reads one response (head and content-length body) from s.
local function response(s)
  local head = assert(s:read_until("\r\n\r\n", 65536))
  local len = tonumber(head:match("\r\n[Cc]ontent%-[Ll]ength: (%d+)")) or 0
  local body = len > 0 and assert(s:read(len)) or ""
  return tonumber(head:match("^HTTP/1%.%d (%d+)")), head, body
end

describe("http.serve requests", function()
  H.check_fds(_ENV)

  it("has the fields of docs/http.md, made when asked for", function()
    run(function()
      local got
      local srv <close>, _, port = HT.serve{handler = function(req)
        got = {
          method = req.method, target = req.target, path = req.path,
          query = req.query, version = req.version, peer = req.peer,
          accept = req.headers["accept"], host = req.headers.host,
          list = req.header_list, same = rawequal(req.headers, req.headers),
          missing = req.nothing_like_this,
        }
        return 204
      end}
      local s <close> = assert(net.connect("127.0.0.1", port))
      local _, lport = s:local_addr()
      s:write("GET /a%20b/c?x=1&y HTTP/1.1\r\nHost: h\r\nAccept: a\r\n" ..
              "X-Two: 1\r\naccept: b\r\nConnection: close\r\n\r\n")
      assert.equal(204, (response(s)))
      assert.equal("GET", got.method)
      assert.equal("/a%20b/c?x=1&y", got.target)
      assert.equal("/a b/c", got.path)
      assert.equal("x=1&y", got.query)
      assert.equal("1.1", got.version)
      assert.equal("127.0.0.1:" .. lport, got.peer)
      assert.equal("a, b", got.accept)
      assert.equal("h", got.host)
      assert.is_true(got.same)
      assert.is_nil(got.missing)
      assert.same({{"host", "h"}, {"accept", "a"}, {"x-two", "1"}, {"accept", "b"},
                   {"connection", "close"}}, got.list)
    end)
  end)

  it("takes up to 100 header fields (more: 431)", function()
    run(function()
      local srv <close>, _, port = HT.serve{handler = function(req)
        return 200, nil, tostring(#req.header_list) .. " " .. req.headers["x-98"]
      end}
      local function head(n)
        local t = {"GET / HTTP/1.1\r\nHost: h\r\n"}
        for i = 1, n - 2 do t[#t + 1] = ("X-%d: v%d\r\n"):format(i, i) end
        t[#t + 1] = "Connection: close\r\n\r\n"
        return table.concat(t)
      end
      for _ = 1, 2 do -- the large array is made once, then reused
        local out = raw(port, head(100))
        assert.truthy(out:find("\r\n\r\n100 v98$"), out)
      end
      local out = raw(port, head(101))
      assert.equal("431", out:match("^HTTP/1%.1 (%d+)"), out)
    end)
  end)

  it("keeps fields a handler sets, even over its own (middleware)", function()
    run(function()
      local srv <close>, _, port = HT.serve{handler = function(req)
        req.user = "ann"
        req.path = req.path:upper()
        return 200, nil, req.user .. " " .. req.path .. " " .. req.method
      end}
      local out = raw(port, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      assert.truthy(out:find("ann /X GET", 1, true), out)
    end)
  end)

  it("a query-less target has no query; HTTP/1.0 says so", function()
    run(function()
      local srv <close>, _, port = HT.serve{handler = function(req)
        return 200, nil, tostring(req.query) .. " " .. req.version
      end}
      local out = raw(port, "GET / HTTP/1.0\r\n\r\n")
      assert.truthy(out:find("nil 1.0", 1, true), out)
    end)
  end)

  it("refuses the objects once their exchange is over", function()
    run(function()
      local kept = {}
      local srv <close>, _, port = HT.serve{handler = function(req, res)
        kept.req, kept.res = req, res
        return 200, nil, "ok"
      end}
      raw(port, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
      local ok, err = pcall(kept.res.write, kept.res, "late")
      assert.is_false(ok)
      assert.truthy(tostring(err):find("over", 1, true), err)
      assert.is_false(pcall(kept.res.write_head, kept.res, 200))
      assert.is_true(kept.res:finish()) -- finishing twice is harmless
      local data, msg, code = kept.req:read_some()
      assert.is_nil(data)
      assert.equal("EBADF", code, msg)
      assert.equal("POST", kept.req.method) -- the fields stay readable
    end)
  end)

  it("reads a body piece by piece within max, and whole", function()
    run(function()
      local srv <close>, _, port = HT.serve{handler = function(req)
        if req.path == "/some" then
          local parts = {}
          while true do
            local d, _, code = req:read_some(3)
            if not d then
              assert.equal("EOF", code)
              break
            end
            assert.is_true(#d <= 3)
            parts[#parts + 1] = d
          end
          return 200, nil, table.concat(parts, "|")
        end
        local b = req:body()
        assert.equal(b, req:body()) -- kept
        return 200, nil, b
      end}
      local out = raw(port, "POST /some HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\n12345678" ..
        "POST /some HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "5\r\nabcde\r\n2\r\nfg\r\n0\r\n\r\n" ..
        "POST /all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" ..
        "3\r\nxyz\r\n0\r\n\r\n")
      assert.truthy(out:find("123|456|78", 1, true), out)
      assert.truthy(out:find("abc|def|g", 1, true), out) -- decoded, then cut at max
      assert.truthy(out:find("\r\n\r\nxyz$"), out)
    end)
  end)

  it("skips a small unread body and keeps the connection; closes on a large one", function()
    run(function()
      local srv <close>, _, port = HT.serve{handler = function(req) return 200, nil, req.path end}
      local out = raw(port, "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" ..
        "GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      assert.truthy(out:find("/a", 1, true) and out:find("/b", 1, true), out)
      local s <close> = assert(net.connect("127.0.0.1", port))
      s:write("POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 200000\r\n\r\n")
      s:write(string.rep("x", 200000))
      assert.equal(200, (response(s)))
      s:write("GET /c HTTP/1.1\r\nHost: h\r\n\r\n")
      local rest = s:read_all(1 << 20)
      assert.is_nil(rest and rest:find("/c", 1, true)) -- closed, not served
    end)
  end)

  it("never invites a body it did not read: Expect: 100-continue, then close", function()
    run(function()
      local srv <close>, _, port = HT.serve{handler = function() return 403, nil, "no" end}
      local s <close> = assert(net.connect("127.0.0.1", port))
      s:write("PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
      local status, head = response(s)
      assert.equal(403, status)
      assert.is_nil(head:find("100 Continue", 1, true))
      assert.truthy(head:find("connection: close", 1, true), head)
      assert.equal("EOF", select(3, s:read_some()))
    end)
  end)
end)

describe("http.serve responses", function()
  H.check_fds(_ENV)

  it("writes repeated headers, numbers, big bodies, and a HEAD without a body", function()
    run(function()
      local big = string.rep("0123456789", 100000) -- 1 MB: written apart from the head
      local srv <close>, _, port = HT.serve{handler = function(req)
        return 200, {["set-cookie"] = {"a=1", "b=2"}, ["x-n"] = 42}, big
      end}
      local s <close> = assert(net.connect("127.0.0.1", port))
      s:write("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
      local status, head, body = response(s)
      assert.equal(200, status)
      assert.truthy(head:find("set-cookie: a=1\r\nset-cookie: b=2\r\n", 1, true), head)
      assert.truthy(head:find("x-n: 42\r\n", 1, true), head)
      assert.truthy(head:find("\r\ndate: ", 1, true), head)
      assert.equal(big, body)
      s:write("HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      local rest = s:read_all(1 << 20)
      assert.truthy(rest:find("content-length: 1000000\r\n", 1, true), rest)
      assert.truthy(rest:find("\r\n\r\n$"), "a HEAD answer has no body")
    end)
  end)

  it("HTTP/1.0 with keep-alive stays open and says so", function()
    run(function()
      local srv <close>, _, port = HT.serve{handler = function(req) return 200, nil, req.path end}
      local s <close> = assert(net.connect("127.0.0.1", port))
      for i = 1, 3 do
        s:write("GET /" .. i .. " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        local status, head, body = response(s)
        assert.equal(200, status)
        assert.truthy(head:find("connection: keep-alive", 1, true), head)
        assert.equal("/" .. i, body)
      end
    end)
  end)

  it("a bad header, status or body from the handler is a 500 and a report", function()
    local reports = {}
    H.run_with({on_error = function(err) reports[#reports + 1] = tostring(err) end}, function()
      local srv <close>, _, port = HT.serve{handler = function(req)
        if req.path == "/crlf" then return 200, {["x"] = "a\r\nb"}, "" end
        if req.path == "/status" then return "two hundred" end
        if req.path == "/body" then return 200, nil, {} end
        return 200, nil, "fine"
      end}
      for _, path in ipairs({"/crlf", "/status", "/body"}) do
        local out = raw(port, "GET " .. path .. " HTTP/1.1\r\nHost: h\r\n\r\n")
        assert.equal("500", out:match("^HTTP/1%.1 (%d+)"), path .. ": " .. out)
        assert.is_nil(out:find("a\r\nb", 1, true))
      end
      local out = raw(port, "GET /ok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      assert.truthy(out:find("fine", 1, true)) -- the server still serves
      spindle.sleep(0.01)
    end)
    assert.equal(3, #reports)
    local all = table.concat(reports, "\n")
    for _, why in ipairs({"CR, LF or NUL", "bad status", "body must be a string"}) do
      assert.truthy(all:find(why, 1, true), all)
    end
  end)

  it("a timeout the handler did not catch is its failure: 500 and a report", function()
    local reports = {}
    H.run_with({on_error = function(err) reports[#reports + 1] = tostring(err) end}, function()
      local srv <close>, _, port = HT.serve{handler = function(req)
        if req.path == "/caught" then
          local ok, err = pcall(spindle.timeout, 0.05, req.body, req)
          assert(not ok and spindle.is_timeout(err))
          return 408, nil, "slow"
        end
        spindle.timeout(0.05, req.body, req) -- the body never comes whole
      end}
      for _, path in ipairs({"/caught", "/uncaught"}) do
        local s <close> = assert(net.connect("127.0.0.1", port))
        s:write("POST " .. path .. " HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        local status = response(s)
        assert.equal(path == "/caught" and 408 or 500, status)
      end
      spindle.sleep(0.01)
    end)
    assert.equal(1, #reports)
    assert.truthy(reports[1]:find("timeout", 1, true), reports[1])
  end)

  it("streams: write_head, write, finish; a handler that returns after writing is finished", function()
    run(function()
      local srv <close>, _, port = HT.serve{handler = function(req, res)
        res:write_head(201, {["x-a"] = "1"})
        res:write("ab")
        res:write("")
        if req.path == "/finish" then res:finish("cd") else res:write("cd") end
      end}
      for _, path in ipairs({"/finish", "/return"}) do
        local out = raw(port, "GET " .. path .. " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert.truthy(out:find("^HTTP/1%.1 201 Created\r\n"), out)
        assert.truthy(out:find("transfer-encoding: chunked", 1, true), out)
        assert.truthy(out:find("\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n$"), out)
      end
    end)
  end)
end)

describe("http.serve connections", function()
  H.check_fds(_ENV)

  it("a pipelining client does not starve the others", function()
    run(function()
      local order = {}
      local srv <close>, _, port = HT.serve{handler = function(req)
        order[#order + 1] = req.path
        return 200, nil, "k"
      end}
      local n = 400
      local a <close> = assert(net.connect("127.0.0.1", port))
      local reader = spindle.spawn(function() return a:read_all(1 << 22) end)
      local reqs = {}
      for i = 1, n do reqs[i] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n" end
      reqs[n] = "GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
      assert(a:write(table.concat(reqs)))
      local out = raw(port, "GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      assert.truthy(out:find("^HTTP/1%.1 200"))
      local all = reader:join()
      local _, count = all:gsub("HTTP/1%.1 200", "")
      assert.equal(n, count)
      local at
      for i, p in ipairs(order) do if p == "/b" then at = i end end
      assert.truthy(at and at < n, "the other client was served before the pipeline ended")
    end)
  end)

  it("reads pipelined heads and bodies cut at every kind of place", function()
    run(function()
      local srv <close>, _, port = HT.serve{handler = function(req)
        return 200, nil, req.method .. " " .. req.path .. " [" .. req:body() .. "]"
      end}
      -- a fixed mix of requests: plain GETs, Content-Length and chunked
      -- bodies (with extensions and a trailer), many headers
      local reqs, want = {}, {}
      for i = 1, 60 do
        local kind = i % 4
        if kind == 0 then
          reqs[i] = ("GET /g%d HTTP/1.1\r\nHost: h\r\n\r\n"):format(i)
          want[i] = ("GET /g%d []"):format(i)
        elseif kind == 1 then
          local body = string.rep(string.char(97 + i % 26), i * 37)
          reqs[i] = ("POST /p%d HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s"):format(i, #body, body)
          want[i] = ("POST /p%d [%s]"):format(i, body)
        elseif kind == 2 then
          reqs[i] = ("PUT /c%d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" ..
            "3;x=y\r\nabc\r\n%x\r\n%s\r\n0\r\nX-T: 1\r\n\r\n"):format(i, i, string.rep("z", i))
          want[i] = ("PUT /c%d [abc%s]"):format(i, string.rep("z", i))
        else
          local t = {("GET /h%d HTTP/1.1\r\nHost: h\r\n"):format(i)}
          for k = 1, 30 do t[#t + 1] = ("X-%d: %s\r\n"):format(k, string.rep("v", k)) end
          t[#t + 1] = "\r\n"
          reqs[i] = table.concat(t)
          want[i] = ("GET /h%d []"):format(i)
        end
      end
      reqs[#reqs + 1] = "GET /end HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
      want[#want + 1] = "GET /end []"
      local all = table.concat(reqs)
      -- cut into pieces of 1 to 700 bytes (a fixed sequence), with turns
      -- in between so the server sees every cut
      local s <close> = assert(net.connect("127.0.0.1", port))
      local reader = spindle.spawn(function() return s:read_all(1 << 22) end)
      local pos, n = 1, 7
      while pos <= #all do
        n = (n * 1103515245 + 12345) % 2147483648
        local len = 1 + n % 700
        assert(s:write(all:sub(pos, pos + len - 1)))
        pos = pos + len
        spindle.sleep(0)
      end
      local out = reader:join()
      local got = {}
      for body in out:gmatch("\r\n\r\n([^\r]-%])") do got[#got + 1] = body end
      assert.equal(#want, #got)
      for i = 1, #want do assert.equal(want[i], got[i], "response " .. i) end
    end)
  end)

  -- Opens n keep-alive connections that each made one request (204).
  local function idle_conns(port, n)
    local cs = {}
    for i = 1, n do
      cs[i] = assert(net.connect("127.0.0.1", port))
      cs[i]:write("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    end
    for i = 1, n do assert.equal(204, (response(cs[i]))) end
    spindle.sleep(0.01)
    return cs
  end
  local function close_all(cs) for _, c in ipairs(cs) do c:close() end end

  -- Past the first 128 waiting connections of a server (csrc/http_server.c,
  -- WARM_MAX), a connection's task waits for its next request without a
  -- coroutine: parked, its traceback has no frames.
  it("one task serves a connection's requests, parked or not, and aborts while parked", function()
    run(function()
      local tasks = {}
      local srv <close>, _, port = HT.serve{handler = function(req)
        tasks[#tasks + 1] = spindle.current()
        return 204
      end, idle_timeout = 1000}
      local warm = idle_conns(port, 130)
      tasks = {}
      local s <close> = assert(net.connect("127.0.0.1", port))
      for i = 1, 3 do
        s:write("GET /" .. i .. " HTTP/1.1\r\nHost: h\r\n\r\n")
        assert.equal(204, (response(s)))
        spindle.sleep(0.01) -- the connection's task is idle in between
      end
      assert.equal(3, #tasks)
      assert.equal(tasks[1], tasks[2])
      assert.equal(tasks[1], tasks[3])
      local t = tasks[1]
      assert.equal("waiting", t:status())
      assert.equal("stack traceback:\n\t[C]: in ?", t:traceback()) -- parked
      assert.matches("http wait for request", spindle.dump(), 1, true)
      -- aborted while parked, it closes its stream and ends cancelled
      assert.is_true(t:abort())
      assert.equal("EOF", select(3, s:read_some()))
      assert.equal("cancelled", t:status())
      -- the others are served on
      warm[1]:write("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
      assert.equal(204, (response(warm[1])))
      close_all(warm)
    end)
  end)

  it("parked connections: the idle timeout, the head deadline and close() reach them", function()
    run(function()
      local srv, _, port = HT.serve{handler = function() return 204 end,
                                    idle_timeout = 0.3, header_timeout = 0.2}
      local cs = idle_conns(port, 140) -- past 128: the last ones are parked
      -- a parked one begins a head and stops: 408 at the head deadline
      cs[140]:write("GET / HTTP/1.1\r\nHo")
      local head = cs[140]:read_until("\r\n\r\n", 4096)
      assert.equal(408, status_of(head))
      -- the others are closed quietly at the idle timeout
      for i = 1, 139 do assert.equal("EOF", select(3, cs[i]:read_some())) end
      close_all(cs)
      -- and close() ends the parked ones at once
      local srv2, _, port2 = HT.serve{handler = function() return 204 end,
                                      idle_timeout = 1000}
      local cs2 = idle_conns(port2, 140)
      local t0 = spindle.now()
      srv2:close(30)
      assert.is_true(spindle.now() - t0 < 5)
      for i = 1, 140 do assert.equal("EOF", select(3, cs2[i]:read_some())) end
      close_all(cs2)
      srv:close()
    end)
  end)

  it("parked connections are unwound when the runtime ends", function()
    -- clients outside the runtime: LuaSocket's C module, blocking
    local core = require "socket.core"
    local clients = {}
    local rt = spindle.runtime{clock = "real"}
    rt:run(function()
      local _, _, port = HT.serve{handler = function() return 204 end,
                                  idle_timeout = 1000}
      for i = 1, 140 do
        local c = core.tcp()
        c:settimeout(5)
        assert(c:connect("127.0.0.1", port))
        assert(c:send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
        clients[i] = c
      end
      spindle.sleep(0.3) -- answered; 128 wait warm, 12 parked
      -- returns with the server open: every connection task is aborted
    end)
    rt:close()
    local answered = 0
    for _, c in ipairs(clients) do
      local data, err, partial = c:receive("*a") -- until the server closes
      if data and data:match("^HTTP/1%.1 204") then answered = answered + 1 end
      assert.is_nil(err, partial)
      c:close()
    end
    assert.equal(140, answered)
  end)

  it("a parked idle keep-alive connection costs under 800 bytes of Lua heap", function()
    run(function()
      local srv <close>, _, port = HT.serve{handler = function() return 204 end,
                                            idle_timeout = 1000}
      local warm = idle_conns(port, 150)
      collectgarbage() collectgarbage()
      local a = collectgarbage("count") * 1024
      local parked = idle_conns(port, 200)
      collectgarbage() collectgarbage()
      local per = (collectgarbage("count") * 1024 - a) / 200 -- the client's stream object included
      assert.is_true(per < 800, ("%.0f bytes per connection"):format(per))
      close_all(warm)
      close_all(parked)
    end)
  end)

  it("close() ends connections waiting for a request at once", function()
    run(function()
      local srv, _, port = HT.serve{handler = function() return 204 end, idle_timeout = 1000}
      local conns = {}
      for i = 1, 5 do
        conns[i] = assert(net.connect("127.0.0.1", port))
        conns[i]:write("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert.equal(204, (response(conns[i])))
      end
      local t0 = spindle.now()
      srv:close(30)
      assert.is_true(spindle.now() - t0 < 5)
      for _, c in ipairs(conns) do
        assert.equal("EOF", select(3, c:read_some()))
        c:close()
      end
    end)
  end)
end)
