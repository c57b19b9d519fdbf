/*
** fs.c -- spindle.fs: files on the libuv thread pool, and the registry of
** io objects per runtime shared with udp.c, process.c and signal.c.
**
** Every operation is one fs_req: a malloc'd uv_fs_t plus the state of a
** small step machine (read_file is open -> read... -> close), driven by
** fs_cb on the loop thread.  While a step is on the pool the runtime's
** inflight count is raised, so a virtual clock does not jump past it.
**
** Request life:
**   started by an await; r->task = the waiting task
**   each step's callback either starts the next step or finishes:
**     r->task set   -> record the result, wake the task; the continuation
**                      pushes the result and frees r
**     r->task NULL  -> abandoned (the task was aborted): release what the
**                      request holds (close an fd it opened) and free r
**   abort: undo tries uv_cancel and detaches (r->task = NULL); a step that
**   is already running completes, and the request then cleans up after
**   itself -- an open() that completes for an aborted task closes its fd.
**
** A file object (fs.open) owns its descriptor and its position, and reads
** and writes at that position (pread/pwrite), with a read-ahead for io's
** formats; at most one read, seek or write call is in progress per file
** ("file busy" otherwise).  close() while one is in flight wakes its task
** with nil, "closed", "ECANCELED" at once and hands the descriptor to the
** request, which closes it when the step is done.
*/
#include <ctype.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

/* ---- requests ---------------------------------------------------------- */

enum {
  FS_READFILE,
  FS_WRITEFILE,
  FS_OPEN,
  FS_READ,
  FS_WRITE,
  FS_CLOSE,
  FS_STAT,
  FS_LSTAT,
  FS_REMOVE,
  FS_RENAME,
  FS_MKDIR,
  FS_LISTDIR,
  FS_FSTAT
};

/* Steps of the multi-step operations. */
enum { ST_OPEN, ST_IO, ST_CLOSE, ST_RMDIR, ST_ONE, ST_STAT };

#define FS_CHUNK 65536

typedef struct fs_file fs_file;

typedef struct fs_req {
  sp_ionode node; /* owned while anything is pending */
  uv_fs_t req;
  sp_runtime *rt;
  sp_task *task; /* NULL once abandoned (or never had one) */
  fs_file *file; /* FS_READ/FS_WRITE/FS_FSTAT: the file, while ours */
  int op, step;
  int pending;  /* a step is on the pool */
  int grow;     /* FS_READ: read to the end of the file */
  int eof;      /* FS_READ: a read returned 0 bytes */
  int append;   /* FS_WRITE: written at the end; fstat for the position */
  int64_t foff; /* FS_READ/FS_WRITE: file offset of buf[0], -1: none */
  size_t min;   /* FS_READ: read until at least this much (or the end) */
  uv_file fd;   /* a descriptor this request must close, or -1 */
  int err;      /* first error (< 0), or 0 */
  char *buf;    /* data read or to write */
  size_t len, cap, off, want;
  int flags, mode;
  uv_stat_t st;
  char *path2; /* rename: the second path */
} fs_req;

struct fs_file {
  sp_ionode node; /* owned while fd is open */
  sp_runtime *rt;
  uv_file fd;    /* -1 once closed */
  fs_req *busy;  /* the request in flight */
  sp_task *user; /* the task suspended in read, write or seek: busy */
  int64_t pos;   /* where the next read or write starts (as io's) */
  char *rbuf;    /* read-ahead: rbuf[rhead..rtail) are the bytes at pos */
  size_t rcap, rhead, rtail;
  size_t scan; /* bytes after rhead known to hold no newline */
  int nfmt;    /* the read call's formats: stack 2 .. nfmt + 1 */
  int eof;     /* this read call met the end of the file */
  int append;  /* mode "a": every write goes at the end */
  int noseek;  /* a pipe or terminal: no positions (ESPIPE) */
};

#define FS_FILE_MT "spindle.fs.file"

static void fs_cb(uv_fs_t *req);
static int fs_step(fs_req *r);

static void fs_free(fs_req *r) {
  sp_io_untrack(&r->node);
  free(r->buf);
  free(r->path2);
  free(r);
}

/* The runtime closes while r is pending: detach its task (it is being
** torn down); the callbacks still run and release r. */
static void fs_req_rtclose(sp_owned *o) {
  fs_req *r = sp_container_of(o, fs_req, node.own);
  r->task = NULL;
}

static fs_req *fs_req_new(lua_State *L, sp_runtime *rt, int op) {
  fs_req *r = calloc(1, sizeof *r);
  if (r == NULL) luaL_error(L, "not enough memory");
  r->rt = rt;
  r->op = op;
  r->fd = -1;
  r->foff = -1;
  sp_io_track(&r->node, rt, fs_req_rtclose);
  return r;
}

/* Inside a callback, after starting the next step with libuv call
** result rc: a synchronous failure (no memory, say) completes the step at
** once through the same path. */
static void fs_next(fs_req *r, int rc) {
  r->pending = 1;
  r->rt->inflight++;
  if (rc < 0) {
    r->req.result = rc;
    fs_cb(&r->req);
  }
}

/* Closes the descriptor r owns, as a step; fs_finish runs afterwards. */
static void fs_close_fd(fs_req *r) {
  uv_file fd = r->fd;
  r->fd = -1;
  r->step = ST_CLOSE;
  fs_next(r, uv_fs_close(r->rt->loop, &r->req, fd, fs_cb));
}

