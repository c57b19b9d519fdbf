-- spec/05-abort-matrix_spec.lua -- the abort matrix of issue 2 §4:
--
--   state when aborted  {never started, ready, sleeping, joining, finished}
-- x abort               {once, twice, self, by runtime shutdown}
-- x body ending         {values with nil holes, error string, error table,
--                        error(nil)}
-- x <close> setup       {none, one, two nested, one whose __close errors}
-- x handling            {propagate, swallow (a pcall around the await, and
--                        a second await after it)}
--
-- Each case is its own `it`.  Every case checks: exactly one terminal status
-- consistent with docs/cancellation.md#abort-wins (abort wins if requested
-- before the task finished; aborting a finished task returns false and changes
-- nothing), what join/result report (results with nil holes via select('#'),
-- error identity), and that every __close ran exactly once, innermost first,
-- and before join returned.
--
-- "self" means the task aborts itself: as its very first statement (never
-- started), right before it yields (ready), sleeps (sleeping) or joins
-- (joining), or right after its last await (finished) -- in that last case
-- the body then ends without another await and abort still wins.
-- "ready" (not self) means woken by its timer but not yet resumed: main and
-- the task sleep until the same deadline, main's registered first, so main
-- runs while the task sits in the ready queue.

local H = require "spec.helpers"
local spindle = H.spindle

local pack = table.pack

local STATES = {"never_started", "ready", "sleeping", "joining", "finished"}
local KINDS = {"once", "twice", "self", "shutdown"}
local ENDINGS = {"values", "error_string", "error_table", "error_nil"}
local CLOSES = {"none", "one", "two_nested", "one_erroring"}
local HANDLING = {"propagate", "swallow"}

local TERMINAL = {done = true, failed = true, cancelled = true}

