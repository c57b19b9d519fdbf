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
** A file object (fs.open) owns its descriptor; at most one read or write
** is in flight per file ("file busy" otherwise).  close() while one is in
** flight wakes its task with nil, "closed", "ECANCELED" at once and hands
** the descriptor to the request, which closes it when the step is done.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

/* ---- requests ---------------------------------------------------------- */

enum {
  FS_READFILE, FS_WRITEFILE, FS_OPEN, FS_READ, FS_WRITE, FS_CLOSE,
  FS_STAT, FS_LSTAT, FS_REMOVE, FS_RENAME, FS_MKDIR, FS_LISTDIR
};

/* Steps of the multi-step operations. */
enum { ST_OPEN, ST_IO, ST_CLOSE, ST_RMDIR, ST_ONE };

#define FS_CHUNK 65536

typedef struct fs_file fs_file;

typedef struct fs_req {
  sp_ionode node; /* owned while anything is pending */
  uv_fs_t req;
  sp_runtime *rt;
  sp_task *task;  /* NULL once abandoned (or never had one) */
  fs_file *file;  /* FS_READ/FS_WRITE: the file, while it is ours */
  int op, step;
  int pending;    /* a step is on the pool */
  uv_file fd;     /* a descriptor this request must close, or -1 */
  int err;        /* first error (< 0), or 0 */
  char *buf;      /* data read or to write */
  size_t len, cap, off, want;
  int flags, mode;
  uv_stat_t st;
  char *path2;    /* rename: the second path */
} fs_req;

