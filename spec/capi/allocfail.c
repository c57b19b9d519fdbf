/*
** spec/capi/allocfail.c -- allocation failure, swept: a C host whose
** allocators fail the Nth allocation, for every N, in a dozen scenarios.
**
** One counter sees three allocators: the Lua state's (lua_newstate with
** our function), libuv's (uv_replace_allocator, called before libuv
** allocates anything) and spindle's own malloc/calloc/realloc (the link
** wraps them: -Wl,--wrap=malloc,... in cmake/harness.cmake; without it
** only the first two are counted).  Run N of a scenario makes allocation
** number N fail, and the one right after it if that is Lua retrying the
** same request after its emergency collection -- otherwise Lua would
** retry and never raise its memory error.  Not failed, so not counted:
** frees, and libuv's realloc (libuv 1.44 aborts when its watcher array
** cannot grow: maybe_resize in src/unix/core.c).
**
** A run: lua_newstate, luaL_openlibs, spindle_new, load the scenario (a
** Lua chunk returning a function), spindle_spawn it, spindle_run -- all
** with the failure armed.  Then the allocator stops failing and the
** follow-up must succeed on the same state: whatever step failed is done
** again, and the scenario runs to completion on the same runtime.  Then
** spindle_close, lua_close and the checks:
**   - no crash, no abort, no Lua panic, no exit() (an atexit handler);
**   - no sanitizer report (under ASan the process would end);
**   - the scenario's own invariants (a "BUG: ..." result fails);
**   - no hang (spindle.timeout inside, alarm() outside);
**   - descriptors back to the baseline (/proc/self/fd), no child process
**     left unreaped;
**   - the follow-up run returns "ok".
** The sweep of a scenario ends with the first N that the run never reached
** (no failure injected).  Leaks are found by LeakSanitizer / valgrind at
** exit: every state is closed.
**
** Usage: capi_allocfail [--deep] [--fork] [--strict] [--stride K]
**                       [--only NAME] [--n N] [-v]
**   default   the CI form: about ALLOCFAIL_RUNS runs per scenario (fewer
**             under valgrind), evenly strided over its allocations
**   --deep    every N from 1 (make check-deep); also ALLOCFAIL_DEEP=1
**   --fork    each run in a child process: a crash ends only that run
**   --strict  inject at the sites of known open bugs too (known_bugs[])
**   --only    one scenario; --n N: one run (for a reproducer); -v: the
**             outcome of every run; ALLOCFAIL_TRACE=1 prints the stack of
**             every injected failure (addr2line -e capi_allocfail ...)
** Output: "ok"/"not ok" lines, then "N passed, M failed".
*/
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <execinfo.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "spindle.h"

#if defined(__SANITIZE_ADDRESS__)
#define AF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AF_ASAN 1
#endif
#endif
#ifdef AF_ASAN
void __sanitizer_set_death_callback(void (*callback)(void));
int __lsan_do_recoverable_leak_check(void);
#endif

#include "check.h"

/* ---- the failing allocators ------------------------------------------- */

static atomic_long count;   /* allocations since armed */
static atomic_long fail_at; /* 0: never fail */
static atomic_int injected; /* the armed failure happened */
static atomic_int counting; /* count at all (off: host bookkeeping) */

/* Lua retries a failed request once after an emergency collection: that
** retry fails too.  Only the Lua allocator retries (libuv and spindle
** report ENOMEM at once). */
static struct {
  int pending;
  void *ptr;
  size_t size;
} retry;

static int trace, trace_fd = 2;
static void *site_frames[64]; /* the stack where the failure was injected */
static int site_depth;
static const char *volatile skipped_bug; /* not injected: this open bug */
static void print_stack(int fd, void *const *frames, int n);

static const char *known_bug_at(void *const *frames, int n);
static int strict;

static int should_fail(void) {
  long n;
  if (!atomic_load(&counting)) return 0;
  n = atomic_fetch_add(&count, 1) + 1;
  if (n == atomic_load(&fail_at)) {
    site_depth = backtrace(site_frames, 64);
    if (!strict && (skipped_bug = known_bug_at(site_frames, site_depth)))
      return 0; /* a known open bug: not injected */
    atomic_store(&injected, 1);
    if (trace) /* ALLOCFAIL_TRACE=1 */
      print_stack(trace_fd, site_frames, site_depth);
    return 1;
  }
  return 0;
}

#ifdef ALLOCFAIL_WRAP
void *__real_malloc(size_t n);
void *__real_calloc(size_t c, size_t n);
void *__real_realloc(void *p, size_t n);
#define real_malloc __real_malloc
#define real_calloc __real_calloc
#define real_realloc __real_realloc

/* spindle's own C allocations (the static library is linked with
** --wrap=malloc,calloc,realloc); also run on libuv worker threads. */
void *__wrap_malloc(size_t n) { return should_fail() ? NULL : real_malloc(n); }
void *__wrap_calloc(size_t c, size_t n) {
  return should_fail() ? NULL : real_calloc(c, n);
}
void *__wrap_realloc(void *p, size_t n) {
  if (n != 0 && should_fail()) return NULL;
  return real_realloc(p, n);
}
#else
#define real_malloc malloc
#define real_calloc calloc
#define real_realloc realloc
#endif

static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (retry.pending) {
    if (ptr == retry.ptr && nsize == retry.size) {
      retry.pending = 0;
      return NULL; /* the emergency retry of the failed request */
    }
    /* the emergency collection only shrinks; anything else means Lua
    ** did not retry */
    if (ptr == NULL || nsize > osize) retry.pending = 0;
  }
  if (should_fail()) {
    retry.pending = 1;
    retry.ptr = ptr;
    retry.size = nsize;
    return NULL;
  }
  return real_realloc(ptr, nsize);
}

static void *uv_malloc_f(size_t n) {
  return should_fail() ? NULL : real_malloc(n);
}
static void *uv_calloc_f(size_t c, size_t n) {
  return should_fail() ? NULL : real_calloc(c, n);
}
/* Never failed: libuv 1.44 aborts when its watcher array cannot grow. */
static void *uv_realloc_f(void *p, size_t n) { return real_realloc(p, n); }

static void arm(long n) {
  retry.pending = 0;
  atomic_store(&count, 0);
  atomic_store(&injected, 0);
  skipped_bug = NULL;
  atomic_store(&fail_at, n);
  atomic_store(&counting, 1);
}

/* Stops failing; returns the allocations counted while armed. */
static long disarm(void) {
  atomic_store(&fail_at, 0);
  atomic_store(&counting, 0);
  retry.pending = 0;
  return atomic_load(&count);
}

/* ---- open bugs ------------------------------------------------------------ */

/* Bugs this harness found that are not fixed yet (each has a reproducer in
** the integrator's harness-bugs list and a line in docs/reliability.md).
** A failure that would be injected at one of these sites is not injected:
** the run goes on without one and is counted as "skipped: known bug", so
** that the sweep stays green on what is fixed.  --strict injects them
** anyway.  Remove an entry when its fix lands: the sweep then covers those
** allocations again.  Sites are written as the reports print them ("api <
** caller < its caller"), alternatives separated by '|' (a Debug build
** inlines less; "~f" matches f anywhere in the site). */
static const struct known_bug {
  const char *site;
  const char *what;
} known_bugs[] = {
    /* 9-H1..H5 are fixed on main; an entry looks like this:
    {"~< results_p < fs_results",
     "9-H5: fs.list_dir leaks the rest of the directory listing when "
     "pushing the names raises a memory error"}, */
    {NULL, NULL}};

/* ---- function names for stack frames ---------------------------------- */

/* The test's own ELF symbol table (static functions included: spindle is
** linked in statically), read once at start; frames in shared libraries
** are named by dladdr (exported symbols only). */
typedef struct fsym {
  uintptr_t lo, hi;
  const char *name;
} fsym;
static fsym *syms;
static size_t nsyms;
static uintptr_t exe_base;

