#!/usr/bin/env bash
# bench/http/server/run.sh -- "hello world" HTTP servers side by side, in one
# run: nginx static (the C ceiling), OpenResty-style nginx + ngx_http_lua
# (LuaJIT), lua-http on cqueues, a luv callback server, the least server on
# spindle's streams, and spindle's http.serve; and HTTPS: http.serve with a
# spindle.tls context beside OpenResty with ssl_certificate.
#
#   bench/http/server/run.sh [--quick] [--rounds N] [--seconds S]
#
# Each server runs pinned to CPU 0 and wrk (-t1 --latency, keep-alive) to
# CPU 1; for every round (interleaved: round 1 of everything, then round 2
# ...) and every concurrency (10, 100, 1000; HTTPS at 100) a wrk run of S
# seconds.  Per run: requests/s, p99 latency, and the server's CPU time per
# request (utime+stime from /proc/<pid>/stat over the run).  nginx runs as
# a master and one worker: its numbers are the worker's.  Medians over
# rounds.  Then, per server, its peak RSS at 1,000 connections (VmHWM,
# reset through /proc/<pid>/clear_refs before a wrk -c1000 run of S
# seconds) and ab -k -c 100 once.  Before the rounds, on fresh servers:
# resident memory per idle keep-alive connection (VmRSS while a python3
# client holds 1,000 connections that have each had one answer, less
# VmRSS before).  Prints markdown tables, ratios against
# OpenResty, and PASS/MISS for the targets of issue 11.  HTTPS uses one
# self-signed EC P-256 certificate, made in the temporary folder, for both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
ROOT=$(pwd)
ROUNDS=5 SECS=5
CONCS="10 100 1000"
while (($#)); do
  case "$1" in
    --quick) ROUNDS=1 SECS=2 ;;
    --rounds) ROUNDS=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    *) echo "usage: $0 [--quick] [--rounds N] [--seconds S]" >&2; exit 2 ;;
  esac
  shift
done
ulimit -n 16384 2>/dev/null || true
for cmd in wrk ab nginx taskset lua5.4 curl openssl python3; do
  command -v "$cmd" >/dev/null || { echo "missing: $cmd" >&2; exit 1; }
done
[ -x build/spindle ] || { echo "build first (make build)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/spindle-httpbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; sleep 0.3
            for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

SERVERS="nginx-static openresty lua-http luv spindle-min spindle-serve"
TLS_SERVERS="openresty-tls spindle-serve-tls"
TLS_CONC=100
declare -A PORT PID URL
p=18600
for s in $SERVERS $TLS_SERVERS; do PORT[$s]=$p; p=$((p + 1)); done

start() { # name, command...
  local name=$1; shift
  (cd "$ROOT" && exec taskset -c 0 "$@" >"$TMP/$name.log" 2>&1) &
  PID[$name]=$!
  PIDS+=("${PID[$name]}")
}
# One certificate for both HTTPS servers: EC P-256, self-signed.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 2 -subj /CN=localhost \
  >/dev/null 2>&1 || { echo "openssl could not make a certificate" >&2; exit 1; }
for mode in static lua tls; do
  case $mode in
    static) port=${PORT[nginx-static]} listen= ssl= ;;
    lua) port=${PORT[openresty]} listen= ssl= ;;
    tls) port=${PORT[openresty-tls]} listen=ssl
         # TLS 1.3 as spindle offers it (nginx 1.22's default list stops at 1.2)
         ssl="ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem;" ;;
  esac
  mkdir -p "$TMP/ngx-$mode"
  sed -e "s|@PREFIX@|$TMP/ngx-$mode|; s|@PORT@|$port|; s|@LISTEN@|$listen|; s|@SSL@|$ssl|" \
    bench/http/server/nginx.conf.in >"$TMP/ngx-$mode/nginx.conf"
done
start nginx-static nginx -p "$TMP/ngx-static" -c "$TMP/ngx-static/nginx.conf"
start openresty nginx -p "$TMP/ngx-lua" -c "$TMP/ngx-lua/nginx.conf"
start openresty-tls nginx -p "$TMP/ngx-tls" -c "$TMP/ngx-tls/nginx.conf"
start lua-http lua5.4 bench/http/server/luahttp_server.lua "${PORT[lua-http]}"
start luv lua5.4 bench/http/server/luv_server.lua "${PORT[luv]}"
start spindle-min ./build/spindle bench/http/server/min_server.lua "${PORT[spindle-min]}"
start spindle-serve ./build/spindle bench/http/server/serve_server.lua "${PORT[spindle-serve]}"
start spindle-serve-tls ./build/spindle bench/http/server/serve_server.lua \
  "${PORT[spindle-serve-tls]}" tls "$TMP"
URL[nginx-static]="http://127.0.0.1:${PORT[nginx-static]}/static"
for s in openresty lua-http luv spindle-min spindle-serve; do URL[$s]="http://127.0.0.1:${PORT[$s]}/"; done
for s in $TLS_SERVERS; do URL[$s]="https://127.0.0.1:${PORT[$s]}/"; done
sleep 1
# nginx: measure its one worker, the master's child
for s in nginx-static openresty openresty-tls; do
  w=$(pgrep -P "${PID[$s]}" | head -n1 || true)
  [ -n "$w" ] || { echo "$s: no nginx worker" >&2; cat "$TMP/$s.log" >&2; exit 1; }
  PID[$s]=$w
