---@meta spindle
-- LuaLS type stubs for spindle (https://luals.github.io): every public
-- function, class and options table of `require "spindle"`. Point
-- LuaLS at this directory (`"workspace.library": ["<rock dir>/types"]`;
-- luarocks installs it with the rock). docs/reference.md is the index of
-- the same names; spec/61-stubs_spec.lua checks that nothing is missing.

---@class spindle
---@field _VERSION string  "spindle 0.1.0"
---@field version string   "0.1.0"
---@field net spindle.net
---@field fs spindle.fs
---@field process spindle.processlib
---@field tls spindle.tls
---@field http spindle.http
local spindle = {}

-- ---------------------------------------------------------------- errors

---The error raised in a task by `h:abort()` (and at runtime shutdown);
---`tostring(err) == "cancelled"`.
---@class spindle.cancelled: userdata

---The error raised by an expired `spindle.timeout`; `tostring(err) == "timeout"`.
---@class spindle.timeout: userdata

-- ---------------------------------------------------------------- running

---Options of `spindle.runtime`.
---@class spindle.runtime.opts
---@field clock? "real"|"virtual"
---@field on_error? fun(err: any, handle: spindle.task)
---@field on_warning? fun(message: string, handle: spindle.task)
---@field preempt? integer   VM instructions between forced yields (1..1e9)
---@field warn_blocking? number  seconds a task may run without awaiting before a warning
---@field loop? "own"|"luv"

---Runs `main(...)` as the main task of a fresh runtime; returns its results.
---@param main fun(...): ...
---@return ...
function spindle.run(main, ...) end

---A runtime object, for hosts with their own loop and for options.
---@param opts? spindle.runtime.opts
---@return spindle.runtime
function spindle.runtime(opts) end

-- ---------------------------------------------------------------- tasks

---Schedules `fn(...)` as a new task; returns its handle.
---@param fn fun(...): ...
---@return spindle.task
function spindle.spawn(fn, ...) end

---Goes to the back of the ready queue (an await).
function spindle.yield() end

---Waits at least `seconds` (0..1e9).
---@param seconds number
function spindle.sleep(seconds) end

---Monotonic time in seconds (virtual time under a virtual clock).
---@return number
function spindle.now() end

---The running task's handle, or nil outside tasks.
---@return spindle.task?
function spindle.current() end

---Waits until the host's next `rt:step` begins.
function spindle.next_step() end

---Calls `fn(..., callback)` and returns what `callback` is called with.
---@param fn function
---@return ...
function spindle.await(fn, ...) end

---The handles of the live tasks, the caller included.
---@return spindle.task[]
function spindle.tasks() end

---@class spindle.stats
---@field spawned integer
---@field finished integer
---@field failed integer
---@field cancelled integer
---@field live integer
---@field ready integer
---@field polls integer
---@field pooled integer

---Counters of the current runtime.
---@return spindle.stats
function spindle.stats() end

---One line per live task: what it waits for and where.
---@return string
function spindle.dump() end

-- ---------------------------------------------------------------- cancellation

---Runs `fn(...)` with a deadline; raises the timeout error when it passes.
---@param seconds number
---@param fn fun(...): ...
---@return ...
function spindle.timeout(seconds, fn, ...) end

---Runs `fn(...)` with aborts deferred until it returns.
---@param fn fun(...): ...
---@return ...
function spindle.shield(fn, ...) end

---True for a cancellation or timeout error.
---@param err any
---@return boolean
function spindle.is_cancelled(err) end

---True for a timeout error.
---@param err any
---@return boolean
function spindle.is_timeout(err) end

-- ---------------------------------------------------------------- structure

---Runs `fn(s)`; returns once it and every child spawned through `s` ended.
---@param fn fun(s: spindle.scope): ...
---@return ...
function spindle.scope(fn) end

---Waits for all; `results[i]` is `table.pack` of handle i's results.
---@param handles spindle.task[]
---@return table[]
function spindle.join_all(handles) end

---Index and results of the first to finish; the others are aborted.
---@param handles spindle.task[]
---@return integer index
---@return ...
function spindle.race(handles) end

-- ---------------------------------------------------------------- sync

---@param capacity? integer  nil: unbounded; 0: rendezvous
---@return spindle.channel
function spindle.channel(capacity) end

---@param n integer
---@return spindle.semaphore
function spindle.semaphore(n) end

---@return spindle.mutex
function spindle.mutex() end

---@return spindle.event
function spindle.event() end

---Installs a handler for a signal ("INT", "SIGTERM", "usr1", or a number).
---@param name string|integer
---@return spindle.signal|nil
---@return string? message
---@return string? code
function spindle.signal(name) end

---Runs `fn(...)` on a worker thread in its own Lua state; `fn` may be
---"module.function". Arguments and results are copied.
---@param fn function|string
---@return ...
function spindle.blocking(fn, ...) end

---@class spindle.test.opts
---@field clock? "real"|"virtual"
---@field timeout? number  wall-clock seconds (default 5)
---@field allow_leaks? boolean
---@field on_error? fun(err: any, handle: spindle.task)

---A function for busted's `it`, running `fn` in a fresh runtime.
---@param fn fun()
---@param opts? spindle.test.opts
---@return fun()
function spindle.test(fn, opts) end

-- ================================================================ classes

---@class spindle.task
local task = {}
---@return ...
function task:join() end
---@return boolean ok
---@return ...
function task:result() end
---@return boolean
function task:abort() end
---@return "ready"|"running"|"waiting"|"done"|"failed"|"cancelled"
function task:status() end
---@return string?
function task:traceback() end
---@return integer
function task:id() end
---@param new? string
---@return string?
function task:name(new) end

---@class spindle.runtime
local runtime = {}
---@param main? fun(...): ...
---@return ...
function runtime:run(main, ...) end
---@param fn fun(...): ...
---@return spindle.task
function runtime:spawn(fn, ...) end
---@param max_seconds? number
---@return integer live
function runtime:step(max_seconds) end
---@return number?
function runtime:next_timeout() end
---@return integer?
function runtime:backend_fd() end
---@return spindle.stats
function runtime:stats() end
---@return string
function runtime:dump() end
function runtime:close() end

---@class spindle.scope
local scope = {}
---@param fn fun(...): ...
---@return spindle.task
function scope:spawn(fn, ...) end

---@class spindle.channel
---@operator len: integer
local channel = {}
---@param v any
---@return true|nil
---@return string? err  "closed"
function channel:send(v) end
---@return any
---@return string? err  "closed"
function channel:recv() end
---@param v any
---@return true|nil
---@return string? err  "full"|"closed"
function channel:try_send(v) end
---@return any
---@return string? err  "empty"|"closed"
function channel:try_recv() end
---@return fun(): any
function channel:iter() end
function channel:close() end
---@return boolean
function channel:is_closed() end
---@return integer?
function channel:capacity() end

---@class spindle.semaphore
local semaphore = {}
---@return spindle.permit
function semaphore:acquire() end
---@return spindle.permit?
function semaphore:try_acquire() end
---@return integer
function semaphore:available() end

---@class spindle.permit
local permit = {}
function permit:release() end

---@class spindle.mutex
local mutex = {}
---@return spindle.guard
function mutex:lock() end
---@return spindle.guard?
function mutex:try_lock() end
---@return boolean
function mutex:is_locked() end

---@class spindle.guard
local guard = {}
function guard:unlock() end
function guard:release() end

---@class spindle.event
local event = {}
---@return true
function event:wait() end
function event:set() end
function event:clear() end
---@return boolean
function event:is_set() end

---@class spindle.signal
local signal = {}
---@return true|nil
---@return string? message
---@return string? code
function signal:wait() end
---@return true
function signal:close() end

-- ================================================================ spindle.net

---@class spindle.net
spindle.net = {}

---@class spindle.net.listen.opts
---@field backlog? integer
---@field reuseaddr? boolean
---@field tls? spindle.tls.context

---@class spindle.net.connect.opts
---@field timeout? number

---@param host string
---@param port integer
---@param opts? spindle.net.listen.opts
---@return spindle.listener|nil
---@return string? message
---@return string? code
function spindle.net.listen(host, port, opts) end

---@param path string
---@param opts? spindle.net.listen.opts
---@return spindle.listener|nil
---@return string? message
---@return string? code
function spindle.net.listen_unix(path, opts) end

---@param host string
---@param port integer
---@param opts? spindle.net.connect.opts
---@return spindle.stream|nil
---@return string? message
---@return string? code
function spindle.net.connect(host, port, opts) end

---@param path string
---@param opts? spindle.net.connect.opts
---@return spindle.stream|nil
---@return string? message
---@return string? code
function spindle.net.connect_unix(path, opts) end

---@param name string
---@return {address: string, family: "inet"|"inet6"}[]|nil
---@return string? message
---@return string? code
function spindle.net.resolve(name) end

---@return spindle.net.udp
function spindle.net.udp() end

---@class spindle.listener
local listener = {}
---@return spindle.stream|nil
---@return string? message
---@return string? code
function listener:accept() end
---@return string|nil host
---@return integer|string? port
function listener:local_addr() end
---@return true
function listener:close() end

---@class spindle.stream
local stream = {}
---@param n integer
---@return string|nil
---@return string? message
---@return string? code
---@return string? partial
function stream:read(n) end
---@param max? integer
---@return string|nil
---@return string? message
---@return string? code
function stream:read_some(max) end
---@param max? integer
---@return string|nil
---@return string? message
---@return string? code
function stream:read_line(max) end
---@param delim string
---@param max? integer
---@return string|nil
---@return string? message
---@return string? code
function stream:read_until(delim, max) end
---@param max? integer
---@return string|nil
---@return string? message
---@return string? code
---@return string? partial
function stream:read_all(max) end
---@param max? integer
---@return fun(): string?
function stream:lines(max) end
---@param ... string|number
---@return true|nil
---@return string? message
---@return string? code
function stream:write(...) end
---@return true|nil
---@return string? message
---@return string? code
function stream:shutdown() end
---@return true
function stream:close() end
---@return true
function stream:close_reset() end
---@return string|nil host
---@return integer|string? port
---@return string? code
function stream:peer() end
---@return string|nil host
---@return integer|string? port
---@return string? code
function stream:local_addr() end
---@param on boolean
---@return true|nil
function stream:set_nodelay(on) end
---@param on boolean
---@param delay? integer
---@return true|nil
function stream:set_keepalive(on, delay) end
---@return true|nil
---@return string? message
---@return string? code
function stream:handshake() end
---@return spindle.tls.info?
function stream:tls_info() end

---@class spindle.net.udp
local udp = {}
---@param host string
---@param port integer
---@return true|nil
---@return string? message
---@return string? code
function udp:bind(host, port) end
---@param data string
---@param host string
---@param port integer
---@return true|nil
---@return string? message
---@return string? code
function udp:send_to(data, host, port) end
---@param max? integer
---@return string|nil data
---@return string? host_or_message
---@return integer|string? port_or_code
function udp:recv_from(max) end
---@return string|nil host
---@return integer|string? port
function udp:local_addr() end
---@return true
function udp:close() end

-- ================================================================ spindle.fs

---@class spindle.fs
spindle.fs = {}

---@class spindle.fs.stat
---@field size integer
---@field type "file"|"directory"|"link"|"fifo"|"socket"|"char"|"block"|"unknown"
---@field mode integer
---@field mtime number
---@field atime number
---@field ctime number
---@field nlink integer
---@field uid integer
---@field gid integer
---@field ino integer
---@field dev integer

---@param path string
---@return string|nil
---@return string? message
---@return string? code
function spindle.fs.read_file(path) end
---@param path string
---@param data string
---@return true|nil
---@return string? message
---@return string? code
function spindle.fs.write_file(path, data) end
---@param path string
---@param mode? "r"|"w"|"a"|"r+"|"w+"|"a+"|"rb"|"wb"|"ab"|"r+b"|"w+b"|"a+b"
---@return spindle.fs.file|nil
---@return string? message
---@return string? code
function spindle.fs.open(path, mode) end
---@param path string
---@return spindle.fs.stat|nil
---@return string? message
---@return string? code
function spindle.fs.stat(path) end
---@param path string
---@return spindle.fs.stat|nil
---@return string? message
---@return string? code
function spindle.fs.lstat(path) end
---@param path string
---@return true|nil
---@return string? message
---@return string? code
function spindle.fs.remove(path) end
---@param from string
---@param to string
---@return true|nil
---@return string? message
---@return string? code
function spindle.fs.rename(from, to) end
---@param path string
---@param mode? integer
---@return true|nil
---@return string? message
---@return string? code
function spindle.fs.mkdir(path, mode) end
---@param path string
---@return string[]|nil
---@return string? message
---@return string? code
function spindle.fs.list_dir(path) end

---@alias spindle.fs.readformat integer|"a"|"l"|"L"|"n"|"*a"|"*l"|"*L"|"*n"

---@class spindle.fs.file
local file = {}
---Reads by `io` formats (default "l"), one result per format.
---@param ... spindle.fs.readformat
---@return string|number|nil ...
function file:read(...) end
---An iterator calling `f:read(...)` until it returns nil.
---@param ... spindle.fs.readformat
---@return fun(): string|number|nil
function file:lines(...) end
---@param whence? "set"|"cur"|"end"
---@param offset? integer
---@return integer|nil position
---@return string? message
---@return string? code
function file:seek(whence, offset) end
---@param ... string|number
---@return true|nil
---@return string? message
---@return string? code
function file:write(...) end
---@return true
function file:close() end

-- ================================================================ spindle.process

---@class spindle.processlib
spindle.process = {}

---@class spindle.process.run.opts
---@field env? table<string, string|number>
---@field cwd? string

---@class spindle.process.spawn.opts: spindle.process.run.opts
---@field stdin? "inherit"|"pipe"|"ignore"
---@field stdout? "inherit"|"pipe"|"ignore"
---@field stderr? "inherit"|"pipe"|"ignore"
---@field detached? boolean

---@param file string
---@param args (string|number)[]
---@param opts? spindle.process.run.opts
---@return integer|nil code
---@return string? stdout_or_message
---@return string? stderr_or_code
---@return string? signal
function spindle.process.run(file, args, opts) end

---@param file string
---@param args (string|number)[]
---@param opts? spindle.process.spawn.opts
---@return spindle.process|nil
---@return string? message
---@return string? code
function spindle.process.spawn(file, args, opts) end

---@class spindle.process
---@field stdin spindle.stream?
---@field stdout spindle.stream?
---@field stderr spindle.stream?
local proc = {}
---@return integer|nil code
---@return string? signal
function proc:wait() end
---@param signal? string|integer
---@return true|nil
---@return string? message
---@return string? code
function proc:kill(signal) end
---@return integer
function proc:pid() end
---@return true
function proc:close() end

-- ================================================================ spindle.tls

---@class spindle.tls
spindle.tls = {}

---@class spindle.tls.context: userdata

---@class spindle.tls.context.opts
---@field server? boolean
---@field cert? string
---@field key? string
---@field ca? string
---@field verify? boolean
---@field alpn? string[]
---@field min_version? "1.2"|"1.3"

---@class spindle.tls.connect.opts: spindle.tls.context.opts
---@field timeout? number
---@field context? spindle.tls.context
---@field servername? string|false

---@class spindle.tls.info
---@field version string
---@field cipher string
---@field alpn string?
---@field servername string?
---@field resumed boolean
---@field close_notify boolean
---@field peer_certificate {subject: string, issuer: string, not_before: integer, not_after: integer, san: string[]}?

---@param opts? spindle.tls.context.opts
---@return spindle.tls.context
function spindle.tls.context(opts) end

---@param host string
---@param port integer
---@param opts? spindle.tls.connect.opts
---@return spindle.stream|nil
---@return string? message
---@return string? code
function spindle.tls.connect(host, port, opts) end

---@param stream spindle.stream
---@param opts? spindle.tls.connect.opts
---@return spindle.stream|nil
---@return string? message
---@return string? code
function spindle.tls.wrap(stream, opts) end

return spindle