local is_cancel = H.is_cancel

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function run_case(state, kind, ending, closes, handling)
  local ERR_TABLE = {"matrix error table"}
  local CLOSE_ERR = {"matrix close error"}
  local rec = {created = {}, closed = {}, order = {}, self_abort = {}}
  local reports = {}

  local function mk(name, erroring)
    rec.created[name] = (rec.created[name] or 0) + 1
    return setmetatable({}, {__close = function()
      rec.closed[name] = (rec.closed[name] or 0) + 1
      rec.order[#rec.order + 1] = name
      if erroring then error(CLOSE_ERR) end
    end})
  end

  local X -- the task joined in state "joining"

  local function self_abort()
    rec.self_abort[#rec.self_abort + 1] = spindle.current():abort()
  end

  local function await()
    if state == "never_started" or state == "sleeping" then
      spindle.sleep(10)
    elseif state == "ready" then
      if kind == "self" then spindle.yield() else spindle.sleep(1) end
    elseif state == "joining" then
      rec.xres = pack(X:join())
    else -- finished
      spindle.yield()
    end
  end

  local function body()
    rec.entered = true
    if kind == "self" and state == "never_started" then self_abort() end
    local c1 <close> = closes ~= "none" and mk("c1", closes == "one_erroring") or nil
    local function inner()
      local c2 <close> = closes == "two_nested" and mk("c2") or nil
      if kind == "self" and state ~= "never_started" and state ~= "finished" then
        self_abort()
      end
      await()
      rec.await_returned = true
      if kind == "self" and state == "finished" then self_abort() end
    end
    if handling == "propagate" then
      inner()
      rec.after_inner = true
    else
      rec.p1 = pack(pcall(inner))
      rec.p2 = pack(pcall(spindle.sleep, 0))
    end
    rec.reached_ending = true
    if ending == "values" then
      return 1, nil, 3, nil
    elseif ending == "error_string" then
      error("matrix boom")
    elseif ending == "error_table" then
      error(ERR_TABLE)
    else
      error(nil)
    end
  end

  local h
  local t0
  local function observe()
    -- join, result, a second join; then abort a finished task: no change
    rec.j = pack(pcall(h.join, h))
    rec.closed_at_join = copy(rec.closed)
    rec.t_join = spindle.now()
    rec.r = pack(h:result())
    rec.j2 = pack(pcall(h.join, h))
    rec.status = h:status()
    rec.post_abort = pack(h:abort())
    rec.status_after_post_abort = h:status()
    spindle.yield()
    rec.status_later = h:status()
    rec.r2 = pack(h:result())
    if X then
      rec.x_final = pack(pcall(X.join, X))
      rec.x_status = X:status()
    end
  end

  local function main()
    t0 = spindle.now()
    if state == "joining" then
      X = spindle.spawn(function() spindle.sleep(100); return "x", nil end)
    end
    h = spindle.spawn(body)
    rec.status_spawned = h:status()

    if kind ~= "self" then
      if state == "ready" then
        spindle.sleep(1) -- equal deadline, registered before the task's
      elseif state == "sleeping" or state == "joining" then
        spindle.yield()
      elseif state == "finished" then
        for _ = 1, 100 do
          if TERMINAL[h:status()] then break end
          spindle.yield()
        end
      end
      rec.status_before = h:status()
      rec.t_abort = spindle.now()
      if kind == "once" then
        rec.abort_ret = pack(h:abort())
      elseif kind == "twice" then
        rec.abort_ret = pack(h:abort(), h:abort())
      else -- shutdown: main returns while the task is in its state
        return "main-done", nil
      end
    end
    observe()
    return "main-done", nil
  end

  local rt = spindle.runtime{clock = "virtual", on_error = function(err, hh)
    reports[#reports + 1] = {err = err, id = hh:id()}
  end}
  local run = pack(pcall(rt.run, rt, main))
  rt:close()
  if not run[1] then error(run[2], 0) end

  --------------------------------------------------------------------------
  -- expectations
  local aborted_before_finish = state ~= "finished" or kind == "self"
  local expect_status
  if aborted_before_finish then
    expect_status = "cancelled"
  elseif closes == "one_erroring" or ending ~= "values" then
    expect_status = "failed"
  else
    expect_status = "done"
  end
  local entered = not (state == "never_started" and kind ~= "self")

  -- run returned main's results, nil hole included
  assert.are.equal(3, run.n)
  assert.are.equal("main-done", run[2])
  assert.is_nil(run[3])

  -- preconditions: the task really was in the state we claim
  assert.are.equal("ready", rec.status_spawned)
  if kind ~= "self" then
    local want = ({never_started = "ready", ready = "ready", sleeping = "waiting",
                   joining = "waiting"})[state] or expect_status
    assert.are.equal(want, rec.status_before, "status when aborted")
  end

  -- exactly one terminal status, consistent with the rules
  assert.are.equal(expect_status, h:status())

  -- abort's return values
  if kind == "once" then
    assert.are.same({n = 1, state ~= "finished"}, rec.abort_ret)
  elseif kind == "twice" then
    -- a task aborted before it started is cancelled (finished) at once, so
    -- the second abort finds it finished; any other unfinished task has not
    -- unwound yet when the second abort comes right after the first
    local first = state ~= "finished"
    local second = state ~= "finished" and state ~= "never_started"
    assert.are.same({n = 2, first, second}, rec.abort_ret)
  elseif kind == "self" then
    assert.are.same({true}, rec.self_abort)
  end

  -- the body ran or not, and what its awaits did
  assert.are.equal(entered, rec.entered == true, "body entered")
  if entered then
    local await_must_raise = kind == "self" and state ~= "finished"
      or (kind ~= "self" and (state == "sleeping" or state == "joining"))
    if handling == "propagate" then
      if await_must_raise then
        assert.is_nil(rec.await_returned, "the await returned after the abort")
        assert.is_nil(rec.after_inner)
        assert.is_nil(rec.reached_ending)
      elseif state == "finished" then
        assert.is_true(rec.after_inner)
        assert.is_true(rec.reached_ending)
      end
    else
      assert.is_true(rec.reached_ending)
      if await_must_raise then
        assert.is_false(rec.p1[1])
        assert.is_true(is_cancel(rec.p1[2]), tostring(rec.p1[2]))
      elseif state == "finished" then
        assert.is_true(rec.p1[1])
      elseif rec.p1[1] == false then -- ready: this await or the next raises
        assert.is_true(is_cancel(rec.p1[2]), tostring(rec.p1[2]))
      end
      if aborted_before_finish then
        -- level-triggered: an await after the abort raises at once
        assert.is_false(rec.p2[1])
        assert.is_true(is_cancel(rec.p2[2]), tostring(rec.p2[2]))
      else
        assert.is_true(rec.p2[1])
      end
    end
  end

  -- every __close ran exactly once, innermost first
  local want_created = {}
  if entered then
    if closes ~= "none" then want_created.c1 = 1 end
    if closes == "two_nested" then want_created.c2 = 1 end
  end
  assert.are.same(want_created, rec.created)
  assert.are.same(want_created, rec.closed)
  if entered and closes == "two_nested" then
    assert.are.same({"c2", "c1"}, rec.order)
  end

  -- the joined task is unaffected by its joiner's abort
  if state == "joining" then
    if kind == "shutdown" then
      assert.are.equal("cancelled", X:status())
    else
      assert.is_true(rec.x_final[1])
      assert.are.equal(3, rec.x_final.n)
      assert.are.equal("x", rec.x_final[2])
      assert.are.equal("done", rec.x_status)
    end
    if rec.xres then -- only if the join completed before the abort
      assert.are.equal("x", rec.xres[1])
    end
  end

  -- reports: only an unobserved failure is reported, once
  local unobserved_failure = expect_status == "failed" and kind == "shutdown"
  if unobserved_failure then
    assert.are.equal(1, #reports)
    assert.are.equal(h:id(), reports[1].id)
  else
    assert.are.equal(0, #reports)
  end

  if kind == "shutdown" then
    if entered and closes ~= "none" then
      assert.are.equal(1, rec.closed.c1)
    end
    -- a finished task stays finished; aborting it now changes nothing
    assert.is_false(h:abort())
    assert.are.equal(expect_status, h:status())
    if unobserved_failure then
      local e = reports[1].err
      if closes == "one_erroring" then
        assert.is_true(rawequal(CLOSE_ERR, e))
      elseif ending == "error_table" then
        assert.is_true(rawequal(ERR_TABLE, e))
      elseif ending == "error_string" then
        assert.is_truthy(string.find(tostring(e), "matrix boom", 1, true))
      else
        assert.is_nil(e)
      end
    end
    return
  end

  -- join/result, and their stability
  assert.are.same(want_created, rec.closed_at_join, "__close not run before join returned")
  assert.are.equal(expect_status, rec.status)
  assert.is_false(rec.post_abort[1])
  assert.are.equal(1, rec.post_abort.n)
  assert.are.equal(expect_status, rec.status_after_post_abort)
  assert.are.equal(expect_status, rec.status_later)
  -- a cancelled await returns at once: join never waits for a deadline
  local want_t = (state == "ready" and kind ~= "self") and 1 or 0
  assert.is_true(math.abs(rec.t_join - t0 - want_t) < 1e-6,
    ("join returned at +%g, expected +%g"):format(rec.t_join - t0, want_t))

  local function check_join(j, r)
    if expect_status == "cancelled" then
      assert.are.equal(2, j.n)
      assert.is_false(j[1])
      assert.is_true(is_cancel(j[2]), tostring(j[2]))
      assert.are.equal(2, r.n)
      assert.is_false(r[1])
      assert.is_true(is_cancel(r[2]), tostring(r[2]))
    elseif expect_status == "done" then
      assert.are.equal(5, j.n) -- pcall's true + 4 results
      assert.are.same({true, 1, nil, 3, nil}, {j[1], j[2], j[3], j[4], j[5]})
      assert.are.equal(5, r.n)
      assert.are.same({true, 1, nil, 3, nil}, {r[1], r[2], r[3], r[4], r[5]})
    else
      assert.are.equal(2, j.n)
      assert.is_false(j[1])
      assert.are.equal(2, r.n)
      assert.is_false(r[1])
      for _, e in ipairs{j[2], r[2]} do
        if closes == "one_erroring" then
          assert.is_true(rawequal(CLOSE_ERR, e), "expected the __close error, got " .. tostring(e))
        elseif ending == "error_table" then
          assert.is_true(rawequal(ERR_TABLE, e))
        elseif ending == "error_string" then
          assert.are.equal("string", type(e))
          assert.is_truthy(string.find(e, "matrix boom", 1, true))
        else
          assert.is_nil(e)
        end
      end
    end
  end
  check_join(rec.j, rec.r)
  check_join(rec.j2, rec.r2)
end

describe("abort matrix", function()
  for _, state in ipairs(STATES) do
    for _, kind in ipairs(KINDS) do
      for _, ending in ipairs(ENDINGS) do
        for _, closes in ipairs(CLOSES) do
          for _, handling in ipairs(HANDLING) do
            local name = table.concat({state, kind, ending, closes, handling}, " | ")
            it(name, function()
              run_case(state, kind, ending, closes, handling)
            end)
          end
        end
      end
    end
  end
end)