/* The operation is over: wake the task, or clean up for nobody. */
static void fs_finish(fs_req *r) {
  if (r->file != NULL) { /* a read or write: the file is free again */
    r->file->busy = NULL;
    r->file = NULL;
  }
  if (r->task == NULL && r->fd >= 0) { /* abandoned with an fd: close it */
    fs_close_fd(r);
    return;
  }
  if (r->task != NULL) {
    sp_task *t = r->task;
    sp_io_untrack(&r->node); /* nothing pending: no need to wait for it */
    sp_wake(t, SP_WAKE_OK);
    return; /* the continuation frees r */
  }
  if (r->op == FS_LISTDIR) uv_fs_req_cleanup(&r->req);
  fs_free(r);
}

static void fs_cb(uv_fs_t *req) {
  fs_req *r = sp_container_of(req, fs_req, req);
  ssize_t res = req->result;
  r->pending = 0;
  r->rt->inflight--;
  if (r->op == FS_LISTDIR && r->step == ST_ONE) { /* keep the entries */
    if (res < 0) r->err = (int)res;
    fs_finish(r);
    return;
  }
  if ((r->op == FS_STAT || r->op == FS_LSTAT || r->op == FS_FSTAT ||
       r->step == ST_STAT) &&
      res >= 0)
    r->st = req->statbuf;
  uv_fs_req_cleanup(req);
  switch (r->step) {
    case ST_OPEN:
      if (res < 0) {
        r->err = (int)res;
        fs_finish(r);
        return;
      }
      r->fd = (uv_file)res;
      if (r->op == FS_OPEN) {
        fs_finish(r);
        return;
      }
      r->step = ST_IO;
      if (r->task == NULL) {
        fs_finish(r); /* abandoned: close what we opened */
        return;
      }
      fs_next(r, fs_step(r));
      return;
    case ST_IO:
      if (res == UV_ESPIPE && r->foff >= 0 && r->task != NULL) {
        /* a pipe or a terminal: no positions, read and write in order */
        if (r->file != NULL) r->file->noseek = 1;
        r->foff = -1;
        fs_next(r, fs_step(r));
        return;
      }
      if (res < 0) {
        r->err = (int)res;
      } else if (r->op == FS_READFILE || r->op == FS_READ) {
        r->len += (size_t)res;
        if (res == 0) r->eof = 1;
        if (res > 0 && r->task != NULL &&
            (r->op == FS_READFILE || r->grow || r->len < r->min)) {
          fs_next(r, fs_step(r));
          return;
        }
      } else { /* FS_WRITEFILE, FS_WRITE */
        r->off += (size_t)res;
        if (r->off < r->len && r->task != NULL) {
          fs_next(r, fs_step(r));
          return;
        }
        if (r->append && r->task != NULL && r->file != NULL) {
          r->step = ST_STAT; /* where the end is now: the new position */
          fs_next(r, uv_fs_fstat(r->rt->loop, &r->req, r->file->fd, fs_cb));
          return;
        }
      }
      if (r->op == FS_READFILE || r->op == FS_WRITEFILE) {
        fs_close_fd(r);
        return;
      }
      fs_finish(r);
      return;
    case ST_CLOSE:
      if (res < 0 && r->err == 0 &&
          (r->op == FS_WRITEFILE || r->op == FS_CLOSE))
        r->err = (int)res; /* a write error reported at close */
      fs_finish(r);
      return;
    case ST_STAT:
      if (res < 0) r->err = (int)res;
      fs_finish(r);
      return;
    case ST_RMDIR:
      /* rmdir of something that is not a directory: unlink's error */
      if (res < 0 && res != UV_ENOTDIR) r->err = (int)res;
      if (res >= 0) r->err = 0;
      fs_finish(r);
      return;
    default: /* ST_ONE */
      if (res < 0) r->err = (int)res;
      if (r->op == FS_REMOVE && r->task != NULL &&
          (res == UV_EISDIR || res == UV_EPERM || res == UV_EACCES)) {
        r->step = ST_RMDIR; /* like os.remove: an empty directory too */
        fs_next(r, uv_fs_rmdir(r->rt->loop, &r->req, r->path2, fs_cb));
        return;
      }
      fs_finish(r);
      return;
  }
}

/* Starts the next read or write of an ST_IO step; the libuv result. */
static int fs_step(fs_req *r) {
  uv_buf_t b;
  uv_file fd = r->file != NULL ? r->file->fd : r->fd;
  int64_t off = -1;
  if (r->op == FS_READFILE || r->op == FS_READ) {
    size_t room;
    int grow = r->op == FS_READFILE || r->grow;
    if (r->foff >= 0) off = r->foff + (int64_t)r->len;
    if (grow && r->cap - r->len < FS_CHUNK / 4) {
      size_t ncap = r->cap ? r->cap * 2 : FS_CHUNK;
      char *p = realloc(r->buf, ncap);
      if (p == NULL) return UV_ENOMEM;
      r->buf = p;
      r->cap = ncap;
    }
    room = (grow ? r->cap : r->want) - r->len;
    if (room > 0x40000000) room = 0x40000000;
    b = uv_buf_init(r->buf + r->len, (unsigned int)room);
    return uv_fs_read(r->rt->loop, &r->req, fd, &b, 1, off, fs_cb);
  } else {
    size_t left = r->len - r->off;
    if (left > 0x40000000) left = 0x40000000;
    if (r->foff >= 0) off = r->foff + (int64_t)r->off;
    b = uv_buf_init(r->buf + r->off, (unsigned int)left);
    return uv_fs_write(r->rt->loop, &r->req, fd, &b, 1, off, fs_cb);
  }
}

/* ---- the await -------------------------------------------------------- */