static int fsym_cmp(const void *a, const void *b) {
  const fsym *x = a, *y = b;
  return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void load_symbols(void) {
  FILE *f = fopen("/proc/self/exe", "rb");
  char *img = NULL, *strs;
  long size;
  Elf64_Ehdr *eh;
  Elf64_Shdr *sh;
  Dl_info info;
  int i;
  if (f == NULL) return;
  if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 &&
      fseek(f, 0, SEEK_SET) == 0 && (img = real_malloc((size_t)size)) &&
      fread(img, 1, (size_t)size, f) == (size_t)size) {
    eh = (Elf64_Ehdr *)img;
    sh = (Elf64_Shdr *)(img + eh->e_shoff);
    for (i = 0; i < eh->e_shnum; i++) {
      Elf64_Sym *sy;
      size_t k, n;
      if (sh[i].sh_type != SHT_SYMTAB) continue;
      sy = (Elf64_Sym *)(img + sh[i].sh_offset);
      n = sh[i].sh_size / sizeof *sy;
      strs = img + sh[sh[i].sh_link].sh_offset;
      syms = real_calloc(n, sizeof *syms);
      for (k = 0; syms != NULL && k < n; k++)
        if (ELF64_ST_TYPE(sy[k].st_info) == STT_FUNC && sy[k].st_value) {
          syms[nsyms].lo = sy[k].st_value;
          syms[nsyms].hi = sy[k].st_value + (sy[k].st_size ? sy[k].st_size : 1);
          syms[nsyms].name = strs + sy[k].st_name;
          nsyms++;
        }
      qsort(syms, nsyms, sizeof *syms, fsym_cmp);
      img = NULL; /* the names point into it: kept for good */
      break;
    }
  }
  free(img);
  fclose(f);
  if (dladdr((void *)load_symbols, &info) != 0)
    exe_base = (uintptr_t)info.dli_fbase;
}

/* The function containing pc, or NULL.  *in_exe: it is in the test. */
static const char *frame_name(void *pc, int *in_exe) {
  uintptr_t a = (uintptr_t)pc - 1; /* a return address: the call before */
  size_t lo = 0, hi = nsyms;
  Dl_info info;
  *in_exe = 0;
  if (dladdr(pc, &info) != 0 && (uintptr_t)info.dli_fbase != exe_base)
    return info.dli_sname; /* a shared library */
  *in_exe = 1;
  a -= exe_base;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (syms[mid].lo <= a)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo > 0 && a < syms[lo - 1].hi) return syms[lo - 1].name;
  return NULL;
}

static void print_stack(int fd, void *const *frames, int n) {
  char line[256];
  int i, in_exe;
  for (i = 1; i < n; i++) {
    const char *name = frame_name(frames[i], &in_exe);
    Dl_info info;
    if (!in_exe && dladdr(frames[i], &info) != 0 && info.dli_fname)
      snprintf(line, sizeof line, "    #%d %s (%s)\n", i, name ? name : "?",
               strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1
                                            : info.dli_fname);
    else
      snprintf(line, sizeof line, "    #%d %s\n", i, name ? name : "?");
    if (write(fd, line, strlen(line)) < 0) return;
  }
}

/* "f < g < h": the first spindle functions on the injection stack (the
** allocators and Lua's own frames skipped; an exported Lua API function
** right above them is kept). */
static void site_of(char *buf, size_t size) {
  static const char *const skip[] = {
      "should_fail",   "lua_alloc",      "__wrap_malloc",
      "__wrap_calloc", "__wrap_realloc", "uv_malloc_f",
      "uv_calloc_f",   "uv_realloc_f",   NULL};
  int i, k, in_exe, taken = 0;
  size_t len = 0;
  const char *api = NULL;
  buf[0] = 0;
  for (i = 1; i < site_depth && taken < 3; i++) {
    const char *name = frame_name(site_frames[i], &in_exe);
    int skipped = 0;
    if (!in_exe) {
      if (name != NULL &&
          (strncmp(name, "lua", 3) == 0 || strncmp(name, "uv_", 3) == 0))
        api = name;
      continue;
    }
    for (k = 0; skip[k] != NULL && name != NULL; k++)
      if (strcmp(name, skip[k]) == 0) skipped = 1;
    if (skipped || name == NULL) continue;
    if (api != NULL && taken == 0)
      len += (size_t)snprintf(buf + len, size - len, "%s < ", api);
    len += (size_t)snprintf(buf + len, size - len, "%s%s", taken ? " < " : "",
                            name);
    if (len >= size) break;
    taken++;
  }
}

/* Whether the site "api < f < g ..." matches one of the '|'-separated
** patterns: a pattern matches the start of the site, or, when it does not
** name a Lua or libuv API function first, the start of its spindle part. */
static int site_matches(const char *site, const char *patterns) {
  const char *p = patterns, *body = strstr(site, " < ");
  int api = strncmp(site, "lua", 3) == 0 || strncmp(site, "uv_", 3) == 0;
  body = api && body ? body + 3 : site;
  while (*p) {
    size_t len = strcspn(p, "|");
    char sub[100];
    if (*p == '~') { /* "~f": f anywhere in the site */
      snprintf(sub, sizeof sub, "%.*s", (int)len - 1, p + 1);
      if (strstr(site, sub) != NULL) return 1;
    } else if (strncmp(site, p, len) == 0 || strncmp(body, p, len) == 0)
      return 1;
    p += len;
    if (*p == '|') p++;
  }
  return 0;
}

static const char *known_bug_at(void *const *frames, int n) {
  char site[200];
  int i;
  (void)frames;
  (void)n;
  site_of(site, sizeof site);
  for (i = 0; known_bugs[i].site != NULL; i++)
    if (site_matches(site, known_bugs[i].site)) return known_bugs[i].what;
  return NULL;
}

/* ---- process-level watchdogs ------------------------------------------ */

static const char *cur_scenario = "(setup)";
static long cur_n;
static int in_run;
static int saved_stderr = -1, capture_fd = -1;

static void say(const char *s) {
  int fd = saved_stderr >= 0 ? saved_stderr : 2;
  ssize_t r = write(fd, s, strlen(s));
  (void)r;
}

/* Copies what the run wrote to stderr (captured) to the real stderr. */
static void dump_capture(void) {
  char buf[4096];
  ssize_t n;
  off_t off = 0;
  if (capture_fd < 0) return;
  while ((n = pread(capture_fd, buf, sizeof buf, off)) > 0) {
    ssize_t w = write(saved_stderr, buf, (size_t)n);
    (void)w;
    off += n;
  }
}

static void where(const char *what) {
  char line[512], site[200];
  site_of(site, sizeof site);
  snprintf(line, sizeof line,
           "\nallocfail: %s in scenario %s, N=%ld (failed allocation: "
           "%s)\n",
           what, cur_scenario, cur_n, site[0] ? site : "none");
  say(line);
  printf("not ok - %s in scenario %s, N=%ld [%s]\n", what, cur_scenario, cur_n,
         site);
  fflush(stdout);
}

static void on_death(void) { /* sanitizer report, or a fatal signal */
  dump_capture();
  where("sanitizer report or crash");
}

static void on_signal(int sig) {
  void *frames[64];
  int n = backtrace(frames, 64);
  dump_capture();
  where(sig == SIGALRM ? "hang (alarm)" : strsignal(sig));
  say("allocfail: the stack at the signal:\n");
  print_stack(saved_stderr >= 0 ? saved_stderr : 2, frames, n);
  signal(sig == SIGALRM ? SIGABRT : sig, SIG_DFL);
  raise(sig == SIGALRM ? SIGABRT : sig);
}

static void on_exit_check(void) {
  if (in_run) {
    dump_capture();
    where("exit() called");
  }
}

