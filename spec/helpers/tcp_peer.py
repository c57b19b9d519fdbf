#!/usr/bin/env python3
"""spec/helpers/tcp_peer.py -- a scripted TCP peer on loopback for the
spindle.socket specs, so the same scenario can be run against LuaSocket and
against spindle.socket and the results compared.

    python3 spec/helpers/tcp_peer.py

Prints "PORT PID", then serves connections in threads.  Each connection
starts with one command line from the client (HEX is hex-encoded bytes,
"-" for none):

  send HEX          sends the bytes, reads until end of file, closes
  close HEX         sends the bytes and closes at once
  reset HEX         sends the bytes and closes with a reset (SO_LINGER 0)
  hold SECS HEX     sends the bytes, stays silent SECS seconds, closes
  echo              echoes everything until end of file
  count             reads until end of file, answers the byte count, closes
"""
import os
import socket
import socketserver
import struct
import time


def unhex(s):
    return b"" if s == "-" else bytes.fromhex(s)


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline().decode().split()
        if not line:
            return
        cmd, args = line[0], line[1:]
        sock = self.connection
        if cmd == "send":
            sock.sendall(unhex(args[0]))
            while self.rfile.read1(65536):
                pass
        elif cmd == "close":
            sock.sendall(unhex(args[0]))
        elif cmd == "reset":
            sock.sendall(unhex(args[0]))
            time.sleep(0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
        elif cmd == "hold":
            sock.sendall(unhex(args[1]))
            time.sleep(float(args[0]))
        elif cmd == "echo":
            while True:
                data = self.rfile.read1(65536)
                if not data:
                    break
                sock.sendall(data)
        elif cmd == "count":
            n = 0
            while True:
                data = self.rfile.read1(65536)
                if not data:
                    break
                n += len(data)
            sock.sendall(str(n).encode())


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients connect at once

    def handle_error(self, request, client_address):
        pass  # a client that resets the connection is part of the specs


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    print(srv.server_address[1], os.getpid(), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
