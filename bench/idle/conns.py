#!/usr/bin/env python3
"""bench/idle/conns.py -- C memory of idle keep-alive connections.

    python3 bench/idle/conns.py [echo|http] [N] [SPINDLE]   (from the root)

Starts bench/echo/spindle_server.lua or bench/idle/http_server.lua under
SPINDLE (default ./build/spindle), opens N loopback connections (default
1000), makes one round trip on each (64 bytes of echo, or a GET), lets
them sit idle, and prints the server's VmRSS growth per connection.  The
Lua heap is included (the tasks and stream objects): compare runs of the
same mode."""
import os, socket, subprocess, sys, time

mode = sys.argv[1] if len(sys.argv) > 1 else "echo"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
exe = sys.argv[3] if len(sys.argv) > 3 else "./build/spindle"
script = {"echo": "bench/echo/spindle_server.lua",
          "http": "bench/idle/http_server.lua"}[mode]
env = dict(os.environ)
lib = os.path.dirname(exe) or "."
env["LUA_CPATH"] = lib + "/?.so;;"
env["LUA_PATH"] = "./lua/?.lua;./lua/?/init.lua;;"
p = subprocess.Popen([exe, script], stdout=subprocess.PIPE, env=env)
port = int(p.stdout.readline().split()[1])

def rss():
    with open("/proc/%d/status" % p.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

req = (b"x" * 64 if mode == "echo" else
       b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")

def trip(c):
    c.sendall(req)
    got = b""
    while True:
        got += c.recv(4096)
        if mode == "echo" and len(got) >= len(req): return
        if mode == "http" and got.endswith(b"ok"): return

warm = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
for c in warm: trip(c)
time.sleep(0.3)
r0 = rss()
conns = []
for i in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    trip(c)
    conns.append(c)
time.sleep(0.5)
r1 = rss()
for c in conns: trip(c)  # the idle ones still work
time.sleep(0.3)
r2 = rss()
print("%s: %d connections, VmRSS +%d KiB, %.0f B per idle connection "
      "(after a second round: %.0f B)" %
      (mode, n, r1 - r0, (r1 - r0) * 1024 / n, (r2 - r0) * 1024 / n))
for c in conns + warm: c.close()
p.kill()
p.wait()
