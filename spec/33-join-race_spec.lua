-- spec/33-join-race_spec.lua -- spindle.join_all and spindle.race
-- (docs/structured.md#waiting-for-several-tasks).
local H = require "spec.helpers"
local spindle = H.spindle
local T = H.vtest
local spawn, sleep, now = spindle.spawn, spindle.sleep, spindle.now

describe("§4 spindle.join_all", function()
  it("returns an array of table.pack(results) in the same order", T(function()
    local hs = {
      spawn(function() sleep(3); return 1, nil end),
      spawn(function() sleep(1) end),
      spawn(function() sleep(2); return "c", 3 end),
    }
    local t0 = now()
    local r = spindle.join_all(hs)
    assert.same({{n = 2, 1, nil}, {n = 0}, {n = 2, "c", 3}}, r)
    assert.equal(3, now() - t0)
  end))

  it("works with finished handles and an empty array", T(function()
    local h = spawn(function() return "x" end)
    h:join()
    assert.same({{n = 1, "x"}}, spindle.join_all({h}))
    assert.same({}, spindle.join_all({}))
  end))

  it("raises the first failure in time; the rest are aborted and unwound first", T(function()
    local log = {}
    local err = {}
    local hs = {
      spawn(function() local c <close> = H.closer(log, "a"); sleep(100) end),
      spawn(function() sleep(2); error("later", 0) end),
      spawn(function() sleep(1); error(err) end),
      spawn(function() local c <close> = H.closer(log, "d"); sleep(100) end),
    }
    local t0 = now()
    local ok, e = pcall(spindle.join_all, hs)
    assert.is_false(ok)
    assert.equal(err, e) -- the same value
    assert.equal(1, now() - t0)
    table.sort(log)
    assert.same({"a", "d"}, log)
    assert.equal("cancelled", hs[1]:status())
    assert.equal("cancelled", hs[2]:status())
    assert.equal("cancelled", hs[4]:status())
  end))

  it("a cancelled handle counts as a failure: a cancellation error", T(function()
    local a = spawn(function() sleep(100) end)
    local b = spawn(function() sleep(1) end)
    a:abort()
    local ok, err = pcall(spindle.join_all, {a, b})
    assert.is_false(ok)
    assert.is_true(spindle.is_cancelled(err))
  end))

  it("leaves no watcher behind when the caller is aborted", T(function()
    local target = spawn(function() sleep(10); return "t" end)
    local caller = spawn(function() return spindle.join_all({target}) end)
    sleep(1)
    caller:abort()
    assert.is_false((caller:result()))
    assert.equal("waiting", target:status()) -- not owned by join_all
    assert.equal(2, #spindle.tasks()) -- main and target only
    assert.equal("t", target:join())
  end))

  it("checks its argument", T(function()
    local ok, err = pcall(spindle.join_all, 1)
    assert.is_false(ok)
    assert.is_true(H.msg_names(err, "join_all"))
    ok, err = pcall(spindle.join_all, {1})
    assert.is_false(ok)
    assert.is_true(H.msg_has(err, "not a task handle"))
  end))
end)

describe("§4 spindle.race", function()
  it("returns the index and results of the first to finish", T(function()
    local log = {}
    local hs = {
      spawn(function() local c <close> = H.closer(log, "slow"); sleep(5); return "slow" end),
      spawn(function() sleep(1); return "fast", 2 end),
      spawn(function() local c <close> = H.closer(log, "slower"); sleep(9) end),
    }
    local r = table.pack(spindle.race(hs))
    assert.same({n = 3, 2, "fast", 2}, r)
    -- the others were aborted and have unwound when race returns
    table.sort(log)
    assert.same({"slow", "slower"}, log)
    assert.equal("cancelled", hs[1]:status())
    assert.equal("cancelled", hs[3]:status())
    assert.equal(1, #spindle.tasks())
  end))

  it("raises the error of the first to finish if it failed", T(function()
    local log = {}
    local hs = {
      spawn(function() local c <close> = H.closer(log, "other"); sleep(5) end),
      spawn(function() sleep(1); error("lost", 0) end),
    }
    local ok, err = pcall(spindle.race, hs)
    assert.is_false(ok)
    assert.equal("lost", err)
    assert.same({"other"}, log)
  end))

  it("an already finished handle wins at once", T(function()
    local a = spawn(function() sleep(5) end)
    local b = spawn(function() return "b" end)
    b:join()
    assert.same({2, "b"}, {spindle.race({a, b})})
    assert.equal("cancelled", a:status())
  end))

  it("needs at least one handle", T(function()
    local ok, err = pcall(spindle.race, {})
    assert.is_false(ok)
    assert.is_true(H.msg_names(err, "race"))
  end))
end)