static void fs_undo(sp_task *t) {
  fs_req *r = (fs_req *)t->w.obj;
  if (r->file != NULL) r->file->user = NULL; /* the call is over */
  r->task = NULL;
  if (r->pending) uv_cancel((uv_req_t *)&r->req);
}

static void fs_describe(sp_task *t, char *buf, size_t size);

static const sp_waitops fs_wait = {"fs", fs_undo, fs_describe};
static const sp_waitops file_wait = {"file", fs_undo, fs_describe};

static void push_stat(lua_State *L, const uv_stat_t *s);
static int file_new(lua_State *L, sp_runtime *rt, uv_file fd, int flags);

/* Pushes the results of a finished request r; its path (or nil) at 2.
** Runs protected: the request is freed by fs_results whatever happens. */
static int results_p(lua_State *L) {
  fs_req *r = (fs_req *)lua_touserdata(L, 1);
  if (r->err < 0) {
    if (lua_type(L, 2) == LUA_TSTRING) { /* as io.open: "path: message" */
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", lua_tostring(L, 2), uv_strerror(r->err));
      lua_pushstring(L, uv_err_name(r->err)); /* the code stays bare */
      return 3;
    }
    return sp_io_fail(L, r->err);
  }
  switch (r->op) {
    case FS_READFILE:
      lua_pushlstring(L, r->buf ? r->buf : "", r->len);
      return 1;
    case FS_STAT:
    case FS_LSTAT: push_stat(L, &r->st); return 1;
    case FS_LISTDIR: {
      uv_dirent_t ent;
      lua_Integer i = 0;
      lua_newtable(L);
      while (uv_fs_scandir_next(&r->req, &ent) == 0) {
        lua_pushstring(L, ent.name);
        lua_rawseti(L, -2, ++i);
      }
      return 1;
    }
    case FS_OPEN: /* a file object for the descriptor (taken on success) */
      file_new(L, r->rt, r->fd, r->flags);
      r->fd = -1;
      return 1;
    default: lua_pushboolean(L, 1); return 1;
  }
}

/* The results of a finished request; frees it (and closes a descriptor
** it still holds), even when pushing them fails for lack of memory.
** [-0, +n, m] */
static int fs_results(lua_State *L, fs_req *r) {
  int top = lua_gettop(L), st;
  lua_pushcfunction(L, results_p);
  lua_pushlightuserdata(L, r);
  if (lua_type(L, 1) == LUA_TSTRING)
    lua_pushvalue(L, 1);
  else
    lua_pushnil(L);
  st = lua_pcall(L, 2, LUA_MULTRET, 0);
  if (r->op == FS_LISTDIR) {
    if (st != LUA_OK && r->err == 0) { /* stopped half-way: libuv frees */
      uv_dirent_t ent;                 /* an entry as the next is asked */
      while (uv_fs_scandir_next(&r->req, &ent) == 0) {
      }
    }
    uv_fs_req_cleanup(&r->req);
  }
  if (r->fd >= 0) { /* an open() whose file object could not be made */
    uv_fs_t req;
    uv_fs_close(NULL, &req, r->fd, NULL);
    uv_fs_req_cleanup(&req);
    r->fd = -1;
  }
  fs_free(r);
  if (st != LUA_OK) return lua_error(L);
  return lua_gettop(L) - top;
}

static int fs_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  fs_req *r;
  (void)status;
  sp_resumed(L, t);
  r = (fs_req *)t->w.obj;
  return fs_results(L, r);
}

/* Makes t wait for r, whose first step was just started with libuv
** result rc; a synchronous failure is reported without waiting. */
static int fs_await(lua_State *L, sp_task *t, fs_req *r, int rc) {
  if (rc < 0) {
    uv_fs_req_cleanup(&r->req);
    r->err = rc;
    r->task = NULL;
    return fs_results(L, r);
  }
  r->pending = 1;
  r->rt->inflight++;
  r->task = t;
  return sp_await_block(L, t, &fs_wait, r, fs_k, (lua_KContext)t);
}

/* ---- spindle.fs functions --------------------------------------------- */

static int fs_read_file(lua_State *L) {
  const char *path = sp_io_checkpath(L, 1);
  sp_task *t = sp_await_check(L, "spindle.fs.read_file");
  fs_req *r = fs_req_new(L, t->rt, FS_READFILE);
  r->step = ST_OPEN;
  return fs_await(
      L, t, r,
      uv_fs_open(t->rt->loop, &r->req, path, UV_FS_O_RDONLY, 0, fs_cb));
}

static int fs_write_file(lua_State *L) {
  size_t len;
  const char *path = sp_io_checkpath(L, 1);
  const char *data = luaL_checklstring(L, 2, &len);
  sp_task *t = sp_await_check(L, "spindle.fs.write_file");
  fs_req *r = fs_req_new(L, t->rt, FS_WRITEFILE);
  if (len > 0 && (r->buf = malloc(len)) == NULL) {
    fs_free(r);
    return luaL_error(L, "not enough memory");
  }
  if (len > 0) memcpy(r->buf, data, len);
  r->len = r->cap = len;
  r->step = ST_OPEN;
  return fs_await(L, t, r,
                  uv_fs_open(t->rt->loop, &r->req, path,
                             UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_TRUNC,
                             0666, fs_cb));
}

/* io.open's modes: r w a, optional +, then any b. */
static int parse_mode(const char *m) {
  int f;
  switch (*m++) {
    case 'r': f = 0; break;
    case 'w': f = UV_FS_O_CREAT | UV_FS_O_TRUNC; break;
    case 'a': f = UV_FS_O_CREAT | UV_FS_O_APPEND; break;
    default: return -1;
  }
  if (*m == '+') {
    f |= UV_FS_O_RDWR;
    m++;
  } else
    f |= (f == 0 ? UV_FS_O_RDONLY : UV_FS_O_WRONLY);
  while (*m == 'b') m++;
  return *m == '\0' ? f : -1;
}

