#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/http_parse_fuzz.c into
fuzz/corpus/http_parse/: one small file per case, named for it. Valid
requests of every form, chunked bodies, and every request-smuggling and
malformed case of spec/capi/http_parse.c. Run from the repository root;
the files are committed, so this only needs running when cases change."""
import os
import sys

H = b"GET / HTTP/1.1\r\nHost: h\r\n"
P = b"POST / HTTP/1.1\r\nHost: h\r\n"

SEEDS = {
    # valid requests, every form
    "ok-get": b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "ok-wrk": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    "ok-curl": b"GET /index.html?x=1 HTTP/1.1\r\nHost: localhost:8080\r\n"
               b"User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    "ok-browser": b"GET /a/b/c.css?v=3 HTTP/1.1\r\nHost: www.example.org\r\n"
                  b"Connection: keep-alive\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
                  b"Accept: text/css,*/*;q=0.1\r\nAccept-Encoding: gzip, deflate, br\r\n"
                  b"Accept-Language: en-US,en;q=0.9\r\nReferer: https://www.example.org/\r\n"
                  b"Cookie: a=1; b=2\r\n\r\n",
    "ok-absolute": b"GET http://example.com:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
    "ok-absolute-nopath": b"GET https://[::1]:443?x HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
    "ok-connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "ok-options": b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    "ok-http10": b"GET / HTTP/1.0\r\n\r\n",
    "ok-http10-keepalive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "ok-close": H + b"Connection: close\r\n\r\n",
    "ok-upgrade": H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    "ok-expect": b"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                 b"Content-Length: 5\r\n\r\nhello",
    "ok-post-length": P + b"Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
    "ok-post-chunked": P + b"Transfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
    "ok-repeated-length": P + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "ok-leading-crlf": b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "ok-pipelined": H + b"\r\n" + H + b"\r\n",
    "ok-values": H + b"X-A:  a b \t\r\nX-B:\r\nX-C: \xff\xfe\r\n\r\n",
    "ok-tokens": b"M-1!#$%&'*+.^_`|~ /x HTTP/1.1\r\nHost: a.b-c_d~e%41!$&'()*+,;=:65535\r\n\r\n",
    # chunked bodies alone
    "chunk-ok": b"5\r\nhello\r\n0\r\n\r\n",
    "chunk-ext": b"3;a=b ; c = \"q \\\" \"\t;d\r\nxyz\r\n0;last\r\n\r\n",
    "chunk-trailers": b"2\r\nhi\r\n0\r\nX-Sum: 1\r\nX-E:\r\n\r\n",
    "chunk-hex": b"a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0000\r\n\r\n",
    "chunk-max": b"7fffffffffffffff\r\nabc",
    "chunk-negative": b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk-0x": b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-huge": b"ffffffffffffffffff\r\nx\r\n0\r\n\r\n",
    "chunk-17digits": b"00000000000000005\r\nhello\r\n0\r\n\r\n",
    "chunk-nonhex": b"g\r\nx\r\n0\r\n\r\n",
    "chunk-no-crlf": b"5\r\nhelloX\r\n0\r\n\r\n",
    "chunk-bare-lf": b"5\nhello\n0\n\n",
    "chunk-bare-cr": b"5\rhello\r0\r\r",
    "chunk-space": b"5 \r\nhello\r\n0\r\n\r\n",
    "chunk-trailer-fold": b"0\r\nX: a\r\n b\r\n\r\n",
    "chunk-nul-ext": b"5;a\x00\r\nhello\r\n0\r\n\r\n",
    # request smuggling: framing
    "cl-and-te": P + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": P + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "cl-differ": P + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl-list": P + b"Content-Length: 5, 5\r\n\r\nhello",
    "cl-plus": P + b"Content-Length: +5\r\n\r\nhello",
    "cl-minus": P + b"Content-Length: -5\r\n\r\nhello",
    "cl-hex": P + b"Content-Length: 0x5\r\n\r\nhello",
    "cl-overflow": P + b"Content-Length: 18446744073709551617\r\n\r\n",
    "cl-empty": P + b"Content-Length:\r\n\r\n",
    "te-not-last": P + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
    "te-twice": P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te-gzip": P + b"Transfer-Encoding: gzip\r\n\r\n",
    "te-gzip-chunked": P + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te-identity": P + b"Transfer-Encoding: identity\r\n\r\n",
    "te-quoted": P + b"Transfer-Encoding: \"chunked\"\r\n\r\n",
    "te-params": P + b"Transfer-Encoding: chunked;x=1\r\n\r\n",
    "te-http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-space-name": P + b"Transfer-Encoding : chunked\r\n\r\n",
    "te-tab-name": P + b"Transfer-Encoding\t: chunked\r\n\r\n",
    "te-obs-fold": P + b"Transfer-Encoding:\r\n chunked\r\n\r\n",
    "te-xchunked": P + b"Transfer-Encoding: xchunked\r\n\r\n",
    "te-chunked-bad-size": P + b"Transfer-Encoding: chunked\r\n\r\n-1\r\n\r\n",
    # line structure
    "obs-fold": H + b"X-A: a\r\n b\r\n\r\n",
    "ws-first-field": b"GET / HTTP/1.1\r\n Host: h\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\nHost: h\n\n",
    "bare-lf-end": H + b"\n",
    "bare-cr": H + b"X-A: a\rb\r\n\r\n",
    "bare-cr-line": b"GET / HTTP/1.1\rHost: h\r\n\r\n",
    "nul-value": H + b"X-A: a\x00b\r\n\r\n",
    "nul-name": H + b"X\x00A: b\r\n\r\n",
    "nul-target": b"GET /\x00 HTTP/1.1\r\nHost: h\r\n\r\n",
    "ctl-value": H + b"X-A: \x1b[0m\r\n\r\n",
    "del-value": H + b"X-A: a\x7f\r\n\r\n",
    "space-colon": H + b"Content-Length : 5\r\n\r\nhello",
    "bad-name": H + b"X(A): b\r\n\r\n",
    "empty-name": H + b": b\r\n\r\n",
    "no-colon": H + b"X-A\r\n\r\n",
    "tls-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    # request line
    "bad-method": b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
    "double-space": b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
    "fragment": b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n",
    "utf8-target": b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
    "relative-target": b"GET foo HTTP/1.1\r\nHost: h\r\n\r\n",
    "userinfo": b"GET http://u:p@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
    "asterisk-get": b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
    "connect-origin": b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n",
    "http09": b"GET /\r\n\r\n",
    "http12": b"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
    "http20": b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    "h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "lower-http": b"GET / http/1.1\r\nHost: h\r\n\r\n",
    "http110": b"GET / HTTP/1.10\r\nHost: h\r\n\r\n",
    # Host and other fields
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": H + b"Host: h\r\n\r\n",
    "bad-host": b"GET / HTTP/1.1\r\nHost: u@h\r\n\r\n",
    "expect-other": H + b"Expect: 100-continue, fly\r\n\r\n",
    "connection-params": H + b"Connection: close;x\r\n\r\n",
    # limits
    "many-headers": H + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(70)) + b"\r\n",
    "long-line": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/http_parse"
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()