static int on_panic(lua_State *L) {
  dump_capture();
  where("Lua panic (an unprotected error)");
  fprintf(stdout, "# panic: %s\n",
          lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
  fflush(stdout);
  abort();
  return 0;
}

/* ---- descriptors and children ----------------------------------------- */

static int fd_count(void) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;
  if (d == NULL) return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

/* 0: no child of ours is left; else a description in buf. */
static int children_left(char *buf, size_t size) {
  int st;
  pid_t p = waitpid(-1, &st, WNOHANG);
  if (p > 0) {
    snprintf(buf, size, "an exited child (pid %d) was never reaped", (int)p);
    return 1;
  }
  if (p == 0) {
    snprintf(buf, size, "a child process is still running");
    return 1;
  }
  return 0;
}

/* ---- the scenario's temporary directory -------------------------------- */

static char tmpdir[256];

static void rm_tree(const char *path, int keep_top) {
  DIR *d = opendir(path);
  struct dirent *e;
  char sub[512];
  struct stat st;
  if (d != NULL) {
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
        rm_tree(sub, 0);
      else
        unlink(sub);
    }
    closedir(d);
  }
  if (!keep_top) rmdir(path);
}

/* ---- scenarios ---------------------------------------------------------- */

/* Every task scenario defines `local function body()`; the harness wraps
** it: the task stores "ok" or the error value in the global RESULT.
** check() failures are "BUG: ..." errors: an invariant broke. */
static const char PRELUDE[] =
    "local spindle = require 'spindle'\n"
    "local net, fs, process = spindle.net, spindle.fs, spindle.process\n"
    "local function check(c, what)\n"
    "  if not c then error('BUG: ' .. what, 2) end\n"
    "end\n"
    "-- e is the error we provoked, or something else (a memory error)\n"
    "-- that is raised on as the run's outcome\n"
    "local function expect(e, pred) if not pred(e) then error(e, 0) end end\n"
    "-- a task that failed by itself (a memory error): its error is the "
    "outcome\n"
    "local function settled(h)\n"
    "  if h:status() == 'failed' then error(select(2, h:result()), 0) end\n"
    "  return h\n"
    "end\n"
    "-- an I/O result: the value, or its error raised as the outcome\n"
    "local function io(v, msg, code)\n"
    "  if v == nil then error(tostring(msg) .. ' (' .. tostring(code) .. ')', "
    "0) end\n"
    "  return v\n"
    "end\n"
    "local function has(s) return function(e)\n"
    "  return type(e) == 'string' and e:find(s, 1, true) ~= nil end end\n";

static const char EPILOGUE[] =
    "\nreturn function()\n"
    "  RESULT = nil\n"
    "  local ok, err = pcall(spindle.timeout, HANG_AFTER, body)\n"
    "  if ok then RESULT = 'ok' else RESULT = err end\n"
    "  -- a body that failed early leaves its sleepers: end them now\n"
    "  local me, ok2, live = spindle.current(), pcall(spindle.tasks)\n"
    "  if ok2 then\n"
    "    for _, h in ipairs(live) do if h ~= me then h:abort() end end\n"
    "  end\n"
    "end\n";

static const char SC_SPAWN_JOIN[] =
    "local function body()\n"
    "  local hs = {}\n"
    "  for i = 1, 6 do\n"
    "    hs[i] = spindle.spawn(function(x) spindle.yield(); return x * 2 end,"
    " i)\n"
    "  end\n"
    "  local sum = 0\n"
    "  for i = 1, 6 do sum = sum + hs[i]:join() end\n"
    "  check(sum == 42, 'join results')\n"
    "  local f = spindle.spawn(function() error({code = 7}) end)\n"
    "  local ok, e = f:result()\n"
    "  check(not ok, 'result() of a failed task')\n"
    "  expect(e, function(v) return type(v) == 'table' end)\n"
    "  check(e.code == 7, 'the error value keeps its identity')\n"
    "  check(f:status() == 'failed', 'status failed')\n"
    "  local r = spindle.join_all({spindle.spawn(function() return 1 end),\n"
    "    spindle.spawn(function() spindle.sleep(0); return 2 end)})\n"
    "  check(r[1][1] == 1 and r[2][1] == 2, 'join_all results')\n"
    "  local i, v = spindle.race({\n"
    "    spindle.spawn(function() spindle.sleep(10); return 'slow' end),\n"
    "    spindle.spawn(function() return 'fast' end)})\n"
    "  check(i == 2 and v == 'fast', 'race winner')\n"
    "  local h = spindle.spawn(function() return spindle.current():id() end)\n"
    "  h:name('named')\n"
    "  check(h:join() == h:id(), 'id')\n"
    "  check(h:name() == 'named' and h:status() == 'done', 'name, status')\n"
    "  local t = spindle.spawn(function() spindle.sleep(10) end)\n"
    "  spindle.yield()\n"
    "  settled(t)\n"
    "  check(#spindle.tasks() >= 2, 'tasks()')\n"
    "  check(type(spindle.dump()) == 'string', 'dump()')\n"
    "  check(spindle.stats().live >= 2, 'stats()')\n"
    "  t:abort()\n"
    "  local ok2, e2 = t:result()\n"
    "  check(not ok2 and t:status() == 'cancelled', 'abort a sleeper')\n"
    "  expect(e2, spindle.is_cancelled)\n"
    "end\n";

static const char SC_ABORT_CLOSE[] =
    "local function body()\n"
    "  local opened = {a = false, b = false, c = false, d = false,\n"
    "                  e = false, f = false, g = false}\n"
    "  local closed = {a = false, b = false, c = false, d = false,\n"
    "                  e = false, f = false, g = false}\n"
    "  -- Lua cannot call a __close for which no stack or call frame can\n"
    "  -- be allocated: a handler opened before the injected failure may\n"
    "  -- be skipped; never one opened after it, and none runs twice\n"
    "  local function closer(tag)\n"
    "    local o = setmetatable({}, {__close = function()\n"
    "      check(not closed[tag], '__close ran twice: ' .. tag)\n"
    "      closed[tag] = true\n"
    "    end})\n"
    "    opened[tag] = INJECTED() and 'after' or 'before'\n"
    "    return o\n"
    "  end\n"
    "  local function same(tag)\n"
    "    if opened[tag] == 'before' and INJECTED() then return end\n"
    "    check((opened[tag] ~= false) == closed[tag],\n"
    "          '__close did not run: ' .. tag)\n"
    "  end\n"
    "  -- aborted while sleeping\n"
    "  local h = spindle.spawn(function()\n"
    "    local a <close> = closer('a')\n"
    "    local b <close> = closer('b')\n"
    "    spindle.sleep(10)\n"
    "  end)\n"
    "  spindle.yield()\n"
    "  settled(h):abort()\n"
    "  local ok = settled(h):result()\n"
    "  check(not ok and h:status() == 'cancelled', 'abort wins')\n"
    "  same('a'); same('b')\n"
    "  -- aborted before it started\n"
    "  local h2 = spindle.spawn(function() local c <close> = closer('c') end)\n"
    "  h2:abort()\n"
    "  check(settled(h2):status() == 'cancelled' and not opened.c,\n"
    "        'never started')\n"
    "  -- a __close that awaits (shielded) and one that raises\n"
    "  local h3 = spindle.spawn(function()\n"
    "    local d <close> = closer('d')\n"
    "    local x <close> = setmetatable({}, {__close = function()\n"
    "      spindle.shield(spindle.sleep, 0)\n"
    "      error('close failed')\n"
    "    end})\n"
    "    spindle.sleep(10)\n"
    "  end)\n"
    "  spindle.yield()\n"
    "  h3:abort()\n"
    "  check(not h3:result(), 'aborted with an erroring close')\n"
    "  same('d')\n"
    "  -- a timeout unwinds a close\n"
    "  local ok4, e4 = pcall(spindle.timeout, 0.001, function()\n"
    "    local f <close> = closer('f')\n"
    "    spindle.sleep(10)\n"
    "  end)\n"
    "  check(not ok4, 'timeout returned')\n"
    "  expect(e4, spindle.is_timeout)\n"
    "  same('f')\n"
    "  -- a failing child aborts its sibling in a scope\n"
    "  local ok5, e5 = pcall(spindle.scope, function(s)\n"
    "    s:spawn(function() local e <close> = closer('e') spindle.sleep(10) "
    "end)\n"
    "    s:spawn(function() spindle.yield(); error('boom') end)\n"
    "  end)\n"
    "  check(not ok5, 'scope with a failing child returned')\n"
    "  expect(e5, has('boom'))\n"
    "  same('e')\n"
    "  -- self abort\n"
    "  local h6 = spindle.spawn(function()\n"
    "    local g <close> = closer('g')\n"
    "    spindle.current():abort()\n"
    "    spindle.yield()\n"
    "  end)\n"
    "  check(not h6:result() and settled(h6):status() == 'cancelled',\n"
    "        'self abort')\n"
    "  same('g')\n"
    "end\n";

