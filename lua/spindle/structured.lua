-- spindle.structured -- spindle.join_all and spindle.race
-- (docs/structured.md#waiting-for-several-tasks).
--
-- Both wait for whichever of several tasks ends first, through a watch
-- set (spindle._watch, csrc/scope.c): one finish hook per unfinished
-- handle, and w:next() returns the index of the next handle to end.  No
-- helper task and no channel is involved, so nothing the caller cannot
-- see can be aborted or fail on its behalf.
--
-- Waiting for tasks to unwind happens under spindle.shield: an abort of
-- the caller during that wait is delivered right after it, so "have
-- unwound before it is raised" holds even then.  Aborting the caller while
-- it waits for the first result leaves the handles alone (they are not
-- owned by join_all/race; use spindle.scope for ownership).
local spindle = require "spindle"

local shield, watch = spindle.shield, spindle._watch
local pack = table.pack

local M = {}

local FINISHED = {done = true, failed = true, cancelled = true}

-- Validates `handles` (an array of task handles) for function `name`.
local function check_handles(handles, name)
  if type(handles) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)")
      :format(name, type(handles)), 3)
  end
  local n = #handles
  for i = 1, n do
    local h = handles[i]
    local ok, st = pcall(function() return h:status() end)
    if not ok or type(st) ~= "string" or not FINISHED[st] and st ~= "ready"
        and st ~= "running" and st ~= "waiting" then
      error(("bad argument #1 to '%s' (handles[%d] is not a task handle)")
        :format(name, i), 3)
    end
  end
  return n
end

-- Aborts the given tasks and waits (shielded) until each has ended.
local function abort_and_wait(list, except)
  for i = 1, #list do
    if list[i] ~= except then list[i]:abort() end
  end
  shield(function()
    for i = 1, #list do
      if list[i] ~= except then list[i]:result() end
    end
  end)
end

-- spindle.join_all(handles) -> {table.pack(results of handles[1]), ...}
function M.join_all(handles)
  local n = check_handles(handles, "join_all")
  local failed -- index of the first to fail
  for i = 1, n do -- already finished: in index order
    local st = handles[i]:status()
    if st == "failed" or st == "cancelled" then failed = i break end
  end
  if not failed then
    local w <close> = watch(handles)
    for _ = 1, n do
      local i = w:next()
      if handles[i]:status() ~= "done" then failed = i break end
    end
  end
  if failed then
    local h = handles[failed]
    abort_and_wait(handles, h)
    local _, err = h:result()
    error(err, 0)
  end
  local out = {}
  for i = 1, n do out[i] = pack(handles[i]:join()) end
  return out
end

-- spindle.race(handles) -> i, results of the first to finish
function M.race(handles)
  local n = check_handles(handles, "race")
  if n == 0 then
    error("bad argument #1 to 'race' (at least one handle expected)", 2)
  end
  local first
  for i = 1, n do
    if FINISHED[handles[i]:status()] then first = i break end
  end
  if not first then
    local w <close> = watch(handles)
    first = w:next()
  end
  local h = handles[first]
  abort_and_wait(handles, h)
  return first, h:join()
end

return M
