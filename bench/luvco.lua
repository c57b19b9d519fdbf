-- bench/luvco.lua: a small coroutine scheduler on top of luv, the kind a
-- luv user writes in an afternoon. It is what spindle is compared with as
-- "luv": same workloads, same API shape (spawn -> handle, join, yield,
-- sleep, now, run).
--
-- Design: a ring-buffer ready queue drained by a uv_idle handle (started
-- only while tasks are ready, so the loop blocks in epoll otherwise); each
-- drain runs the tasks that were ready when it began, so the loop polls I/O
-- between rounds (the same rule spindle follows). sleep starts a uv_timer
-- (never early, see M.sleep) and resumes the task straight from the timer
-- callback. Scheduler yields
-- are tagged with a private value so the fast path needs no
-- coroutine.status call.

local uv = require "luv"

local co_create, co_resume, co_yield =
  coroutine.create, coroutine.resume, coroutine.yield
local pack, unpack, select = table.pack, table.unpack, select
local new_timer, uv_now, ceil = uv.new_timer, uv.now, math.ceil
local hrtime, update_time = uv.hrtime, uv.update_time

local M = {}

local SUSPEND = {} -- first value of every scheduler yield

local queue, head, tail = {}, 1, 1 -- ready tasks are queue[head .. tail-1]
local idle = uv.new_idle()
local idle_on = false
local current -- the task being resumed

local schedule -- forward

-- A task is a table {co = thread, args = packed spawn arguments or nil,
-- done, failed, results | err, waiters = task | {task, ...}}.

local function wake_waiters(t)
  local w = t.waiters
  if w then
    t.waiters = nil
    if w.co then schedule(w) else for i = 1, #w do schedule(w[i]) end end
  end
end

local function finish(t, ok, first, ...)
  if ok and first == SUSPEND then return end -- suspended in an await
  t.done = true
  if ok then
    t.results = pack(first, ...)
  else
    t.failed, t.err = true, first
    if not t.waiters then
      io.stderr:write("luvco: task failed: ", tostring(first), "\n")
    end
  end
  wake_waiters(t)
end

local function step(t)
  current = t
  local args = t.args
  if args then
    t.args = nil
    finish(t, co_resume(t.co, unpack(args, 1, args.n)))
  else
    finish(t, co_resume(t.co))
  end
  current = nil
end

local function drain()
  local stop = tail
  while head < stop do
    local t = queue[head]
    queue[head] = nil
    head = head + 1
    step(t)
  end
  if head == tail then
    head, tail = 1, 1
    idle:stop()
    idle_on = false
  end
end

schedule = function(t)
  queue[tail] = t
  tail = tail + 1
  if not idle_on then
    idle_on = true
    idle:start(drain)
  end
end

function M.spawn(fn, ...)
  local t = { co = co_create(fn) }
  if select("#", ...) > 0 then t.args = pack(...) end
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

function M.join(t)
  if not t.done then
    local me, w = current, t.waiters
    if not w then t.waiters = me
    elseif w.co then t.waiters = { w, me }
    else w[#w + 1] = me end
    co_yield(SUSPEND)
  end
  if t.failed then error(t.err, 0) end
  local r = t.results
  return unpack(r, 1, r.n)
end

-- Loop time in seconds (libuv's cached clock, 1 ms resolution).
function M.now() return uv_now() * 1e-3 end

-- Run main as a task until the loop has nothing left (or uv.stop()).
function M.run(main, ...)
  local t = M.spawn(main, ...)
  uv.run("default")
  if t.failed then error(t.err, 0) end
  if t.done then return unpack(t.results, 1, t.results.n) end
end

M.stop = uv.stop

return M