static int fs_open(lua_State *L) {
  const char *path = sp_io_checkpath(L, 1);
  const char *mode = luaL_optstring(L, 2, "r");
  int flags = parse_mode(mode);
  sp_task *t;
  fs_req *r;
  if (flags < 0) luaL_argerror(L, 2, "invalid mode");
  t = sp_await_check(L, "spindle.fs.open");
  r = fs_req_new(L, t->rt, FS_OPEN);
  r->flags = flags;
  r->step = ST_OPEN;
  return fs_await(L, t, r,
                  uv_fs_open(t->rt->loop, &r->req, path, flags, 0666, fs_cb));
}

static int fs_stat_common(lua_State *L, int op, const char *name) {
  const char *path = sp_io_checkpath(L, 1);
  sp_task *t = sp_await_check(L, name);
  fs_req *r = fs_req_new(L, t->rt, op);
  r->step = ST_ONE;
  if (op == FS_STAT)
    return fs_await(L, t, r, uv_fs_stat(t->rt->loop, &r->req, path, fs_cb));
  return fs_await(L, t, r, uv_fs_lstat(t->rt->loop, &r->req, path, fs_cb));
}

static int fs_stat(lua_State *L) {
  return fs_stat_common(L, FS_STAT, "spindle.fs.stat");
}

static int fs_lstat(lua_State *L) {
  return fs_stat_common(L, FS_LSTAT, "spindle.fs.lstat");
}

static int fs_remove(lua_State *L) {
  const char *path = sp_io_checkpath(L, 1);
  sp_task *t = sp_await_check(L, "spindle.fs.remove");
  fs_req *r = fs_req_new(L, t->rt, FS_REMOVE);
  size_t n = strlen(path) + 1;
  if ((r->path2 = malloc(n)) == NULL) {
    fs_free(r);
    return luaL_error(L, "not enough memory");
  }
  memcpy(r->path2, path, n); /* for the rmdir step */
  r->step = ST_ONE;
  return fs_await(L, t, r, uv_fs_unlink(t->rt->loop, &r->req, path, fs_cb));
}

static int fs_rename(lua_State *L) {
  const char *from = sp_io_checkpath(L, 1);
  const char *to = sp_io_checkpath(L, 2);
  sp_task *t = sp_await_check(L, "spindle.fs.rename");
  fs_req *r = fs_req_new(L, t->rt, FS_RENAME);
  r->step = ST_ONE;
  return fs_await(L, t, r, uv_fs_rename(t->rt->loop, &r->req, from, to, fs_cb));
}

static int fs_mkdir(lua_State *L) {
  const char *path = sp_io_checkpath(L, 1);
  lua_Integer mode = luaL_optinteger(L, 2, 0777);
  sp_task *t;
  fs_req *r;
  luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "mode out of range");
  t = sp_await_check(L, "spindle.fs.mkdir");
  r = fs_req_new(L, t->rt, FS_MKDIR);
  r->step = ST_ONE;
  return fs_await(L, t, r,
                  uv_fs_mkdir(t->rt->loop, &r->req, path, (int)mode, fs_cb));
}

static int fs_list_dir(lua_State *L) {
  const char *path = sp_io_checkpath(L, 1);
  sp_task *t = sp_await_check(L, "spindle.fs.list_dir");
  fs_req *r = fs_req_new(L, t->rt, FS_LISTDIR);
  r->step = ST_ONE;
  return fs_await(L, t, r, uv_fs_scandir(t->rt->loop, &r->req, path, 0, fs_cb));
}

/* ---- stat tables -------------------------------------------------------- */

static const char *type_name(uint64_t mode) {
#ifdef S_IFMT
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
#ifdef S_IFLNK
    case S_IFLNK: return "link";
#endif
#ifdef S_IFIFO
    case S_IFIFO: return "fifo";
#endif
#ifdef S_IFSOCK
    case S_IFSOCK: return "socket";
#endif
#ifdef S_IFCHR
    case S_IFCHR: return "char";
#endif
#ifdef S_IFBLK
    case S_IFBLK: return "block";
#endif
    default: return "unknown";
  }
#else
  (void)mode;
  return "unknown";
#endif
}

static double ts(uv_timespec_t t) { return (double)t.tv_sec + t.tv_nsec / 1e9; }

/* [-0, +1, m] */
static void push_stat(lua_State *L, const uv_stat_t *s) {
  lua_createtable(L, 0, 12);
  lua_pushinteger(L, (lua_Integer)s->st_size);
  lua_setfield(L, -2, "size");
  lua_pushstring(L, type_name(s->st_mode));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)(s->st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushnumber(L, ts(s->st_mtim));
  lua_setfield(L, -2, "mtime");
  lua_pushnumber(L, ts(s->st_atim));
  lua_setfield(L, -2, "atime");
  lua_pushnumber(L, ts(s->st_ctim));
  lua_setfield(L, -2, "ctime");
  lua_pushinteger(L, (lua_Integer)s->st_nlink);
  lua_setfield(L, -2, "nlink");
  lua_pushinteger(L, (lua_Integer)s->st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, (lua_Integer)s->st_gid);
  lua_setfield(L, -2, "gid");
  lua_pushinteger(L, (lua_Integer)s->st_ino);
  lua_setfield(L, -2, "ino");
  lua_pushinteger(L, (lua_Integer)s->st_dev);
  lua_setfield(L, -2, "dev");
}

