#!/usr/bin/env python3
"""A small HTTP/1.1 server for the HTTP client examples (docs/http.md,
examples/http_fetch.lua): Python's threaded http.server, on 127.0.0.1 and
a port of the system's choice.  It prints "port <n>" and serves until it
is killed.

  GET    /items          the items, as a JSON array
  POST   /items          a JSON object in, 201 and the stored item out
  GET    /items/<id>     one item, or 404 {"error": "not found"}
  DELETE /items/<id>     204, or 404
  POST   /upload         counts the body (Content-Length or chunked):
                         {"bytes": n}
  GET    /lines?n=N      N lines "line i"
  GET    /page/<n>?delay=D   a small page after D seconds; counts how
                         many requests are in progress at once
  GET    /stats          {"peak": most pages in progress at once}
  GET    /slow?delay=D   answers after D seconds
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

items, next_id = {}, [1]
lock = threading.Lock()
active, peak = [0], [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, obj=None, ctype="application/json"):
        body = b"" if obj is None else (
            obj if isinstance(obj, bytes) else json.dumps(obj).encode())
        self.send_response(code)
        if body:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = []
            while True:
                size = int(self.rfile.readline().split(b";")[0] or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(out)
                out.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def q(self, name, default):
        return parse_qs(urlsplit(self.path).query).get(name, [default])[0]

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/items":
            with lock:
                return self.reply(200, list(items.values()))
        if path.startswith("/items/"):
            with lock:
                item = items.get(path[7:])
            if item is None:
                return self.reply(404, {"error": "not found"})
            return self.reply(200, item)
        if path == "/lines":
            n = int(self.q("n", "3"))
            return self.reply(200, "".join("line %d\n" % i
                                           for i in range(1, n + 1)).encode(),
                              "text/plain")
        if path.startswith("/page/"):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(float(self.q("delay", "0")))
            with lock:
                active[0] -= 1
            page = "<p>page %s</p>\n" % path[6:]
            return self.reply(200, page.encode(), "text/html")
        if path == "/stats":
            return self.reply(200, {"peak": peak[0]})
        if path == "/slow":
            time.sleep(float(self.q("delay", "1")))
            return self.reply(200, b"slow", "text/plain")
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        path = urlsplit(self.path).path
        data = self.body()
        if path == "/items":
            try:
                item = json.loads(data)
            except ValueError:
                return self.reply(400, {"error": "bad json"})
            with lock:
                item["id"] = next_id[0]
                next_id[0] += 1
                items[str(item["id"])] = item
            return self.reply(201, item)
        if path == "/upload":
            return self.reply(200, {"bytes": len(data)})
        self.reply(404, {"error": "not found"})

    def do_DELETE(self):
        path = urlsplit(self.path).path
        with lock:
            found = items.pop(path[7:], None) if path.startswith("/items/") \
                else None
        self.reply(204 if found else 404, None if found else
                   {"error": "not found"})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


srv = Server(("127.0.0.1", 0), Handler)
sys.stdout.write("port %d\n" % srv.server_address[1])
sys.stdout.flush()
srv.serve_forever()
