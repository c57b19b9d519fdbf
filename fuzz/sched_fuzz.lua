-- fuzz/sched_fuzz.lua -- the scheduler operation-sequence fuzzer (the Lua
-- side of fuzz/sched_fuzz.c).
--
-- case(data) runs one input on a fresh virtual-clock runtime: a root task
-- and every task it spawns interpret the input bytes as operations --
-- spawn, yield, sleep, abort, join, result, channel send/recv (bounded,
-- unbounded, try_), semaphore, mutex, event, spindle.timeout,
-- spindle.shield, spindle.scope, pcall that swallows errors, raise, open a
-- <close> variable, return.  The bytes are consumed in the order the
-- tasks run, and the virtual clock makes that order a function of the
-- input alone, so every input replays exactly.  After rt:run() (and
-- rt:close()) the invariants:
--   - every task ended in exactly one terminal state: "done", "failed" or
--     "cancelled", and stays there;
--   - abort wins: a task whose abort was requested while it was
--     unfinished ended "cancelled";
--   - every <close> handler ran exactly once (count per handler);
--   - no task is alive: rt:stats().live == 0, every counter adds up;
--   - rt:run() raised nothing but a deadlock report (joins in a cycle,
--     a recv nobody sends to: legitimate programs can deadlock).
-- A broken invariant raises "INVARIANT: ..." (a crash for libFuzzer).
local spindle = require "spindle"

local M = {}

local function fail(fmt, ...)
  error("INVARIANT: " .. string.format(fmt, ...), 0)
end

local MAX_TASKS, MAX_OPS = 48, 400

function M.case(data)
  local pos = 1
  local ops = 0
  local function byte()
    local b = data:byte(pos)
    pos = pos + 1
    return b
  end

  local tasks = {}     -- handles, in spawn order
  local aborted = {}   -- [handle] = true: abort requested while unfinished
  local closes = {}    -- [id] = times its __close ran
  local nclosers = 0
  local chans = {spindle.channel(), spindle.channel(1), spindle.channel(3)}
  local sem = spindle.semaphore(2)
  local mu = spindle.mutex()
  local ev = spindle.event()

  local function closer()
    nclosers = nclosers + 1
    local id = nclosers
    closes[id] = 0
    return setmetatable({}, {__close = function()
      closes[id] = closes[id] + 1
    end})
  end

  local function pick()
    if #tasks == 0 then return nil end
    return tasks[(byte() or 0) % #tasks + 1]
  end

  local body -- forward

  local function spawn_task(depth)
    if #tasks >= MAX_TASKS then return end
    local h = spindle.spawn(body, depth + 1)
    tasks[#tasks + 1] = h
    return h
  end

  -- Interprets bytes until a "return" op, the end of the input, or the
  -- op budget.  Runs inside a task (or a timeout/shield/scope/pcall of it).
  function body(depth)
    while true do
      local b = byte()
      if b == nil then return end
      ops = ops + 1
      if ops > MAX_OPS then return end
      local op = b % 24
      if op == 0 then
        return "returned"
      elseif op == 1 then
        spindle.yield()
      elseif op == 2 then
        spindle.sleep(((byte() or 0) % 8) * 0.25)
      elseif op == 3 then
        spawn_task(depth)
      elseif op == 4 then
        local h = pick()
        if h then
          local unfinished = h:status() ~= "done" and h:status() ~= "failed"
                             and h:status() ~= "cancelled"
          local r = h:abort()
          if r ~= unfinished then
            fail("abort() returned %s for a task %s", tostring(r), h:status())
          end
          if unfinished then aborted[h] = true end
        end
      elseif op == 5 then
        local h = pick()
        if h and h ~= spindle.current() then pcall(h.join, h) end
      elseif op == 6 then
        local h = pick()
        if h and h ~= spindle.current() then h:result() end
      elseif op == 7 then
        local ch = chans[(byte() or 0) % #chans + 1]
        ch:send(ops)
      elseif op == 8 then
        local ch = chans[(byte() or 0) % #chans + 1]
        ch:recv()
      elseif op == 9 then
        local ch = chans[(byte() or 0) % #chans + 1]
        if (byte() or 0) % 2 == 0 then ch:try_send(ops) else ch:try_recv() end
      elseif op == 10 then
        error("boom " .. ops)
      elseif op == 11 then
        local c <close> = closer()
        local r = body(depth)
        if r == "returned" then return r end
      elseif op == 12 then
        if depth < 6 then
          pcall(spindle.timeout, ((byte() or 0) % 6) * 0.25, body, depth + 1)
        end
      elseif op == 13 then
        if depth < 6 then pcall(spindle.shield, body, depth + 1) end
      elseif op == 14 then
        if depth < 6 then
          pcall(spindle.scope, function(s)
            for _ = 1, (byte() or 0) % 3 + 1 do
              if #tasks < MAX_TASKS then
                tasks[#tasks + 1] = s:spawn(body, depth + 1)
              end
            end
            return body(depth + 1)
          end)
        end
      elseif op == 15 then
        if depth < 6 then pcall(body, depth + 1) end -- swallows errors
      elseif op == 16 then
        local p <close> = sem:acquire()
        local r = body(depth)
        if r == "returned" then return r end
      elseif op == 17 then
        local g <close> = mu:lock()
        spindle.yield()
      elseif op == 18 then
        ev:wait()
      elseif op == 19 then
        if (byte() or 0) % 2 == 0 then ev:set() else ev:clear() end
      elseif op == 20 then
        local ch = chans[(byte() or 0) % #chans + 1]
        ch:close()
      elseif op == 21 then
        spindle.current():abort()
      elseif op == 22 then
        local hs = {}
        for _ = 1, (byte() or 0) % 3 + 1 do
          local h = spawn_task(depth)
          if h then hs[#hs + 1] = h end
        end
        if #hs > 0 then
          if (byte() or 0) % 2 == 0 then
            pcall(spindle.join_all, hs)
          else
            pcall(spindle.race, hs)
          end
        end
      else
        spindle.next_step()
      end
    end
  end

  local rt = spindle.runtime({clock = "virtual", on_error = function() end})
  local root = rt:spawn(body, 0)
  tasks[1] = root
  local ok, err = pcall(rt.run, rt)
  if not ok and not tostring(err):find("deadlock", 1, true) then
    fail("rt:run raised %s", tostring(err))
  end
  local stats = rt:stats()
  rt:close()

  local terminal = {done = true, failed = true, cancelled = true}
  local counted = {done = 0, failed = 0, cancelled = 0}
  for i, h in ipairs(tasks) do
    local st = h:status()
    if not terminal[st] then fail("task %d ended %s", i, st) end
    if aborted[h] and st ~= "cancelled" and ok then
      fail("task %d was aborted while unfinished but ended %s", i, st)
    end
    if h:status() ~= st then fail("task %d changed state", i) end
    counted[st] = counted[st] + 1
  end
  for id = 1, nclosers do
    if closes[id] ~= 1 then
      fail("__close %d ran %d times", id, closes[id])
    end
  end
  if stats.live ~= 0 then fail("%d tasks alive after run", stats.live) end
  if stats.spawned ~= #tasks then
    fail("spawned %d, tracked %d", stats.spawned, #tasks)
  end
  if stats.failed ~= counted.failed or stats.cancelled ~= counted.cancelled
      or stats.finished ~= #tasks then
    fail("stats finished %d failed %d cancelled %d; counted %d %d %d",
         stats.finished, stats.failed, stats.cancelled, #tasks,
         counted.failed, counted.cancelled)
  end
end

return M
