#!/usr/bin/env python3
"""spec/helpers/http_server.py -- a threaded HTTP/1.1 server on loopback for
the spindle.socket specs (LuaSocket's socket.http running on spindle).

    python3 spec/helpers/http_server.py [DIR]

Binds 127.0.0.1 on a free port and prints "PORT PID" on the first line of
stdout, then serves until killed.  Files are served from DIR (default: the
current directory).  Extra paths:

  GET  /chunked?n=K&size=S   K chunks of S bytes (transfer-encoding: chunked)
  GET  /redirect?to=URL      302 to URL
  GET  /hops?n=N             302 to /hops?n=N-1 ... until n=0, then "arrived"
  GET  /status?code=C        status C with a short body
  GET  /sleep?s=T            waits T seconds, then answers "slept"
  GET  /barrier?n=N&key=K    answers once N requests with the same key are
                             in at the same time ("together"); 500 after 10 s
  GET  /close                body without a length, ended by closing
  POST /echo                 the request body back (content-length or
                             chunked request); x-chunked: yes|no, x-length
"""
import http.server
import os
import socketserver
import sys
import threading
import time
import urllib.parse

barriers = {}
barriers_lock = threading.Lock()


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, body, headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if u.path == "/chunked":
            n, size = int(q.get("n", 3)), int(q.get("size", 10))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(n):
                data = (chr(ord("a") + i % 26) * size).encode()
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\nX-Trailer: done\r\n\r\n")
        elif u.path == "/redirect":
            self.reply(302, "moved", [("Location", q["to"])])
        elif u.path == "/hops":
            n = int(q.get("n", 0))
            if n > 0:
                self.reply(302, "hop", [("Location", "/hops?n=%d" % (n - 1))])
            else:
                self.reply(200, "arrived")
        elif u.path == "/status":
            self.reply(int(q["code"]), "status " + q["code"])
        elif u.path == "/sleep":
            time.sleep(float(q.get("s", 1)))
            self.reply(200, "slept")
        elif u.path == "/barrier":
            n, key = int(q["n"]), q.get("key", "")
            with barriers_lock:
                b = barriers.setdefault(key, threading.Barrier(n))
            try:
                b.wait(timeout=10)
                self.reply(200, "together")
            except threading.BrokenBarrierError:
                self.reply(500, "barrier timeout")
        elif u.path == "/close":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the end")
            self.close_connection = True
        else:
            super().do_GET()

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts), True
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", 0))
        return self.rfile.read(n), False

    def do_POST(self):
        body, chunked = self.read_body()
        self.reply(200, body, [("X-Chunked", "yes" if chunked else "no"),
                               ("X-Length", str(len(body))),
                               ("X-Method", self.command)])

    do_PUT = do_POST


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients connect at once

    def handle_error(self, request, client_address):
        pass  # clients that give up (timeouts) are part of the specs


def main():
    directory = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    handler = lambda *a, **k: Handler(*a, directory=directory, **k)
    srv = Server(("127.0.0.1", 0), handler)
    print(srv.server_address[1], os.getpid(), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