/* ---- file objects ------------------------------------------------------ */

/* Closes fd without waiting for the result: a request of its own, or a
** synchronous close when the runtime is gone (shutdown). */
static void close_fd_detached(sp_runtime *rt, uv_file fd) {
  uv_fs_t req;
  fs_req *r;
  if (rt != NULL && (r = calloc(1, sizeof *r)) != NULL) {
    r->rt = rt;
    r->op = FS_CLOSE;
    r->fd = -1;
    sp_io_track(&r->node, rt, fs_req_rtclose);
    r->step = ST_CLOSE;
    fs_next(r, uv_fs_close(rt->loop, &r->req, fd, fs_cb));
    return;
  }
  uv_fs_close(NULL, &req, fd, NULL); /* synchronous */
  uv_fs_req_cleanup(&req);
}

/* The one close path of a file (close, __close, __gc, runtime close).
** A read or write in flight keeps the descriptor until it is done; its
** task is woken now with nil, "closed", "ECANCELED". */
static void file_close(fs_file *f, int sync) {
  sp_runtime *rt = sp_io_tracked(&f->node) ? f->rt : NULL; /* NULL: gone */
  uv_file fd = f->fd;
  if (fd < 0) return;
  f->fd = -1;
  f->user = NULL;
  free(f->rbuf);
  f->rbuf = NULL;
  f->rcap = f->rhead = f->rtail = f->scan = 0;
  sp_io_untrack(&f->node);
  if (f->busy != NULL) {
    fs_req *r = f->busy;
    sp_task *t = r->task;
    f->busy = NULL;
    r->file = NULL;
    r->fd = fd; /* the request closes it when its step is done */
    if (t != NULL) {
      r->task = NULL;
      r->err = UV_ECANCELED;
      t->w.obj = NULL; /* the continuation reports "closed" */
      sp_wake(t, SP_WAKE_OK);
    }
    return;
  }
  if (sync) rt = NULL;
  close_fd_detached(rt, fd);
}

static void file_rtclose(sp_owned *o) {
  file_close(sp_container_of(o, fs_file, node.own), 1);
}

/* Pushes a file object for fd, opened with open(2) flags.  [-0, +1, m] */
static int file_new(lua_State *L, sp_runtime *rt, uv_file fd, int flags) {
  fs_file *f = lua_newuserdatauv(L, sizeof *f, 0);
  memset(f, 0, sizeof *f);
  f->fd = -1; /* born closed */
  luaL_setmetatable(L, FS_FILE_MT);
  f->rt = rt;
  f->append = (flags & UV_FS_O_APPEND) != 0;
  if (rt != NULL) sp_io_track(&f->node, rt, file_rtclose);
  f->fd = fd;
  return 1;
}

static fs_file *file_check(lua_State *L) {
  return (fs_file *)sp_checkclass(L, 1, FS_FILE_MT);
}

static sp_task *file_ready(lua_State *L, fs_file *f, const char *name) {
  sp_task *t = sp_await_check(L, name);
  if (f->fd >= 0 && f->rt != t->rt)
    luaL_error(L, "%s: the file belongs to another runtime", name);
  if (f->busy != NULL || f->user != NULL) luaL_error(L, "%s: file busy", name);
  return t;
}

/* Forgets the read-ahead (a write or a seek); the position stays. */
static void rbuf_drop(fs_file *f) {
  f->rhead = f->rtail = f->scan = 0;
  f->eof = 0;
}

/* Takes n read-ahead bytes: the position moves past them. */
static void rbuf_take(fs_file *f, size_t n) {
  f->rhead += n;
  f->pos += (int64_t)n;
  f->scan = 0;
  if (f->rhead == f->rtail) {
    f->rhead = f->rtail = 0;
    if (f->rcap > FS_CHUNK) { /* a long line or a large count: give back */
      free(f->rbuf);
      f->rbuf = NULL;
      f->rcap = 0;
    }
  }
}

/* Appends what r read to the read-ahead.  0 or UV_ENOMEM. */
static int rbuf_append(fs_file *f, fs_req *r) {
  size_t have = f->rtail - f->rhead;
  if (r->len == 0) return 0;
  if (have == 0 && f->rcap <= r->cap) { /* take r's buffer as it is */
    free(f->rbuf);
    f->rbuf = r->buf;
    f->rcap = r->cap;
    f->rhead = 0;
    f->rtail = r->len;
    r->buf = NULL;
    return 0;
  }
  if (f->rhead > 0) {
    memmove(f->rbuf, f->rbuf + f->rhead, have);
    f->rhead = 0;
    f->rtail = have;
  }
  if (f->rcap - f->rtail < r->len) {
    size_t ncap = f->rcap * 2;
    char *p;
    if (ncap < f->rtail + r->len) ncap = f->rtail + r->len;
    if ((p = realloc(f->rbuf, ncap)) == NULL) return UV_ENOMEM;
    f->rbuf = p;
    f->rcap = ncap;
  }
  memcpy(f->rbuf + f->rtail, r->buf, r->len);
  f->rtail += r->len;
  return 0;
}

/* ---- f:read(...) and f:lines(...) --------------------------------------
** The stack of a read call: the file at 1, its formats at 2 .. nfmt + 1,
** then one result per format done.  read_step serves formats from the
** read-ahead; when one needs more bytes it starts a fill (an FS_READ at
** the position after the read-ahead) and yields; read_k appends what was
** read and goes on.  f->user is set only while the task is suspended, so
** a memory error raised while results are pushed leaves the file free. */

#define L_MAXLENNUM 200 /* as liolib: the longest numeral read by "n" */

