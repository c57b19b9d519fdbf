-- luahttp_client.lua -- URL N CONCURRENCY: N keep-alive GETs with lua-http
-- (Debian lua-http, on cqueues), the way it reuses connections: each of
-- CONCURRENCY coroutines opens one HTTP/1.1 connection
-- (http.client.connect) and sends its share of requests on it, one stream
-- after another.  Prints RESULT <n> <wall seconds> <cpu seconds>.
local cqueues = require "cqueues"
local client = require "http.client"
local new_headers = require "http.headers".new

local url, n, conc = arg[1], tonumber(arg[2]), tonumber(arg[3])
local host, port, path = url:match("^http://([^:/]+):(%d+)(/.*)$")
port = tonumber(port)

local function worker(share)
  local conn = assert(client.connect{host = host, port = port, tls = false,
                                     version = 1.1})
  local done = 0
  for _ = 1, share do
    local stream = assert(conn:new_stream())
    local h = new_headers()
    h:append(":method", "GET")
    h:append(":scheme", "http")
    h:append(":authority", host .. ":" .. port)
    h:append(":path", path)
    assert(stream:write_headers(h, true))
    local rh = assert(stream:get_headers())
    assert(rh:get(":status") == "200")
    assert(stream:get_body_as_string())
    stream:shutdown()
    done = done + 1
  end
  conn:close()
  return done
end

local done = 0
local cq = cqueues.new()
cq:wrap(function() worker(1) end) -- load what loads once
assert(cq:loop())
local t0, c0 = cqueues.monotime(), os.clock()
for i = 1, conc do
  local share = n // conc + (i <= n % conc and 1 or 0)
  cq:wrap(function()
    local k = worker(share) -- (not done + worker(...): done is read first)
    done = done + k
  end)
end
assert(cq:loop())
print(("RESULT %d %.6f %.6f"):format(done, cqueues.monotime() - t0, os.clock() - c0))
