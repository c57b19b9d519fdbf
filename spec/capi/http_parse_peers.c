/*
** spec/capi/http_parse_peers.c -- csrc/http_parse.c against real clients:
** curl, Python's http.client and urllib, LuaSocket, lua-http and ab each
** send a request to a loopback socket; the head is parsed as it arrives
** (small reads, a buffer that grows and moves), the body decoded (chunked
** or by length, with "100 Continue" when asked), and every part checked
** against what the client was told to send.  The client gets a 200 and
** must exit 0.
**
** Each check prints "ok" or "not ok" with a description; the last line is
** "N passed, M failed" and the exit status is 0 only if nothing failed.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_parse.h"

#include "check.h"

#define TIMEOUT_MS 20000
#define UPLOAD_LEN 200000

static char upload_path[64]; /* a file of UPLOAD_LEN pattern bytes */
static char upload[UPLOAD_LEN];

typedef struct peer {
  const char *what;
  const char *cmd; /* run by /bin/sh with PORT and UPLOAD in the env */
  const char *method, *path, *query; /* query NULL: none */
  int version;
  const char *body; /* NULL: none; "@upload": the upload file */
  int chunked;
  int expect; /* 1: must ask for 100-continue (else either way) */
} peer;

#define LUA_HTTP_PATH                                                          \
  "package.path = package.path .. ';/usr/share/lua/5.3/?.lua;"                 \
  "/usr/share/lua/5.3/?/init.lua;/usr/share/lua/5.2/?.lua;"                    \
  "/usr/share/lua/5.2/?/init.lua;/usr/share/lua/5.1/?.lua' "

