/*
** tools/faultinject/faultinject.c -- an LD_PRELOAD shim that makes socket
** system calls fail the way a hostile kernel or network would.
**
**   LD_PRELOAD=build/libfaultinject.so FI_SEED=7 FI_SHORT_WRITE=0.5 \
**     FI_EINTR=/5 lua5.4 workload.lua
**
** It wraps read, write, readv, writev, recv, send, recvfrom, sendto,
** recvmsg, sendmsg, accept, accept4, socket, connect and epoll_ctl.  A
** wrapped call first decides whether to inject a fault; an injected fault
** never performs the real call (except a short write, which does the real
** call with a smaller count), so the kernel's state stays consistent with
** what the caller was told.  There are no short reads: Linux returns less
** than asked from a stream socket only when nothing more is queued, and
** libuv relies on it (a short read at hang-up is taken as the end).
**
** Faults (each variable holds a RATE, below; unset = never):
**   FI_SHORT_WRITE  write/writev/send/sendto/sendmsg on a stream socket
**                   take fewer bytes than asked (at least 1)
**   FI_EINTR        reads, writes, accepts and connects on a socket: EINTR
**   FI_EAGAIN       reads, writes and accepts on a non-blocking socket:
**                   EAGAIN (libuv then waits for readiness again)
**   FI_ECONNRESET   reads on a stream socket: ECONNRESET     (fatal)
**   FI_EPIPE        writes on a stream socket: EPIPE         (fatal)
**   FI_EMFILE       accept/accept4/socket: EMFILE            (fatal)
**   FI_ENOMEM       epoll_ctl: ENOMEM                        (fatal; libuv
**                   1.44 aborts on it, see docs/reliability.md)
** RATE is one of
**   0.25     a probability per eligible call
**   /7       every 7th eligible call
**   @12      only the 12th eligible call (once)
** Each fault counts its own eligible calls.  Other variables:
**   FI_SEED=n     seed of the random choices (default 1): same seed, same
**                 program, same faults
**   FI_AFTER=n    inject nothing during the first n wrapped socket calls
**   FI_REPORT=path  at exit, append one line "pid fault=count ..." with
**                 what was injected (so a test can check it injected)
**   FI_PROGRAM=name  inject only in processes of that name (e.g. lua5.4),
**                 not in the shell, `timeout` or `cat` around and below it
** Only sockets are touched (fstat S_ISSOCK): files, the terminal, libuv's
** eventfd and signal pipe pass through.
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

enum {
  F_SHORT_WRITE,
  F_EINTR,
  F_EAGAIN,
  F_ECONNRESET,
  F_EPIPE,
  F_EMFILE,
  F_ENOMEM,
  NFAULTS
};

static const char *const fault_env[NFAULTS] = {
    "FI_SHORT_WRITE", "FI_EINTR", "FI_EAGAIN",
    "FI_ECONNRESET",  "FI_EPIPE",      "FI_EMFILE", "FI_ENOMEM"};
static const char *const fault_name[NFAULTS] = {
    "short_write", "eintr", "eagain",
    "econnreset",  "epipe",      "emfile", "enomem"};

enum { R_OFF, R_PROB, R_EVERY, R_ONCE };

typedef struct rate {
  int kind;
  double p;
  unsigned long k;
  unsigned long calls;    /* eligible calls seen */
  unsigned long injected; /* faults injected */
} rate;

static rate rates[NFAULTS];
static uint64_t rng = 1;
static unsigned long after, wrapped;
static char report_path[512];
static int active;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- the real functions ------------------------------------------------ */

#define REAL(name) real_##name
#define DECLARE(ret, name, args) static ret(*real_##name) args
DECLARE(ssize_t, read, (int, void *, size_t));
DECLARE(ssize_t, write, (int, const void *, size_t));
DECLARE(ssize_t, readv, (int, const struct iovec *, int));
DECLARE(ssize_t, writev, (int, const struct iovec *, int));
DECLARE(ssize_t, recv, (int, void *, size_t, int));
DECLARE(ssize_t, send, (int, const void *, size_t, int));
DECLARE(ssize_t, recvfrom,
        (int, void *, size_t, int, struct sockaddr *, socklen_t *));
