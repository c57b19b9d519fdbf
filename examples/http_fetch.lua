-- http_fetch.lua -- fetch many URLs at once with spindle.http, at most
-- LIMIT at a time (a semaphore), each under a deadline.
--
--   ./build/spindle examples/http_fetch.lua [limit] [url ...]
--
-- Without URLs it is self-contained (and that is how CI runs it): it
-- starts examples/http_peer.py (Python's http.server) on the loopback
-- interface, fetches 40 of its pages -- each takes 50 ms to answer --
-- plus a page that does not exist, one slower than the deadline and a
-- port nobody listens on, then asks the server how many requests it saw
-- at once.  One line per URL, then a summary; exits 0 when every local
-- page came back as expected.

local spindle = require "spindle"
local http = spindle.http

local LIMIT = tonumber(arg[1]) or 8
local DEADLINE = 2 -- seconds per URL

local urls, peer, base = {}, nil, nil
for i = 2, #arg do urls[#urls + 1] = arg[i] end
if #urls == 0 then
  peer = spindle.process.spawn("python3", {"examples/http_peer.py"},
                               {stdout = "pipe"})
  base = "http://127.0.0.1:" .. assert(peer.stdout:read_line()):match("%d+")
  for i = 1, 40 do urls[#urls + 1] = ("%s/page/%d?delay=0.05"):format(base, i) end
  urls[#urls + 1] = base .. "/missing"
  urls[#urls + 1] = base .. "/slow?delay=10"
  urls[#urls + 1] = "http://127.0.0.1:1/"
end

-- fetch(url) -> status, bytes | nil, msg, code; at most LIMIT at once
local sem = spindle.semaphore(LIMIT)
local function fetch(url)
  local permit <close> = sem:acquire()
  local res, msg, code = http.get(url, {timeout = DEADLINE, follow = 5})
  if not res then return nil, msg, code end
  return res.status, #res.body
end

local t0 = spindle.now()
local handles = {}
for i, url in ipairs(urls) do handles[i] = spindle.spawn(fetch, url) end

local ok, failed, bytes = 0, 0, 0
for i, h in ipairs(handles) do
  local status, n, code = h:join()
  if status == 200 then
    ok, bytes = ok + 1, bytes + n
    print(("%-45s %d  %d bytes"):format(urls[i], status, n))
  elseif status then
    failed = failed + 1
    print(("%-45s %d"):format(urls[i], status))
  else
    failed = failed + 1
    print(("%-45s failed: %s (%s)"):format(urls[i], n, code))
  end
end
print(("%d ok, %d failed, %d bytes, %.2f s, at most %d at a time"):format(
  ok, failed, bytes, spindle.now() - t0, LIMIT))

if peer then
  -- the server counted the pages in progress at once
  local stats = assert(http.get(base .. "/stats")).body
  local peak = tonumber(stats:match('"peak": (%d+)'))
  print(("the server saw at most %d pages at once"):format(peak))
  peer:kill()
  peer:wait()
  assert(ok == 40 and failed == 3, "unexpected results")
  assert(peak <= LIMIT, "more requests at once than the limit")
end