static const char SC_CHANNELS[] =
    "local function body()\n"
    "  local ch = spindle.channel(4)\n"
    "  local total = 0\n"
    "  spindle.scope(function(s)\n"
    "    s:spawn(function()\n"
    "      for i = 1, 40 do check(ch:send(i) == true, 'send') end\n"
    "      ch:close()\n"
    "    end)\n"
    "    s:spawn(function() for v in ch:iter() do total = total + v end end)\n"
    "  end)\n"
    "  check(total == 820, 'every value received once')\n"
    "  local v, err = ch:recv()\n"
    "  check(v == nil and err == 'closed', 'recv on a closed channel')\n"
    "  check(ch:send(1) == nil, 'send on a closed channel')\n"
    "  local u = spindle.channel()\n"
    "  for i = 1, 20 do check(u:try_send(i) == true, 'try_send') end\n"
    "  check(#u == 20, '#channel')\n"
    "  for i = 1, 20 do check(u:try_recv() == i, 'try_recv order') end\n"
    "  local e1, e2 = u:try_recv()\n"
    "  check(e1 == nil and e2 == 'empty', 'try_recv on empty')\n"
    "  -- an aborted receiver loses nothing\n"
    "  local c2 = spindle.channel(1)\n"
    "  local r = spindle.spawn(function() return c2:recv() end)\n"
    "  spindle.yield()\n"
    "  r:abort()\n"
    "  r:result()\n"
    "  check(c2:try_send(5) == true, 'try_send after an aborted recv')\n"
    "  check(c2:try_recv() == 5, 'the value is still there')\n"
    "  -- an aborted sender: its value is either delivered or not sent\n"
    "  local c3 = spindle.channel(1)\n"
    "  c3:try_send('first')\n"
    "  local w = spindle.spawn(function() return c3:send('second') end)\n"
    "  spindle.yield()\n"
    "  w:abort()\n"
    "  w:result()\n"
    "  check(c3:try_recv() == 'first', 'first value')\n"
    "  check(c3:try_recv() == nil, 'aborted send not delivered')\n"
    "end\n";

static const char SC_TIMERS[] =
    "local function body()\n"
    "  local order = {0, 0, 0, 0, 0, 0, 0, 0}\n"
    "  local n = 0\n"
    "  -- the same duration from a later start: a later deadline, so they\n"
    "  -- wake in the order they slept (robust against a slow machine)\n"
    "  spindle.scope(function(s)\n"
    "    for i = 1, 8 do\n"
    "      s:spawn(function()\n"
    "        spindle.sleep(0.0005)\n"
    "        n = n + 1\n"
    "        order[n] = i\n"
    "      end)\n"
    "    end\n"
    "  end)\n"
    "  for k = 1, 8 do\n"
    "    check(order[k] == k, 'deadline order ' .. table.concat(order, ' '))\n"
    "  end\n"
    "  local ok, e = pcall(spindle.timeout, 0.001, function()\n"
    "    return spindle.timeout(10, spindle.sleep, 10)\n"
    "  end)\n"
    "  check(not ok, 'outer timeout did not fire')\n"
    "  expect(e, spindle.is_timeout)\n"
    "  check(spindle.timeout(5, function() return 42 end) == 42, 'in time')\n"
    "  local t0 = spindle.now()\n"
    "  spindle.sleep(0)\n"
    "  spindle.sleep(0.0005)\n"
    "  check(spindle.now() >= t0, 'monotonic')\n"
    "  local sleepers = {}\n"
    "  for i = 1, 10 do\n"
    "    sleepers[i] = spindle.spawn(spindle.sleep, 10 + i)\n"
    "  end\n"
    "  spindle.yield()\n"
    "  for i = 10, 1, -1 do sleepers[i]:abort() end\n"
    "  for i = 1, 10 do\n"
    "    check(not sleepers[i]:result(), 'aborted sleeper')\n"
    "  end\n"
    "end\n";

static const char SC_TCP_ECHO[] =
    "local function body()\n"
    "  local srv <close> = assert(net.listen('127.0.0.1', 0))\n"
    "  local _, port = srv:local_addr()\n"
    "  local payload = string.rep('0123456789abcdef', 8192)\n"
    "  spindle.scope(function(s)\n"
    "    s:spawn(function()\n"
    "      for k = 1, 2 do\n"
    "        local c <close> = assert(srv:accept())\n"
    "        while true do\n"
    "          local d, err, code = c:read_some()\n"
    "          if not d then\n"
    "            if code == 'EOF' then break end\n"
    "            error(err)\n"
    "          end\n"
    "          assert(c:write(d))\n"
    "        end\n"
    "      end\n"
    "    end)\n"
    "    local c <close> = assert(net.connect('127.0.0.1', port))\n"
    "    assert(c:write('hello\\r\\n', 'world\\n'))\n"
    "    check(io(c:read_line()) == 'hello', 'line 1')\n"
    "    check(io(c:read_line()) == 'world', 'line 2')\n"
    "    s:spawn(function() assert(c:write(payload)); assert(c:shutdown()) "
    "end)\n"
    "    local got, err = c:read(#payload)\n"
    "    if got == nil then error(err) end\n"
    "    check(got == payload, 'echoed payload')\n"
    "    local rest, msg, code = c:read_some()\n"
    "    if code ~= 'EOF' then io(rest, msg, code) end\n"
    "    check(rest == nil and code == 'EOF', 'EOF after the payload')\n"
    "    local c2 <close> = assert(net.connect('localhost', port))\n"
    "    assert(c2:write('a;b;'))\n"
    "    check(io(c2:read_until(';')) == 'a', 'read_until')\n"
    "    check(io(c2:read_until(';')) == 'b', 'read_until 2')\n"
    "    c2:close()\n"
    "  end)\n"
    "end\n";

static const char SC_UDP[] =
    "local function body()\n"
    "  local a = net.udp()\n"
    "  local b = net.udp()\n"
    "  local ok, err = pcall(function()\n"
    "    assert(a:bind('127.0.0.1', 0))\n"
    "    assert(b:bind('127.0.0.1', 0))\n"
    "    local _, pa = a:local_addr()\n"
    "    local _, pb = b:local_addr()\n"
    "    for i = 1, 4 do assert(a:send_to('dgram' .. i, '127.0.0.1', pb)) end\n"
    "    for i = 1, 4 do\n"
    "      local d, h, p = b:recv_from()\n"
    "      if d == nil then error(h) end\n"
    "      check(d == 'dgram' .. i and h == '127.0.0.1' and p == pa,\n"
    "            'datagram ' .. i)\n"
    "    end\n"
    "    assert(b:send_to(string.rep('x', 8000), '127.0.0.1', pa))\n"
    "    local d = io(a:recv_from())\n"
    "    check(#d == 8000, 'large datagram')\n"
    "    local r = spindle.spawn(function() return a:recv_from() end)\n"
    "    spindle.yield()\n"
    "    r:abort()\n"
    "    check(not r:result(), 'aborted recv_from')\n"
    "  end)\n"
    "  a:close()\n"
    "  b:close()\n"
    "  if not ok then error(err, 0) end\n"
    "end\n";