DECLARE(ssize_t, sendto,
        (int, const void *, size_t, int, const struct sockaddr *, socklen_t));
DECLARE(ssize_t, recvmsg, (int, struct msghdr *, int));
DECLARE(ssize_t, sendmsg, (int, const struct msghdr *, int));
DECLARE(int, accept, (int, struct sockaddr *, socklen_t *));
DECLARE(int, accept4, (int, struct sockaddr *, socklen_t *, int));
DECLARE(int, socket, (int, int, int));
DECLARE(int, connect, (int, const struct sockaddr *, socklen_t));
DECLARE(int, epoll_ctl, (int, int, int, struct epoll_event *));

static void *next_sym(const char *name) {
  void *p = dlsym(RTLD_NEXT, name);
  if (p == NULL) { /* no write(): that may be us */
    static const char msg[] = "faultinject: a libc symbol is missing\n";
    long r = syscall(SYS_write, 2, msg, sizeof msg - 1);
    (void)r;
    abort();
  }
  return p;
}

#define RESOLVE(name)                                      \
  do {                                                     \
    if (real_##name == NULL)                               \
      *(void **)&real_##name = next_sym(#name);            \
  } while (0)

/* ---- configuration ----------------------------------------------------- */

static void parse_rate(rate *r, const char *v) {
  char *end;
  r->kind = R_OFF;
  if (v == NULL || *v == 0) return;
  if (v[0] == '/' || v[0] == '@') {
    unsigned long k = strtoul(v + 1, &end, 10);
    if (k == 0 || *end != 0) goto bad;
    r->kind = v[0] == '/' ? R_EVERY : R_ONCE;
    r->k = k;
    return;
  }
  r->p = strtod(v, &end);
  if (*end != 0 || !(r->p > 0) || r->p > 1) goto bad;
  r->kind = R_PROB;
  return;
bad:
  fprintf(stderr, "faultinject: bad rate '%s' (want 0.25, /7 or @12)\n", v);
  abort();
}

static void write_report(void) {
  FILE *f;
  int i;
  if (!report_path[0] || (f = fopen(report_path, "a")) == NULL) return;
  pthread_mutex_lock(&mu);
  fprintf(f, "%ld", (long)getpid());
  for (i = 0; i < NFAULTS; i++)
    if (rates[i].kind != R_OFF)
      fprintf(f, " %s=%lu/%lu", fault_name[i], rates[i].injected,
              rates[i].calls);
  fprintf(f, "\n");
  pthread_mutex_unlock(&mu);
  fclose(f);
}

__attribute__((constructor)) static void fi_init(void) {
  const char *v;
  int i;
  for (i = 0; i < NFAULTS; i++) {
    parse_rate(&rates[i], getenv(fault_env[i]));
    if (rates[i].kind != R_OFF) active = 1;
  }
  if ((v = getenv("FI_SEED")) != NULL) rng = strtoull(v, NULL, 10) * 2 + 1;
  if ((v = getenv("FI_AFTER")) != NULL) after = strtoul(v, NULL, 10);
  if ((v = getenv("FI_REPORT")) != NULL)
    snprintf(report_path, sizeof report_path, "%s", v);
  /* only in the program named by FI_PROGRAM, if set: not in the shell,
  ** `timeout` or `cat` processes around and below it */
  if ((v = getenv("FI_PROGRAM")) != NULL && *v &&
      strcmp(v, program_invocation_short_name) != 0)
    active = 0;
  if (active && report_path[0]) atexit(write_report);
}

/* ---- deciding ----------------------------------------------------------- */

static uint64_t next_random(void) { /* xorshift64*, under mu */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ULL;
}

/* Whether fault f hits this (eligible) call.  Thread-safe. */
static int hit(int f) {
  rate *r = &rates[f];
  int yes = 0;
  if (r->kind == R_OFF) return 0;
  pthread_mutex_lock(&mu);
  if (wrapped > after) {
    r->calls++;
    switch (r->kind) {
      case R_PROB:
        yes = (double)(next_random() >> 11) / 9007199254740992.0 < r->p;
        break;
      case R_EVERY: yes = r->calls % r->k == 0; break;
      case R_ONCE: yes = r->calls == r->k; break;
    }
    if (yes) r->injected++;
  }
  pthread_mutex_unlock(&mu);
  return yes;
}

/* A number in [1, n) for a short transfer of n > 1 bytes. */
static size_t short_len(size_t n) {
  uint64_t x;
  pthread_mutex_lock(&mu);
  x = next_random();
  pthread_mutex_unlock(&mu);
  return 1 + (size_t)(x % (n - 1));
}

enum { K_OTHER, K_STREAM, K_DGRAM };

/* What fd is: a stream socket, another socket, or something else. */
static int kind_of(int fd) {
  struct stat st;
  int type;
  socklen_t len = sizeof type;
  int saved = errno;
  int k = K_OTHER;
  if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
    k = K_DGRAM;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
        type == SOCK_STREAM)
      k = K_STREAM;
  }
  errno = saved;
  return k;
}