static int read_step(lua_State *L, sp_task *t, fs_file *f);

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  fs_file *f = (fs_file *)lua_touserdata(L, 1);
  fs_req *r;
  int err;
  (void)status;
  sp_resumed(L, t);
  r = (fs_req *)t->w.obj;
  f->user = NULL;
  if (r == NULL) { /* closed while waiting */
    sp_io_closed(L, "ECANCELED");
    return lua_gettop(L) - 1 - f->nfmt;
  }
  err = r->err;
  if (r->len > 0) err = rbuf_append(f, r); /* data first, an error later */
  if (r->eof && err == 0) f->eof = 1;
  fs_free(r);
  if (err == UV_ENOMEM) luaL_error(L, "not enough memory");
  if (err < 0) {
    sp_io_fail(L, err);
    return lua_gettop(L) - 1 - f->nfmt;
  }
  return read_step(L, t, f);
}

/* Reads at least min (and at most want) bytes after the read-ahead, or
** all to the end of the file with grow; read_k goes on. */
static int read_fill(lua_State *L, sp_task *t, fs_file *f, size_t want,
                     size_t min, int grow) {
  fs_req *r;
  int rc;
  sp_check_cancel(L, t); /* an abort that came while the task was ready */
  r = fs_req_new(L, t->rt, FS_READ);
  if ((r->buf = malloc(want)) == NULL) {
    fs_free(r);
    return luaL_error(L, "not enough memory");
  }
  r->cap = r->want = want;
  r->min = min;
  r->grow = grow;
  r->foff = f->noseek ? -1 : f->pos + (int64_t)(f->rtail - f->rhead);
  r->file = f;
  r->step = ST_IO;
  if ((rc = fs_step(r)) < 0) {
    r->file = NULL;
    fs_free(r);
    sp_io_fail(L, rc);
    return lua_gettop(L) - 1 - f->nfmt;
  }
  f->busy = r;
  f->user = t;
  r->task = t;
  r->pending = 1;
  r->rt->inflight++;
  return sp_await_block(L, t, &file_wait, r, read_k, (lua_KContext)t);
}

/* "n": liolib's read_number over the read-ahead, which holds the whole
** candidate (L_MAXLENNUM + 1 bytes) or reaches the end of the file. */
typedef struct {
  const char *p;
  size_t i, n;
  int c, len;
  char buff[L_MAXLENNUM + 1];
} rnum;

static int rn_getc(rnum *rn) {
  return rn->i < rn->n ? (unsigned char)rn->p[rn->i++] : EOF;
}

static int rn_next(rnum *rn) {
  if (rn->len >= L_MAXLENNUM) {
    rn->buff[0] = '\0';
    return 0;
  }
  rn->buff[rn->len++] = (char)rn->c;
  rn->c = rn_getc(rn);
  return 1;
}

static int rn_test2(rnum *rn, const char *set) {
  if (rn->c == set[0] || rn->c == set[1]) return rn_next(rn);
  return 0;
}

static int rn_digits(rnum *rn, int hex) {
  int count = 0;
  while ((hex ? isxdigit(rn->c) : isdigit(rn->c)) && rn_next(rn)) count++;
  return count;
}

/* Pushes the number or nil, "not a number", "EILSEQ"; 1 if a number. */
static int read_number(lua_State *L, fs_file *f) {
  rnum rn;
  int count = 0, hex = 0;
  char decp[2];
  decp[0] = lua_getlocaledecpoint();
  decp[1] = '.';
  rn.p = f->rbuf + f->rhead;
  rn.n = f->rtail - f->rhead;
  rn.i = 0;
  rn.len = 0;
  rn.c = rn_getc(&rn);
  rn_test2(&rn, "-+");
  if (rn_test2(&rn, "00")) {
    if (rn_test2(&rn, "xX"))
      hex = 1;
    else
      count = 1;
  }
  count += rn_digits(&rn, hex);
  if (rn_test2(&rn, decp)) count += rn_digits(&rn, hex);
  if (count > 0 && rn_test2(&rn, hex ? "pP" : "eE")) {
    rn_test2(&rn, "-+");
    rn_digits(&rn, 0);
  }
  rn.buff[rn.len] = '\0';
  rbuf_take(f, (size_t)rn.len); /* what went into buff; not the look-ahead */
  if (lua_stringtonumber(L, rn.buff) != 0) return 1;
  sp_io_fail_msg(L, "not a number", "EILSEQ");
  return 0;
}