static const char SC_FS[] =
    "local function body()\n"
    "  local dir = TMPDIR .. '/d'\n"
    "  assert(fs.mkdir(dir))\n"
    "  assert(fs.write_file(dir .. '/a.txt', 'hello'))\n"
    "  check(io(fs.read_file(dir .. '/a.txt')) == 'hello', 'read_file')\n"
    "  local st = assert(fs.stat(dir .. '/a.txt'))\n"
    "  check(st.size == 5 and st.type == 'file', 'stat')\n"
    "  assert(fs.rename(dir .. '/a.txt', dir .. '/b.txt'))\n"
    "  local names = assert(fs.list_dir(dir))\n"
    "  check(#names == 1 and names[1] == 'b.txt', 'list_dir')\n"
    "  do\n"
    "    local f <close> = assert(fs.open(dir .. '/c.bin', 'w'))\n"
    "    assert(f:write(string.rep('z', 70000), 'end'))\n"
    "  end\n"
    "  do\n"
    "    local f <close> = assert(fs.open(dir .. '/c.bin', 'r'))\n"
    "    local d = assert(f:read(70003))\n"
    "    check(#d == 70003 and d:sub(-3) == 'end', 'file read')\n"
    "    local x, msg, code = f:read(1)\n"
    "    if code ~= 'EOF' then io(x, msg, code) end\n"
    "    check(x == nil and code == 'EOF', 'file EOF')\n"
    "  end\n"
    "  local x, msg, code = fs.read_file(dir .. '/missing')\n"
    "  if code ~= 'ENOENT' then io(x, msg, code) end\n"
    "  check(x == nil and code == 'ENOENT', 'ENOENT')\n"
    "  assert(fs.remove(dir .. '/b.txt'))\n"
    "  assert(fs.remove(dir .. '/c.bin'))\n"
    "  assert(fs.remove(dir))\n"
    "end\n";

static const char SC_PROCESS[] =
    "local function body()\n"
    "  local p <close> = assert(process.spawn('cat', {},\n"
    "    {stdin = 'pipe', stdout = 'pipe'}))\n"
    "  local ok, err = pcall(function()\n"
    "    assert(p.stdin:write('line1\\nline2\\n'))\n"
    "    p.stdin:close()\n"
    "    check(io(p.stdout:read_line()) == 'line1', 'child line 1')\n"
    "    check(io(p.stdout:read_line()) == 'line2', 'child line 2')\n"
    "    local code, sig = p:wait()\n"
    "    if code == nil and sig == nil then error('wait failed', 0) end\n"
    "    check(code == 0, 'exit code')\n"
    "  end)\n"
    "  if not ok then p:kill('KILL'); p:wait(); error(err, 0) end\n"
    "  local code, out, err = process.run('echo', {'hi'})\n"
    "  io(code, out, err)\n"
    "  check(code == 0 and out == 'hi\\n', 'process.run')\n"
    "  local q <close> = assert(process.spawn('cat', {}, {stdin = 'pipe'}))\n"
    "  assert(q:kill('TERM'))\n"
    "  local c2, sig = q:wait()\n"
    "  check(c2 == nil and sig == 'SIGTERM', 'killed child')\n"
    "  local r = spindle.spawn(process.run, 'cat', {})\n"
    "  spindle.yield()\n"
    "  r:abort()\n"
    "  check(not r:result(), 'aborted run')\n"
    "end\n";

static const char SC_BLOCKING[] =
    "local function body()\n"
    "  local a, b = spindle.blocking(function(x, y)\n"
    "    return x + y, {x, y, s = 'str'}\n"
    "  end, 1, 2)\n"
    "  check(a == 3 and b[2] == 2 and b.s == 'str', 'blocking results')\n"
    "  local ok, e = pcall(spindle.blocking, function() error('inner') end)\n"
    "  check(not ok, 'blocking error')\n"
    "  expect(e, has('inner'))\n"
    "  local sum = 0\n"
    "  spindle.scope(function(s)\n"
    "    for i = 1, 3 do\n"
    "      s:spawn(function()\n"
    "        local v = spindle.blocking(function(k) return k * k end, i)\n"
    "        sum = sum + v\n"
    "      end)\n"
    "    end\n"
    "  end)\n"
    "  check(sum == 14, 'concurrent blocking')\n"
    "end\n";

static const char SC_SYNC[] =
    "local function body()\n"
    "  local sem = spindle.semaphore(2)\n"
    "  local active, peak = 0, 0\n"
    "  spindle.scope(function(s)\n"
    "    for i = 1, 5 do\n"
    "      s:spawn(function()\n"
    "        local permit <close> = sem:acquire()\n"
    "        active = active + 1\n"
    "        if active > peak then peak = active end\n"
    "        spindle.yield()\n"
    "        active = active - 1\n"
    "      end)\n"
    "    end\n"
    "  end)\n"
    "  check(peak <= 2, 'semaphore bound')\n"
    "  check(sem:available() == 2, 'every permit back')\n"
    "  local m = spindle.mutex()\n"
    "  local inside = 0\n"
    "  spindle.scope(function(s)\n"
    "    for i = 1, 4 do\n"
    "      s:spawn(function()\n"
    "        local g <close> = m:lock()\n"
    "        inside = inside + 1\n"
    "        check(inside == 1, 'mutual exclusion')\n"
    "        spindle.yield()\n"
    "        inside = inside - 1\n"
    "      end)\n"
    "    end\n"
    "  end)\n"
    "  check(not m:is_locked(), 'unlocked at the end')\n"
    "  local ev = spindle.event()\n"
    "  local woke = 0\n"
    "  spindle.scope(function(s)\n"
    "    for i = 1, 3 do s:spawn(function() ev:wait(); woke = woke + 1 end) "
    "end\n"
    "    s:spawn(function() spindle.yield(); ev:set() end)\n"
    "  end)\n"
    "  check(woke == 3 and ev:is_set(), 'event')\n"
    "  -- an aborted waiter leaks no permit\n"
    "  local s1 = spindle.semaphore(1)\n"
    "  local p1 = s1:acquire()\n"
    "  local w = spindle.spawn(function() local p <close> = s1:acquire() end)\n"
    "  spindle.yield()\n"
    "  w:abort()\n"
    "  w:result()\n"
    "  p1:release()\n"
    "  check(s1:available() == 1, 'no permit leaked by an aborted waiter')\n"
    "end\n";

static const char SC_UNIX[] =
    "local function body()\n"
    "  local path = TMPDIR .. '/sock'\n"
    "  local srv <close> = assert(net.listen_unix(path))\n"
    "  spindle.scope(function(s)\n"
    "    s:spawn(function()\n"
    "      local c <close> = assert(srv:accept())\n"
    "      for line in c:lines() do assert(c:write(line:upper(), '\\n')) end\n"
    "    end)\n"
    "    local c <close> = assert(net.connect_unix(path))\n"
    "    for i = 1, 5 do\n"
    "      assert(c:write('line ' .. i .. '\\n'))\n"
    "      check(io(c:read_line()) == 'LINE ' .. i, 'unix echo ' .. i)\n"
    "    end\n"
    "    assert(c:shutdown())\n"
    "    check(io(c:read_all()) == '', 'read_all at EOF')\n"
    "  end)\n"
    "  srv:close()\n"
    "  os.remove(path)\n"
    "end\n";

