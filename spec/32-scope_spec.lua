-- spec/32-scope_spec.lua -- docs/structured.md#scopes: spindle.scope
-- (structured concurrency): results, fail-fast, aborting the owner, nesting.
local H = require "spec.helpers"
local spindle = H.spindle
local T = H.vtest
local sleep, now = spindle.sleep, spindle.now

describe("§4 spindle.scope", function()
  it("calls fn(s) in the current task and returns fn's results", T(function()
    local me = spindle.current()
    local r = table.pack(spindle.scope(function(s)
      assert.equal(me, spindle.current())
      assert.matches("^spindle.scope", tostring(s))
      return 1, nil, 3
    end))
    assert.same({n = 3, 1, nil, 3}, r)
  end))

  it("returns only once every child has ended", T(function()
    local log = {}
    local t0 = now()
    local r = spindle.scope(function(s)
      s:spawn(function() sleep(3); log[#log + 1] = "child 3" end)
      s:spawn(function() sleep(1); log[#log + 1] = "child 1" end)
      log[#log + 1] = "body"
      return "r"
    end)
    log[#log + 1] = "after"
    assert.equal("r", r)
    assert.same({"body", "child 1", "child 3", "after"}, log)
    assert.equal(3, now() - t0)
  end))

  it("s:spawn(f, ...) passes arguments and returns a handle", T(function()
    spindle.scope(function(s)
      local h = s:spawn(function(a, b) return a + b end, 2, 3)
      assert.equal(5, h:join())
      assert.equal("done", h:status())
    end)
  end))

  it("a child may spawn more children into the same scope", T(function()
    local n = 0
    spindle.scope(function(s)
      s:spawn(function()
        sleep(1)
        s:spawn(function() sleep(1); n = n + 1 end)
      end)
    end)
    assert.equal(1, n)
  end))

  it("a child's error aborts the others, which have unwound before scope raises it", T(function()
    local log = {}
    local t0 = now()
    local ok, err = pcall(spindle.scope, function(s)
      s:spawn(function()
        local c <close> = H.closer(log, "sibling unwound")
        sleep(100)
      end)
      s:spawn(function() sleep(1); error({code = 42}) end)
      local c <close> = H.closer(log, "body unwound")
      sleep(100) -- interrupted by the failure
      log[#log + 1] = "not reached"
    end)
    assert.is_false(ok)
    assert.same({code = 42}, err)
    assert.same({"sibling unwound", "body unwound"}, log) -- aborted in that order
    assert.equal(1, now() - t0)
  end))

  it("raises the first error when several fail", T(function()
    local ok, err = pcall(spindle.scope, function(s)
      s:spawn(function() sleep(2); error("second", 0) end)
      s:spawn(function() sleep(1); error("first", 0) end)
      s:spawn(function()
        local c <close> = setmetatable({}, {__close = function() error("while unwinding", 0) end})
        sleep(5)
      end)
    end)
    assert.is_false(ok)
    assert.equal("first", err)
  end))

  it("a failure after the body returned still aborts the others", T(function()
    local log = {}
    local ok, err = pcall(spindle.scope, function(s)
      s:spawn(function() local c <close> = H.closer(log, "a"); sleep(100) end)
      s:spawn(function() sleep(2); error("late", 0) end)
      return "body done"
    end)
    assert.is_false(ok)
    assert.equal("late", err)
    assert.same({"a"}, log)
  end))

  it("fn's error aborts the children and is raised after they unwound", T(function()
    local log = {}
    local ok, err = pcall(spindle.scope, function(s)
      s:spawn(function() local c <close> = H.closer(log, "child"); sleep(100) end)
      sleep(1)
      error("body failed", 0)
    end)
    assert.is_false(ok)
    assert.equal("body failed", err)
    assert.same({"child"}, log)
  end))

  it("children's failures observed by the scope are not reported as never joined", function()
    local stderr = H.capture_stderr([[
      local spindle = require "spindle"
      spindle.run(function()
        pcall(spindle.scope, function(s)
          s:spawn(function() error("child boom") end)
          s:spawn(function() spindle.sleep(0.01) error("other boom") end)
        end)
      end)
      collectgarbage()
      print("ok")
    ]])
    assert.equal("", stderr)
  end)

  it("a child aborted by someone else is not a failure of the scope", T(function()
    local r = spindle.scope(function(s)
      local h = s:spawn(function() sleep(100) end)
      local h2 = s:spawn(function() sleep(100) end)
      h2:abort() -- not started yet
      sleep(1)
      h:abort()
      return "fine"
    end)
    assert.equal("fine", r)
  end))

  it("aborting the owner aborts the children; they unwind before the owner ends", T(function()
    local log = {}
    local owner = spindle.spawn(function()
      local c0 <close> = H.closer(log, "owner unwound")
      spindle.scope(function(s)
        s:spawn(function() local c <close> = H.closer(log, "child 1"); sleep(100) end)
        s:spawn(function() local c <close> = H.closer(log, "child 2"); sleep(100) end)
        sleep(100)
      end)
    end)
    sleep(1)
    owner:abort()
    local ok, err = owner:result()
    assert.is_false(ok)
    assert.is_true(spindle.is_cancelled(err))
    assert.same({"child 1", "child 2", "owner unwound"}, log)
  end))

  it("aborting the owner while it waits for the children", T(function()
    local log = {}
    local owner = spindle.spawn(function()
      spindle.scope(function(s)
        s:spawn(function() local c <close> = H.closer(log, "child"); sleep(100) end)
      end)
      log[#log + 1] = "not reached"
    end)
    sleep(1)
    owner:abort()
    assert.is_false((owner:result()))
    assert.same({"child"}, log)
  end))

  it("an outer timeout aborts the children and raises the timeout", T(function()
    local log = {}
    local ok, err = pcall(spindle.timeout, 2, spindle.scope, function(s)
      s:spawn(function() local c <close> = H.closer(log, "child"); sleep(100) end)
    end)
    assert.is_false(ok)
    assert.is_true(spindle.is_timeout(err))
    assert.same({"child"}, log)
  end))

  it("children cleanup that awaits finishes before the scope raises", T(function()
    local log = {}
    pcall(spindle.scope, function(s)
      s:spawn(function()
        local c <close> = setmetatable({}, {__close = function()
          spindle.shield(function() sleep(5) end)
          log[#log + 1] = "slow cleanup done"
        end})
        sleep(100)
      end)
      sleep(1)
      error("x")
    end)
    assert.same({"slow cleanup done"}, log)
  end))

  it("s:spawn after the scope ended raises", T(function()
    local saved
    spindle.scope(function(s) saved = s end)
    local ok, err = pcall(saved.spawn, saved, function() end)
    assert.is_false(ok)
    assert.is_true(H.msg_has(err, "scope has ended"))
  end))

  it("s:spawn in a failing scope starts nothing", T(function()
    local ran = false
    pcall(spindle.scope, function(s)
      s:spawn(function() error("boom") end)
      pcall(sleep, 1) -- swallowed, but level-triggered
      local h = s:spawn(function() ran = true end)
      assert.equal("cancelled", h:status())
    end)
    assert.is_false(ran)
  end))

  it("nests three deep with failures at each level", T(function()
    for fail_at = 1, 3 do
      local log = {}
      local function level(s, depth)
        s:spawn(function() local c <close> = H.closer(log, "sibling " .. depth); sleep(100) end)
        if depth < 3 then
          s:spawn(function()
            spindle.scope(function(s2) level(s2, depth + 1) end)
          end)
        end
        if depth == fail_at then
          s:spawn(function() sleep(depth); error("fail at " .. depth, 0) end)
        end
        sleep(50)
      end
      local ok, err = pcall(spindle.scope, function(s) level(s, 1) end)
      assert.is_false(ok)
      assert.equal("fail at " .. fail_at, err)
      table.sort(log)
      assert.same({"sibling 1", "sibling 2", "sibling 3"}, log)
      assert.equal(1, #spindle.tasks())
    end
  end))

  it("checks its arguments and needs a task", function()
    local ok, err = pcall(spindle.scope, 1)
    assert.is_false(ok)
    assert.is_true(H.msg_names(err, "scope"))
    ok, err = pcall(spindle.scope, function() end)
    assert.is_false(ok)
    assert.is_true(H.msg_has(err, "not inside a task"))
  end)
end)
