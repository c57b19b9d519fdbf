-- bench/http/client/run.lua -- the HTTP client benchmark (issue 11):
-- 20,000 keep-alive GETs at concurrency 50 against a local nginx serving
-- a static file, by
--
--   spindle   spindle.http (spindle_client.lua)
--   lua-http  lua-http's client on cqueues (luahttp_client.lua; Debian
--             lua-http, run under lua5.4 with the 5.3 module path)
--   c         a C program driving libcurl's multi interface from libuv the
--             way spindle does (curl_multi.c): the limit of this design
--
--   lua5.4 bench/http/client/run.lua [--rounds R] [--n N] [--conc C]
--                                    [--no-pin] [--quick]
--
-- Rounds are interleaved (round 1 of every client, then round 2 ...), each
-- client a fresh process; the table shows medians.  With pinning (the
-- default) nginx's one worker runs on CPU 0 and the clients on CPU 1.
-- Targets: spindle's req/s >= 3x lua-http's; spindle's CPU per request
-- <= 1.3x the C program's.  Exit status 1 only if a client failed.

local ROUNDS, N, CONC, PIN = 5, 20000, 50, true
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--rounds" then ROUNDS = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--n" then N = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--conc" then CONC = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--no-pin" then PIN = false
  elseif a == "--quick" then ROUNDS, N = 3, 2000
  else error("unknown argument " .. a) end
  i = i + 1
end

-- the repository root (this file is bench/http/client/run.lua)
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local root = here .. "/../../.."

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sh(cmd)
  local ok = os.execute(cmd)
  if not ok then error("failed: " .. cmd) end
end
local function read(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("a")
  p:close()
  return s
end

local tmp = read("mktemp -d /tmp/spindle-httpbench.XXXXXX"):gsub("%s+$", "")
local function cleanup() os.execute("rm -rf " .. q(tmp)) end

-- the module under test, copied (a rebuild during the run cannot mix builds)
sh("cp " .. q(root .. "/build/spindle.so") .. " " .. q(tmp .. "/spindle.so"))
sh("cc -O2 -o " .. q(tmp .. "/curl_multi") .. " " .. q(here .. "/curl_multi.c") ..
   " $(pkg-config --cflags --libs libcurl libuv)")

-- nginx: own prefix and config, one worker, a small static file
local function free_port()
  local p = read("python3 -c 'import socket; s = socket.socket(); " ..
                 "s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'")
  return tonumber(p)
end
local port = free_port()
sh("mkdir -p " .. q(tmp .. "/www") .. " && chmod 755 " .. q(tmp) .. " " .. q(tmp .. "/www"))
local f = assert(io.open(tmp .. "/www/hello.txt", "w"))
f:write("hello, world\n")
f:close()
local root_user = read("id -u"):match("^0") and "user root;\n" or ""
f = assert(io.open(tmp .. "/nginx.conf", "w"))
f:write(([[
%sworker_processes 1;
%s
error_log stderr crit;
pid %s/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  default_type text/plain;
  server { listen 127.0.0.1:%d; root %s/www; }
}
]]):format(root_user, PIN and "worker_cpu_affinity 01;" or "", tmp, tmp, tmp, tmp,
           tmp, tmp, port, tmp))
f:close()
local nginx = assert(io.popen("exec nginx -p " .. q(tmp) .. " -c " .. q(tmp .. "/nginx.conf") ..
                              " -e stderr -g 'daemon off;'"))
local url = ("http://127.0.0.1:%d/hello.txt"):format(port)
for _ = 1, 100 do
  if read("curl -s -o /dev/null -w '%{http_code}' " .. url) == "200" then break end
  os.execute("sleep 0.05")
end
local function stop_nginx()
  local pid = read("cat " .. q(tmp .. "/nginx.pid") .. " 2>/dev/null"):match("%d+")
  if pid then os.execute("kill " .. pid) end
  nginx:close()
end