struct fs_file {
  sp_ionode node; /* owned while fd is open */
  sp_runtime *rt;
  uv_file fd;     /* -1 once closed */
  fs_req *busy;   /* the read or write in flight */
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
  if ((r->op == FS_STAT || r->op == FS_LSTAT) && res >= 0) r->st = req->statbuf;
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
      if (res < 0) {
        r->err = (int)res;
      } else if (r->op == FS_READFILE || r->op == FS_READ) {
        r->len += (size_t)res;
        if (res > 0 && r->task != NULL &&
            (r->op == FS_READFILE || r->len < r->want)) {
          fs_next(r, fs_step(r));
          return;
        }
      } else { /* FS_WRITEFILE, FS_WRITE */
        r->off += (size_t)res;
        if (r->off < r->len && r->task != NULL) {
          fs_next(r, fs_step(r));
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
    if (r->op == FS_READFILE && r->cap - r->len < FS_CHUNK / 4) {
      size_t ncap = r->cap ? r->cap * 2 : FS_CHUNK;
      char *p = realloc(r->buf, ncap);
      if (p == NULL) return UV_ENOMEM;
      r->buf = p;
      r->cap = ncap;
    }
    room = (r->op == FS_READ ? r->want : r->cap) - r->len;
    if (room > 0x40000000) room = 0x40000000;
    b = uv_buf_init(r->buf + r->len, (unsigned int)room);
    return uv_fs_read(r->rt->loop, &r->req, fd, &b, 1, off, fs_cb);
  } else {
    size_t left = r->len - r->off;
    if (left > 0x40000000) left = 0x40000000;
    b = uv_buf_init(r->buf + r->off, (unsigned int)left);
    return uv_fs_write(r->rt->loop, &r->req, fd, &b, 1, off, fs_cb);
  }
}

/* ---- the await -------------------------------------------------------- */

static void fs_undo(sp_task *t) {
  fs_req *r = (fs_req *)t->w.obj;
  r->task = NULL;
  if (r->pending) uv_cancel((uv_req_t *)&r->req);
}

static void fs_describe(sp_task *t, char *buf, size_t size);

static const sp_waitops fs_wait = {"fs", fs_undo, fs_describe};
static const sp_waitops file_wait = {"file", fs_undo, fs_describe};

static void push_stat(lua_State *L, const uv_stat_t *s);
static int file_new(lua_State *L, sp_runtime *rt, uv_file fd);

/* Pushes the results of a finished request r; its path (or nil) at 2.
** Runs protected: the request is freed by fs_results whatever happens. */
static int results_p(lua_State *L) {
  fs_req *r = (fs_req *)lua_touserdata(L, 1);
  if (r->err < 0 && r->op != FS_READ) {
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
    case FS_READ:
      if (r->len > 0)
        lua_pushlstring(L, r->buf, r->len); /* an error after data: data */
      else if (r->err < 0)
        return sp_io_fail(L, r->err);
      else if (r->want == 0)
        lua_pushliteral(L, "");
      else {
        lua_pushnil(L);
        lua_pushliteral(L, "eof");
        lua_pushliteral(L, "EOF");
        return 3;
      }
      return 1;
    case FS_STAT:
    case FS_LSTAT:
      push_stat(L, &r->st);
      return 1;
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
      file_new(L, r->rt, r->fd);
      r->fd = -1;
      return 1;
    default:
      lua_pushboolean(L, 1);
      return 1;
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
  return fs_await(L, t, r, uv_fs_open(t->rt->loop, &r->req, path, UV_FS_O_RDONLY, 0,
                           fs_cb));
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
  return fs_await(L, t, r, uv_fs_open(t->rt->loop, &r->req, path,
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
  r->step = ST_OPEN;
  return fs_await(L, t, r, uv_fs_open(t->rt->loop, &r->req, path, flags, 0666, fs_cb));
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
  return fs_await(L, t, r, uv_fs_mkdir(t->rt->loop, &r->req, path, (int)mode, fs_cb));
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

/* Pushes a file object for fd.  [-0, +1, m] */
static int file_new(lua_State *L, sp_runtime *rt, uv_file fd) {
  fs_file *f = lua_newuserdatauv(L, sizeof *f, 0);
  memset(f, 0, sizeof *f);
  f->fd = -1; /* born closed */
  luaL_setmetatable(L, FS_FILE_MT);
  f->rt = rt;
  if (rt != NULL) sp_io_track(&f->node, rt, file_rtclose);
  f->fd = fd;
  return 1;
}

static fs_file *file_check(lua_State *L) {
  return (fs_file *)sp_checkclass(L, 1, FS_FILE_MT);
}

static int file_k(lua_State *L, int status, lua_KContext ctx) {
  sp_task *t = (sp_task *)ctx;
  fs_req *r;
  (void)status;
  sp_resumed(L, t);
  r = (fs_req *)t->w.obj;
  if (r == NULL) return sp_io_closed(L, "ECANCELED"); /* closed while waiting */
  return fs_results(L, r);
}

static int file_io_start(lua_State *L, fs_file *f, sp_task *t, fs_req *r) {
  int rc;
  r->file = f;
  r->step = ST_IO;
  if ((rc = fs_step(r)) < 0) {
    r->file = NULL;
    fs_free(r);
    return sp_io_fail(L, rc);
  }
  f->busy = r;
  r->task = t;
  r->pending = 1;
  r->rt->inflight++;
  return sp_await_block(L, t, &file_wait, r, file_k,
                        (lua_KContext)t);
}

static sp_task *file_ready(lua_State *L, fs_file *f, const char *name) {
  sp_task *t = sp_await_check(L, name);
  if (f->fd >= 0 && f->rt != t->rt)
    luaL_error(L, "%s: the file belongs to another runtime", name);
  if (f->busy != NULL) luaL_error(L, "%s: file busy", name);
  return t;
}

static int file_read(lua_State *L) {
  fs_file *f = file_check(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  sp_task *t;
  fs_req *r;
  luaL_argcheck(L, n >= 0 && n <= 0x7fffffff, 2, "count out of range");
  t = file_ready(L, f, "read");
  if (f->fd < 0) return sp_io_closed(L, "ECANCELED");
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  r = fs_req_new(L, t->rt, FS_READ);
  if ((r->buf = malloc((size_t)n)) == NULL) {
    fs_free(r);
    return luaL_error(L, "not enough memory");
  }
  r->cap = r->want = (size_t)n;
  return file_io_start(L, f, t, r);
}

static int file_write(lua_State *L) {
  fs_file *f = file_check(L);
  int i, top = lua_gettop(L);
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
  return file_io_start(L, f, t, r);
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
      "read_file", "write_file", "open",   "read",   "write",  "close",
      "stat",      "lstat",      "remove", "rename", "mkdir",  "list_dir"};
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
      {"read", file_read}, {"write", file_write}, {"close", file_close_m},
      {NULL, NULL}};
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
