-- spec/27-http-client-stream_spec.lua -- docs/http.md, streaming: a
-- request with stream = true returns once the headers are in; the body is
-- read with res:read_some/read_all/lines, memory stays bounded by what
-- the reader asks for (backpressure), res:close() ends the transfer
-- early.  Against Python's http.server (spec/helpers/http_client_peer.py).

local HT = dofile("spec/helpers/http.lua")
local H = HT.H
local spindle, http, run = HT.spindle, HT.http, HT.run

local py = HT.peer(_ENV, HT.python)

describe("stream = true", function()
  it("returns once the headers are in, before the body", function()
    run(function()
      local t0 = spindle.now()
      local res <close> = assert(http.get(py.base .. "/trickle?n=5&delay=0.2", {stream = true}))
      assert.is_true(spindle.now() - t0 < 0.5) -- the body takes 1 s
      assert.equal(200, res.status)
      assert.equal("5", res.headers["content-length"])
      assert.is_nil(res.body)
      assert.equal("1.1", res.version)
      assert.equal(py.base .. "/trickle?n=5&delay=0.2", res.url)
      local got = {}
      while true do
        local s, msg, code = res:read_some()
        if not s then
          assert.equal("eof", msg)
          assert.equal("EOF", code)
          break
        end
        got[#got + 1] = s
      end
      assert.equal("xxxxx", table.concat(got))
      assert.is_true(#got >= 2) -- it came in parts, as it was sent
    end)
  end)

  it("read_some(max) returns 1..max bytes; the end is sticky", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/big?size=1000", {stream = true}))
      local total = 0
      while true do
        local s = res:read_some(300)
        if not s then break end
        assert.is_true(#s >= 1 and #s <= 300)
        total = total + #s
      end
      assert.equal(1000, total)
      for _ = 1, 3 do
        local s, msg, code = res:read_some()
        assert.is_nil(s)
        assert.equal("eof", msg)
        assert.equal("EOF", code)
      end
    end)
  end)

  it("read_all([max]) returns the rest; over max: 'body too large'", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/bigchunked?size=200000", {stream = true}))
      local first = assert(res:read_some(10))
      local rest = assert(res:read_all())
      assert.equal(200000, #first + #rest)
      assert.equal("", assert(res:read_all())) -- nothing left
      local r2 <close> = assert(http.get(py.base .. "/big?size=5000", {stream = true}))
      local s, msg, code = r2:read_all(4999)
      assert.is_nil(s)
      assert.equal("body too large", msg)
      assert.equal("EMSGSIZE", code)
      assert.equal(5000, #assert(r2:read_all(5000))) -- nothing was lost
    end)
  end)

  it("read_all's default limit is opts.max_body", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/big?size=2000",
                                          {stream = true, max_body = 1500}))
      local s, msg, code = res:read_all()
      assert.is_nil(s)
      assert.equal("body too large", msg)
      assert.equal("EMSGSIZE", code)
      local n = 0
      while true do
        local part = res:read_some()
        if not part then break end
        n = n + #part
      end
      assert.equal(2000, n) -- a streamed body is not cut at max_body
    end)
  end)

  it("lines([max]) iterates over lines; the last may be unterminated", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/lines?n=300", {stream = true}))
      local n = 0
      for line in res:lines() do
        n = n + 1
        assert.equal("line " .. n, line)
      end
      assert.equal(300, n)
      assert.same({nil, "eof", "EOF"}, {res:read_some()})
      local r2 <close> = assert(http.get(py.base .. "/chunked?n=2&size=3", {stream = true}))
      local lines = {}
      for line in r2:lines() do lines[#lines + 1] = line end
      assert.same({"aaabbb"}, lines)
    end)
  end)

  it("lines(max) stops at a longer line; the bytes stay for read_some", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/chunked?n=1&size=100", {stream = true}))
      local it = res:lines(10)
      assert.same({nil, "line too long", "ELINE"}, {it()})
      assert.equal(("a"):rep(100), res:read_all())
    end)
  end)

  it("returns an error after the bytes that came before it", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/close-mid?size=200000", {stream = true}))
      local n, err, code = 0, nil, nil
      while true do
        local s, msg, c = res:read_some()
        if not s then err, code = msg, c break end
        n = n + #s
      end
      assert.equal(100000, n)
      assert.is_string(err)
      assert.is_not.equal("EOF", code)
      assert.same({nil, err, code}, {res:read_some()}) -- sticky
      -- read_all passes what came before the error as `partial`
      local r2 <close> = assert(http.get(py.base .. "/close-mid?size=2000", {stream = true}))
      local s, msg, c, partial = r2:read_all()
      assert.is_nil(s)
      assert.is_string(msg)
      assert.is_string(c)
      assert.equal(1000, #partial)
    end)
  end)

  it("reads an empty body at once (204, HEAD)", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/empty", {stream = true}))
      assert.equal(204, res.status)
      assert.same({nil, "eof", "EOF"}, {res:read_some()})
      local r2 <close> = assert(http.request{url = py.base .. "/big?size=100",
                                             method = "HEAD", stream = true})
      assert.equal("", r2:read_all())
    end)
  end)

  it("follows redirects and returns the final response", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/redirect/2", {stream = true, follow = 2}))
      assert.equal(200, res.status)
      assert.equal(py.base .. "/redirect/0", res.url)
      assert.equal("done", res:read_all())
      local r2, msg, code = http.get(py.base .. "/redirect/3", {stream = true, follow = 1})
      assert.is_nil(r2)
      assert.equal("EHTTP", code)
      assert.matches("redirect", msg)
    end)
  end)

  it("uploads from a function first, then returns the response head", function()
    run(function()
      local n = 0
      local res <close> = assert(http.post(py.base .. "/echo-len", function()
        n = n + 1
        if n <= 10 then return ("y"):rep(1000) end
      end, {stream = true}))
      assert.equal(11, n)
      assert.equal("10000 chunked", res:read_all())
    end)
  end)

  it("allows one reader at a time", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/trickle?n=3&delay=0.2", {stream = true}))
      local h = spindle.spawn(function() return res:read_some() end)
      spindle.sleep(0.05)
      local ok, err = pcall(res.read_some, res)
      assert.is_false(ok)
      assert.matches("read_some: response busy", err)
      assert.equal("x", h:join())
    end)
  end)

  it("close() ends the transfer early; reads then say closed", function()
    run(function()
      local res = assert(http.get(py.base .. "/trickle?n=100&delay=0.05", {stream = true}))
      assert.equal("x", res:read_some())
      assert.equal(1, HT.stats().transfers)
      assert.is_true(res:close())
      assert.equal(0, HT.stats().transfers) -- at once
      assert.is_true(res:close()) -- idempotent
      assert.same({nil, "closed", "EBADF"}, {res:read_some()})
      assert.same({nil, "closed", "EBADF"}, {res:read_all()})
      assert.is_nil(res:lines()())
      -- the client goes on (a new connection: that one was cut)
      assert.equal(200, assert(http.get(py.base .. "/status/200")).status)
    end)
  end)

  it("close() from another task wakes a blocked reader with ECANCELED", function()
    run(function()
      local res = assert(http.get(py.base .. "/trickle?n=10&delay=0.5", {stream = true}))
      local h = spindle.spawn(function()
        local a = res:read_some()
        return a, res:read_some()
      end)
      spindle.sleep(0.7)
      res:close()
      local a, s, msg, code = h:join()
      assert.equal("x", a)
      assert.is_nil(s)
      assert.equal("closed", msg)
      assert.equal("ECANCELED", code)
    end)
  end)

  it("ends the transfer on <close>, and when the response is collected", function()
    run(function()
      do
        local res <close> = assert(http.get(py.base .. "/trickle?n=100&delay=0.05",
                                            {stream = true}))
        assert.equal(1, HT.stats().transfers)
      end
      assert.equal(0, HT.stats().transfers)
      do
        local res = assert(http.get(py.base .. "/trickle?n=100&delay=0.05", {stream = true}))
        assert.equal(200, res.status)
      end
      collectgarbage(); collectgarbage()
      assert.equal(0, HT.stats().transfers)
    end)
  end)

  it("keeps a response usable after the transfer is done", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/lines?n=3", {stream = true}))
      spindle.sleep(0.2) -- it has all arrived
      assert.equal(0, HT.stats().transfers) -- the easy handle is back
      assert.equal("line 1\nline 2\nline 3\n", res:read_all())
    end)
  end)

  it("a response outlives its runtime: afterwards it is closed", function()
    local res
    run(function()
      res = assert(http.get(py.base .. "/trickle?n=100&delay=0.05", {stream = true}))
    end)
    assert.equal(0, HT.stats().transfers)
    run(function()
      assert.same({nil, "closed", "EBADF"}, {res:read_some()})
    end)
    assert.is_true(res:close())
  end)