/* Runs on the host, outside any task: runtimes made and closed from Lua. */
static const char SC_RUNTIMES[] =
    "local function body()\n"
    "  local rt = spindle.runtime({clock = 'virtual'})\n"
    "  local v = rt:run(function() spindle.sleep(3600); return 7 end)\n"
    "  check(v == 7, 'rt:run result')\n"
    "  rt:close()\n"
    "  local r1, r2 = spindle.runtime(), spindle.runtime()\n"
    "  r1:spawn(function() spindle.sleep(0) end)\n"
    "  r1:step()\n"
    "  r2:close()\n"
    "  r1:close()\n"
    "  check(spindle.run(function(a) return a end, 5) == 5, 'spindle.run')\n"
    "  local r3 = spindle.runtime()\n"
    "  local closed = false\n"
    "  local h = r3:spawn(function()\n"
    "    local c <close> = setmetatable({}, {__close = function()\n"
    "      closed = true end})\n"
    "    spindle.sleep(10)\n"
    "  end)\n"
    "  r3:step()\n"
    "  r3:close()\n"
    "  if h:status() == 'failed' then error(h:traceback(), 0) end -- by "
    "itself\n"
    "  check(h:status() == 'cancelled' and closed, 'close unwinds a task')\n"
    "  local r4 <close> = spindle.runtime({clock = 'virtual'})\n"
    "  local ok, e = pcall(r4.run, r4, function() error('main failed') end)\n"
    "  check(not ok, 'a failing main')\n"
    "  expect(e, has('main failed'))\n"
    "end\n";

static const char HOST_EPILOGUE[] =
    "\nreturn function()\n"
    "  RESULT = nil\n"
    "  local ok, err = pcall(body)\n"
    "  if ok then RESULT = 'ok' else RESULT = err end\n"
    "end\n";

typedef struct scenario {
  const char *name;
  const char *body;
  int host; /* runs on the host (lua_pcall), not as a spawned task */
} scenario;

static const scenario scenarios[] = {
    /* first: it also sweeps the setup every scenario shares */
    {"runtimes", SC_RUNTIMES, 1},
    {"spawn_join", SC_SPAWN_JOIN, 0},
    {"abort_close", SC_ABORT_CLOSE, 0},
    {"channels", SC_CHANNELS, 0},
    {"timers", SC_TIMERS, 0},
    {"tcp_echo", SC_TCP_ECHO, 0},
    {"udp", SC_UDP, 0},
    {"fs", SC_FS, 0},
    {"process", SC_PROCESS, 0},
    {"blocking", SC_BLOCKING, 0},
    {"sync", SC_SYNC, 0},
    {"unix", SC_UNIX, 0},
};
#define NSCENARIOS ((int)(sizeof scenarios / sizeof scenarios[0]))

/* ---- one run ------------------------------------------------------------ */

enum { OUT_OK, OUT_MEMORY, OUT_OTHER, OUT_BUG, OUT_HANG };

typedef struct run_result {
  int stage;           /* how far the armed part got (ST_*) */
  int outcome;         /* OUT_* of the armed part */
  char msg[200];       /* its error message, if any */
  int followup_ok;     /* the follow-up returned "ok" */
  char fmsg[200];      /* else why */
  long allocs;         /* allocations counted while armed */
  long setup;          /* of which before the scenario's chunk was loaded */
  char site[200];      /* where the failing allocation was made */
  const char *skipped; /* not injected: at this known open bug */
  int injected;
} run_result;

enum { ST_STATE, ST_LIBS, ST_NEW, ST_LOAD, ST_SPAWN, ST_RUN, ST_DONE };
static const char *const stage_names[] = {
    "lua_newstate",  "luaL_openlibs", "spindle_new", "loading the chunk",
    "spindle_spawn", "spindle_run",   "completed"};

/* Lua 5.4.4's luaL_Buffer registers its box metatable ("_UBOX*") before
** filling it in: a memory error in between leaves a metatable without
** __close, and every later large buffer in that state fails ("variable
** '(C temporary)' got a non-closable value").  That is Lua's, not
** spindle's: the harness makes the first large buffer unarmed. */
static int warm_buffer_p(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinitsize(L, &b, LUAL_BUFFERSIZE * 2);
  luaL_pushresultsize(&b, 0);
  return 1;
}

static int open_libs_p(lua_State *L) {
  luaL_openlibs(L);
  return 0;
}

/* Seconds after which a scenario counts as hung (a clean run takes well
** under 0.1 s; more under the sanitizers and valgrind). */
static double hang_after = 2;

/* INJECTED(): whether this run's failure has happened yet. */
static int injected_l(lua_State *L) {
  lua_pushboolean(L, atomic_load(&injected));
  return 1;
}

static int set_globals_p(lua_State *L) {
  lua_pushstring(L, tmpdir);
  lua_setglobal(L, "TMPDIR");
  lua_pushcfunction(L, injected_l);
  lua_setglobal(L, "INJECTED");
  lua_pushnumber(L, hang_after);
  lua_setglobal(L, "HANG_AFTER");
  return 0;
}

/* Builds the chunk source into buf. */
static void chunk_source(const scenario *sc, char *buf, size_t size) {
  snprintf(buf, size, "%s%s%s", PRELUDE, sc->body,
           sc->host ? HOST_EPILOGUE : EPILOGUE);
}

/* Loads and runs the chunk, leaving its function on top.  LUA_OK or the
** error status (message on top). */
static int load_chunk(lua_State *L, const scenario *sc) {
  static char src[16384];
  int r;
  chunk_source(sc, src, sizeof src);
  r = luaL_loadbuffer(L, src, strlen(src), sc->name);
  if (r == LUA_OK) r = lua_pcall(L, 0, 1, 0);
  return r;
}

/* Classifies the value at idx (an error or RESULT) into msg.  Runs
** unarmed.  [-0, +0, -] */
static int classify(lua_State *L, int idx, char *msg, size_t size) {
  const char *s;
  int out, top;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING &&
      strcmp(lua_tostring(L, idx), "ok") == 0) {
    snprintf(msg, size, "ok");
    return OUT_OK;
  }
  /* spindle.is_timeout(v): the scenario's own 20 s guard fired */
  top = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_istable(L, -1) && lua_getfield(L, -1, "spindle") == LUA_TTABLE &&
      lua_getfield(L, -1, "is_timeout") == LUA_TFUNCTION) {
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_toboolean(L, -1)) {
      lua_settop(L, top);
      snprintf(msg, size, "the scenario timed out (a hang)");
      return OUT_HANG;
    }
  }
  lua_settop(L, top);
  s = luaL_tolstring(L, idx, NULL);
  snprintf(msg, size, "%s", s);
  lua_pop(L, 1);
  if (strstr(msg, "BUG: ") != NULL)
    out = OUT_BUG;
  else if (strstr(msg, "not enough memory") != NULL ||
           strstr(msg, "ENOMEM") != NULL || strstr(msg, "ENOBUFS") != NULL)
    out = OUT_MEMORY;
  else
    out = OUT_OTHER;
  return out;
}

/* Spawns the function on top (or calls it, for host scenarios) and runs
** it.  Leaves two values: the task's handle (or nil) and the outcome -- the
** error, or the global RESULT.  Allocates nothing itself outside
** protected calls: it runs armed.  Returns the stage reached. */
static int run_chunk(lua_State *L, spindle_rt *rt, const scenario *sc) {
  int r;
  if (sc->host) {
    lua_pushnil(L); /* no handle */
    lua_insert(L, -2);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) return ST_RUN;
  } else {
    if ((r = spindle_spawn(rt, 0)) != 0) {
      lua_pushnil(L);
      lua_pushinteger(L, r);
      return ST_SPAWN;
    }
    r = spindle_run(rt); /* the handle stays below */
    if (r != 0) {
      if (r != -SPINDLE_ERUN) lua_pushinteger(L, r);
      return ST_RUN;
    }
  }
  lua_getglobal(L, "RESULT");
  return ST_DONE;
}