static const peer peers[] = {
    {"curl GET",
     "curl -sS -o /dev/null 'http://127.0.0.1:'$PORT'/a/b?x=1&y=%20'", "GET",
     "/a/b", "x=1&y=%20", 11, NULL, 0, 0},
    {"curl HEAD", "curl -sS -I -o /dev/null http://127.0.0.1:$PORT/h", "HEAD",
     "/h", NULL, 11, NULL, 0, 0},
    {"curl --http1.0",
     "curl -sS --http1.0 -o /dev/null http://127.0.0.1:$PORT/old", "GET",
     "/old", NULL, 10, NULL, 0, 0},
    {"curl POST -d",
     "curl -sS -o /dev/null -d 'hello=world' http://127.0.0.1:$PORT/p", "POST",
     "/p", NULL, 11, "hello=world", 0, 0},
    {"curl chunked upload",
     "curl -sS -o /dev/null -H 'Transfer-Encoding: chunked' "
     "--data-binary @$UPLOAD http://127.0.0.1:$PORT/up",
     "POST", "/up", NULL, 11, "@upload", 1, 0},
    {"curl PUT with Expect",
     "curl -sS -o /dev/null -H 'Expect: 100-continue' -T $UPLOAD "
     "http://127.0.0.1:$PORT/put/f",
     "PUT", "/put/f", NULL, 11, "@upload", 0, 1},
    {"python http.client chunked POST",
     "python3 -c 'import http.client, os\n"
     "c = http.client.HTTPConnection(\"127.0.0.1\", "
     "int(os.environ[\"PORT\"]))\n"
     "c.request(\"POST\", \"/py?chunked\", body=iter([b\"abc\", b\"\", "
     "b\"defgh\", b\"i\" * 5000]),\n"
     "          headers={\"X-Test\": \"  spaced  \"}, encode_chunked=True)\n"
     "assert c.getresponse().status == 200'",
     "POST", "/py", "chunked", 11, NULL, 1, 0},
    {"python urllib GET",
     "python3 -c 'import urllib.request, os\n"
     "r = urllib.request.urlopen(\"http://127.0.0.1:%s/u/%%7E?\" % "
     "os.environ[\"PORT\"])\n"
     "assert r.status == 200'",
     "GET", "/u/%7E", "", 11, NULL, 0, 0},
    {"LuaSocket POST",
     "lua5.4 -e 'local http = require \"socket.http\"\n"
     "local b, c = http.request(\"http://127.0.0.1:\" .. os.getenv(\"PORT\") "
     ".. \"/ls\", \"from luasocket\")\n"
     "assert(c == 200, tostring(c))'",
     "POST", "/ls", NULL, 11, "from luasocket", 0, 0},
    {"lua-http GET",
     "lua5.4 -e \"" LUA_HTTP_PATH "\n"
     "local req = require 'http.request'.new_from_uri('http://127.0.0.1:' .. "
     "os.getenv('PORT') .. '/lh?a=b')\n"
     "local h = assert(req:go(10))\n"
     "assert(h:get(':status') == '200')\"",
     "GET", "/lh", "a=b", 11, NULL, 0, 0},
    {"ab", "ab -q -n 1 http://127.0.0.1:$PORT/ab >/dev/null", "GET", "/ab",
     NULL, 10, NULL, 0, 0},
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Waits until fd is readable or the deadline passes; 1 when readable. */
static int wait_readable(int fd, double deadline) {
  for (;;) {
    int left = (int)(deadline - now_ms());
    if (left <= 0) return 0;
    struct pollfd p = {fd, POLLIN, 0};
    int rc = poll(&p, 1, left);
    if (rc > 0) return 1;
    if (rc < 0 && errno != EINTR) return 0;
  }
}

static int write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static int span_is(const char *buf, sp_http_span s, const char *want) {
  return s.len == strlen(want) && memcmp(buf + s.off, want, s.len) == 0;
}

typedef struct conn {
  int fd;
  char *buf; /* grows by realloc: the parser sees it move */
  size_t len, cap;
  double deadline;
} conn;

/* Reads at most 700 bytes more (small reads split heads and chunks at
** arbitrary places). 1 on data, 0 on EOF, timeout or error. */
static int conn_read(conn *c) {
  if (!wait_readable(c->fd, c->deadline)) return 0;
  if (c->cap - c->len < 700) {
    c->cap = c->cap * 2 + 700;
    c->buf = realloc(c->buf, c->cap);
    if (!c->buf) abort();
  }
  ssize_t n = read(c->fd, c->buf + c->len, 700);
  if (n <= 0) return 0;
  c->len += (size_t)n;
  return 1;
}

static void run_peer(int lfd, int port, const peer *p) {
  pid_t pid = fork();
  if (pid == 0) {
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    setenv("PORT", portstr, 1);
    setenv("UPLOAD", upload_path, 1);
    static const char *proxies[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                    "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
    for (size_t i = 0; i < sizeof proxies / sizeof *proxies; i++)
      unsetenv(proxies[i]);
    setenv("no_proxy", "*", 1);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
      close(devnull);
    }
    close(lfd);
    execl("/bin/sh", "sh", "-c", p->cmd, (char *)NULL);
    _exit(127);
  }
  CHECK(pid > 0, "%s: started", p->what);
  if (pid < 0) return;

  conn c = {-1, NULL, 0, 0, now_ms() + TIMEOUT_MS};
  if (wait_readable(lfd, c.deadline)) c.fd = accept(lfd, NULL, NULL);
  CHECK(c.fd >= 0, "%s: connected", p->what);

  sp_http_header h[64];
  sp_http_request r;
  sp_http_request_init(&r, h, 64, 16384);
  int rc = SP_HTTP_AGAIN, reads = 0;
  while (c.fd >= 0 && rc == SP_HTTP_AGAIN && conn_read(&c)) {
    rc = sp_http_parse_request(&r, c.buf, c.len);
    reads++;
  }
  CHECK(rc == SP_HTTP_OK, "%s: head accepted (%d %s)", p->what,
        rc == SP_HTTP_ERR ? r.status : 0, rc == SP_HTTP_ERR ? r.reason : "");
  if (rc == SP_HTTP_OK) {
    const char *b = c.buf;
    CHECK(span_is(b, r.method, p->method) && span_is(b, r.path, p->path) &&
              r.form == SP_HTTP_ORIGIN_FORM && r.version == p->version,
          "%s: %s %s, HTTP/1.%d", p->what, p->method, p->path, p->version - 10);
    CHECK(p->query
              ? (r.flags & SP_HTTP_HAS_QUERY) && span_is(b, r.query, p->query)
              : !(r.flags & SP_HTTP_HAS_QUERY),
          "%s: query %s", p->what, p->query ? p->query : "(none)");
    char host[32];
    snprintf(host, sizeof host, "127.0.0.1:%d", port);
    CHECK(p->version == 10 || span_is(b, r.host, host), "%s: Host %s", p->what,
          host);
    CHECK(!!(r.flags & SP_HTTP_CHUNKED) == p->chunked, "%s: %s", p->what,
          p->chunked ? "chunked" : "not chunked");
    for (uint32_t i = 0; i < r.nheaders; i++)
      if (sp_http_name_is(b, h[i].name, "x-test"))
        CHECK(span_is(b, h[i].value, "spaced"), "%s: value trimmed", p->what);

    if (p->expect)
      CHECK(r.flags & SP_HTTP_EXPECT_CONTINUE, "%s: expects 100-continue",
            p->what);
    if (r.flags & SP_HTTP_EXPECT_CONTINUE)
      write_all(c.fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);

    /* The body. */
    size_t want_len = 0;
    const char *want = NULL;
    if (p->body && strcmp(p->body, "@upload") == 0) {
      want = upload;
      want_len = UPLOAD_LEN;
    } else if (p->body) {
      want = p->body;
      want_len = strlen(p->body);
    } else if (p->chunked) { /* the Python chunks */
      static char py[8 + 5000];
      memcpy(py, "abcdefgh", 8);
      memset(py + 8, 'i', 5000);
      want = py;
      want_len = sizeof py;
    }
    char *got = malloc(UPLOAD_LEN + 1);
    size_t got_len = 0;
    int body_ok = 1;
    if (r.flags & SP_HTTP_CHUNKED) {
      sp_http_chunked ck;
      sp_http_chunked_init(&ck, SP_HTTP_CHUNK_MAX_EXT,
                           SP_HTTP_CHUNK_MAX_TRAILER);
      size_t pos = r.head_len;
      int crc = SP_HTTP_AGAIN;
      for (;;) {
        size_t used, off, len;
        crc = sp_http_chunked_parse(&ck, c.buf + pos, c.len - pos, &used, &off,
                                    &len);
        if (crc == SP_HTTP_DATA) {
          if (got_len + len > UPLOAD_LEN) break;
          memcpy(got + got_len, c.buf + pos + off, len);
          got_len += len;
        }
        pos += used;
        if (crc == SP_HTTP_OK || crc == SP_HTTP_ERR) break;
        if (crc == SP_HTTP_AGAIN && !conn_read(&c)) break;
      }
      body_ok = crc == SP_HTTP_OK && pos == c.len;
      CHECK(body_ok, "%s: chunked body decoded to its end (%s)", p->what,
            crc == SP_HTTP_ERR ? ck.reason : "");
    } else if (r.flags & SP_HTTP_HAS_LENGTH) {
      while (c.len - r.head_len < (size_t)r.content_length && conn_read(&c)) {
      }
      got_len = c.len - r.head_len;
      if (got_len > UPLOAD_LEN) got_len = UPLOAD_LEN;
      memcpy(got, c.buf + r.head_len, got_len);
    } else {
      CHECK(c.len == r.head_len, "%s: nothing after the head", p->what);
    }
    CHECK(body_ok && got_len == want_len &&
              (want_len == 0 || memcmp(got, want, want_len) == 0),
          "%s: body of %zu bytes", p->what, want_len);
    free(got);

    const char *resp = span_is(c.buf, r.method, "HEAD")
                           ? "HTTP/1.1 200 OK\r\nContent-Length: "
                             "2\r\nConnection: close\r\n\r\n"
                           : "HTTP/1.1 200 OK\r\nContent-Length: "
                             "2\r\nConnection: close\r\n\r\nok";
    write_all(c.fd, resp, strlen(resp));
  }
  if (c.fd >= 0) {
    shutdown(c.fd, SHUT_WR);
    close(c.fd);
  }
  free(c.buf);

  int status = -1;
  double deadline = now_ms() + TIMEOUT_MS;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (now_ms() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(2000);
  }
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "%s: the client exits 0 (status %d)", p->what, status);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  for (size_t i = 0; i < UPLOAD_LEN; i++) upload[i] = (char)('a' + i * 7 % 26);
  strcpy(upload_path, "/tmp/spindle-upload.XXXXXX");
  int ufd = mkstemp(upload_path);
  CHECK(ufd >= 0 && write_all(ufd, upload, UPLOAD_LEN) == 0, "upload file");
  if (ufd >= 0) close(ufd);

  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  int ok = lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 &&
           listen(lfd, 8) == 0 &&
           getsockname(lfd, (struct sockaddr *)&a, &alen) == 0;
  CHECK(ok, "listening on 127.0.0.1");
  if (ok) {
    int port = ntohs(a.sin_port);
    for (size_t i = 0; i < sizeof peers / sizeof *peers; i++)
      run_peer(lfd, port, &peers[i]);
  }
  if (lfd >= 0) close(lfd);
  unlink(upload_path);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
