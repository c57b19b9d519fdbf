-- bench/luvco.lua: a small coroutine scheduler on top of luv, the kind a
-- careful luv user writes in an afternoon. It is what spindle is compared
-- with as "luv": same workloads, same API shape (spawn -> handle, join,
-- yield, sleep, now, run).
--
-- Design, kept cheap on purpose so the comparison is fair:
-- - a task is one array {co, state, waiters, n, values...}: spawn arguments
--   and later the results live in the same table (Lua tables with a hash
--   part cost about twice as much to build);
-- - the ready list is an array drained by a uv_idle handle, started only
--   while tasks are ready (otherwise the loop blocks in epoll); a drain runs
--   the tasks that were ready when it began and swaps in a spare array, so
--   the loop polls I/O between rounds -- the same rule spindle follows;
-- - scheduler yields are tagged with a private value, so the fast path
--   needs no coroutine.status call;
-- - sleep is one uv_timer per sleep whose callback resumes the task
--   directly, with the deadline taken from uv.hrtime() so it never wakes
--   early (see M.sleep).

local uv = require "luv"

local co_create, co_resume, co_yield =
  coroutine.create, coroutine.resume, coroutine.yield
local pack, unpack, select = table.pack, table.unpack, select
local new_timer, uv_now, ceil = uv.new_timer, uv.now, math.ceil
local hrtime, update_time = uv.hrtime, uv.update_time

local M = {}

local SUSPEND = {} -- first value of every scheduler yield

-- Task layout. N is the number of spawn arguments (stored from V on) until
-- the task ends, then the number of results: V holds the only result, or a
-- packed table when there are several, or the error value.
local CO, ST, W, N, V = 1, 2, 3, 4, 5
local NEW, STARTED, DONE, FAILED = 0, 1, 2, 3

local ready, nready, spare = {}, 0, {}
local idle = uv.new_idle()
local idle_on = false
local current -- the task being resumed

local schedule -- forward

local function wake_waiters(t)
  local w = t[W]
  if w then
    t[W] = false
    if type(w[CO]) == "thread" then schedule(w)
    else for i = 1, #w do schedule(w[i]) end end
  end
end

local function finish(t, ok, ...)
  if ok and ... == SUSPEND then return end -- suspended in an await
  if ok then
    local n = select("#", ...)
    t[ST], t[N] = DONE, n
    if n == 1 then t[V] = ...
    elseif n > 1 then t[V] = pack(...) end
  else
    t[ST], t[V] = FAILED, ...
    if not t[W] then
      io.stderr:write("luvco: task failed: ", tostring((...)), "\n")
    end
  end
  wake_waiters(t)
end

local function step(t)
  current = t
  if t[ST] == NEW then
    t[ST] = STARTED
    finish(t, co_resume(t[CO], unpack(t, V, V - 1 + t[N])))
  else
    finish(t, co_resume(t[CO]))
  end
  current = nil
end

local function drain()
  local batch, count = ready, nready
  ready, nready = spare, 0
  for i = 1, count do
    local t = batch[i]
    batch[i] = nil
    step(t)
  end
  spare = batch
  if nready == 0 then
    idle:stop()
    idle_on = false
  end
end

schedule = function(t)
  nready = nready + 1
  ready[nready] = t
  if not idle_on then
    idle_on = true
    idle:start(drain)
  end
end

function M.spawn(fn, ...)
  local t = { co_create(fn), NEW, false, select("#", ...), ... }
  schedule(t)
  return t
end

function M.yield()
  schedule(current)
  co_yield(SUSPEND)
end

-- Never early: libuv measures a timeout from its cached loop time, which
-- can be far behind when many tasks ran since the loop last woke, and it
-- truncates to whole milliseconds. So take the deadline from uv.hrtime(),
-- refresh the loop time before arming, and re-arm if the timer fired
-- before the deadline.
function M.sleep(s)
  local t = current
  local deadline = hrtime() + s * 1e9
  local timer = new_timer()
  local function fire()
    local left = deadline - hrtime()
    if left > 0 then
      timer:start(ceil(left * 1e-6), 0, fire)
      return
    end
    timer:close()
    step(t)
  end
  update_time()
  timer:start(ceil(s * 1000), 0, fire)
  co_yield(SUSPEND)
end

local function results(t)
  if t[ST] == FAILED then error(t[V], 0) end
  local n = t[N]
  if n == 1 then return t[V] end
  if n == 0 then return end
  return unpack(t[V], 1, n)
end

function M.join(t)
  if t[ST] < DONE then
    local me, w = current, t[W]
    if not w then t[W] = me
    elseif type(w[CO]) == "thread" then t[W] = { w, me }
    else w[#w + 1] = me end
    co_yield(SUSPEND)
  end
  return results(t)
end

-- Loop time in seconds (libuv's cached clock, 1 ms resolution).
function M.now() return uv_now() * 1e-3 end

-- Run main as a task until the loop has nothing left (or M.stop()).
function M.run(main, ...)
  local t = M.spawn(main, ...)
  uv.run("default")
  if t[ST] >= DONE then return results(t) end
end

M.stop = uv.stop

return M