/* Classifies what run_chunk left (handle, outcome) and pops both: a nil
** RESULT of a task that failed by itself is judged by its traceback; a
** number is a spindle_* error code.  Runs unarmed.  [-2, +0, -] */
static int judge(lua_State *L, char *msg, size_t size) {
  int out;
  if (lua_isnil(L, -1) && lua_type(L, -2) == LUA_TUSERDATA) {
    lua_getfield(L, -2, "traceback");
    lua_pushvalue(L, -3);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_getfield(L, -2, "status");
      lua_pushvalue(L, -3);
      if (lua_pcall(L, 1, 1, 0) != LUA_OK) lua_pushliteral(L, "?");
      /* Lua runs no message handler for a memory error: a failed task
      ** without a traceback failed of one */
      if (strcmp(lua_tostring(L, -1), "failed") == 0)
        lua_pushliteral(L, "not enough memory (the task failed)");
      else
        lua_pushfstring(L, "the task ended %s without a RESULT",
                        lua_tostring(L, -1));
      lua_remove(L, -2);
    }
    lua_replace(L, -2);
  }
  if (lua_type(L, -1) == LUA_TNUMBER) {
    int code = (int)lua_tointeger(L, -1);
    snprintf(msg, size, "spindle_spawn/run returned %d", code);
    /* a failed spawn is a memory error; any other code a bug */
    out = code == -SPINDLE_ERUN ? OUT_MEMORY : OUT_OTHER;
  } else
    out = classify(L, -1, msg, size);
  lua_pop(L, 2);
  return out;
}

/* One run with allocation n failing (0: none).  *L_out: the state. */
static void run_once(const scenario *sc, long n, run_result *res) {
  lua_State *L;
  spindle_rt *rt = NULL;
  int stage = ST_STATE, outcome = OUT_OK, r;
  memset(res, 0, sizeof *res);
  rm_tree(tmpdir, 1);
  alarm(120);
  arm(n);
  L = lua_newstate(lua_alloc, NULL);
  if (L == NULL) goto unarmed;
  lua_atpanic(L, on_panic);
  atomic_store(&counting, 0);
  lua_pushcfunction(L, warm_buffer_p);
  lua_pcall(L, 0, 0, 0);
  atomic_store(&counting, 1);
  stage = ST_LIBS;
  lua_pushcfunction(L, open_libs_p);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) goto failed;
  stage = ST_NEW;
  if ((rt = spindle_new(L, NULL)) == NULL) goto unarmed;
  stage = ST_LOAD;
  res->setup = atomic_load(&count);
  lua_pushcfunction(L, set_globals_p);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK || load_chunk(L, sc) != LUA_OK)
    goto failed;
  stage = run_chunk(L, rt, sc);
  res->allocs = disarm();
  outcome = judge(L, res->msg, sizeof res->msg);
  goto judged;
failed: /* the error is on top */
  res->allocs = disarm();
  lua_pushnil(L);
  lua_insert(L, -2);
  outcome = judge(L, res->msg, sizeof res->msg);
  goto judged;
unarmed:
  res->allocs = disarm();
judged:
  res->injected = atomic_load(&injected);
  res->skipped = skipped_bug;
  if (res->injected || res->skipped) site_of(res->site, sizeof res->site);
  res->stage = stage;
  res->outcome = outcome;
  if (L == NULL) {
    res->followup_ok = 1; /* nothing to follow up on */
    alarm(0);
    return;
  }
  /* The follow-up: the same state, the allocator no longer failing. */
  rm_tree(tmpdir, 1);
  if (stage <= ST_LIBS) {
    lua_pushcfunction(L, open_libs_p);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
      snprintf(res->fmsg, sizeof res->fmsg, "luaL_openlibs again: %s",
               lua_tostring(L, -1));
      lua_pop(L, 1);
      goto done;
    }
  }
  if (rt == NULL && (rt = spindle_new(L, NULL)) == NULL) {
    snprintf(res->fmsg, sizeof res->fmsg, "spindle_new again failed");
    goto done;
  }
  lua_pushcfunction(L, set_globals_p);
  lua_pcall(L, 0, 0, 0);
  if (load_chunk(L, sc) != LUA_OK) {
    snprintf(res->fmsg, sizeof res->fmsg, "loading the chunk again: %s",
             lua_tostring(L, -1));
    lua_pop(L, 1);
    goto done;
  }
  r = run_chunk(L, rt, sc);
  outcome = judge(L, res->fmsg, sizeof res->fmsg);
  res->followup_ok = r == ST_DONE && outcome == OUT_OK;
done:
  spindle_close(rt);
  lua_close(L);
  rm_tree(tmpdir, 1);
  alarm(0);
}

/* ---- the sweep ----------------------------------------------------------- */

static long known_hits[16]; /* runs not injected, per known_bugs[] entry */

static void note_known(const char *what) {
  int i;
  for (i = 0; known_bugs[i].site != NULL && i < 16; i++)
    if (known_bugs[i].what == what) known_hits[i]++;
}

static int verbose;

typedef struct tally {
  long runs, injected, ok, memory, other, bugs, hangs, known;
  long stage[ST_DONE + 1];
  char others[4][200]; /* a few distinct non-memory errors, for the log */
  int nothers;
} tally;

static void note_other(tally *t, const char *msg) {
  int i;
  for (i = 0; i < t->nothers; i++)
    if (strcmp(t->others[i], msg) == 0) return;
  if (t->nothers < 4) snprintf(t->others[t->nothers++], 200, "%s", msg);
}

/* Runs one N and checks it; returns 1 if a failure was injected. */
static int one(const scenario *sc, long n, int *base_fds, tally *t) {
  run_result res;
  char why[300], kid[120];
  int fds, ok = 1;
  /* The run's stderr (unobserved-failure reports, ...) goes to the
  ** capture file: shown only when something is wrong. */
  if (ftruncate(capture_fd, 0) != 0) perror("ftruncate");
  lseek(capture_fd, 0, SEEK_SET);
  fflush(stderr);
  dup2(capture_fd, 2);
  cur_n = n;
  in_run = 1;
  run_once(sc, n, &res);
  in_run = 0;
  fflush(stderr);
  dup2(saved_stderr, 2);
  fds = fd_count();
  t->runs++;
  t->injected += res.injected;
  t->stage[res.stage]++;
  why[0] = 0;
  switch (res.outcome) {
    case OUT_OK: t->ok++; break;
    case OUT_MEMORY: t->memory++; break;
    case OUT_OTHER:
      t->other++;
      note_other(t, res.msg);
      break;
    case OUT_BUG:
      t->bugs++;
      ok = 0;
      snprintf(why, sizeof why, "invariant broken: %s", res.msg);
      break;
    default:
      t->hangs++;
      ok = 0;
      snprintf(why, sizeof why, "%s", res.msg);
      break;
  }
  if (ok && !res.injected && res.outcome != OUT_OK) {
    ok = 0;
    snprintf(why, sizeof why, "failed with no failure injected: %s", res.msg);
  }
  if (ok && !res.followup_ok) {
    ok = 0;
    snprintf(why, sizeof why, "not usable after the failure: %s", res.fmsg);
  }
  if (ok && fds != *base_fds) {
    ok = 0;
    snprintf(why, sizeof why, "%d descriptors open, %d before", fds, *base_fds);
  }
  *base_fds = fds; /* one report per leak, not one per later run */
  if (ok && children_left(kid, sizeof kid)) {
    ok = 0;
    snprintf(why, sizeof why, "%s", kid);
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
  }
  if (res.skipped != NULL) {
    t->known++;
    if (verbose)
      printf("# %s N=%ld: not injected at [%s]: %s\n", sc->name, n, res.site,
             res.skipped);
    note_known(res.skipped);
  }
  if (!ok) {
    CHECK(0, "%s N=%ld (failed in %s; allocation: %s): %s", sc->name, n,
          stage_names[res.stage], res.site, why);
    dump_capture();
  } else if (verbose) {
    printf("# %s N=%ld: %s in %s [%s]%s%s\n", sc->name, n,
           res.injected ? "injected" : "not reached", stage_names[res.stage],
           res.site, res.outcome == OUT_OK ? "" : ": ",
           res.outcome == OUT_OK ? "" : res.msg);
  }
  return res.injected || res.skipped != NULL;
}