/* Serves the formats not yet done; returns the results or yields. */
static int read_step(lua_State *L, sp_task *t, fs_file *f) {
  for (;;) {
    int done = lua_gettop(L) - 1 - f->nfmt, i = 2 + done;
    size_t have = f->rtail - f->rhead;
    if (done >= f->nfmt) return done;
    if (f->fd < 0) { /* closed by another task since the last fill */
      sp_io_closed(L, "ECANCELED");
      return lua_gettop(L) - 1 - f->nfmt;
    }
    luaL_checkstack(L, 4, "read: too many formats");
    if (lua_type(L, i) == LUA_TNUMBER) { /* a count */
      size_t n = (size_t)lua_tointeger(L, i);
      if (n == 0) {
        lua_pushliteral(L, "");
      } else if (have >= n || (f->eof && have > 0)) {
        if (n > have) n = have;
        lua_pushlstring(L, f->rbuf + f->rhead, n);
        rbuf_take(f, n);
      } else if (f->eof) {
        sp_io_fail_msg(L, "eof", "EOF");
        return lua_gettop(L) - 1 - f->nfmt;
      } else
        return read_fill(L, t, f, n - have > FS_CHUNK ? n - have : FS_CHUNK,
                         n - have, 0);
    } else {
      const char *p = lua_tostring(L, i);
      int c = p[0] == '*' ? p[1] : p[0];
      if (c == 'a') {
        if (!f->eof) return read_fill(L, t, f, FS_CHUNK, FS_CHUNK, 1);
        lua_pushlstring(L, f->rbuf ? f->rbuf + f->rhead : "", have);
        rbuf_take(f, have);
      } else if (c == 'l' || c == 'L') {
        const char *nl = have > f->scan ? memchr(f->rbuf + f->rhead + f->scan,
                                                 '\n', have - f->scan)
                                        : NULL;
        if (nl != NULL) {
          size_t n = (size_t)(nl - (f->rbuf + f->rhead));
          lua_pushlstring(L, f->rbuf + f->rhead, c == 'L' ? n + 1 : n);
          rbuf_take(f, n + 1);
        } else if (!f->eof) {
          f->scan = have;
          return read_fill(L, t, f, FS_CHUNK, 1, 0);
        } else if (have > 0) { /* the last line, without a newline */
          lua_pushlstring(L, f->rbuf + f->rhead, have);
          rbuf_take(f, have);
        } else {
          sp_io_fail_msg(L, "eof", "EOF");
          return lua_gettop(L) - 1 - f->nfmt;
        }
      } else { /* 'n' */
        while (have > 0 && isspace((unsigned char)f->rbuf[f->rhead])) {
          rbuf_take(f, 1);
          have--;
        }
        if (have == 0 && !f->eof) return read_fill(L, t, f, FS_CHUNK, 1, 0);
        if (have < L_MAXLENNUM + 2 && !f->eof)
          return read_fill(L, t, f, FS_CHUNK, L_MAXLENNUM + 2 - have, 0);
        if (have == 0) {
          sp_io_fail_msg(L, "eof", "EOF");
          return lua_gettop(L) - 1 - f->nfmt;
        }
        if (!read_number(L, f)) return lua_gettop(L) - 1 - f->nfmt;
      }
    }
  }
}

/* Checks the formats at 2 .. top (none: "l").  Returns how many. */
static int read_formats(lua_State *L) {
  int i, n = lua_gettop(L) - 1;
  if (n == 0) {
    lua_pushliteral(L, "l");
    return 1;
  }
  for (i = 2; i <= n + 1; i++) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      lua_Integer c = luaL_checkinteger(L, i);
      luaL_argcheck(L, c >= 0 && c <= 0x7fffffff, i, "count out of range");
    } else {
      const char *p = luaL_checkstring(L, i);
      int c = p[0] == '*' ? p[1] : p[0];
      if (c == '\0' || strchr("nlLa", c) == NULL)
        luaL_argerror(L, i, "invalid format");
    }
  }
  return n;
}

static int read_begin(lua_State *L, fs_file *f, int nfmt, const char *name) {
  sp_task *t = file_ready(L, f, name);
  if (f->fd < 0) return sp_io_closed(L, "ECANCELED");
  f->nfmt = nfmt;
  f->eof = 0; /* the file may have grown since the last read */
  return read_step(L, t, f);
}

static int file_read(lua_State *L) {
  fs_file *f = file_check(L);
  return read_begin(L, f, read_formats(L), "read");
}

/* for ... in f:lines(...): f:read(...) until it returns nil.  Upvalues:
** the box, the number of formats, the file, the formats. */
static int lines_iter(lua_State *L) {
  int i, n = (int)lua_tointeger(L, lua_upvalueindex(2));
  fs_file *f;
  lua_settop(L, 0);
  luaL_checkstack(L, n + 4, "lines: too many formats");
  for (i = 0; i <= n; i++) lua_pushvalue(L, lua_upvalueindex(3 + i));
  f = (fs_file *)lua_touserdata(L, 1);
  return read_begin(L, f, n, "lines");
}

static int file_lines(lua_State *L) {
  int n;
  file_check(L);
  n = read_formats(L);
  luaL_argcheck(L, n <= 250, 252, "too many formats");
  lua_pushvalue(L, lua_upvalueindex(1)); /* the box, as for every function */
  lua_insert(L, 1);
  lua_pushinteger(L, n);
  lua_insert(L, 2);
  lua_pushcclosure(L, lines_iter, n + 3);
  return 1;
}

/* ---- f:write(...) ------------------------------------------------------ */

static int write_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  fs_file *f = (fs_file *)lua_touserdata(L, 1);
  fs_req *r;
  (void)status;
  sp_resumed(L, t);
  r = (fs_req *)t->w.obj;
  f->user = NULL;
  if (r == NULL) return sp_io_closed(L, "ECANCELED"); /* closed meanwhile */
  if (r->append && r->err == 0)
    f->pos = (int64_t)r->st.st_size;
  else if (!r->append)
    f->pos += (int64_t)r->off; /* what was written, even before an error */
  return fs_results(L, r);
}

