-- spec/27-http-client-nginx_spec.lua -- docs/http.md, the client against
-- nginx (Debian nginx-light, started here with its own configuration and
-- prefix in a temporary directory): static files, keep-alive reuse (the
-- access log's $connection), HTTP/2 (cleartext with prior knowledge, and
-- over TLS), HTTPS with a CA made at test time, streaming a large file,
-- and 1,000 requests at once.

local HT = dofile("spec/helpers/http.lua")
local H = HT.H
local spindle, http, run = HT.spindle, HT.http, HT.run

local big = {}
local line = ("x"):rep(1000)
for i = 1, 20 * 1024 do big[i] = ("%23d"):format(i) .. line .. "\n" end -- 20 MiB
big = table.concat(big)

local ngx = HT.peer(_ENV, function()
  return HT.nginx{h2c = true, tls = true, files = {
    ["hello.txt"] = "hello from nginx\n",
    ["big.bin"] = big,
    ["a.json"] = '{"a": 1}',
  }}
end)

-- Access log entries for requests whose line contains `tag`.
local function entries(tag)
  local t = {}
  for _, e in ipairs(ngx.access_log()) do
    if e.request:find(tag, 1, true) then t[#t + 1] = e end
  end
  return t
end

local function distinct(list, field)
  local seen, n = {}, 0
  for _, e in ipairs(list) do
    if not seen[e[field]] then seen[e[field]] = true; n = n + 1 end
  end
  return n
end

describe("nginx", function()
  it("serves a static file", function()
    run(function()
      local res = assert(http.get(ngx.base .. "/hello.txt"))
      assert.equal(200, res.status)
      assert.equal("hello from nginx\n", res.body)
      assert.equal("17", res.headers["content-length"])
      assert.matches("^nginx", res.headers.server)
      assert.equal("1.1", res.version)
      res = assert(http.get(ngx.base .. "/missing"))
      assert.equal(404, res.status)
      assert.matches("text/html", res.headers["content-type"])
    end)
  end)

  it("sees one connection for sequential requests (keep-alive)", function()
    run(function()
      for i = 1, 10 do
        assert.equal(200, assert(http.get(ngx.base .. "/hello.txt?seq=" .. i)).status)
      end
    end)
    local e = entries("?seq=")
    assert.equal(10, #e)
    assert.equal(1, distinct(e, "conn"))
    for i = 1, 10 do assert.equal(i, e[i].n) end -- $connection_requests
  end)

  it("reuses connections across tasks of a runtime", function()
    run(function()
      local hs = {}
      for t = 1, 4 do
        hs[t] = spindle.spawn(function()
          for i = 1, 10 do
            assert.equal(200, assert(http.get(ngx.base .. "/hello.txt?par=" .. t .. "-" .. i)).status)
          end
        end)
      end
      for t = 1, 4 do hs[t]:join() end
    end)
    local e = entries("?par=")
    assert.equal(40, #e)
    assert.is_true(distinct(e, "conn") <= 4, distinct(e, "conn"))
  end)

  it("streams a 20 MiB file in parts, byte for byte", function()
    run(function()
      local res <close> = assert(http.get(ngx.base .. "/big.bin", {stream = true}))
      assert.equal(tostring(#big), res.headers["content-length"])
      local parts, n = {}, 0
      while true do
        local s = res:read_some(100000)
        if not s then break end
        n = n + 1
        parts[n] = s
      end
      assert.is_true(n > 20)
      assert.equal(big, table.concat(parts))
      local whole = assert(http.get(ngx.base .. "/big.bin"))
      assert.equal(big, whole.body)
    end)
  end)

  it("speaks HTTP/2 with prior knowledge when version = '2'", function()
    run(function()
      for i = 1, 3 do
        local res = assert(http.get(ngx.h2base .. "/hello.txt?h2c=" .. i, {version = "2"}))
        assert.equal("2", res.version)
        assert.equal(200, res.status)
        assert.equal("hello from nginx\n", res.body)
        assert.equal("17", res.headers["content-length"])
      end
    end)
    local e = entries("?h2c=")
    assert.equal(3, #e)
    assert.matches("HTTP/2.0", e[1].request)
  end)

  it("has several requests at once share one HTTP/2 connection", function()
    run(function()
      local hs = {}
      for i = 1, 10 do
        hs[i] = spindle.spawn(http.get, ngx.tlsbase .. "/a.json?mux=" .. i,
                              {tls = {ca = ngx.ca}})
      end
      for i = 1, 10 do
        local res = hs[i]:join()
        assert.equal('{"a": 1}', res.body)
        assert.equal("2", res.version)
      end
    end)
    local e = entries("?mux=")
    assert.equal(10, #e)
    assert.equal(1, distinct(e, "conn"))
  end)

  it("opens more connections for requests at once to an HTTP/1.1 peer", function()
    run(function()
      for _, b in ipairs({ngx.base, ngx.tls1base}) do
        local hs = {}
        for i = 1, 6 do
          hs[i] = spindle.spawn(http.get, b .. "/slow.txt?par1=" .. i,
                                {tls = {ca = ngx.ca}})
        end
        for i = 1, 6 do assert.equal(404, hs[i]:join().status) end
      end
    end)
    local e = entries("?par1=")
    assert.equal(12, #e)
    assert.is_true(distinct(e, "conn") >= 4, distinct(e, "conn"))
  end)

  it("asks for HTTP/1.1 when version = '1.1'", function()
    run(function()
      local res = assert(http.get(ngx.tlsbase .. "/hello.txt", {version = "1.1",
                                                                tls = {ca = ngx.ca}}))
      assert.equal("1.1", res.version)
    end)
  end)
end)

describe("HTTPS", function()
  it("succeeds with tls.ca naming the CA's file, and negotiates HTTP/2", function()
    run(function()
      local res = assert(http.get(ngx.tlsbase .. "/hello.txt", {tls = {ca = ngx.ca}}))
      assert.equal(200, res.status)
      assert.equal("hello from nginx\n", res.body)
      assert.equal("2", res.version)
      assert.equal(ngx.tlsbase .. "/hello.txt", res.url)
      -- a numeric address is checked against the certificate too (its SAN
      -- has 127.0.0.1)
      res = assert(http.get("https://127.0.0.1:" .. ngx.tlsport .. "/hello.txt",
                            {tls = {ca = ngx.ca}}))
      assert.equal(200, res.status)
    end)
  end)

  it("takes a directory of hashed CA certificates as tls.ca", function()
    local dir = H.tmpname()
    HT.sh("mkdir " .. H.q(dir) .. " && cp " .. H.q(ngx.ca) .. " " .. H.q(dir) ..
          " && openssl rehash " .. H.q(dir))
    run(function()
      local res = assert(http.get(ngx.tlsbase .. "/hello.txt", {tls = {ca = dir}}))
      assert.equal(200, res.status)
    end)
    os.execute("rm -rf " .. H.q(dir))
  end)

  it("fails with ETLS for a certificate nobody vouches for", function()
    run(function()
      local res, msg, code = http.get(ngx.tlsbase .. "/hello.txt")
      assert.is_nil(res)
      assert.equal("ETLS", code)
      assert.matches("certificate", msg)
      -- a CA that did not sign it does not help either
      res, msg, code = http.get(ngx.tlsbase .. "/hello.txt",
                                {tls = {ca = "/etc/ssl/certs/ca-certificates.crt"}})
      assert.is_nil(res)
      assert.equal("ETLS", code)
    end)
  end)

  it("fails with ETLS when the peer does not speak TLS", function()
    run(function()
      local res, msg, code = http.get("https://127.0.0.1:" .. ngx.port .. "/",
                                      {tls = {ca = ngx.ca}})
      assert.is_nil(res)
      assert.equal("ETLS", code, msg)
    end)
  end)

  it("skips the checks with tls.verify = false", function()
    run(function()
      local res = assert(http.get(ngx.tlsbase .. "/hello.txt", {tls = {verify = false}}))
      assert.equal(200, res.status)
    end)
  end)
end)

describe("1,000 requests at once", function()
  -- the sanitizers make everything several times slower
  local N = H.ENV == "plain" and 1000 or 300

  it("all complete, in bounded time", function()
    local t0 = os.time()
    run(function()
      local hs = {}
      for i = 1, N do
        hs[i] = spindle.spawn(http.get, ngx.base .. "/a.json?many=" .. i, {timeout = 60})
      end
      for i = 1, N do
        local res, msg, code = hs[i]:join()
        assert(res, msg, code)
        assert.equal(200, res.status)
        assert.equal('{"a": 1}', res.body)
      end
      -- the pool keeps a bounded number of easy handles
      assert.is_true(HT.stats().easy <= 64, HT.stats().easy)
    end)
    assert.is_true(os.time() - t0 < 90)
    assert.equal(N, #entries("?many="))
  end)
end)