/* one() in a child process, so that a crash ends only that run (--fork,
** for finding several bugs in one sweep).  Returns 1 if a failure was
** injected (or the child crashed). */
static int one_forked(const scenario *sc, long n, int *base_fds, tally *t) {
  int st, r;
  pid_t pid;
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    int before = failed;
    r = one(sc, n, base_fds, t);
#ifdef AF_ASAN
    /* this run's leaks, now (no leak check at _exit) */
    fflush(stderr);
    dup2(saved_stderr, 2);
    if (__lsan_do_recoverable_leak_check() != 0)
      CHECK(0, "%s N=%ld: memory leaked (report above)", sc->name, n);
#endif
    fflush(stdout);
    _exit((r ? 1 : 0) | (failed != before ? 2 : 0));
  }
  t->runs++;
  if (pid < 0 || waitpid(pid, &st, 0) != pid) {
    CHECK(0, "%s N=%ld: fork/wait failed", sc->name, n);
    return 0;
  }
  if (WIFSIGNALED(st)) {
    CHECK(0, "%s N=%ld: the run crashed (%s)", sc->name, n,
          strsignal(WTERMSIG(st)));
    return 1;
  }
  r = WEXITSTATUS(st);
  if (r & 2) failed++;
  t->injected += r & 1;
  return r & 1;
}

static int sanitized_env(const char *what) {
  const char *e = getenv("SPINDLE_TEST_ENV");
  return e != NULL && strcmp(e, what) == 0;
}

int main(int argc, char **argv) {
  int deep = 0, i, base_fds, total_fail_before, swept_setup = 0;
  int use_fork = 0;
  long clean_allocs[NSCENARIOS], clean_setup[NSCENARIOS];
  long stride = 0, only_n = 0, max_runs;
  const char *only = NULL, *e;
  char capname[300];
  struct timespec t0, t1;
  long grand_runs = 0, grand_injected = 0, grand_n = 0;

  /* Before anything in libuv allocates. */
  if (uv_replace_allocator(uv_malloc_f, uv_realloc_f, uv_calloc_f, free) != 0) {
    printf("not ok - uv_replace_allocator failed\n0 passed, 1 failed\n");
    return 1;
  }
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--deep") == 0)
      deep = 1;
    else if (strcmp(argv[i], "--stride") == 0 && i + 1 < argc)
      stride = atol(argv[++i]);
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
      only = argv[++i];
    else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
      only_n = atol(argv[++i]);
    else if (strcmp(argv[i], "-v") == 0)
      verbose = 1;
    else if (strcmp(argv[i], "--fork") == 0)
      use_fork = 1;
    else if (strcmp(argv[i], "--strict") == 0)
      strict = 1;
    else {
      fprintf(
          stderr,
          "usage: %s [--deep] [--fork] [--strict] [--stride K] [--only NAME] "
          "[--n N] [-v]\n",
          argv[0]);
      return 2;
    }
  }
  if ((e = getenv("ALLOCFAIL_DEEP")) != NULL && strcmp(e, "1") == 0) deep = 1;
  {
    void *frames[2];
    backtrace(frames, 2); /* loads the unwinder now, not while failing */
  }
  if ((e = getenv("ALLOCFAIL_TRACE")) != NULL && strcmp(e, "1") == 0) trace = 1;
  /* The CI form: runs per scenario. */
  max_runs = sanitized_env("valgrind") ? 2 : sanitized_env("asan") ? 25 : 40;
  if ((e = getenv("ALLOCFAIL_RUNS")) != NULL) max_runs = atol(e);
  hang_after = sanitized_env("valgrind") ? 30 : sanitized_env("asan") ? 8 : 2;

  snprintf(tmpdir, sizeof tmpdir, "/tmp/spindle-allocfail.XXXXXX");
  if (mkdtemp(tmpdir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(capname, sizeof capname, "%s.stderr", tmpdir);
  capture_fd = open(capname, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  unlink(capname);
  saved_stderr = fcntl(2, F_DUPFD_CLOEXEC, 10);
  trace_fd = saved_stderr;
  if (capture_fd < 0 || saved_stderr < 0) {
    perror("capture");
    return 1;
  }
  load_symbols();
  atexit(on_exit_check);
  signal(SIGALRM, on_signal);
  signal(SIGABRT, on_signal);
#ifdef AF_ASAN
  __sanitizer_set_death_callback(on_death);
#else
  (void)on_death;
  signal(SIGSEGV, on_signal);
  signal(SIGBUS, on_signal);
  signal(SIGFPE, on_signal);
  signal(SIGILL, on_signal);
#endif
  signal(SIGPIPE, SIG_IGN);

  /* Warm-up: every scenario once without failures (libuv opens its
  ** process-wide descriptors once), then the descriptor baseline. */
  for (i = 0; i < NSCENARIOS; i++) {
    run_result res;
    const scenario *sc = &scenarios[i];
    if (only != NULL && strcmp(only, sc->name) != 0) continue;
    cur_scenario = sc->name;
    run_once(sc, 0, &res);
    clean_allocs[i] = res.allocs;
    clean_setup[i] = res.setup;
    CHECK(res.outcome == OUT_OK && res.followup_ok,
          "%s runs without failures (%ld allocations)%s%s", sc->name,
          res.allocs, res.outcome == OUT_OK ? "" : ": ",
          res.outcome == OUT_OK ? "" : res.msg);
  }
  base_fds = fd_count();

  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (i = 0; i < NSCENARIOS; i++) {
    const scenario *sc = &scenarios[i];
    tally t;
    long n, step, first, total;
    if (only != NULL && strcmp(only, sc->name) != 0) continue;
    cur_scenario = sc->name;
    memset(&t, 0, sizeof t);
    total_fail_before = failed;
    if (only_n > 0) {
      one(sc, only_n, &base_fds, &t);
      continue;
    }
    /* Allocations of a clean run: the sweep's expected length.  The
    ** setup (lua_newstate, luaL_openlibs, spindle_new) makes the same
    ** allocations in every scenario: only the first one sweeps it. */
    total = clean_allocs[i];
    first = swept_setup ? clean_setup[i] + 1 : 1;
    swept_setup = 1;
    step = stride > 0 ? stride
           : deep     ? 1
                      : (total - first + max_runs) / max_runs;
    if (step < 1) step = 1;
    if (step > 1) first += (i * 7919L) % step;
    for (n = first;; n += step) {
      if (!(use_fork ? one_forked(sc, n, &base_fds, &t)
                     : one(sc, n, &base_fds, &t)))
        break; /* never reached: done */
      if (n > 50 * (total + 1000)) {
        CHECK(0, "%s: the sweep does not end (N=%ld)", sc->name, n);
        break;
      }
    }
    grand_runs += t.runs;
    grand_injected += t.injected;
    grand_n += n;
    printf("# %s: %ld allocations, N=%ld..%ld step %ld: %ld runs, %ld "
           "failures injected; armed part: %ld ok, %ld memory errors, %ld "
           "other errors; stopped in",
           sc->name, total, first, n, step, t.runs, t.injected, t.ok, t.memory,
           t.other);
    for (int s = 0; s <= ST_DONE; s++)
      if (t.stage[s]) printf(" %s %ld,", stage_names[s], t.stage[s]);
    printf("\n");
    for (int k = 0; k < t.nothers; k++)
      printf("#   other error: %s\n", t.others[k]);
    if (t.known > 0)
      printf("#   %ld runs not injected: the allocation was at a known "
             "open bug\n",
             t.known);
    CHECK(failed == total_fail_before,
          "%s: %ld runs with a failing allocation, no crash, leak of "
          "descriptors, hang or unusable runtime",
          sc->name, t.runs);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("# sweep: %ld runs, %ld failures injected, %s, %.1f s\n", grand_runs,
         grand_injected, deep ? "every N" : "strided",
         (double)(t1.tv_sec - t0.tv_sec) +
             (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  (void)grand_n;
  for (i = 0; known_bugs[i].site != NULL; i++)
    if (known_hits[i] > 0)
      printf("# known open bug, %ld runs not injected: %s\n", known_hits[i],
             known_bugs[i].what);
  rm_tree(tmpdir, 0);
  close(capture_fd);
  capture_fd = -1;
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
