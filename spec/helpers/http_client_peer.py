#!/usr/bin/env python3
"""A threaded HTTP/1.1 test server for spec/27-http-client*_spec.lua.

Binds 127.0.0.1 port 0 and prints "<port> <pid>" on the first line of its
standard output; runs until killed.  Endpoints (query strings as shown):

  /status/<code>          that status, body "status <code>"
  /headers                repeated headers (X-Rep twice, Set-Cookie twice),
                          mixed-case names, an obs-folded header
  /echo                   "<method> <path>\\n", the request headers as
                          "<name>: <value>\\n", "\\n", then the request body
                          (Content-Length or chunked)
  /echo-len               the body's length and framing only
                          ("<n> chunked|length|none")
  /chunked?n=N&size=S     N chunks of S bytes ("abc..."), chunked encoding
  /big?size=N             N bytes of a repeating pattern, Content-Length
  /bigchunked?size=N      the same, chunked, no length
  /lines?n=N              "line 1\\n" .. "line N\\n"
  /trickle?n=N&delay=D    N bytes "x", one every D seconds (Content-Length)
  /slow?delay=D           waits D seconds, then "slow"
  /redirect/<n>           302 to /redirect/<n-1>; /redirect/0 is 200 "done"
  /redirect-to?code=C&to=URL   C (default 302) to URL
  /conn                   "<client port>": which connection served it
  /close-mid?size=N       promises N bytes, sends N/2, closes
  /nothing                closes without answering
  /http10                 an HTTP/1.0 response
  /empty                  204, no body
  any absolute-form target (a request through a proxy):
                          "proxied <target>"
"""
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PATTERN = bytes(range(256)) * 256  # 64 KiB


def pattern(n):
    out = []
    while n > 0:
        k = min(n, len(PATTERN))
        out.append(PATTERN[:k])
        n -= k
    return b"".join(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "spec-http/1"

    def log_message(self, *args):  # quiet
        pass

    # -- helpers ----------------------------------------------------------
    def q(self, name, default):
        v = parse_qs(urlsplit(self.path).query).get(name)
        return v[0] if v else default

    def send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        if code >= 200 and code not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            parts = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts), "chunked"
        n = self.headers.get("Content-Length")
        if n is not None:
            return self.rfile.read(int(n)), "length"
        return b"", "none"

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    # -- dispatch ---------------------------------------------------------
    def handle_any(self):
        path = urlsplit(self.path).path
        if self.path.startswith("http://"):
            return self.send(200, b"proxied " + self.path.encode())
        if path.startswith("/status/"):
            code = int(path.split("/")[2])
            return self.send(code, b"status %d" % code)
        if path == "/headers":
            self.send_response(200)
            self.send_header("X-Rep", "a")
            self.send_header("Content-Type", "text/plain")
            self.send_header("X-Rep", "b")
            self.send_header("Set-Cookie", "a=1")
            self.send_header("Set-Cookie", "b=2")
            self.send_header("X-Mixed-CASE", "Yes")
            self.send_header("Content-Length", "2")
            self._headers_buffer.append(b"X-Folded: first\r\n  second\r\n")
            self.end_headers()
            return self.wfile.write(b"ok")
        if path == "/echo":
            body, _ = self.read_body()
            head = "%s %s\n" % (self.command, self.path)
            for k, v in self.headers.items():
                head += "%s: %s\n" % (k, v)
            return self.send(200, head.encode() + b"\n" + body)
        if path == "/echo-len":
            body, how = self.read_body()
            return self.send(200, b"%d %s" % (len(body), how.encode()))
        if path == "/chunked":
            n, size = int(self.q("n", "3")), int(self.q("size", "5"))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(n):
                self.chunk(bytes([97 + i % 26]) * size)
            return self.wfile.write(b"0\r\n\r\n")
        if path in ("/big", "/bigchunked"):
            size = int(self.q("size", "1000"))
            self.send_response(200)
            if path == "/big":
                self.send_header("Content-Length", str(size))
            else:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            left = size
            while left > 0:
                k = min(left, len(PATTERN))
                if path == "/big":
                    self.wfile.write(PATTERN[:k])
                else:
                    self.chunk(PATTERN[:k])
                left -= k
            if path == "/bigchunked":
                self.wfile.write(b"0\r\n\r\n")
            return
        if path == "/lines":
            n = int(self.q("n", "3"))
            body = b"".join(b"line %d\n" % i for i in range(1, n + 1))
            return self.send(200, body)
        if path == "/trickle":
            n, delay = int(self.q("n", "5")), float(self.q("delay", "0.1"))
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            self.wfile.flush()
            for _ in range(n):
                time.sleep(delay)
                self.wfile.write(b"x")
                self.wfile.flush()
            return
        if path == "/slow":
            time.sleep(float(self.q("delay", "1")))
            return self.send(200, b"slow")
        if path.startswith("/redirect/"):
            n = int(path.split("/")[2])
            if n <= 0:
                return self.send(200, b"done")
            return self.send(302, b"moved",
                             [("Location", "/redirect/%d" % (n - 1))])
        if path == "/redirect-to":
            code = int(self.q("code", "302"))
            if self.command in ("POST", "PUT"):
                self.read_body()
            return self.send(code, b"", [("Location", self.q("to", "/"))])
        if path == "/conn":
            return self.send(200, b"%d" % self.client_address[1])
        if path == "/close-mid":
            size = int(self.q("size", "1000"))
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(pattern(size // 2))
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if path == "/nothing":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if path == "/http10":
            self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain"
                             b"\r\n\r\nold")
            self.close_connection = True
            return
        if path == "/empty":
            return self.send(204)
        return self.send(404, b"not found")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any
    do_OPTIONS = handle_any

    def do_HEAD(self):
        self.handle_any()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        pass  # clients that go away early are part of the tests


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    sys.stdout.write("%d %d\n" % (srv.server_address[1], __import__("os").getpid()))
    sys.stdout.flush()
    try:
        srv.serve_forever()  # until killed
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