done
for s in $SERVERS $TLS_SERVERS; do
  out=$(curl -sk --max-time 2 "${URL[$s]}" || true)
  [ "$out" = "hello world" ] || { echo "$s did not answer: '$out'" >&2; cat "$TMP/$s.log" >&2; exit 1; }
done
# what each HTTPS server negotiates with an OpenSSL client (wrk's library)
declare -A TLSINFO
for s in $TLS_SERVERS; do
  TLSINFO[$s]=$(openssl s_client -connect "127.0.0.1:${PORT[$s]}" </dev/null 2>/dev/null |
    awk '/^New, / {sub(/^New, /, ""); print; exit}')
done

# Resident memory per idle keep-alive connection, fresh servers: VmRSS
# while 1,000 connections that have each had one answer are held, less
# VmRSS before, over 1,000.
vmrss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
declare -A IDLE
for s in $SERVERS; do
  pid=${PID[$s]}
  r0=$(vmrss "$pid")
  path=${URL[$s]#http://127.0.0.1:*/}
  python3 - "${PORT[$s]}" "/$path" 1000 "$TMP/held.$s" <<'PY' &
import socket, sys, time, os
port, path, n, flag = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode()
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
for s in socks: s.sendall(req)
for s in socks:
    s.settimeout(10)
    got = b""  # a whole answer: hello world, or its last chunk
    while not (got.endswith(b"hello world") or got.endswith(b"\r\n0\r\n\r\n")):
        d = s.recv(4096)
        if not d: break
        got += d
open(flag, "w").close()
while os.path.exists(flag): time.sleep(0.05)
PY
  hp=$!
  for _ in $(seq 200); do [ -e "$TMP/held.$s" ] && break; sleep 0.05; done
  sleep 0.3
  r1=$(vmrss "$pid")
  rm -f "$TMP/held.$s"; wait "$hp" || true
  IDLE[$s]=$(awk -v a="$r0" -v b="$r1" 'BEGIN { printf "%.0f", (b - a) * 1024 / 1000 }')
  echo "  $s: ${IDLE[$s]} B resident per idle keep-alive connection" >&2
done
sleep 1 # the held connections close

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
echo "# HTTP server benchmark -- $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# $(nproc) CPUs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg); rounds $ROUNDS x ${SECS}s"
for s in $TLS_SERVERS; do echo "# $s: ${TLSINFO[$s]:-?}"; done
RES="$TMP/results"
: >"$RES"
for r in $(seq "$ROUNDS"); do
  for c in $CONCS; do
    for s in $SERVERS $TLS_SERVERS; do
      case $s in *-tls) [ "$c" = "$TLS_CONC" ] || continue ;; esac
      pid=${PID[$s]}
      t0=$(cpu_ticks "$pid")
      out=$(taskset -c 1 wrk -t1 -c"$c" -d"${SECS}s" --latency "${URL[$s]}" 2>&1 || true)
      t1=$(cpu_ticks "$pid")
      total=$(echo "$out" | awk '/requests in/ {print $1}')
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
      errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
      [ -n "$total" ] && [ "$total" -gt 0 ] || total=1
      us=$(awk -v d=$((t1 - t0)) -v n="$total" -v t="$TCK" 'BEGIN { printf "%.2f", d / t * 1e6 / n }')
      echo "$s $c $r ${rps:-0} $us ${p99:-?} $errs" >>"$RES"
      echo "  round $r c=$c $s: ${rps:-0} req/s, $us us CPU/req, p99 ${p99:-?} $errs" >&2
    done
  done
done
# Peak RSS at 1,000 connections: the high-water mark is reset to the
# current RSS, then wrk holds 1,000 keep-alive connections for S seconds.
declare -A RSS AB
for s in $SERVERS; do
  pid=${PID[$s]}
  echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || echo "  $s: cannot reset VmHWM: lifetime peak" >&2
  taskset -c 1 wrk -t1 -c1000 -d"${SECS}s" "${URL[$s]}" >/dev/null 2>&1 || true
  RSS[$s]=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  echo "  peak RSS at 1000 connections, $s: ${RSS[$s]} KiB" >&2
  case $s in # ab -k speaks HTTP/1.0: it waits for a close after an answer
    luv|spindle-min) AB[$s]="n/a" ; continue ;; # without Connection: keep-alive
  esac
  AB[$s]=$(taskset -c 1 timeout 60 ab -q -k -c 100 -n 20000 "${URL[$s]}" 2>/dev/null | awk '/Requests per second/ {print $4}' || true)
  AB[$s]=${AB[$s]:-n/a}
done
RSSL="" ABL="" IDLEL=""
for s in $SERVERS; do RSSL="$RSSL ${RSS[$s]:-?}"; ABL="$ABL ${AB[$s]}"; IDLEL="$IDLEL ${IDLE[$s]:-?}"; done

