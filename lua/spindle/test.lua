-- spindle.test -- turns an async test body into a function for busted's
-- `it` (docs/testing.md#the-test-wrapper).
--
--   it("works", spindle.test(function() ... end, {timeout = 5,
--      clock = "real" | "virtual", allow_leaks = false}))
--
-- Each call of the returned function:
--   - makes a fresh runtime (opts.clock, default "real") and runs fn(...)
--     as its main task;
--   - puts a wall-clock deadline of opts.timeout seconds (default 5) on it,
--     enforced whatever the clock (spindle._watchdog: a libuv timer on the
--     real clock that aborts the main task); a test past its deadline fails
--     with "timed out" and the dump of the tasks at that moment;
--   - fails if fn raises: the error value is raised unchanged (so busted
--     shows luassert's failures as failures), a string error gets the
--     task's traceback appended;
--   - fails if tasks are left alive when fn returns, listing them with
--     spindle.dump()'s lines, unless opts.allow_leaks.  Tasks whose abort
--     was requested are not leaks: the check first waits for them to
--     finish unwinding;
--   - fails if a task failed and nobody joined it (its error and
--     traceback are in the message), unless opts.on_error is given, which
--     then receives such failures as the runtime option does;
--   - closes the runtime in every case: leftover tasks are aborted and
--     unwound before the test returns.
local spindle = require "spindle"

local OPTS = {timeout = true, clock = true, allow_leaks = true, on_error = true}

local function check_opts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error("bad argument #2 to 'test' (table expected, got " .. type(opts) .. ")", 3)
  end
  for k in pairs(opts) do
    if not OPTS[k] then
      error("bad argument #2 to 'test' (unknown option '" .. tostring(k) .. "')", 3)
    end
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or not (t > 0) or t > 1e9) then
    error("bad argument #2 to 'test' (timeout must be a positive number of seconds)", 3)
  end
  if opts.clock ~= nil and opts.clock ~= "real" and opts.clock ~= "virtual" then
    error("bad argument #2 to 'test' (clock must be \"real\" or \"virtual\")", 3)
  end
  if opts.on_error ~= nil and type(opts.on_error) ~= "function" then
    error("bad argument #2 to 'test' (on_error must be a function)", 3)
  end
  return opts
end

-- Lines of a dump without the line of task `id`.
local function dump_without(id)
  local out = {}
  for line in spindle.dump():gmatch("[^\n]+") do
    if not line:find("^task " .. id .. "%f[^%d]") then out[#out + 1] = line end
  end
  return out
end

-- Lets tasks that were aborted but are still unwinding finish: one turn
-- for those just interrupted, then a join of each task whose abort is
-- pending (its cleanup may await).
local function settle(me)
  spindle.yield()
  repeat
    local waited = false
    for _, h in ipairs(spindle.tasks()) do
      if h ~= me and spindle._aborting(h) then
        h:result()
        waited = true
      end
    end
  until not waited
end

local function add_traceback(e)
  if type(e) == "string" then return debug.traceback(e, 2) end
  return e
end

local function test(fn, opts)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'test' (function expected, got " .. type(fn) .. ")", 2)
  end
  opts = check_opts(opts)
  local timeout = opts.timeout or 5
  local clock = opts.clock or "real"
  return function(...)
    local unjoined = {}
    local on_error = opts.on_error or function(err, h)
      local tb = h:traceback()
      unjoined[#unjoined + 1] = ("%s failed and was never joined: %s"):format(
        tostring(h), type(tb) == "string" and tb or tostring(err))
    end
    local rt <close> = spindle.runtime{clock = clock, on_error = on_error}
    local timed_out, leaks
    local ok, err = pcall(rt.run, rt, function(...)
      local wd <close> = spindle._watchdog(timeout)
      local me = spindle.current()
      local r = table.pack(xpcall(fn, add_traceback, ...))
      if r[1] and not opts.allow_leaks and #spindle.tasks() > 1 then
        local settled, e = pcall(settle, me)
        if not settled then r = {false, e} end
      end
      if wd:fired() then
        timed_out = dump_without(me:id())
        return
      end
      if not r[1] then error(r[2], 0) end
      local left = dump_without(me:id())
      if not opts.allow_leaks and #left > 0 then leaks = left end
    end, ...)
    rt:close()
    if timed_out then
      local msg = ("spindle.test: timed out after %g s (wall clock)"):format(timeout)
      if #timed_out > 0 then
        msg = msg .. "; tasks at that moment:\n  " .. table.concat(timed_out, "\n  ")
      end
      error(msg, 0)
    end
    if not ok then error(err, 0) end
    if leaks then
      error(("spindle.test: %d task%s left alive (opts.allow_leaks to permit):\n  %s")
        :format(#leaks, #leaks == 1 and "" or "s", table.concat(leaks, "\n  ")), 0)
    end
    if #unjoined > 0 then
      error("spindle.test: " .. table.concat(unjoined, "\n"), 0)
    end
  end
end

return test