static int file_write(lua_State *L) {
  fs_file *f = file_check(L);
  int i, rc, top = lua_gettop(L);
  size_t total = 0;
  sp_task *t;
  fs_req *r;
  for (i = 2; i <= top; i++) {
    size_t l;
    luaL_checklstring(L, i, &l);
    total += l;
  }
  t = file_ready(L, f, "write");
  if (f->fd < 0) return sp_io_closed(L, "ECANCELED");
  rbuf_drop(f); /* the write goes at the position; read afresh after it */
  if (total == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  r = fs_req_new(L, t->rt, FS_WRITE);
  if ((r->buf = malloc(total)) == NULL) {
    fs_free(r);
    return luaL_error(L, "not enough memory");
  }
  for (i = 2; i <= top; i++) {
    size_t l;
    const char *s = lua_tolstring(L, i, &l);
    memcpy(r->buf + r->len, s, l);
    r->len += l;
  }
  r->cap = total;
  r->append = f->append;
  r->foff = f->append || f->noseek ? -1 : f->pos;
  r->file = f;
  r->step = ST_IO;
  if ((rc = fs_step(r)) < 0) {
    r->file = NULL;
    fs_free(r);
    return sp_io_fail(L, rc);
  }
  f->busy = r;
  f->user = t;
  r->task = t;
  r->pending = 1;
  r->rt->inflight++;
  lua_settop(L, 1);
  return sp_await_block(L, t, &file_wait, r, write_k, (lua_KContext)t);
}

/* ---- f:seek([whence [, offset]]) --------------------------------------- */

/* Moves to base + off; pushes the new position or nil, msg, "EINVAL". */
static int seek_to(lua_State *L, fs_file *f, int64_t base, lua_Integer off) {
  int64_t np;
  if ((off > 0 && base > INT64_MAX - off) || base + off < 0)
    return sp_io_fail(L, UV_EINVAL);
  np = base + off;
  if (np != f->pos) {
    rbuf_drop(f);
    f->pos = np;
  }
  lua_pushinteger(L, (lua_Integer)np);
  return 1;
}

static int seek_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  fs_file *f = (fs_file *)lua_touserdata(L, 1);
  lua_Integer off = lua_tointeger(L, 3);
  fs_req *r;
  int err;
  int64_t size;
  (void)status;
  sp_resumed(L, t);
  r = (fs_req *)t->w.obj;
  f->user = NULL;
  if (r == NULL) return sp_io_closed(L, "ECANCELED"); /* closed meanwhile */
  err = r->err;
  size = (int64_t)r->st.st_size;
  fs_free(r);
  if (err < 0) return sp_io_fail(L, err);
  if (f->fd < 0) return sp_io_closed(L, "ECANCELED");
  return seek_to(L, f, size, off);
}

static int file_seek(lua_State *L) {
  static const char *const whences[] = {"set", "cur", "end", NULL};
  fs_file *f = file_check(L);
  int whence = luaL_checkoption(L, 2, "cur", whences);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  sp_task *t = file_ready(L, f, "seek");
  fs_req *r;
  int rc;
  if (f->fd < 0) return sp_io_closed(L, "ECANCELED");
  if (f->noseek) return sp_io_fail(L, UV_ESPIPE);
  if (whence != 2) return seek_to(L, f, whence == 0 ? 0 : f->pos, off);
  lua_settop(L, 1);
  lua_pushnil(L);
  lua_pushinteger(L, off); /* at 3 for seek_k */
  r = fs_req_new(L, t->rt, FS_FSTAT);
  r->file = f;
  r->step = ST_ONE;
  if ((rc = uv_fs_fstat(t->rt->loop, &r->req, f->fd, fs_cb)) < 0) {
    uv_fs_req_cleanup(&r->req);
    r->file = NULL;
    fs_free(r);
    return sp_io_fail(L, rc);
  }
  f->busy = r;
  f->user = t;
  r->task = t;
  r->pending = 1;
  r->rt->inflight++;
  return sp_await_block(L, t, &file_wait, r, seek_k, (lua_KContext)t);
}

static int file_close_m(lua_State *L) {
  fs_file *f = file_check(L);
  file_close(f, 0);
  lua_pushboolean(L, 1);
  return 1;
}

static int file_gc(lua_State *L) {
  fs_file *f = (fs_file *)sp_testclass(L, 1, FS_FILE_MT);
  if (f != NULL) file_close(f, 0);
  return 0;
}

static int file_tostring(lua_State *L) {
  fs_file *f = file_check(L);
  if (f->fd < 0)
    lua_pushliteral(L, "spindle.fs.file (closed)");
  else
    lua_pushfstring(L, "spindle.fs.file (fd %d)", (int)f->fd);
  return 1;
}

/* spindle.dump: "fs read_file /tmp/x", "file read fd 7". */
static void fs_describe(sp_task *t, char *buf, size_t size) {
  static const char *const names[] = {
      "read_file", "write_file", "open",   "read",  "write",    "close", "stat",
      "lstat",     "remove",     "rename", "mkdir", "list_dir", "seek"};
  fs_req *r = (fs_req *)t->w.obj;
  if (r == NULL) {
    snprintf(buf, size, "fs");
  } else if (t->wait == &file_wait) {
    snprintf(buf, size, "file %s fd %d", names[r->op],
             r->file ? (int)r->file->fd : -1);
  } else if (r->req.path != NULL && r->pending) {
    snprintf(buf, size, "fs %s %s", names[r->op], r->req.path);
  } else
    snprintf(buf, size, "fs %s", names[r->op]);
}

int sp_fs_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"read", file_read}, {"write", file_write},   {"lines", file_lines},
      {"seek", file_seek}, {"close", file_close_m}, {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"read_file", fs_read_file}, {"write_file", fs_write_file},
      {"open", fs_open},           {"stat", fs_stat},
      {"lstat", fs_lstat},         {"remove", fs_remove},
      {"rename", fs_rename},       {"mkdir", fs_mkdir},
      {"list_dir", fs_list_dir},   {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", file_gc},
                                  {"__close", file_gc},
                                  {"__tostring", file_tostring},
                                  {NULL, NULL}};
  sp_newclass(L, FS_FILE_MT, methods, meta);
  lua_pop(L, 1);
  lua_newtable(L);
  sp_setfuncs(L, fns);
  lua_setfield(L, -2, "fs");
  return 0;
}