lua5.4 - "$RES" "$SERVERS" "$CONCS" "$RSSL" "$ABL" "$TLS_CONC" "$IDLEL" <<'LUA'
local res, servers, concs, rss, ab, tlsc = arg[1], arg[2], arg[3], arg[4], arg[5], tonumber(arg[6])
local idle = arg[7]
local list = {} for s in servers:gmatch("%S+") do list[#list + 1] = s end
local cs = {} for c in concs:gmatch("%S+") do cs[#cs + 1] = tonumber(c) end
local rssv, abv, idlev = {}, {}, {}
do local i = 1 for v in idle:gmatch("%S+") do idlev[list[i]] = tonumber(v) i = i + 1 end end
do local i = 1 for v in rss:gmatch("%S+") do rssv[list[i]] = tonumber(v) i = i + 1 end end
do local i = 1 for v in ab:gmatch("%S+") do abv[list[i]] = tonumber(v) or v i = i + 1 end end
local data = {}
for line in io.lines(res) do
  local s, c, _, rps, us, p99 = line:match("^(%S+) (%d+) (%d+) (%S+) (%S+) (%S+)")
  if s then
    local k = s .. "/" .. c
    data[k] = data[k] or {rps = {}, us = {}, p99 = {}}
    table.insert(data[k].rps, tonumber(rps) or 0)
    table.insert(data[k].us, tonumber(us) or 0)
    table.insert(data[k].p99, p99)
  end
end
local function med(t) table.sort(t) return t[(#t + 1) // 2] end
local m = {}
for k, d in pairs(data) do m[k] = {rps = med(d.rps), us = med(d.us), p99 = d.p99[(#d.p99 + 1) // 2]} end
print("\n| server | conns | req/s | CPU µs/req | p99 | req/s ÷ OpenResty | CPU ÷ OpenResty |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for _, c in ipairs(cs) do
  local o = m["openresty/" .. c]
  for _, s in ipairs(list) do
    local v = m[s .. "/" .. c]
    if v then
      print(("| %s | %d | %.0f | %.2f | %s | %.2f× | %.2f× |"):format(s, c, v.rps, v.us, v.p99,
        v.rps / o.rps, v.us / o.us))
    end
  end
end
print("\n| server | peak RSS at 1,000 connections, KiB | ÷ OpenResty's worker | per idle keep-alive connection, B | ab -k -c 100 req/s |")
print("| --- | ---: | ---: | ---: | ---: |")
local orss = rssv["openresty"]
for _, s in ipairs(list) do
  print(("| %s | %s | %s | %s | %s |"):format(s, rssv[s] or "?",
    (rssv[s] and orss) and ("%.2f×"):format(rssv[s] / orss) or "?", idlev[s] or "?", abv[s] or "?"))
end
print("\n| HTTPS server | conns | req/s | CPU µs/req | p99 | req/s ÷ OpenResty | CPU ÷ OpenResty |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
local ot = m["openresty-tls/" .. tlsc]
for _, s in ipairs({"openresty-tls", "spindle-serve-tls"}) do
  local v = m[s .. "/" .. tlsc]
  if v then
    print(("| %s | %d | %.0f | %.2f | %s | %.2f× | %.2f× |"):format(s, tlsc, v.rps, v.us, v.p99,
      v.rps / ot.rps, v.us / ot.us))
  end
end
print("\n## targets (issue 11)\n")
local function t(label, ok, measured) print(("- %s %s — measured %s"):format(ok and "PASS" or "MISS", label, measured)) end
for _, c in ipairs({100, 1000}) do
  local s, o = m["spindle-serve/" .. c], m["openresty/" .. c]
  t(("http.serve CPU per request ≤ 0.8× OpenResty at %d connections"):format(c), s.us / o.us <= 0.8,
    ("%.2f× (%.2f vs %.2f µs)"):format(s.us / o.us, s.us, o.us))
end
for _, c in ipairs(cs) do
  local s, o = m["spindle-serve/" .. c], m["openresty/" .. c]
  t(("http.serve req/s ≥ 1.0× OpenResty at %d connections"):format(c), s.rps / o.rps >= 1.0,
    ("%.2f× (%.0f vs %.0f)"):format(s.rps / o.rps, s.rps, o.rps))
end
t("http.serve peak RSS at 1,000 connections ≤ OpenResty's worker", (rssv["spindle-serve"] or 1e9) <= (orss or 0),
  ("%.2f× (%s KiB vs %s KiB)"):format((rssv["spindle-serve"] or 0) / (orss or 1), rssv["spindle-serve"] or "?", orss or "?"))
do
  local s = m["spindle-serve-tls/" .. tlsc]
  t(("http.serve HTTPS CPU per request ≤ 1.0× OpenResty with ssl_certificate at %d connections"):format(tlsc),
    s.us / ot.us <= 1.0, ("%.2f× (%.2f vs %.2f µs)"):format(s.us / ot.us, s.us, ot.us))
end
print(("- info: the least spindle server's peak RSS at 1,000 connections %.2f× OpenResty's worker (%s KiB)")
  :format((rssv["spindle-min"] or 0) / (orss or 1), rssv["spindle-min"] or "?"))
LUA
