-- spec/34-test_spec.lua -- docs/testing.md: spindle.test and the virtual clock.
local H = require "spec.helpers"
local spindle = H.spindle

local function fails(fn, opts)
  local ok, err = pcall(spindle.test(fn, opts))
  assert.is_false(ok, "the test should have failed")
  return err
end

local function wall() -- seconds, monotonic, outside any runtime
  return spindle.now()
end

describe("§9 spindle.test", function()
  it("returns a function for busted's it", function()
    assert.is_function(spindle.test(function() end))
  end)

  it("runs fn in a fresh runtime", function()
    local ids = {}
    for i = 1, 2 do
      spindle.test(function()
        ids[i] = spindle.current():id()
        assert.equal(1, spindle.stats().spawned)
      end)()
    end
    assert.same({1, 1}, ids)
  end)

  it("passes when fn returns and nothing is left", spindle.test(function()
    local h = spindle.spawn(function() spindle.sleep(0.01); return 1 end)
    assert.equal(1, h:join())
  end))

  it("fails if fn raises, with the same error value", function()
    local e = {}
    assert.equal(e, fails(function() error(e) end))
    local msg = fails(function() spindle.sleep(0); error("plain") end)
    assert.is_true(H.msg_has(msg, "plain"))
    assert.is_true(H.msg_has(msg, "stack traceback:"))
  end)

  it("fails if a luassert assertion fails inside a task", function()
    local err = fails(function()
      spindle.spawn(function() end):join()
      assert.equal(1, 2)
    end)
    assert.is_true(H.msg_has(tostring(err.message or err), "Expected objects to be equal"))
  end)

  it("fails if fn runs past opts.timeout (wall clock), with a dump", function()
    local t0 = wall()
    local err = fails(function()
      spindle.spawn(function() spindle.sleep(100) end):name("stuck")
      spindle.sleep(100)
    end, {timeout = 0.2})
    assert.is_true(H.msg_has(err, "timed out after 0.2 s"))
    assert.is_true(H.msg_has(err, "(stuck)"))
    assert.is_true(H.msg_has(err, "sleep"))
    local took = wall() - t0
    assert.is_true(took >= 0.2 and took < 2, took)
  end)

  it("enforces the timeout with the virtual clock too", function()
    local t0 = wall()
    local err = fails(function()
      while true do spindle.sleep(1) end -- virtual time races ahead
    end, {timeout = 0.3, clock = "virtual"})
    assert.is_true(H.msg_has(err, "timed out"))
    assert.is_true(wall() - t0 < 3)
    t0 = wall()
    err = fails(function()
      while true do spindle.yield() end
    end, {timeout = 0.3, clock = "virtual"})
    assert.is_true(H.msg_has(err, "timed out"))
    assert.is_true(wall() - t0 < 3)
  end)

  it("fails if tasks are left alive, listing them", function()
    local err = fails(function()
      spindle.spawn(function() spindle.sleep(10) end):name("leaky")
      spindle.spawn(function() spindle.event():wait() end)
      spindle.sleep(1)
    end, {clock = "virtual"})
    assert.is_true(H.msg_has(err, "2 tasks left alive"))
    assert.is_true(H.msg_has(err, "task 2 (leaky)  waiting"))
    assert.is_true(H.msg_has(err, "sleep 9.0 s left"))
    assert.is_true(H.msg_has(err, "task 3  waiting"))
    assert.is_true(H.msg_has(err, "event wait"))
  end)

  it("the leak check catches a single leaked task", function()
    local err = fails(function() spindle.spawn(spindle.sleep, 10) end)
    assert.is_true(H.msg_has(err, "1 task left alive"))
  end)

  it("leftover tasks are aborted and unwound even so", function()
    local log = {}
    fails(function()
      spindle.spawn(function() local c <close> = H.closer(log, "unwound"); spindle.sleep(10) end)
      spindle.yield()
    end)
    assert.same({"unwound"}, log)
  end)

  it("tasks still unwinding from an abort are not leaks", spindle.test(function()
    local h = spindle.spawn(function() spindle.sleep(10) end)
    spindle.yield()
    h:abort()
  end))

  it("opts.allow_leaks permits leftover tasks", spindle.test(function()
    spindle.spawn(spindle.sleep, 10)
  end, {allow_leaks = true}))

  it("fails if a task failed and was never joined", function()
    local err = fails(function()
      spindle.spawn(function() error("forgotten") end)
      spindle.sleep(0.01)
    end, {allow_leaks = true})
    assert.is_true(H.msg_has(err, "never joined"))
    assert.is_true(H.msg_has(err, "forgotten"))
  end)

  it("opts.clock defaults to real", spindle.test(function()
    local t0 = os.clock()
    local w0 = spindle.now()
    spindle.sleep(0.05)
    assert.is_true(spindle.now() - w0 >= 0.05)
    assert.is_true(os.clock() - t0 < 0.05) -- waited without spinning
  end))

  it("checks its arguments", function()
    for _, bad in ipairs({
      {1}, {function() end, 1}, {function() end, {timeout = -1}},
      {function() end, {clock = "fast"}}, {function() end, {bogus = true}},
    }) do
      local ok, err = pcall(spindle.test, table.unpack(bad))
      assert.is_false(ok)
      assert.is_true(H.msg_names(err, "test"))
    end
  end)
end)

describe("§9 the virtual clock", function()
  it("sleeps a simulated day in under a second", function()
    local t0 = os.clock()
    spindle.test(function()
      local v0 = spindle.now()
      local hs = {}
      for i = 1, 24 do
        hs[i] = spindle.spawn(function() spindle.sleep(i * 3600); return spindle.now() - v0 end)
      end
      for i = 1, 24 do assert.equal(i * 3600, hs[i]:join()) end
      assert.equal(86400, spindle.now() - v0)
    end, {clock = "virtual"})()
    assert.is_true(os.clock() - t0 < 1)
  end)

  it("jumps to the next timer only when no task is ready", spindle.test(function()
    local v0 = spindle.now()
    local ch = spindle.channel()
    spindle.spawn(function()
      for i = 1, 100 do ch:send(i); spindle.yield() end
    end)
    for _ = 1, 100 do ch:recv() end
    assert.equal(0, spindle.now() - v0) -- no timer, no jump
    spindle.sleep(60)
    assert.equal(60, spindle.now() - v0)
  end, {clock = "virtual"}))

  it("times out in virtual time", spindle.test(function()
    local v0 = spindle.now()
    local ok, err = pcall(spindle.timeout, 30, spindle.event().wait, spindle.event())
    assert.is_false(ok)
    assert.is_true(spindle.is_timeout(err))
    assert.equal(30, spindle.now() - v0)
  end, {clock = "virtual"}))
end)
