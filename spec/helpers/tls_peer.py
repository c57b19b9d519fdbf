#!/usr/bin/env python3
"""spec/helpers/tls_peer.py -- a TLS peer on Python's ssl module, for the
spindle.tls specs (spec/25-tls-peers_spec.lua).  Loopback only.

  tls_peer.py server CERT KEY [--ca CA] [--alpn a,b] [--abrupt]
      Listens on 127.0.0.1, prints "PORT <n>", then serves one connection:
      prints "HELLO <version> <alpn> <client subject CN or ->", echoes
      every line back upper-cased, and at end of file prints "EOF" and
      closes -- with close_notify, or (--abrupt) just the TCP socket.
  tls_peer.py client PORT CA SERVERNAME [LINE ...] [--cert C --key K]
      Connects, prints "HELLO <version> <cipher>", sends each LINE and
      prints "GOT <reply>" for each reply line, then sends close_notify
      (unwrap) and prints "BYE".  A failure prints "ERROR <reason>".
"""
import os
import socket
import ssl
import sys


def server(argv):
    cert, key = argv[0], argv[1]
    ca = alpn = None
    abrupt = "--abrupt" in argv
    if "--ca" in argv:
        ca = argv[argv.index("--ca") + 1]
    if "--alpn" in argv:
        alpn = argv[argv.index("--alpn") + 1].split(",")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        ctx.set_alpn_protocols(alpn)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    print("PORT", lsock.getsockname()[1], flush=True)
    raw, _ = lsock.accept()
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError) as e:
        print("ERROR", getattr(e, "reason", None) or e, flush=True)
        return
    peer = conn.getpeercert()
    cn = "-"
    if peer:
        for rdn in peer.get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    cn = v.replace(" ", "_")
    print("HELLO", conn.version(), conn.selected_alpn_protocol() or "-", cn,
          flush=True)
    f = conn.makefile("rwb")
    try:
        for line in f:
            f.write(line.upper())
            f.flush()
    except (ssl.SSLError, OSError) as e:
        print("ERROR", getattr(e, "reason", None) or e, flush=True)
        return
    print("EOF", flush=True)
    f.close()
    if abrupt:  # TCP FIN without close_notify, no cleanup after it
        conn.shutdown(socket.SHUT_RDWR)
        os._exit(0)
    else:
        try:
            conn.unwrap().close()
        except (ssl.SSLError, OSError):
            conn.close()


def client(argv):
    port, ca, servername = int(argv[0]), argv[1], argv[2]
    rest = argv[3:]
    cert = key = None
    if "--cert" in rest:
        i = rest.index("--cert")
        cert, key = rest[i + 1], rest[i + 3]
        rest = rest[:i]
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        conn = ctx.wrap_socket(raw, server_hostname=servername)
        print("HELLO", conn.version(), conn.cipher()[0], flush=True)
        f = conn.makefile("rwb")
        for line in rest:
            f.write(line.encode() + b"\n")
            f.flush()
            print("GOT", f.readline().decode().rstrip("\n"), flush=True)
        f.close()
        conn.unwrap().close()
        print("BYE", flush=True)
    except (ssl.SSLError, OSError) as e:
        print("ERROR", getattr(e, "reason", None) or e, flush=True)


if __name__ == "__main__":
    {"server": server, "client": client}[sys.argv[1]](sys.argv[2:])