static int nonblocking(int fd) {
  int saved = errno, fl = fcntl(fd, F_GETFL);
  errno = saved;
  return fl >= 0 && (fl & O_NONBLOCK);
}

static void count_call(void) {
  pthread_mutex_lock(&mu);
  wrapped++;
  pthread_mutex_unlock(&mu);
}

/* Common decision for a read-like call: returns -1 with errno set for an
** injected error, 0 to do the real call. */
static int decide_read(int fd, size_t len) {
  int k;
  if (!active || (k = kind_of(fd)) == K_OTHER) return 0;
  count_call();
  if (hit(F_EINTR)) {
    errno = EINTR;
    return -1;
  }
  if (nonblocking(fd) && hit(F_EAGAIN)) {
    errno = EAGAIN;
    return -1;
  }
  if (k == K_STREAM && hit(F_ECONNRESET)) {
    errno = ECONNRESET;
    return -1;
  }
  (void)len;
  return 0;
}

/* The same for a write: 1 for a short write. */
static int decide_write(int fd, size_t len) {
  int k;
  if (!active || (k = kind_of(fd)) == K_OTHER) return 0;
  count_call();
  if (hit(F_EINTR)) {
    errno = EINTR;
    return -1;
  }
  if (nonblocking(fd) && hit(F_EAGAIN)) {
    errno = EAGAIN;
    return -1;
  }
  if (k == K_STREAM && hit(F_EPIPE)) {
    errno = EPIPE;
    return -1;
  }
  if (k == K_STREAM && len > 1 && hit(F_SHORT_WRITE)) return 1;
  return 0;
}

static size_t iov_total(const struct iovec *iov, int n) {
  size_t t = 0;
  int i;
  for (i = 0; i < n; i++) t += iov[i].iov_len;
  return t;
}

/* A copy of iov cut down to `want` bytes; returns the new count. */
static int iov_cut(const struct iovec *iov, int n, struct iovec *out,
                   size_t want) {
  int i, m = 0;
  for (i = 0; i < n && want > 0; i++) {
    out[m] = iov[i];
    if (out[m].iov_len > want) out[m].iov_len = want;
    want -= out[m].iov_len;
    m++;
  }
  return m;
}

#define IOV_MAX_CUT 1024

/* ---- the wrappers ------------------------------------------------------- */

ssize_t read(int fd, void *buf, size_t len) {
  RESOLVE(read);
  if (decide_read(fd, len) < 0) return -1;
  return REAL(read)(fd, buf, len);
}

ssize_t write(int fd, const void *buf, size_t len) {
  int d;
  RESOLVE(write);
  d = decide_write(fd, len);
  if (d < 0) return -1;
  if (d > 0) len = short_len(len);
  return REAL(write)(fd, buf, len);
}

ssize_t readv(int fd, const struct iovec *iov, int n) {
  RESOLVE(readv);
  if (decide_read(fd, iov_total(iov, n)) < 0) return -1;
  return REAL(readv)(fd, iov, n);
}

ssize_t writev(int fd, const struct iovec *iov, int n) {
  struct iovec cut[IOV_MAX_CUT];
  int d;
  RESOLVE(writev);
  d = n <= IOV_MAX_CUT ? decide_write(fd, iov_total(iov, n)) : 0;
  if (d < 0) return -1;
  if (d > 0)
    return REAL(writev)(fd, cut,
                        iov_cut(iov, n, cut, short_len(iov_total(iov, n))));
  return REAL(writev)(fd, iov, n);
}

