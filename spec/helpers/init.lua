-- spec/helpers/init.lua -- shared helpers for the busted specs.
--
-- A spec file starts with
--
--   local H = require "spec.helpers"         -- this file
--   local N = require "spec.helpers.net"     -- spec/helpers/net.lua (and
--                                            -- so on for spec/helpers/*.lua)
--
-- `.busted` names this file as busted's helper (`-Xhelper preload`): run
-- that way, before any spec file is loaded, it only adds a searcher that
-- finds those modules in spec/helpers/, whatever package.path says.  busted
-- restores package.loaded after every spec file, so each file gets its own
-- H and its own `require "spindle"`.  Without the helper (busted run with
-- another configuration, or plain lua5.4 from the repository root) the
-- default "./?.lua;./?/init.lua" entries of package.path find the same
-- files; `dofile("spec/helpers/init.lua")` works too.  Nothing here keeps
-- state between spec files: every temporary file a helper creates is
-- removed before the helper returns, and every runtime it creates is
-- closed.
--
--   H.spindle              the module (require "spindle")
--   H.ENV                  $SPINDLE_TEST_ENV: "plain", "asan" or "valgrind"
--                          (set by the CTest tests, cmake/tests.cmake)
--   H.scale(n)             an iteration count: n, or n / 10 (at least 1)
--                          under valgrind.  Use it for soak loops, never to
--                          skip a check
--   H.timeout(s)           a wall-clock limit: s, times 2 under ASan and
--                          times 10 under valgrind
--   H.run_virtual(fn, ...) rt:run(fn, ...) on a fresh virtual-clock runtime,
--                          then rt:close(); returns fn's results / re-raises
--                          its error value unchanged
--   H.run_real(fn, ...)    the same with the real clock
--   H.run_with(o, fn, ...) the same with any runtime options
--   H.vrun(fn, o)          H.run_virtual(fn) with more runtime options o
--   H.near(a, b)           a and b equal up to floating-point rounding (the
--                          virtual clock's times are exact but for that)
--   H.is_cancel(e)         e is a plain cancellation error: cancelled, not a
--                          timeout, "cancelled" as a string
--   H.vtest(fn, o)         spindle.test on the virtual clock, its wall-clock
--                          limit (default 5 s) passed through H.timeout
--   H.lua_child(src, o)    run `src` as a script under lua5.4 in a child
--                          process (module on the same paths as this one)
--   H.cli(args, o)         run the `spindle` command with a shell argument
--                          string (o.script: source written to a temp file,
--                          whose path replaces every "%SCRIPT%" in args)
--   H.capture_stderr(src)  stderr of H.lua_child(src)
--   H.sh(cmdline, o)       any shell command line, bounded and captured
--                          (every child's stderr is checked for sanitizer
--                          reports: one fails the test)
--   H.tmpname()            a fresh temp path (no file left behind)
--   H.fd_count()           open descriptors of this process
--   H.settle_fds(n)        inside a task: waits (bounded) until the
--                          descriptor count is n; returns the count
--   H.check_fds(_ENV)      every spec of the file (or describe block) must
--                          leave the descriptor count as it found it
--   H.read_file/write_file/remove/exists
--   H.msg_names(msg, ...)  msg is a string naming one of the names
--
-- A child result is a table {ok, how, code, stdout, stderr, cmd}: `how` and
-- `code` are os.execute's second and third results ("exit", n or
-- "signal", n).  Children run under `timeout`, so a hang is reported as exit
-- code 124 instead of blocking the suite.

-- Run as busted's helper: teach `require` where the helper modules are
-- ("spec.helpers" is this file, "spec.helpers.<name>" spec/helpers/<name>.lua),
-- load nothing yet.
if select("#", ...) == 0 and type(arg) == "table" and arg[1] == "preload" then
  local dir = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$")
  table.insert(package.searchers, 2, function(name)
    local base = name == "spec.helpers" and "init"
                 or name:match("^spec%.helpers%.([%w_]+)$")
    if not base then return nil end
    local path = dir .. base .. ".lua"
    local chunk, err = loadfile(path)
    if not chunk then return "\n\t" .. err end
    return chunk, path
  end)
  return
end

local H = {}

-- Make the specs runnable without the .busted file too.  With it, its
-- paths win (e.g. `--run=asan` points cpath at ./build-asan).
local function prepend(path, entry)
  if not path:find(entry, 1, true) then return entry .. ";" .. path end
  return path
end
if not package.searchpath("spindle", package.cpath) then
  package.cpath = prepend(package.cpath, "./build/?.so")
end
package.path = prepend(package.path, "./lua/?/init.lua")
package.path = prepend(package.path, "./lua/?.lua")

H.spindle = require "spindle"
local spindle = H.spindle

-- The command under test: $SPINDLE_CLI (the CTest tests set it to their
-- build tree's command), else the sanitizer build's command under
-- SPINDLE_TEST_ENV=asan, else ./build/spindle.
H.ENV = os.getenv("SPINDLE_TEST_ENV") or "plain"
do
  local cli = os.getenv("SPINDLE_CLI")
  if not cli and H.ENV == "asan" then
    local f = io.open("./build-asan/spindle", "rb")
    if f then f:close(); cli = "./build-asan/spindle" end
  end
  H.CLI = cli or "./build/spindle"
  -- Under ASan the specs preload build-asan/spindle.so (for symbolized leak
  -- stacks).  The command links its own copy of the library, and two copies
  -- in one process are an ODR violation: the command runs without it.
  local preload = os.getenv("LD_PRELOAD")
  if preload and preload:find("spindle.so", 1, true) then
    local kept = {}
    for lib in preload:gmatch("%S+") do
      if not lib:find("spindle.so", 1, true) then kept[#kept + 1] = lib end
    end
    H.CLI = "env LD_PRELOAD='" .. table.concat(kept, " ") .. "' " .. H.CLI
  end
end

-- ------------------------------------------------------------ slow runs

-- How much slower than a plain run this one is (for wall-clock limits), and
-- by how much loops are cut under valgrind, so the valgrind stage can run
-- every spec file within the CI budget.
local SLOWDOWN = ({asan = 2, valgrind = 10})[H.ENV] or 1
local CUT = ({valgrind = 10})[H.ENV] or 1

function H.scale(n)
  return math.max(1, n // CUT)
end

function H.timeout(seconds)
  return seconds * SLOWDOWN
end

-- ---------------------------------------------------------------- runtimes

local function run_on(opts, fn, ...)
  local rt = spindle.runtime(opts)
  local r = table.pack(pcall(rt.run, rt, fn, ...))
  rt:close()
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

H.run_with = run_on -- H.run_with(opts, fn, ...): any runtime options
function H.run_virtual(fn, ...) return run_on({clock = "virtual"}, fn, ...) end
function H.run_real(fn, ...) return run_on({clock = "real"}, fn, ...) end

function H.vrun(fn, o)
  o = o or {}
  o.clock = "virtual"
  return run_on(o, fn)
end

function H.near(a, b) return math.abs(a - b) < 1e-6 end

function H.is_cancel(e)
  return spindle.is_cancelled(e) == true and spindle.is_timeout(e) == false
    and tostring(e) == "cancelled"
end

-- spindle.test(fn, o) on the virtual clock unless o.clock says otherwise;
-- the wall-clock limit (spindle.test's default: 5 s) scaled by H.timeout.
function H.vtest(fn, o)
  o = o or {}
  o.clock = o.clock or "virtual"
  o.timeout = H.timeout(o.timeout or 5)
  return H.spindle.test(fn, o)
end

-- A value with a __close metamethod that appends `tag` to the array `log`.
function H.closer(log, tag)
  return setmetatable({}, {__close = function() log[#log + 1] = tag end})
end

-- ------------------------------------------------------------------- files

-- Memory checks of the soak specs (52, 90) and the HTTP client's.
-- H.rss_kb(): this process's resident set, KiB.  H.heap_kb(): the Lua heap
-- after two full collections, KiB.  H.check_flat(what, samples, tol): every
-- sample within +-tol of the first.  H.check_no_growth(what, samples, tol):
-- no sample above the first, or above the lowest before it, by more than
-- tol (a drop is fine: glibc hands pages back when it likes).
function H.rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return assert(tonumber(s:match("VmRSS:%s*(%d+)")), "no VmRSS")
end

function H.heap_kb()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end

local function fmt_kb(samples)
  local list = {}
  for i, v in ipairs(samples) do list[i] = ("%.0f"):format(v) end
  return table.concat(list, " ")
end

function H.check_flat(what, samples, tol)
  local base, worst, at = samples[1], 0, 1
  for i, v in ipairs(samples) do
    local dev = math.abs(v - base) / base
    if dev > worst then worst, at = dev, i end
  end
  assert(worst <= tol, ("%s not flat: sample %d deviates %.1f%% from %.0f KiB; samples (KiB): %s")
    :format(what, at, worst * 100, base, fmt_kb(samples)))
end

function H.check_no_growth(what, samples, tol)
  local lowest = samples[1]
  for i, v in ipairs(samples) do
    assert(v <= samples[1] * (1 + tol) and v <= lowest * (1 + tol),
      ("%s grew: sample %d is %.0f KiB, baseline %.0f, lowest before %.0f; samples (KiB): %s")
      :format(what, i, v, samples[1], lowest, fmt_kb(samples)))
    if v < lowest then lowest = v end
  end
end

function H.tmpname()
  local p = os.tmpname()   -- Lua 5.4 creates the file (mkstemp)
  os.remove(p)
  return p
end

function H.exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

function H.read_file(p)
  local f = io.open(p, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function H.write_file(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end

function H.remove(...)
  for i = 1, select("#", ...) do
    local p = select(i, ...)
    if p then os.remove(p) end
  end
end

function H.q(s) -- shell quoting
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Sleep a little in the test process itself (for bounded polling loops).
function H.pause(seconds)
  os.execute("sleep " .. (seconds or 0.05))
end

-- ------------------------------------------------------------ children

-- Environment for children: the same module search paths as this process
-- (relative paths work because children run in the same directory).
function H.child_env()
  return "LUA_PATH=" .. H.q(package.path) .. " LUA_CPATH=" .. H.q(package.cpath)
end

-- A child running under the sanitizers (LD_PRELOAD is inherited) must not
-- report anything, whatever its exit status.
local function check_sanitizer(r)
  for _, pat in ipairs({"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                        ": runtime error: "}) do
    if r.stderr:find(pat, 1, true) then
      error("sanitizer report from child:\n" .. H.describe(r), 3)
    end
  end
  return r
end

-- Run a shell command line with stdout/stderr captured into temp files.
-- o.timeout (default H.timeout(30) s) bounds it.  o.env: extra "K=V ..." prefix.
local function raw_sh(cmdline, o)
  o = o or {}
  local out, err = H.tmpname(), H.tmpname()
  local cmd = string.format("%s timeout -k 5 %d %s >%s 2>%s </dev/null",
    o.env or "", o.timeout or H.timeout(30), cmdline, H.q(out), H.q(err))
  local ok, how, code = os.execute(cmd)
  local r = {ok = ok, how = how, code = code, cmd = cmdline,
             stdout = H.read_file(out) or "", stderr = H.read_file(err) or ""}
  H.remove(out, err)
  return r
end

function H.sh(cmdline, o) return check_sanitizer(raw_sh(cmdline, o)) end

-- Run Lua source `src` with lua5.4 (args: a shell-ready argument string).
function H.lua_child(src, o)
  o = o or {}
  local script = H.tmpname()
  H.write_file(script, src)
  local r = raw_sh("lua5.4 " .. H.q(script) .. " " .. (o.args or ""),
                  {env = H.child_env() .. " " .. (o.env or ""),
                   timeout = o.timeout})
  H.remove(script)
  r.script = script
  return check_sanitizer(r)
end

function H.capture_stderr(src, o)
  return H.lua_child(src, o).stderr
end

-- Run the spindle command.  `args` is a shell argument string; if o.script
-- is given it is written to a temp file and "%SCRIPT%" in args is replaced
-- by its quoted path (r.script holds the path, already removed).
-- The child gets LUA_PATH for the Lua parts but no LUA_CPATH entry for
-- ./build: the command must work with the module linked into it.
function H.cli(args, o)
  o = o or {}
  local script
  if o.script then
    script = H.tmpname() .. ".lua"
    H.write_file(script, o.script)
    args = args:gsub("%%SCRIPT%%", function() return H.q(script) end)
  end
  local r = raw_sh(H.CLI .. " " .. args,
                  {env = "LUA_PATH=" .. H.q(package.path) .. " " .. (o.env or ""),
                   timeout = o.timeout})
  if script then H.remove(script) end
  r.script = script
  return check_sanitizer(r)
end

-- Open descriptors of this process: /proc/self/fdinfo/N exists while fd N
-- is open (probing it opens a descriptor of its own, which is not yet
-- visible there while it is looked up).  No child process, no race.
function H.fd_count()
  local n = 0
  for i = 0, 1023 do
    local f = io.open("/proc/self/fdinfo/" .. i)
    if f then
      n = n + 1
      f:close()
    end
  end
  return n
end

-- Inside a task: waits (bounded, about a second) until the descriptor
-- count is n -- a file is closed on the thread pool, so a moment after
-- close() returns.  Returns the count.
function H.settle_fds(n)
  for _ = 1, 200 do
    if H.fd_count() == n then return n end
    H.spindle.sleep(0.005)
  end
  return H.fd_count()
end

-- Installs before_each/after_each (in the spec file's environment `env`:
-- busted gives every file its own) so that each spec leaves the number of
-- open descriptors as it found it.  describe(n) may name what is open, for
-- the failure message.
function H.check_fds(env, describe)
  local base
  env.before_each(function()
    collectgarbage(); collectgarbage()
    base = H.fd_count()
  end)
  env.after_each(function()
    collectgarbage(); collectgarbage()
    local n = H.fd_count()
    env.assert.are.equal(base, n, n ~= base and describe and describe()
                                  or "open descriptors leaked")
  end)
end

-- Describe a child result for assertion messages.
function H.describe(r)
  return string.format("cmd: %s\nstatus: %s %s\nstdout:\n%s\nstderr:\n%s",
    r.cmd, tostring(r.how), tostring(r.code), r.stdout, r.stderr)
end

-- --------------------------------------------------------------- messages

-- true if msg is a string that contains one of the given plain substrings.
function H.msg_has(msg, ...)
  if type(msg) ~= "string" then return false end
  for i = 1, select("#", ...) do
    if msg:find((select(i, ...)), 1, true) then return true end
  end
  return false
end

-- true if msg is a string naming the function (any of names) or saying
-- "bad argument".
function H.msg_names(msg, ...)
  return H.msg_has(msg, "bad argument", ...)
end

-- Line number of the caller (for traceback checks).
function H.line()
  return debug.getinfo(2, "l").currentline
end

-- Pack helper that keeps nil holes.
H.pack = table.pack

return H
