-- spec/27-http-client_spec.lua -- docs/http.md, the client: requests and
-- responses, methods and headers, bodies, redirects, max_body, errors,
-- timeouts, proxies, spindle.dump and argument checks -- sentence by
-- sentence, against Python's http.server (spec/helpers/http_client_peer.py).
-- Streaming is in 27-http-client-stream_spec.lua, cancellation in
-- 27-http-client-cancel_spec.lua, nginx (keep-alive, HTTP/2, HTTPS, 1,000
-- requests at once) in 27-http-client-nginx_spec.lua.

local HT = dofile("spec/helpers/http.lua")
local H = HT.H
local spindle, http, run = HT.spindle, HT.http, HT.run

local py = HT.peer(_ENV, HT.python)

-- The request the echo endpoint saw: method, target, headers (lower-case
-- names -> array of values) and body.
local function parse_echo(body)
  local head, rest = body:match("^(.-)\n\n(.*)$")
  local method, target = head:match("^(%S+) (%S+)")
  local headers = {}
  for name, value in head:gmatch("\n([^:\n]+): ([^\n]*)") do
    name = name:lower()
    headers[name] = headers[name] or {}
    table.insert(headers[name], value)
  end
  return {method = method, target = target, headers = headers, body = rest}
end

-- ---------------------------------------------------------------- responses

