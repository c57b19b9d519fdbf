-- spec/50-lifecycle-matrix_spec.lua -- the task lifecycle matrix (issue 9;
-- Tokio's task_combinations): every way a task can end, crossed with every
-- place it can be when something ends it.
--
--   body ending   return (with nil holes), raise a string, raise a table
-- x state         where the task is when the abort source acts: never
--                 started, ready, sleeping, blocked in channel send / recv,
--                 semaphore, mutex, event, tcp read / write / connect /
--                 accept, fs, process wait, blocking, join, next_step,
--                 finished
-- x <close> setup none, one, one whose __close raises, one whose __close
--                 awaits, two nested
-- x join pattern  a joiner waiting before the source acts, a join after the
--                 task ended, never joined, two joiners (one joins twice)
-- x abort source  none (the operation is released and completes), abort
--                 once, abort twice, the task aborts itself, its scope
--                 fails (a sibling raises), a spindle.timeout around the
--                 operation expires, the runtime is closed by its host
--                 (rt:close() between steps), the main task ends
--
-- Every case checks, against docs/tasks.md and docs/cancellation.md:
--   * the task ends in exactly one terminal status, the one the contract
--     gives: "cancelled" if an abort was requested before it finished
--     (abort wins), else "failed" with the error of a raising __close, else
--     its own ending; a spindle.timeout error is caught by the body;
--   * every join and result agrees with that status (values with nil
--     holes, the same error value, a cancellation error), joins return
--     only after every __close ran, and the abort results match the
--     documented true/false;
--   * every __close ran exactly once, innermost first;
--   * an unjoined failure is reported once through on_error, a joined or
--     scope-observed one never;
--   * the primitive the task was blocked on works afterwards and lost
--     nothing (a value, a permit, a lock, buffered bytes);
--   * after the runtime is closed nothing is alive (stats) and nothing is
--     retained: the runtime, the handles, the coroutine, the error values
--     and every <close> value are collected (weak tables after a full
--     collection), the Lua heap stays flat over repeated batches, and no
--     descriptor is left open.
--
-- CI runs every combination (3 x 18 x 5 x 4 x 8 = 8,640 cases) on the
-- virtual clock; SPINDLE_DEEP=1 (make check-deep) runs them again on the
-- real clock.  Under ASan and valgrind (H.ENV) a deterministic sample runs
-- instead: every (state, source, setup) triple (every third under
-- valgrind), the join pattern and the ending rotating.  The ordering that makes each state
-- deterministic: the task under test (T) is spawned first, then its
-- joiners, then a trigger task (R).  In the next turn T runs up to its
-- operation and waits; R runs in that same turn, before the loop polls for
-- I/O, so it always finds T in the state named by the case (checked with
-- h:status() and spindle.dump()).  "never started" has T spawned by a
-- starter task in that turn, so T is still queued when R acts.
local H = dofile("spec/helpers/init.lua")
local spindle = H.spindle
local net = spindle.net

local pack, unpack = table.pack, table.unpack

local DEEP = os.getenv("SPINDLE_DEEP") == "1"

local ENDINGS = {"return", "raise", "raise_table"}
local STATES = {"never_started", "ready", "sleeping", "chan_send", "chan_recv",
  "semaphore", "mutex", "event", "tcp_read", "tcp_write", "tcp_connect",
  "tcp_accept", "fs", "process_wait", "blocking", "join", "next_step",
  "finished"}
local SETUPS = {"none", "one", "erroring", "awaiting", "nested"}
local JOINS = {"before", "after", "never", "twice"}
local SOURCES = {"none", "once", "twice", "self", "scope", "timeout",
  "rt_close", "main_end"}

local TERMINAL = {done = true, failed = true, cancelled = true}
local SHUTDOWN = {rt_close = true, main_end = true}

local is_cancel = H.is_cancel

-- A write the kernel cannot take at once: loopback buffers hold a few MB
-- while the peer reads nothing.
local BIG = string.rep("w", 16 * 1024 * 1024)

-- The work of the "blocking" state: about 2 ms on a worker thread.
local function WORK()
  local t = os.clock() + 0.002
  while os.clock() < t do end
  return "worked"
end

local FS_FILE -- a small file for the "fs" state (created in setup)

-- Durations per clock: T's sleep, the timeout around its operation, the
-- task T joins, the poll interval while waiting for tasks to end.  On the
-- virtual clock they cost nothing; the deep run repeats the matrix on the
-- real clock with short ones.
local DUR = {
  virtual = {sleep = 10, timeout = 1, x = 5, poll = 0.01},
  real = {sleep = 0.05, timeout = 0.02, x = 0.1, poll = 0.001},
}
local D = DUR.virtual -- of the case running now

-- ------------------------------------------------------------------ states
-- Each state builds, inside the case's main task:
--   op()        what T awaits (nil: T does not block)
--   release()   makes op complete by itself (abort source "none")
--   blocks      true if op never completes unless released
--   status      T's status when R finds it there ("waiting" / "ready")
--   dump        a plain substring of T's line in spindle.dump()
--   check(c)    after T ended: the primitive lost nothing and still works
--               (runs only while the runtime is alive); returns a problem
--   cleanup()   closes what the state opened (the runtime would too)
local STATE = {}

local function pair(c)
  local srv = assert(net.listen("127.0.0.1", 0))
  local client = assert(net.connect(srv:local_addr()))
  local server = assert(srv:accept())
  srv:close()
  c.objs[#c.objs + 1] = client
  c.objs[#c.objs + 1] = server
  return client, server
end

STATE.never_started = function() return {} end
STATE.finished = function() return {} end

STATE.ready = function()
  return {op = spindle.yield, status = "ready"}
end

STATE.sleeping = function()
  return {op = function() spindle.sleep(D.sleep) end, blocks = true,
          dump = "sleep"}
end

STATE.chan_send = function(c)
  local ch = spindle.channel(1)
  assert(ch:send("fill"))
  c.objs[#c.objs + 1] = ch
  local st = {blocks = true, dump = "channel send"}
  function st.op() return ch:send("v") end
  function st.release() c.released_value = ch:recv() end
  function st.check()
    -- "v" is in the channel exactly when send returned true
    local got = {}
    while true do
      local v = ch:try_recv()
      if v == nil then break end
      got[#got + 1] = v
    end
    local sent = c.op_res and c.op_res[1] == true
    local want = {}
    if c.released_value == nil then want[#want + 1] = "fill" end
    if sent then want[#want + 1] = "v" end
    if table.concat(got, ",") ~= table.concat(want, ",") then
      return "channel holds {" .. table.concat(got, ",") .. "}, expected {"
        .. table.concat(want, ",") .. "}"
    end
    if not ch:try_send("again") or ch:try_recv() ~= "again" then
      return "channel unusable after the case"
    end
  end
  return st
end

STATE.chan_recv = function(c)
  local ch = spindle.channel()
  c.objs[#c.objs + 1] = ch
  local st = {blocks = true, dump = "channel recv"}
  function st.op() return ch:recv() end
  function st.release() assert(ch:send("v")) end
  function st.check()
    local got = c.op_res and c.op_res[1]
    local left = ch:try_recv()
    if c.source == "none" and got ~= "v" then
      return "released recv returned " .. tostring(got)
    end
    if got == "v" and left ~= nil then return "value both received and queued" end
    if got ~= "v" and c.source == "none" and left ~= "v" then return "value lost" end
    assert(ch:send("w"))
    if ch:try_recv() ~= "w" then return "channel unusable after the case" end
  end
  return st
end

STATE.semaphore = function(c)
  local sem = spindle.semaphore(1)
  local held = sem:acquire()
  c.objs[#c.objs + 1] = sem
  local st = {blocks = true, dump = "semaphore acquire"}
  function st.op() local p <close> = sem:acquire() return "acquired" end
  function st.release() held:release(); held = nil end
  function st.check()
    if held then held:release(); held = nil end
    if sem:available() ~= 1 then
      return "semaphore has " .. sem:available() .. " permits, expected 1"
    end
    local p = sem:try_acquire()
    if not p then return "semaphore unusable after the case" end
    p:release()
  end
  return st
end

STATE.mutex = function(c)
  local m = spindle.mutex()
  local g = m:lock()
  c.objs[#c.objs + 1] = m
  local st = {blocks = true, dump = "mutex lock"}
  function st.op() local g2 <close> = m:lock() return "locked" end
  function st.release() g:unlock(); g = nil end
  function st.check()
    if g then g:unlock(); g = nil end
    if m:is_locked() then return "mutex left locked" end
    local g3 = m:try_lock()
    if not g3 then return "mutex unusable after the case" end
    g3:unlock()
  end
  return st
end

STATE.event = function(c)
  local ev = spindle.event()
  c.objs[#c.objs + 1] = ev
  local st = {blocks = true, dump = "event wait"}
  function st.op() return ev:wait() end
  function st.release() ev:set() end
  return st
end

STATE.tcp_read = function(c)
  local client, server = pair(c)
  local st = {blocks = true, dump = "tcp read"}
  function st.op() return server:read_line() end
  function st.release() assert(client:write("line\n")) end
  function st.check()
    local got = c.op_res and c.op_res[1]
    if c.source == "none" and got ~= "line" then
      return "released read returned " .. tostring(got)
    end
    assert(client:write("after\n"))
    local l = server:read_line()
    if l ~= "after" then return "stream lost or kept bytes: read " .. tostring(l) end
  end
  function st.cleanup() client:close(); server:close() end
  return st
end

STATE.tcp_write = function(c)
  local client, server = pair(c)
  local st = {blocks = true, dump = "tcp write"}
  function st.op() return client:write(BIG) end
  -- The peer goes away: the write ends with an error result, not a raise.
  function st.release() server:close_reset() end
  function st.check()
    if c.source == "none" then
      local r = c.op_res
      if not r or r[1] ~= nil or type(r[2]) ~= "string" or type(r[3]) ~= "string" then
        return "write to a reset peer did not return nil, msg, code"
      end
    end
  end
  function st.cleanup() client:close(); server:close() end
  return st
end

STATE.tcp_connect = function(c)
  local srv = assert(net.listen("127.0.0.1", 0))
  c.objs[#c.objs + 1] = srv
  local host, port = srv:local_addr()
  local st = {dump = "tcp connect"}
  function st.op()
    local s = net.connect(host, port)
    if s then s:close() return "connected" end
    return nil
  end
  function st.cleanup() srv:close() end
  return st
end

STATE.tcp_accept = function(c)
  local srv = assert(net.listen("127.0.0.1", 0))
  c.objs[#c.objs + 1] = srv
  local host, port = srv:local_addr()
  local st = {blocks = true, dump = "tcp accept"}
  function st.op()
    local s = srv:accept()
    if s then s:close() return "accepted" end
  end
  function st.release()
    c.peer = assert(net.connect(host, port))
  end
  function st.check()
    -- an aborted accept took nothing: a pending connection is still there
    local p = assert(net.connect(host, port))
    local s = spindle.timeout(5, srv.accept, srv)
    if not s then return "listener unusable after the case" end
    s:close(); p:close()
  end
  function st.cleanup()
    if c.peer then c.peer:close() end
    srv:close()
  end
  return st
end

STATE.fs = function()
  return {op = function() return spindle.fs.read_file(FS_FILE) end,
          dump = "fs read_file"}
end

STATE.process_wait = function(c)
  local p = assert(spindle.process.spawn("sleep", {"60"},
    {stdin = "ignore", stdout = "ignore", stderr = "ignore"}))
  c.objs[#c.objs + 1] = p
  local st = {blocks = true, dump = "process wait"}
  function st.op() return p:wait() end
  function st.release() p:kill("KILL") end
  function st.check()
    p:kill("KILL")
    local code, sig = p:wait()
    if code ~= nil or sig ~= "SIGKILL" then
      return "wait after kill gave " .. tostring(code) .. ", " .. tostring(sig)
    end
  end
  function st.cleanup() p:kill("KILL"); p:close() end
  return st
end

STATE.blocking = function()
  return {op = function() return spindle.blocking(WORK) end,
          dump = "blocking"}
end

STATE.join = function(c)
  local X = spindle.spawn(function() spindle.sleep(D.x) return "x" end)
  c.X = X
  c.track[X] = "X handle"
  local st = {blocks = true, dump = "join task"}
  function st.op() return X:join() end
  -- X ends by itself after D.x seconds; the timeout (D.timeout) expires first
  function st.check()
    local ok, v = X:result()
    if not (ok and v == "x") then return "X ended " .. tostring(ok) .. " " .. tostring(v) end
  end
  return st
end

STATE.next_step = function()
  return {op = spindle.next_step, dump = "next step"}
end

-- ------------------------------------------------------------------- model

-- Expected terminal status and error of T.  c.hit: T's status when the
-- source acted ("self": always before the end).
local function expected(c)
  local aborted
  if c.source == "self" then
    aborted = true
  elseif c.source == "none" or c.source == "timeout" then
    aborted = false
  else
    aborted = c.hit ~= nil and not TERMINAL[c.hit]
  end
  if aborted then return "cancelled" end
  if c.setup == "erroring" and c.source ~= "timeout" then
    return "failed", c.CLOSE_ERR
  end
  if c.ending == "return" then return "done" end
  if c.ending == "raise" then return "failed", c.ERR_STRING end
  return "failed", c.ERR_TABLE
end

-- res = pack(pcall(h.join, h)); problem text or nil
local function join_problem(res, status, err)
  if status == "done" then
    if not (res[1] == true and res.n == 5 and res[2] == 1 and res[3] == nil
            and res[4] == "three" and res[5] == nil) then
      return "join of a done task returned " .. tostring(res[1]) .. " n="
        .. res.n .. " " .. tostring(res[2])
    end
  elseif status == "failed" then
    if res[1] ~= false or rawequal(res[2], err) == false then
      return "join of a failed task gave " .. tostring(res[1]) .. ", "
        .. tostring(res[2]) .. " (expected the task's own error)"
    end
  else
    if res[1] ~= false or not is_cancel(res[2]) then
      return "join of a cancelled task gave " .. tostring(res[1]) .. ", "
        .. tostring(res[2])
    end
  end
end

local function result_problem(res, status, err)
  if status == "done" then
    if not (res[1] == true and res.n == 5 and res[2] == 1 and res[4] == "three") then
      return "result of a done task: " .. tostring(res[1]) .. " n=" .. res.n
    end
  elseif status == "failed" then
    if res[1] ~= false or not rawequal(res[2], err) then
      return "result of a failed task: " .. tostring(res[1]) .. ", " .. tostring(res[2])
    end
  elseif res[1] ~= false or not is_cancel(res[2]) then
    return "result of a cancelled task: " .. tostring(res[1]) .. ", " .. tostring(res[2])
  end
end

-- -------------------------------------------------------------------- case

local function name_of(c)
  return ("%s/%s/%s/%s/%s%s"):format(c.ending, c.state, c.setup, c.join,
    c.source, c.clock == "real" and " (real clock)" or "")
end

-- Polls (without joining, which would observe the task) until every handle
-- has ended.  Virtual time is free; real-time work (a worker thread, a
-- child's exit) is polled for.
local function settle(handles)
  for _ = 1, 200000 do
    local all = true
    for _, h in ipairs(handles) do
      if not TERMINAL[h:status()] then all = false break end
    end
    if all then return true end
    spindle.sleep(D.poll)
  end
  return false
end

-- Runs one case.  track: weak-keyed table (object -> description) that the
-- caller checks after a full collection.  Returns a list of problems.
local function run_case(ending, state, setup, join, source, clock, track)
  D = DUR[clock]
  local c = {ending = ending, state = state, setup = setup, join = join,
             source = source, clock = clock, objs = {}, reports = {}, closes = {},
             order = {}, track = track, problems = {}}
  local name = name_of(c)
  local function problem(msg) c.problems[#c.problems + 1] = name .. ": " .. msg end
  c.ERR_TABLE = {"lifecycle error table"}
  c.CLOSE_ERR = {"lifecycle close error"}
  c.SIB_ERR = {"lifecycle sibling error"}
  c.ERR_STRING = "lifecycle boom"
  track[c.ERR_TABLE] = name .. " ERR_TABLE"
  track[c.CLOSE_ERR] = name .. " CLOSE_ERR"
  track[c.SIB_ERR] = name .. " SIB_ERR"

  local st -- the state record

  local function mk(tag, kind)
    c.closes[tag] = 0
    local v = setmetatable({}, {__close = function()
      c.closes[tag] = c.closes[tag] + 1
      c.order[#c.order + 1] = tag
      if kind == "erroring" then error(c.CLOSE_ERR) end
      if kind == "awaiting" then spindle.yield() end
    end})
    track[v] = name .. " close " .. tag
    return v
  end

  local function self_abort() c.self_ret = spindle.current():abort() end

  local function body()
    c.entered = true
    c.co = coroutine.running()
    track[c.co] = name .. " coroutine of T"
    if source == "self" and state == "never_started" then self_abort() end
    local outer <close> = setup == "nested" and mk("outer") or nil
    local function inner()
      local cv <close> = setup ~= "none" and mk(setup == "nested" and "inner" or setup, setup) or nil
      if source == "self" and state ~= "never_started" then self_abort() end
      if st.op then
        c.op_res = pack(st.op())
      end
      c.op_done = true
    end
    if source == "timeout" then
      c.tmo = pack(pcall(spindle.timeout, D.timeout, inner))
      if not c.tmo[1] then track[c.tmo[2]] = name .. " timeout-caught error" end
    else
      inner()
    end
    c.body_end = true
    if ending == "return" then return 1, nil, "three", nil end
    if ending == "raise" then error(c.ERR_STRING, 0) end
    error(c.ERR_TABLE)
  end

  local function verify_state(h)
    if source == "self" then return end
    local s = h:status()
    if state == "never_started" then
      if s ~= "ready" or c.entered then problem("not 'never started' at the trigger: " .. s) end
    elseif state == "finished" then
      if setup ~= "awaiting" and not TERMINAL[s] then
        problem("not finished at the trigger: " .. s)
      end
    else
      local want = st.status or "waiting"
      if s ~= want then
        problem(("not in state at the trigger: status %s, expected %s"):format(s, want))
      elseif st.dump then
        local line
        for l in spindle.dump():gmatch("[^\n]+") do
          if l:match("^task " .. h:id() .. "[ (]") then line = l end
        end
        if not (line and line:find(st.dump, 1, true)) then
          problem("dump does not show '" .. st.dump .. "': " .. tostring(line))
        end
      end
    end
  end

  -- The source's action.  Runs in R (a task queued after T and its
  -- joiners), or in main for main_end.
  local function trigger()
    local h = c.h
    verify_state(h)
    c.hit = h:status()
    if source == "none" then
      if st.release then st.release() end
    elseif source == "once" then
      c.abort1 = h:abort()
    elseif source == "twice" then
      c.abort1 = h:abort()
      c.abort2 = h:abort()
    elseif source == "scope" then
      error(c.SIB_ERR)
    elseif source == "rt_close" then
      c.reached = true
    end
  end

  local function joiner(twice)
    local h = c.h
    local r1 = pack(pcall(h.join, h))
    local tstat = h:status()
    if TERMINAL[tstat] then
      local closed = 0
      for _, n in pairs(c.closes) do closed = closed + n end
      c.closed_at_join = c.closed_at_join or {}
      c.closed_at_join[#c.closed_at_join + 1] = closed
    elseif not (SHUTDOWN[source] and r1[1] == false and is_cancel(r1[2])) then
      problem("join returned while T was still " .. tstat)
    end
    local rs = {r1}
    if twice then rs[2] = pack(pcall(h.join, h)) end
    c.joins = c.joins or {}
    for _, r in ipairs(rs) do c.joins[#c.joins + 1] = r end
  end

  -- Spawns T (through the scope when there is one), its joiners and R, in
  -- the order that puts T in its state when R runs.
  local function launch(s)
    local function spawn_T()
      c.h = s and s:spawn(body) or spindle.spawn(body)
      c.h:name("T")
      track[c.h] = name .. " handle of T"
    end
    if state == "never_started" then
      spindle.spawn(spawn_T)
    else
      spawn_T()
    end
    c.J = {}
    if join == "before" or join == "twice" then
      c.J[1] = spindle.spawn(joiner, false)
      if join == "twice" then c.J[2] = spindle.spawn(joiner, true) end
    end
    for _, j in ipairs(c.J) do track[j] = name .. " joiner handle" end
    if source ~= "main_end" then
      c.R = s and source == "scope" and s:spawn(trigger) or spindle.spawn(trigger)
      track[c.R] = name .. " trigger handle"
    end
  end

  local function main()
    c.main = spindle.current()
    st = STATE[state](c)
    for _, o in ipairs(c.objs) do track[o] = name .. " state object " .. tostring(o) end
    if source == "scope" then
      c.scope_res = pack(pcall(spindle.scope, function(s) launch(s) end))
    else
      launch(nil)
    end
    if source == "main_end" then
      spindle.yield() -- T and its joiners run their first slice
      trigger()
      return "main ended"
    end
    if source == "rt_close" then
      spindle.sleep(3600) -- the host closes the runtime before this ends
      return
    end
    for _ = 1, 10 do -- "never started": the starter spawns T
      if c.h then break end
      spindle.yield()
    end
    local all = {c.h, c.R}
    for _, j in ipairs(c.J) do all[#all + 1] = j end
    if not settle(all) then
      problem("tasks did not end: T " .. c.h:status())
      return
    end
    if join == "after" then
      c.after_join = pack(pcall(c.h.join, c.h))
      c.after_result = pack(c.h:result())
    end
    c.post_abort = c.h:abort()
    c.final_live = c.h:status()
    spindle.yield()
    c.final_later = c.h:status()
    if st.check then
      local p = st.check(c)
      if p then problem(p) end
    end
    if c.X then c.X:abort() end
    if st.cleanup then st.cleanup() end
  end

  local rt = spindle.runtime{clock = clock, on_error = function(err, h)
    c.reports[#c.reports + 1] = {err = err, h = h}
  end}
  track[rt] = name .. " runtime"
  local ok, err
  if source == "rt_close" then
    local mh = rt:spawn(main)
    for _ = 1, 100000 do
      if c.reached or rt:step() == 0 then break end
    end
    if not c.reached then problem("rt_close: the trigger never ran") end
    c.hit = c.h and c.h:status()
    ok, err = pcall(rt.close, rt)
    c.main_status = mh:status()
  else
    ok, err = pcall(rt.run, rt, main)
    if ok then ok, err = pcall(rt.close, rt) end
  end
  if not ok then problem("runtime raised: " .. tostring(err)) end
  local stats = rt:stats()
  if stats.live ~= 0 or stats.spawned ~= stats.finished then
    problem(("after close: live %d, spawned %d, finished %d")
      :format(stats.live, stats.spawned, stats.finished))
  end

  local h = c.h
  if not h then
    problem("T was never spawned")
    return c.problems
  end
  -- terminal status
  local status, err_v = expected(c)
  local final = h:status()
  if final ~= status then
    problem(("T ended %s, expected %s (status when the source acted: %s)")
      :format(final, status, tostring(c.hit)))
  end
  if c.final_live and (c.final_live ~= final or c.final_later ~= final) then
    problem("status changed after the end: " .. c.final_live .. " -> " .. c.final_later)
  end
  for _, j in ipairs(c.J) do
    if not TERMINAL[j:status()] then problem("joiner still " .. j:status()) end
  end
  if c.R and not TERMINAL[c.R:status()] then problem("trigger still " .. c.R:status()) end
  if c.X and not TERMINAL[c.X:status()] then problem("X still " .. c.X:status()) end

  -- abort results (docs/cancellation.md: true if the task had not finished;
  -- a second abort of a never-started task is false, it ended at once)
  if source == "once" or source == "twice" then
    local want1 = not TERMINAL[c.hit]
    if c.abort1 ~= want1 then problem("first abort returned " .. tostring(c.abort1)) end
    if source == "twice" then
      local want2 = want1 and state ~= "never_started"
      if c.abort2 ~= want2 then problem("second abort returned " .. tostring(c.abort2)) end
    end
  end
  if source == "self" and c.self_ret ~= true then
    problem("self abort returned " .. tostring(c.self_ret))
  end
  if c.post_abort ~= nil and c.post_abort ~= false then
    problem("abort of a finished task returned " .. tostring(c.post_abort))
  end

  -- closes: each exactly once, innermost first; none if T never ran
  if status == "cancelled" and state == "never_started" and source ~= "self"
      and c.entered then
    problem("a task aborted before it started ran")
  end
  local created = 0
  for tag, n in pairs(c.closes) do
    created = created + 1
    if n ~= 1 then problem("__close " .. tag .. " ran " .. n .. " times") end
  end
  if c.entered and setup ~= "none" then
    local want_n = setup == "nested" and 2 or 1
    if created ~= want_n then problem("created " .. created .. " close values, expected " .. want_n) end
  end
  if setup == "nested" and c.entered and table.concat(c.order, ",") ~= "inner,outer" then
    problem("close order " .. table.concat(c.order, ","))
  end
  for _, n in ipairs(c.closed_at_join or {}) do
    if n ~= created then problem("a join returned before every __close ran") end
  end

  -- joins
  local shutdown = SHUTDOWN[source]
  for i, r in ipairs(c.joins or {}) do
    local p = join_problem(r, status, err_v)
    if p and shutdown and r[1] == false and is_cancel(r[2]) then
      p = nil -- the joiner itself was cancelled by the shutdown
    end
    if p then problem("joiner join " .. i .. ": " .. p) end
  end
  if (join == "before" or join == "twice") and not shutdown then
    local want = join == "twice" and 3 or 1
    if #(c.joins or {}) ~= want then
      problem(("%d joins returned, expected %d"):format(#(c.joins or {}), want))
    end
  end
  if join == "after" then
    if shutdown then
      -- the runtime is gone: join from a fresh one (results stay available
      -- as long as the handle lives)
      local rt2 = spindle.runtime{clock = "virtual"}
      local r = rt2:run(function() return pack(pcall(h.join, h)) end)
      rt2:close()
      local p = join_problem(r, status, err_v)
      if p then problem("join from another runtime after close: " .. p) end
    else
      local p = join_problem(c.after_join, status, err_v)
        or result_problem(c.after_result, status, err_v)
      if p then problem("join after: " .. p) end
    end
  end

  -- timeout: caught by the body
  if source == "timeout" and c.entered then
    local t = c.tmo
    if not t then
      problem("timeout never returned")
    elseif setup == "erroring" then
      if t[1] ~= false or t[2] ~= c.CLOSE_ERR then
        problem("timeout with a raising __close gave " .. tostring(t[1]) .. ", " .. tostring(t[2]))
      end
    elseif st.blocks then
      if t[1] ~= false or not spindle.is_timeout(t[2]) then
        problem("a blocked operation did not time out: " .. tostring(t[1]) .. ", " .. tostring(t[2]))
      end
    elseif not st.op then
      if t[1] ~= true then problem("timeout without an await failed: " .. tostring(t[2])) end
    elseif not (t[1] == true or spindle.is_timeout(t[2])) then
      problem("timeout raised " .. tostring(t[2]))
    end
  end
  if source == "none" and st.op and c.entered and setup ~= "erroring" and not c.op_done then
    problem("the released operation did not complete")
  end

  -- scope
  if source == "scope" then
    local r = c.scope_res
    local first = (c.R and c.R:status() == "failed") and c.SIB_ERR or err_v
    if not r or r[1] ~= false or not rawequal(r[2], first) then
      problem("scope raised " .. tostring(r and r[2]) .. ", expected the first error")
    end
  end

  -- unobserved failures: reported once, through on_error
  local want_reports = 0
  if status == "failed" and source ~= "scope" then
    if join == "never" or (join == "after" and shutdown) then want_reports = 1 end
  end
  if #c.reports ~= want_reports then
    local list = {}
    for _, rep in ipairs(c.reports) do list[#list + 1] = tostring(rep.h) .. ": " .. tostring(rep.err) end
    problem(("%d on_error reports, expected %d {%s}"):format(#c.reports, want_reports,
      table.concat(list, "; ")))
  elseif want_reports == 1 and (c.reports[1].h ~= h or not rawequal(c.reports[1].err, err_v)) then
    problem("on_error got " .. tostring(c.reports[1].h) .. ", " .. tostring(c.reports[1].err))
  end
  return c.problems
end

-- ---------------------------------------------------------------- the plan

-- Every combination, in a fixed order, on the given clock.
local function all_cases(clock)
  local list = {}
  for _, state in ipairs(STATES) do
    for _, source in ipairs(SOURCES) do
      for _, setup in ipairs(SETUPS) do
        for _, join in ipairs(JOINS) do
          for _, ending in ipairs(ENDINGS) do
            list[#list + 1] = {ending, state, setup, join, source, clock = clock}
          end
        end
      end
    end
  end
  return list
end

-- A sample for the sanitizer and valgrind runs: every (state, source,
-- setup) triple once (every `stride`-th), the join pattern and the ending
-- rotating, so every value of every dimension still occurs.
local function sample_cases(stride)
  local list, i = {}, 0
  for _, state in ipairs(STATES) do
    for si, source in ipairs(SOURCES) do
      for ui, setup in ipairs(SETUPS) do
        i = i + 1
        if (i - 1) % stride == 0 then
          local k = i + si + ui
          list[#list + 1] = {ENDINGS[k % 3 + 1], state, setup,
                             JOINS[(k // 3) % 4 + 1], source, clock = "virtual"}
        end
      end
    end
  end
  return list
end

-- Plain CI: every combination on the virtual clock (8,640 cases, a few
-- seconds).  Deep: the same again on the real clock.  ASan: the sample;
-- valgrind: every third case of it.
local CASES
if DEEP then
  CASES = all_cases("virtual")
  for _, cs in ipairs(all_cases("real")) do CASES[#CASES + 1] = cs end
elseif H.ENV == "valgrind" then
  CASES = sample_cases(3)
elseif H.ENV == "asan" then
  CASES = sample_cases(1)
else
  CASES = all_cases("virtual")
end

local function by_state()
  local t = {}
  for _, cs in ipairs(CASES) do
    local s = cs[2]
    t[s] = t[s] or {}
    t[s][#t[s] + 1] = cs
  end
  return t
end

-- Runs `cases`, then checks that nothing they made is still reachable.
local function run_batch(cases)
  local problems = {}
  local track = setmetatable({}, {__mode = "k"})
  for _, cs in ipairs(cases) do
    local ok, list = pcall(run_case, cs[1], cs[2], cs[3], cs[4], cs[5],
                           cs.clock or "virtual", track)
    if not ok then
      problems[#problems + 1] = table.concat(cs, "/") .. ": harness error: " .. tostring(list)
    else
      for _, p in ipairs(list) do problems[#problems + 1] = p end
    end
  end
  collectgarbage("collect")
  collectgarbage("collect")
  local left = {}
  for _, what in pairs(track) do left[#left + 1] = what end
  table.sort(left)
  for i = 1, math.min(#left, 20) do
    problems[#problems + 1] = "retained after the runtime closed: " .. left[i]
  end
  if #left > 20 then problems[#problems + 1] = ("... and %d more retained"):format(#left - 20) end
  return problems
end

local function report(problems, n)
  if #problems > 0 then
    local shown = {}
    for i = 1, math.min(#problems, 40) do shown[i] = problems[i] end
    error(("%d problem(s) in %d cases:\n  %s%s"):format(#problems, n,
      table.concat(shown, "\n  "), #problems > 40 and "\n  ..." or ""), 0)
  end
end

describe("lifecycle matrix (" .. #CASES .. " cases" .. (DEEP and ", deep" or "") .. ")", function()
  setup(function()
    FS_FILE = H.tmpname()
    H.write_file(FS_FILE, "fs state\n")
    -- libuv's process-wide descriptors (signal pipe, thread pool) once
    run_batch({{"return", "process_wait", "none", "never", "none"},
               {"return", "blocking", "none", "never", "none"}})
  end)
  teardown(function() H.remove(FS_FILE) end)
  H.check_fds(_ENV)

  local groups = by_state()
  for _, state in ipairs(STATES) do
    local cases = groups[state] or {}
    it(("%s: %d cases"):format(state, #cases), function()
      assert.is_true(#cases > 0, "no case for state " .. state)
      report(run_batch(cases), #cases)
    end)
  end

  it("covers every value of every dimension", function()
    local seen = {{}, {}, {}, {}, {}}
    for _, cs in ipairs(CASES) do
      for d = 1, 5 do seen[d][cs[d]] = true end
    end
    for d, values in ipairs({ENDINGS, STATES, SETUPS, JOINS, SOURCES}) do
      for _, v in ipairs(values) do
        assert.is_true(seen[d][v] == true, "dimension " .. d .. " misses " .. v)
      end
    end
  end)

  it("repeating a batch keeps the Lua heap flat", function()
    -- one case per (state, source), the setup, join and ending rotating
    local batch = {}
    for i, state in ipairs(STATES) do
      for j, source in ipairs(SOURCES) do
        local k = i + j
        batch[#batch + 1] = {ENDINGS[k % 3 + 1], state, SETUPS[k % 5 + 1],
                             JOINS[k % 4 + 1], source}
      end
    end
    local rounds = DEEP and 8 or (H.ENV == "plain" and 4 or 2)
    local heap = {}
    for r = 1, rounds do
      report(run_batch(batch), #batch)
      collectgarbage("collect")
      collectgarbage("collect")
      heap[r] = collectgarbage("count")
    end
    -- the first round is warm-up (caches, interned strings, libuv's pool)
    local base = heap[1]
    for r = 2, rounds do
      local grew = heap[r] - base
      assert.is_true(grew <= math.max(base * 0.05, 64),
        ("Lua heap grew by %.0f KiB over %d rounds of %d cases: %s KiB")
          :format(grew, r - 1, #batch, table.concat(heap, " ", 1, r)))
    end
  end)
end)
