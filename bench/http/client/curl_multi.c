/*
** curl_multi.c -- the limit of spindle's HTTP client design: libcurl's
** multi interface driven by a libuv loop directly from C, the way
** csrc/http_client.c drives it (one uv_poll_t per curl socket from
** CURLMOPT_SOCKETFUNCTION, one uv_timer_t from CURLMOPT_TIMERFUNCTION,
** curl_multi_socket_action from their callbacks, curl_multi_info_read for
** completed transfers), with none of the Lua around it.
**
**   curl_multi URL N CONCURRENCY
**
** Keeps CONCURRENCY transfers in flight until N have completed, each on an
** easy handle that is reused (removed and added again, options kept);
** every response must be a 200.  Prints
**   RESULT <n> <wall seconds> <cpu seconds>
** where CPU is this process's user + system time (all threads) over the
** same interval as the wall time.
*/
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <uv.h>

typedef struct sock {
  uv_poll_t poll;
  curl_socket_t fd;
} sock;

static CURLM *multi;
static uv_loop_t *loop;
static uv_timer_t timer;
static long started, done, total, bad;
static size_t bytes;

static double clock_of(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t write_cb(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  bytes += size * n;
  return size * n;
}

static void check_done(void) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(multi, &left)) != NULL) {
    CURL *e;
    long code = 0;
    if (m->msg != CURLMSG_DONE) continue;
    e = m->easy_handle;
    if (m->data.result != CURLE_OK) {
      fprintf(stderr, "curl_multi: %s\n", curl_easy_strerror(m->data.result));
      bad++;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) bad++;
    curl_multi_remove_handle(multi, e);
    done++;
    if (started < total) {
      started++;
      curl_multi_add_handle(multi, e);
    } else
      curl_easy_cleanup(e);
  }
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  sock *s = (sock *)h->data;
  int flags = 0, running;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  curl_multi_socket_action(multi, s->fd, flags, &running);
  check_done();
}

static void sock_closed(uv_handle_t *h) { free(h->data); }

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *ud, void *sp) {
  sock *s = (sock *)sp;
  int events = 0;
  (void)e;
  (void)ud;
  if (what == CURL_POLL_REMOVE) {
    if (s != NULL) {
      uv_close((uv_handle_t *)&s->poll, sock_closed);
      curl_multi_assign(multi, fd, NULL);
    }
    return 0;
  }
  if (s == NULL) {
    s = calloc(1, sizeof *s);
    s->fd = fd;
    uv_poll_init_socket(loop, &s->poll, fd);
    s->poll.data = s;
    curl_multi_assign(multi, fd, s);
  }
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  uv_poll_start(&s->poll, events, poll_cb);
  return 0;
}

static void timer_fire(uv_timer_t *h) {
  int running;
  (void)h;
  curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done();
}

static int timer_cb(CURLM *m, long ms, void *ud) {
  (void)m;
  (void)ud;
  if (ms < 0)
    uv_timer_stop(&timer);
  else
    uv_timer_start(&timer, timer_fire, (uint64_t)ms, 0);
  return 0;
}

int main(int argc, char **argv) {
  long conc, i;
  double w0, c0;
  if (argc != 4) {
    fprintf(stderr, "usage: curl_multi URL N CONCURRENCY\n");
    return 2;
  }
  total = atol(argv[2]);
  conc = atol(argv[3]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  loop = uv_default_loop();
  uv_timer_init(loop, &timer);
  multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  w0 = clock_of(CLOCK_MONOTONIC);
  c0 = clock_of(CLOCK_PROCESS_CPUTIME_ID);
  for (i = 0; i < conc && started < total; i++) {
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, argv[1]);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    started++;
    curl_multi_add_handle(multi, e);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  printf("RESULT %ld %.6f %.6f\n", done, clock_of(CLOCK_MONOTONIC) - w0,
         clock_of(CLOCK_PROCESS_CPUTIME_ID) - c0);
  curl_multi_cleanup(multi);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  curl_global_cleanup();
  if (bad) fprintf(stderr, "curl_multi: %ld bad responses\n", bad);
  return bad ? 1 : 0;
}
