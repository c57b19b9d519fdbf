-- examples/web_service.lua -- a small key-value web service on http.serve
-- (docs/http.md), exercised by curl and shut down gracefully.
--
--   GET /kv/<key>      200 with the value, or 404
--   PUT /kv/<key>      stores the body (at most 1 KiB: 413 past it)
--   DELETE /kv/<key>   204
--   GET /slow          answers after a while (shows graceful close)
--
-- Run: ./build/spindle examples/web_service.lua
local spindle = require "spindle"
local serve = require("spindle.http_server").serve

local store = {}
local slow_started = spindle.event()

local function handler(req)
  local key = req.path:match("^/kv/([%w_%-]+)$")
  if req.path == "/slow" then
    slow_started:set()
    spindle.sleep(0.2)
    return 200, {["content-type"] = "text/plain"}, "slow but done\n"
  elseif not key then
    return 404, {["content-type"] = "text/plain"}, "no such route\n"
  elseif req.method == "GET" then
    local v = store[key]
    if v == nil then return 404, nil, "" end
    return 200, {["content-type"] = "application/octet-stream"}, v
  elseif req.method == "PUT" then
    store[key] = req:body()
    return 201, nil, ""
  elseif req.method == "DELETE" then
    store[key] = nil
    return 204
  end
  return 405, {allow = "GET, PUT, DELETE"}, ""
end

local srv = assert(serve{port = 0, handler = handler, max_body = 1024})
local _, port = srv:local_addr()
local base = "http://127.0.0.1:" .. port
print("serving on " .. base)

-- curl as the client: -w prints the status after the body
local function call(method, path, body)
  local args = {"-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, base .. path}
  if body then table.insert(args, 1, "--data-binary") table.insert(args, 2, body) end
  local code, out, err = spindle.process.run("curl", args)
  assert(code == 0, err)
  return tonumber(out)
end

assert(call("PUT", "/kv/greeting", "hello") == 201)
assert(call("GET", "/kv/greeting") == 200)
assert(call("GET", "/kv/missing") == 404)
assert(call("PUT", "/kv/big", string.rep("x", 2000)) == 413)
assert(call("PATCH", "/kv/greeting") == 405)
assert(call("DELETE", "/kv/greeting") == 204)
assert(call("GET", "/kv/greeting") == 404)
print("rest calls: ok")

-- ten clients at once, one of them slow; then a graceful close: the slow
-- request still gets its answer
local hs = {}
for i = 1, 10 do
  hs[i] = spindle.spawn(call, "PUT", "/kv/k" .. i, tostring(i))
end
local slow = spindle.spawn(spindle.process.run, "curl", {"-sS", base .. "/slow"})
for i = 1, 10 do assert(hs[i]:join() == 201) end
slow_started:wait() -- the slow request is in progress
srv:close(2)
local code, out = slow:join()
assert(code == 0 and out == "slow but done\n", out)
local n = 0
for _ in pairs(store) do n = n + 1 end
print(("stored %d keys; closed gracefully"):format(n))