end)

describe("backpressure", function()
  local MB = 1024 * 1024
  local SIZE = 50 * MB

  it("a 50 MB body read slowly keeps memory bounded by the reader's max", function()
    run(function()
      collectgarbage(); collectgarbage()
      local rss0 = HT.rss_kb()
      local lua0 = collectgarbage("count")
      local res <close> = assert(http.get(py.base .. "/big?size=" .. SIZE, {stream = true}))
      -- nobody reads for a while: the transfer pauses
      spindle.sleep(0.5)
      local peak = HT.stats().buffered
      assert.is_true(peak <= 160 * 1024, peak)
      local total, reads = 0, 0
      while true do
        local s = res:read_some(65536)
        if not s then break end
        total = total + #s
        reads = reads + 1
        local b = HT.stats().buffered
        if b > peak then peak = b end
        if reads % 64 == 0 then spindle.sleep(0.01) end -- a slow reader
      end
      assert.equal(SIZE, total)
      -- the buffer never held much more than what one read asks for
      assert.is_true(peak <= 2 * 65536 + 32 * 1024, peak)
      collectgarbage(); collectgarbage()
      assert.is_true(collectgarbage("count") - lua0 < 8 * 1024)
      if H.ENV == "plain" then -- the sanitizers keep freed memory in quarantine
        local grown = HT.rss_kb() - rss0
        assert.is_true(grown < 20 * 1024, grown .. " KiB")
      end
    end)
  end)

  it("read_all(max) lets the buffer grow to max, not beyond", function()
    run(function()
      local res <close> = assert(http.get(py.base .. "/big?size=" .. 4 * MB, {stream = true}))
      local s, msg, code = res:read_all(MB)
      assert.is_nil(s)
      assert.equal("EMSGSIZE", code, msg)
      assert.is_true(HT.stats().buffered <= 2 * MB + 64 * 1024, HT.stats().buffered)
    end)
  end)
end)