ssize_t recv(int fd, void *buf, size_t len, int flags) {
  RESOLVE(recv);
  if (decide_read(fd, len) < 0) return -1;
  return REAL(recv)(fd, buf, len, flags);
}

ssize_t send(int fd, const void *buf, size_t len, int flags) {
  int d;
  RESOLVE(send);
  d = decide_write(fd, len);
  if (d < 0) return -1;
  if (d > 0) len = short_len(len);
  return REAL(send)(fd, buf, len, flags);
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags,
                 struct sockaddr *sa, socklen_t *salen) {
  RESOLVE(recvfrom);
  if (decide_read(fd, len) < 0) return -1;
  return REAL(recvfrom)(fd, buf, len, flags, sa, salen);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags,
               const struct sockaddr *sa, socklen_t salen) {
  int d;
  RESOLVE(sendto);
  d = decide_write(fd, len);
  if (d < 0) return -1;
  if (d > 0) len = short_len(len);
  return REAL(sendto)(fd, buf, len, flags, sa, salen);
}

ssize_t recvmsg(int fd, struct msghdr *m, int flags) {
  RESOLVE(recvmsg);
  if (decide_read(fd, iov_total(m->msg_iov, (int)m->msg_iovlen)) < 0)
    return -1;
  return REAL(recvmsg)(fd, m, flags);
}

ssize_t sendmsg(int fd, const struct msghdr *m, int flags) {
  struct iovec cut[IOV_MAX_CUT];
  struct msghdr copy;
  int d;
  RESOLVE(sendmsg);
  d = (int)m->msg_iovlen <= IOV_MAX_CUT
          ? decide_write(fd, iov_total(m->msg_iov, (int)m->msg_iovlen))
          : 0;
  if (d < 0) return -1;
  if (d == 0) return REAL(sendmsg)(fd, m, flags);
  copy = *m;
  copy.msg_iovlen = (size_t)iov_cut(
      m->msg_iov, (int)m->msg_iovlen, cut,
      short_len(iov_total(m->msg_iov, (int)m->msg_iovlen)));
  copy.msg_iov = cut;
  return REAL(sendmsg)(fd, &copy, flags);
}

/* accept and accept4: EINTR, EAGAIN (non-blocking listener), EMFILE. */
static int decide_accept(int fd) {
  if (!active || kind_of(fd) == K_OTHER) return 0;
  count_call();
  if (hit(F_EINTR)) {
    errno = EINTR;
    return -1;
  }
  if (nonblocking(fd) && hit(F_EAGAIN)) {
    errno = EAGAIN;
    return -1;
  }
  if (hit(F_EMFILE)) {
    errno = EMFILE;
    return -1;
  }
  return 0;
}

int accept(int fd, struct sockaddr *sa, socklen_t *len) {
  RESOLVE(accept);
  if (decide_accept(fd) < 0) return -1;
  return REAL(accept)(fd, sa, len);
}

int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags) {
  RESOLVE(accept4);
  if (decide_accept(fd) < 0) return -1;
  return REAL(accept4)(fd, sa, len, flags);
}

int socket(int domain, int type, int protocol) {
  RESOLVE(socket);
  if (active && (domain == AF_INET || domain == AF_INET6 ||
                 domain == AF_UNIX)) {
    count_call();
    if (hit(F_EMFILE)) {
      errno = EMFILE;
      return -1;
    }
  }
  return REAL(socket)(domain, type, protocol);
}

int connect(int fd, const struct sockaddr *sa, socklen_t len) {
  RESOLVE(connect);
  if (active && kind_of(fd) != K_OTHER) {
    count_call();
    if (hit(F_EINTR)) {
      errno = EINTR;
      return -1;
    }
  }
  return REAL(connect)(fd, sa, len);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  RESOLVE(epoll_ctl);
  if (active && op != EPOLL_CTL_DEL && kind_of(fd) != K_OTHER) {
    count_call();
    if (hit(F_ENOMEM)) {
      errno = ENOMEM;
      return -1;
    }
  }
  return REAL(epoll_ctl)(epfd, op, fd, ev);
}