describe("a response", function()
  it("has status, headers, header_list, body, version and url", function()
    run(function()
      local res = assert(http.get(py.base .. "/headers"))
      assert.equal(200, res.status)
      assert.equal("integer", math.type(res.status))
      assert.equal("ok", res.body)
      assert.equal("1.1", res.version)
      assert.equal(py.base .. "/headers", res.url)
      assert.equal("text/plain", res.headers["content-type"])
      assert.equal("2", res.headers["content-length"])
    end)
  end)

  it("has lower-case names; a repeated header's values are joined with ', '", function()
    run(function()
      local res = assert(http.get(py.base .. "/headers"))
      assert.equal("a, b", res.headers["x-rep"])
      assert.equal("a=1, b=2", res.headers["set-cookie"])
      assert.equal("Yes", res.headers["x-mixed-case"])
      assert.is_nil(res.headers["X-Mixed-CASE"])
      assert.equal("first second", res.headers["x-folded"]) -- obs-fold
      for name in pairs(res.headers) do assert.equal(name:lower(), name) end
    end)
  end)

  it("lists every header in header_list as {name, value} pairs in order", function()
    run(function()
      local res = assert(http.get(py.base .. "/headers"))
      local names, reps, cookies = {}, {}, {}
      for i, pair in ipairs(res.header_list) do
        assert.equal(2, #pair)
        names[#names + 1] = pair[1]
        if pair[1] == "x-rep" then reps[#reps + 1] = pair[2] end
        if pair[1] == "set-cookie" then cookies[#cookies + 1] = pair[2] end
        assert.equal(i, #names)
      end
      assert.same({"a", "b"}, reps)
      assert.same({"a=1", "b=2"}, cookies)
      local order = table.concat(names, " ")
      assert.truthy(order:find("x-rep content-type x-rep set-cookie set-cookie x-mixed-case", 1, true))
      local count = 0
      for _ in pairs(res.headers) do count = count + 1 end
      assert.equal(#res.header_list - 2, count) -- two repeats joined
    end)
  end)

  it("is a response, not an error, for a 404 or a 500", function()
    run(function()
      for _, code in ipairs({404, 500, 201, 418, 503}) do
        local res, msg, ecode = http.get(py.base .. "/status/" .. code)
        assert.is_table(res, msg, ecode)
        assert.equal(code, res.status)
        assert.equal("status " .. code, res.body)
      end
    end)
  end)

  it("reports an HTTP/1.0 peer as version '1.0' and reads to the close", function()
    run(function()
      local res = assert(http.get(py.base .. "/http10"))
      assert.equal("1.0", res.version)
      assert.equal(200, res.status)
      assert.equal("old", res.body)
    end)
  end)

  it("has an empty body for a 204 and for HEAD", function()
    run(function()
      local res = assert(http.get(py.base .. "/empty"))
      assert.equal(204, res.status)
      assert.equal("", res.body)
      res = assert(http.request{url = py.base .. "/big?size=1000", method = "HEAD"})
      assert.equal(200, res.status)
      assert.equal("1000", res.headers["content-length"])
      assert.equal("", res.body)
    end)
  end)

  it("decodes a chunked body", function()
    run(function()
      local res = assert(http.get(py.base .. "/chunked?n=4&size=3"))
      assert.equal("aaabbbcccddd", res.body)
      assert.equal("chunked", res.headers["transfer-encoding"])
    end)
  end)

  it("reads bodies larger than any buffer (8 MiB), byte for byte", function()
    run(function()
      local res = assert(http.get(py.base .. "/big?size=" .. 8 * 1024 * 1024))
      assert.equal(8 * 1024 * 1024, #res.body)
      local pat = {}
      for i = 0, 255 do pat[#pat + 1] = string.char(i) end
      pat = table.concat(pat)
      assert.equal(pat, res.body:sub(1, 256))
      assert.equal(pat, res.body:sub(-256))
    end)
  end)

  it("is a table whose close() does nothing for a buffered body", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/status/200"))
      assert.is_true(res:close())
      assert.equal("status 200", res.body)
      assert.has_error(function() res:read_some() end,
        "read_some: the body was not streamed (it is res.body; pass stream = true to read it in parts)")
    end)
  end)
end)

-- ---------------------------------------------------------------- requests

describe("a request", function()
  it("is a GET by default and a POST when a body is given", function()
    run(function()
      local e = parse_echo(assert(http.request{url = py.base .. "/echo"}).body)
      assert.equal("GET", e.method)
      assert.equal("/echo", e.target)
      assert.is_nil(e.headers["content-length"])
      e = parse_echo(assert(http.request{url = py.base .. "/echo", body = "hi"}).body)
      assert.equal("POST", e.method)
      assert.equal("hi", e.body)
      assert.same({"2"}, e.headers["content-length"])
    end)
  end)

  it("sends any method, with or without a body", function()
    run(function()
      for _, m in ipairs({"PUT", "DELETE", "PATCH", "OPTIONS", "GET"}) do
        local e = parse_echo(assert(http.request{url = py.base .. "/echo",
                                                 method = m, body = "b-" .. m}).body)
        assert.equal(m, e.method)
        assert.equal("b-" .. m, e.body)
        e = parse_echo(assert(http.request{url = py.base .. "/echo", method = m}).body)
        assert.equal(m, e.method)
        assert.equal("", e.body)
      end
      local e = parse_echo(assert(http.request{url = py.base .. "/echo",
                                               method = "POST"}).body)
      assert.equal("POST", e.method)
    end)
  end)

  it("sends headers: name -> value, an array repeats the header", function()
    run(function()
      local res = assert(http.get(py.base .. "/echo", {headers = {
        ["X-One"] = "1", ["X-Many"] = {"a", "b", "c"}, ["X-Num"] = 42,
        ["X-Empty"] = "", ["Accept"] = "text/plain"}}))
      local e = parse_echo(res.body)
      assert.same({"1"}, e.headers["x-one"])
      assert.same({"a", "b", "c"}, e.headers["x-many"])
      assert.same({"42"}, e.headers["x-num"])
      assert.same({""}, e.headers["x-empty"])
      assert.same({"text/plain"}, e.headers["accept"]) -- replaces curl's
    end)
  end)

  it("names itself spindle/<version> unless told otherwise", function()
    run(function()
      local e = parse_echo(assert(http.get(py.base .. "/echo")).body)
      assert.same({"spindle/" .. spindle.version}, e.headers["user-agent"])
      e = parse_echo(assert(http.get(py.base .. "/echo",
        {headers = {["User-Agent"] = "mine/1"}})).body)
      assert.same({"mine/1"}, e.headers["user-agent"])
    end)
  end)

  it("adds no Expect: 100-continue and no Content-Type of its own", function()
    run(function()
      local e = parse_echo(assert(http.post(py.base .. "/echo",
                                            ("x"):rep(2 * 1024 * 1024))).body)
      assert.is_nil(e.headers["expect"])
      assert.is_nil(e.headers["content-type"])
      assert.equal(2 * 1024 * 1024, #e.body)
      e = parse_echo(assert(http.post(py.base .. "/echo", "{}",
        {headers = {["content-type"] = "application/json"}})).body)
      assert.same({"application/json"}, e.headers["content-type"])
      e = parse_echo(assert(http.post(py.base .. "/echo", "x",
        {headers = {Expect = "100-continue"}})).body)
      assert.same({"100-continue"}, e.headers["expect"])
      assert.equal("x", e.body)
    end)
  end)

  it("sends a string body with Content-Length, binary-safe", function()
    run(function()
      local body = "a\0b\r\n\255" .. ("z"):rep(100000)
      local res = assert(http.post(py.base .. "/echo-len", body))
      assert.equal(#body .. " length", res.body)
      local e = parse_echo(assert(http.post(py.base .. "/echo", body)).body)
      assert.equal(body, e.body)
      res = assert(http.post(py.base .. "/echo-len", ""))
      assert.equal("0 length", res.body)
    end)
  end)

  it("streams a function body chunked, calling it from the requesting task", function()
    run(function()
      local me = spindle.current()
      local calls, chunks = 0, {"one ", "", "two ", "three"}
      local res = assert(http.request{url = py.base .. "/echo", body = function()
        calls = calls + 1
        assert.equal(me, spindle.current())
        spindle.sleep(0.01) -- the body function may await
        return table.remove(chunks, 1)
      end})
      local e = parse_echo(res.body)
      assert.equal("POST", e.method)
      assert.same({"chunked"}, e.headers["transfer-encoding"])
      assert.equal("one two three", e.body)
      assert.equal(5, calls) -- four chunks ("" skipped), then nil
    end)
  end)

  it("uploads many megabytes from a function, each chunk once", function()
    run(function()
      local n, chunk = 0, ("0123456789abcdef"):rep(4096) -- 64 KiB
      local res = assert(http.post(py.base .. "/echo-len", function()
        n = n + 1
        if n <= 64 then return chunk end
      end))
      assert.equal(64 * 65536 .. " chunked", res.body)
    end)
  end)

  it("raises when the body function returns something else than a string or nil", function()
    run(function()
      local ok, err = pcall(http.post, py.base .. "/echo", function() return 42 end)
      assert.is_false(ok)
      assert.matches("spindle.http.post: the body function returned a number", err)
      assert.equal(0, HT.stats().transfers) -- ended at once
    end)
  end)

  it("passes an error of the body function on and ends the transfer", function()
    run(function()
      local n = 0
      local ok, err = pcall(http.request, {url = py.base .. "/echo", body = function()
        n = n + 1
        if n == 3 then error({tag = "mine"}) end
        return "part"
      end})
      assert.is_false(ok)
      assert.same({tag = "mine"}, err)
      assert.equal(0, HT.stats().transfers)
      -- the client still works
      assert.equal(200, assert(http.get(py.base .. "/status/200")).status)
    end)
  end)

  it("has the shorthands get(url, opts) and post(url, body, opts)", function()
    run(function()
      local e = parse_echo(assert(http.get(py.base .. "/echo", {headers = {A = "1"}})).body)
      assert.equal("GET", e.method)
      assert.same({"1"}, e.headers.a)
      e = parse_echo(assert(http.post(py.base .. "/echo", "data", {method = "PUT"})).body)
      assert.equal("PUT", e.method)
      assert.equal("data", e.body)
      e = parse_echo(assert(http.post(py.base .. "/echo", function() return nil end)).body)
      assert.equal("POST", e.method)
      assert.equal("", e.body)
    end)
  end)

  it("is reached as spindle.http and as require 'spindle.http'", function()
    assert.equal(require("spindle.http"), spindle.http)
    assert.is_function(spindle.http.request)
    assert.is_function(spindle.http.get)
    assert.is_function(spindle.http.post)
  end)

  it("reuses the connection for sequential requests (keep-alive)", function()
    run(function()
      local first = assert(http.get(py.base .. "/conn")).body
      for _ = 1, 5 do
        assert.equal(first, assert(http.get(py.base .. "/conn")).body)
      end
    end)
  end)

  it("runs many requests of one runtime at once", function()
    run(function()
      local hs = {}
      for i = 1, 20 do
        hs[i] = spindle.spawn(function()
          return assert(http.get(py.base .. "/slow?delay=0.2")).body
        end)
      end
      local t0 = spindle.now()
      for i = 1, 20 do assert.equal("slow", hs[i]:join()) end
      assert.is_true(spindle.now() - t0 < 3.5) -- not one after another (4 s)
    end)
  end)
end)

-- ---------------------------------------------------------------- redirects

describe("redirects", function()
  it("are not followed by default: the 3xx is the response", function()
    run(function()
      local res = assert(http.get(py.base .. "/redirect/2"))
      assert.equal(302, res.status)
      assert.equal("/redirect/1", res.headers.location)
      assert.equal("moved", res.body)
      assert.equal(py.base .. "/redirect/2", res.url)
    end)
  end)

  it("are followed up to opts.follow; res.url is where it ended", function()
    run(function()
      local res = assert(http.get(py.base .. "/redirect/3", {follow = 3}))
      assert.equal(200, res.status)
      assert.equal("done", res.body)
      assert.equal(py.base .. "/redirect/0", res.url)
      assert.is_nil(res.headers.location) -- the final response's headers
    end)
  end)

  it("beyond opts.follow: nil, msg, EHTTP", function()
    run(function()
      local res, msg, code = http.get(py.base .. "/redirect/4", {follow = 2})
      assert.is_nil(res)
      assert.equal("EHTTP", code)
      assert.matches("redirect", msg)
    end)
  end)

  it("turn a POST into a GET on 303, and keep it with its body on 307", function()
    run(function()
      local res = assert(http.post(py.base .. "/redirect-to?code=303&to=/echo", "data",
                                   {follow = 1}))
      local e = parse_echo(res.body)
      assert.equal("GET", e.method)
      assert.equal("", e.body)
      res = assert(http.post(py.base .. "/redirect-to?code=307&to=/echo", "data",
                             {follow = 1}))
      e = parse_echo(res.body)
      assert.equal("POST", e.method)
      assert.equal("data", e.body)
    end)
  end)

  it("go only to http and https", function()
    run(function()
      local res, msg, code = http.get(py.base .. "/redirect-to?to=ftp://127.0.0.1/x",
                                      {follow = 1})
      assert.is_nil(res)
      assert.equal("EHTTP", code)
      assert.is_string(msg)
    end)
  end)
end)

-- ---------------------------------------------------------------- max_body

describe("max_body", function()
  it("is 64 MiB by default", function()
    run(function()
      local res, msg, code = http.get(py.base .. "/big?size=" .. (64 * 1024 * 1024 + 1))
      assert.is_nil(res)
      assert.equal("body too large", msg)
      assert.equal("EMSGSIZE", code)
    end)
  end)

  it("allows a body of exactly max_body bytes", function()
    run(function()
      assert.equal(1000, #assert(http.get(py.base .. "/big?size=1000", {max_body = 1000})).body)
      assert.equal(1000, #assert(http.get(py.base .. "/bigchunked?size=1000",
                                          {max_body = 1000})).body)
      assert.equal(0, #assert(http.get(py.base .. "/big?size=0", {max_body = 0})).body)
    end)
  end)

  it("over it: nil, 'body too large', 'EMSGSIZE' (with or without a length)", function()
    run(function()
      for _, path in ipairs({"/big?size=1001", "/bigchunked?size=300000"}) do
        local res, msg, code = http.get(py.base .. path, {max_body = 1000})
        assert.is_nil(res)
        assert.equal("body too large", msg)
        assert.equal("EMSGSIZE", code)
      end
      -- and the client goes on working
      assert.equal(200, assert(http.get(py.base .. "/status/200")).status)
    end)
  end)
end)

-- ---------------------------------------------------------------- errors

describe("errors", function()
  it("ECONNREFUSED when nothing listens", function()
    local port = HT.free_port()
    run(function()
      local res, msg, code = http.get("http://127.0.0.1:" .. port .. "/")
      assert.is_nil(res)
      assert.equal("ECONNREFUSED", code)
      assert.equal("connection refused", msg)
    end)
  end)

  it("EAI_NONAME for a name that does not resolve (no DNS query needed)", function()
    -- a 64-byte label is not a valid DNS name: the resolver refuses it
    -- without asking a server, so this needs no network
    local name = ("a"):rep(64) .. ".invalid"
    run(function()
      local t0 = spindle.now()
      local res, msg, code = http.get("http://" .. name .. "/")
      assert.is_nil(res)
      assert.equal("EAI_NONAME", code)
      assert.matches("resolve", msg)
      assert.is_true(spindle.now() - t0 < 5)
    end)
  end)

  it("EHTTP with libcurl's message for a peer that answers nothing", function()
    run(function()
      local res, msg, code = http.get(py.base .. "/nothing")
      assert.is_nil(res)
      assert.equal("EHTTP", code)
      assert.equal("Empty reply from server", msg)
    end)
  end)

  it("an error (not a short body) when the peer closes in the middle", function()
    run(function()
      local res, msg, code = http.get(py.base .. "/close-mid?size=100000")
      assert.is_nil(res)
      assert.is_string(msg)
      assert.is_string(code)
    end)
  end)

  it("EHTTP for a scheme other than http and https, and for a bad URL", function()
    run(function()
      for _, url in ipairs({"ftp://127.0.0.1/", "file:///etc/passwd", "http://[::1/",
                            "not a url"}) do
        local res, msg, code = http.get(url)
        assert.is_nil(res, url)
        assert.equal("EHTTP", code, url)
        assert.is_string(msg)
      end
    end)
  end)

  it("ETIMEDOUT after opts.timeout for the whole request", function()
    run(function()
      local t0 = spindle.now()
      local res, msg, code = http.get(py.base .. "/slow?delay=3", {timeout = 0.3})
      local dt = spindle.now() - t0
      assert.is_nil(res)
      assert.equal("timeout", msg)
      assert.equal("ETIMEDOUT", code)
      assert.is_true(dt >= 0.29 and dt < 2.5, dt)
      -- a body that trickles in counts too
      res, msg, code = http.get(py.base .. "/trickle?n=50&delay=0.05", {timeout = 0.5})
      assert.is_nil(res)
      assert.equal("ETIMEDOUT", code)
    end)
  end)

  it("ETIMEDOUT after opts.connect_timeout when a connect hangs", function()
    run(function()
      local port, release = HT.hanging_port()
      local t0 = spindle.now()
      local res, msg, code = http.get("http://127.0.0.1:" .. port .. "/",
                                      {connect_timeout = 0.4})
      local dt = spindle.now() - t0
      release()
      assert.is_nil(res)
      assert.equal("ETIMEDOUT", code, msg)
      assert.is_true(dt >= 0.39 and dt < 3, dt)
    end)
  end)

  it("a timeout that is not reached changes nothing", function()
    run(function()
      local res = assert(http.get(py.base .. "/slow?delay=0.1",
                                  {timeout = 10, connect_timeout = 5}))
      assert.equal("slow", res.body)
    end)
  end)
end)

-- ---------------------------------------------------------------- environment

describe("proxies", function()
  it("come from the environment (http_proxy), as libcurl does", function()
    -- a child with this process's environment plus http_proxy (spawned
    -- directly: its sanitizer preload, if any, is kept)
    local env = {}
    for kv in H.read_file("/proc/self/environ"):gmatch("[^%z]+") do
      local k, v = kv:match("^([^=]+)=(.*)$")
      if k then env[k] = v end
    end
    env.http_proxy, env.no_proxy, env.NO_PROXY = py.base, "", ""
    env.LUA_PATH, env.LUA_CPATH = package.path, package.cpath
    local code, out, err = run(function()
      return spindle.process.run("lua5.4", {"-e", [[
        local spindle = require "spindle"
        spindle.run(function()
          local res = assert(spindle.http.get("http://127.0.0.9:9/via-proxy"))
          print(res.status, res.body)
        end)]]}, {env = env})
    end)
    assert.equal(0, code, err)
    assert.equal("200\tproxied http://127.0.0.9:9/via-proxy\n", out)
  end)
end)

describe("spindle.dump", function()
  it("names the wait: http <method> <url>", function()
    run(function()
      local url = py.base .. "/slow?delay=0.3"
      local h = spindle.spawn(http.get, url)
      local text
      for _ = 1, 100 do
        spindle.sleep(0.01)
        text = spindle.dump()
        if text:find("http GET", 1, true) then break end
      end
      assert.truthy(text:find("http GET " .. url, 1, true), text)
      assert.equal("slow", h:join().body)
      h = spindle.spawn(http.post, py.base .. "/echo", function()
        spindle.sleep(0.2)
      end)
      spindle.sleep(0.05)
      -- in the body function, the task waits for what it awaits there
      assert.truthy(spindle.dump():find("sleep", 1, true))
      assert.equal(200, h:join().status)
    end)
  end)
end)

describe("the virtual clock", function()
  it("stands still while a task waits for a transfer", function()
    local res = H.run_virtual(function()
      return spindle.timeout(1, http.get, py.base .. "/slow?delay=0.3")
    end)
    assert.equal("slow", res.body)
  end)
end)

-- ---------------------------------------------------------------- arguments

describe("argument checks", function()
  local function fails(fn, pattern)
    local ok, err
    run(function() ok, err = pcall(fn) end)
    assert.is_false(ok)
    assert.is_string(err)
    assert.truthy(err:find(pattern, 1, true), err)
  end

  it("request needs a table with a url", function()
    fails(function() http.request() end,
          "bad argument #1 to 'request' (table expected, got no value)")
    fails(function() http.request(nil) end,
          "bad argument #1 to 'request' (table expected, got nil)")
    fails(function() http.request("http://x/") end,
          "bad argument #1 to 'request' (table expected, got string)")
    fails(function() http.request{} end, "spindle.http.request: option 'url' is required")
    fails(function() http.request{url = 1} end,
          "spindle.http.request: option 'url' must be a string")
  end)

  it("get and post check their arguments", function()
    fails(function() http.get() end, "bad argument #1 to 'get' (string expected, got no value)")
    fails(function() http.get(nil) end, "bad argument #1 to 'get' (string expected, got nil)")
    fails(function() http.post() end, "bad argument #1 to 'post' (string expected, got no value)")
    fails(function() http.get(py.base, 5) end, "bad argument #2 to 'get' (table expected, got number)")
    fails(function() http.post(py.base) end,
          "bad argument #2 to 'post' (string or function expected, got no value)")
    fails(function() http.post(py.base, {}) end,
          "bad argument #2 to 'post' (string or function expected, got table)")
    fails(function() http.post(py.base, "x", "y") end,
          "bad argument #3 to 'post' (table expected, got string)")
    fails(function() http.get(py.base, {url = py.base}) end,
          "spindle.http.get: option 'url' is not allowed")
    fails(function() http.post(py.base, "x", {body = "y"}) end,
          "spindle.http.post: option 'body' is not allowed")
  end)

  it("raises for an unknown option", function()
    fails(function() http.get(py.base, {timout = 1}) end,
          "spindle.http.get: unknown option 'timout'")
    fails(function() http.request{url = py.base, [1] = true} end,
          "spindle.http.request: option names must be strings")
    fails(function() http.get(py.base, {tls = {cafile = "x"}}) end,
          "spindle.http.get: unknown option 'tls.cafile'")
  end)

  it("checks every option's value", function()
    local cases = {
      {{method = ""}, "option 'method' must be a method name"},
      {{method = "GE T"}, "option 'method' must be a method name"},
      {{method = 1}, "option 'method' must be a method name"},
      {{headers = "x"}, "option 'headers' must be a table"},
      {{headers = {[1] = "x"}}, "header names must be tokens"},
      {{headers = {["bad name"] = "x"}}, "header names must be tokens"},
      {{headers = {X = true}}, "header 'X' must be a string or an array of strings"},
      {{headers = {X = {true}}}, "header 'X' must be a string or an array of strings"},
      {{headers = {X = "a\r\nInjected: 1"}}, "header 'X' contains a line break"},
      {{headers = {X = "a\0b"}}, "header 'X' contains a line break or a zero byte"},
      {{body = 5}, "option 'body' must be a string or a function"},
      {{timeout = -1}, "option 'timeout' must be a non-negative number"},
      {{timeout = "1"}, "option 'timeout' must be a non-negative number"},
      {{timeout = 0/0}, "option 'timeout' must be a non-negative number"},
      {{connect_timeout = -0.5}, "option 'connect_timeout' must be a non-negative number"},
      {{follow = -1}, "option 'follow' must be a non-negative integer"},
      {{follow = 1.5}, "option 'follow' must be a non-negative integer"},
      {{max_body = "big"}, "option 'max_body' must be a non-negative integer"},
      {{stream = 1}, "option 'stream' must be a boolean"},
      {{tls = true}, "option 'tls' must be a table"},
      {{tls = {verify = "no"}}, "option 'tls.verify' must be a boolean"},
      {{tls = {ca = 5}}, "option 'tls.ca' must be a path"},
      {{tls = {ca = "/nonexistent/ca.pem"}}, "tls.ca: cannot open '/nonexistent/ca.pem'"},
      {{version = "3"}, "option 'version' must be \"1.1\" or \"2\""},
      {{version = 2}, "option 'version' must be \"1.1\" or \"2\""},
      {{method = "HEAD", body = "x"}, "a HEAD request cannot have a body"},
    }
    for _, c in ipairs(cases) do
      local opts = c[1]
      opts.url = py.base .. "/echo"
      fails(function() http.request(opts) end, "spindle.http.request: " .. c[2])
    end
    fails(function() http.request{url = "http://127.0.0.1\0/x"} end,
          "spindle.http.request: the URL contains a zero byte")
  end)

  it("must be called from a task", function()
    local ok, err = pcall(http.get, py.base)
    assert.is_false(ok)
    assert.truthy(err:find("spindle.http.get: not inside a task", 1, true))
    ok, err = pcall(http.request, {url = py.base})
    assert.truthy(err:find("spindle.http.request: not inside a task", 1, true))
    ok, err = pcall(http.post, py.base, "x")
    assert.truthy(err:find("spindle.http.post: not inside a task", 1, true))
  end)

  it("checks a response's methods", function()
    run(function()
      local res = assert(http.get(py.base .. "/status/200", {stream = true}))
      assert.has_error(function() res.read_some({}) end)
      assert.has_error(function() res:read_some(0) end)
      assert.has_error(function() res:read_some("x") end)
      assert.has_error(function() res:lines(-1) end)
      assert.has_error(function() res.close(5) end)
      res:close()
    end)
  end)
end)