local LUAHTTP_PATH = table.concat({
  "/usr/share/lua/5.4/?.lua", "/usr/share/lua/5.4/?/init.lua",
  "/usr/share/lua/5.3/?.lua", "/usr/share/lua/5.3/?/init.lua",
  "/usr/share/lua/5.2/?.lua", "/usr/share/lua/5.2/?/init.lua",
  "/usr/share/lua/5.1/?.lua", "/usr/share/lua/5.1/?/init.lua"}, ";")
local LUAHTTP_CPATH = "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so"
local pin = PIN and "taskset -c 1 " or ""
local clients = {
  {name = "spindle", cmd = ("cd %s && LUA_CPATH=%s LUA_PATH=%s %slua5.4 %s"):format(
    q(root), q(tmp .. "/?.so"), q("./lua/?.lua;./lua/?/init.lua"), pin,
    q(here .. "/spindle_client.lua"))},
  {name = "lua-http", cmd = ("LUA_PATH=%s LUA_CPATH=%s %slua5.4 %s"):format(
    q(LUAHTTP_PATH), q(LUAHTTP_CPATH), pin, q(here .. "/luahttp_client.lua"))},
  {name = "c", cmd = pin .. q(tmp .. "/curl_multi")},
}

local results, failed = {}, false
for _, c in ipairs(clients) do results[c.name] = {} end
local function run_one(c)
  local out = read(("%s %s %d %d 2>&1"):format(c.cmd, q(url), N, CONC))
  local n, wall, cpu = out:match("RESULT (%d+) ([%d.]+) ([%d.]+)")
  if not n or tonumber(n) ~= N then
    io.stderr:write(c.name .. " failed:\n" .. out .. "\n")
    failed = true
    return
  end
  table.insert(results[c.name], {rps = N / tonumber(wall), cpu = tonumber(cpu) / N * 1e6})
end

local ok, err = pcall(function()
  for r = 1, ROUNDS do
    for _, c in ipairs(clients) do run_one(c) end
    io.stderr:write(("round %d/%d done\n"):format(r, ROUNDS))
  end
end)
stop_nginx()
cleanup()
if not ok then error(err, 0) end

local function median(list, field)
  local t = {}
  for _, x in ipairs(list) do t[#t + 1] = x[field] end
  table.sort(t)
  if #t == 0 then return 0 / 0 end
  if #t % 2 == 1 then return t[(#t + 1) // 2] end
  return (t[#t // 2] + t[#t // 2 + 1]) / 2
end
local function spread(list, field) -- half the range, % of the median
  local lo, hi = math.huge, -math.huge
  for _, x in ipairs(list) do lo = math.min(lo, x[field]); hi = math.max(hi, x[field]) end
  return (hi - lo) / 2 / median(list, field) * 100
end

local med = {}
for _, c in ipairs(clients) do
  med[c.name] = {rps = median(results[c.name], "rps"), cpu = median(results[c.name], "cpu")}
end
print(("## HTTP client: %d keep-alive GETs, concurrency %d, nginx static (%d rounds, medians%s)")
      :format(N, CONC, ROUNDS, PIN and "; nginx on CPU 0, clients on CPU 1" or ""))
print()
print("| client | req/s | ± | CPU µs/req | ± | req/s vs lua-http | CPU vs c |")
print("|---|---|---|---|---|---|---|")
for _, c in ipairs(clients) do
  local m, l = med[c.name], results[c.name]
  print(("| %s | %.0f | %.0f%% | %.1f | %.0f%% | %.2fx | %.2fx |"):format(
    c.name, m.rps, spread(l, "rps"), m.cpu, spread(l, "cpu"),
    m.rps / med["lua-http"].rps, m.cpu / med.c.cpu))
end
print()
local r1 = med.spindle.rps / med["lua-http"].rps
local r2 = med.spindle.cpu / med.c.cpu
print(("- req/s, spindle vs lua-http: %.2fx (target >= 3x): %s"):format(r1, r1 >= 3 and "PASS" or "MISS"))
print(("- CPU per request, spindle vs C: %.2fx (target <= 1.3x): %s"):format(r2, r2 <= 1.3 and "PASS" or "MISS"))
os.exit(failed and 1 or 0)
