-- spec/40-embed_spec.lua -- docs/embedding.md from Lua: rt:step, next_step,
-- backend_fd, next_timeout, loop = "luv" and spindle.await.
local spindle = require "spindle"
local uv = require "luv"

describe("rt:step([max_seconds])", function()
  it("runs every task ready when it began, one slice each, and returns the live count", function()
    local rt = spindle.runtime()
    local log = {}
    for i = 1, 3 do
      rt:spawn(function()
        log[#log + 1] = "a" .. i
        spindle.yield()
        log[#log + 1] = "b" .. i
      end)
    end
    assert.equal(3, rt:step())
    assert.same({"a1", "a2", "a3"}, log)
    assert.equal(0, rt:step())
    assert.same({"a1", "a2", "a3", "b1", "b2", "b3"}, log)
    rt:close()
  end)

  it("never blocks: a sleeping task keeps it returning at once", function()
    local rt = spindle.runtime()
    rt:spawn(function() spindle.sleep(3600) end)
    local t0 = uv.hrtime()
    for _ = 1, 100 do assert.equal(1, rt:step()) end
    assert.is_true((uv.hrtime() - t0) / 1e9 < 2)
    rt:close()
  end)

  it("with a budget, repeats while tasks are ready, then returns", function()
    local rt = spindle.runtime()
    local n = 0
    rt:spawn(function() while n < 1e9 do n = n + 1; spindle.yield() end end)
    rt:step(0.01)
    assert.is_true(n > 1)
    rt:close()
  end)

  it("raises when called from inside a task", function()
    local rt = spindle.runtime()
    local ok, err
    rt:spawn(function() ok, err = pcall(rt.step, rt) end)
    rt:run()
    assert.is_false(ok)
    assert.truthy(tostring(err):find("already inside a runtime", 1, true))
    rt:close()
  end)
end)

describe("spindle.next_step()", function()
  it("waits for the host's next step", function()
    local rt = spindle.runtime()
    local frames = {}
    rt:spawn(function()
      for i = 1, 3 do spindle.next_step(); frames[#frames + 1] = i end
    end)
    rt:step()
    assert.same({}, frames)
    rt:step()
    assert.same({1}, frames)
    rt:step(0.005) -- a budget does not make it several frames
    assert.same({1, 2}, frames)
    rt:step()
    assert.same({1, 2, 3}, frames)
    assert.equal(0, rt:step())
    rt:close()
  end)

  it("wakes every waiter of this step together, in order", function()
    local rt = spindle.runtime()
    local log = {}
    for i = 1, 3 do rt:spawn(function() spindle.next_step(); log[#log + 1] = i end) end
    rt:step()
    rt:step()
    assert.same({1, 2, 3}, log)
    rt:close()
  end)

  it("is a turn of the loop under run, without being taken for a deadlock", function()
    local n = spindle.run(function()
      local c = 0
      for _ = 1, 10 do spindle.next_step(); c = c + 1 end
      return c
    end)
    assert.equal(10, n)
  end)

  it("can be aborted", function()
    local rt = spindle.runtime()
    local h = rt:spawn(function() spindle.next_step() end)
    rt:step()
    assert.equal("waiting", h:status())
    assert.is_true(h:abort())
    rt:step()
    assert.equal("cancelled", h:status())
    rt:close()
  end)

  it("shows in spindle.dump() as next step", function()
    local rt = spindle.runtime()
    local text
    rt:spawn(function() spindle.next_step() end)
    rt:spawn(function() text = spindle.dump() end) -- runs after the first waits
    rt:step()
    rt:close()
    assert.truthy(text:find("next step", 1, true), text)
  end)

  it("raises outside a task", function()
    local ok, err = pcall(spindle.next_step)
    assert.is_false(ok)
    assert.truthy(err:find("spindle.next_step: not inside a task", 1, true))
  end)
end)

describe("rt:backend_fd() and rt:next_timeout()", function()
  it("backend_fd is a descriptor", function()
    local rt = spindle.runtime()
    local fd = rt:backend_fd()
    assert.is_true(math.type(fd) == "integer" and fd >= 0)
    rt:close()
  end)

  it("next_timeout: 0 with tasks ready, nil with nothing, seconds to the next timer", function()
    local rt = spindle.runtime()
    assert.is_nil(rt:next_timeout())
    rt:spawn(function() spindle.sleep(2) end)
    assert.equal(0, rt:next_timeout())
    rt:step()
    local s = rt:next_timeout()
    assert.is_true(s > 1.9 and s <= 2.001, tostring(s))
    assert.equal(s, math.ceil(s * 1000) / 1000) -- whole milliseconds
    rt:close()
  end)

  it("raise on a closed runtime", function()
    local rt = spindle.runtime()
    rt:close()
    assert.is_false(pcall(rt.backend_fd, rt))
    assert.is_false(pcall(rt.next_timeout, rt))
    assert.is_false(pcall(rt.step, rt))
  end)
end)

describe('loop = "luv"', function()
  it("shares luv's default loop: a luv timer and a spindle task interleave", function()
    local rt = spindle.runtime({loop = "luv"})
    local log = {}
    rt:run(function()
      local t = uv.new_timer()
      t:start(10, 0, function() log[#log + 1] = "luv timer"; t:close() end)
      spindle.sleep(0.03)
      log[#log + 1] = "task"
    end)
    rt:close()
    assert.same({"luv timer", "task"}, log)
  end)

  it("closes only its own handles: luv's loop stays usable", function()
    local rt = spindle.runtime({loop = "luv"})
    rt:run(function() spindle.sleep(0.001) end)
    rt:close()
    local fired = false
    local t = uv.new_timer()
    t:start(1, 0, function() fired = true; t:close() end)
    uv.run()
    assert.is_true(fired)
  end)
end)

describe("spindle.await(fn, ...)", function()
  it("returns what a callback called later gets (luv timer)", function()
    local rt = spindle.runtime({loop = "luv"})
    local a, b, c = rt:run(function()
      return spindle.await(function(ms, cb)
        local t = uv.new_timer()
        t:start(ms, 0, function() t:close(); cb("fired", ms, nil) end)
      end, 5)
    end)
    rt:close()
    assert.equal("fired", a)
    assert.equal(5, b)
    assert.is_nil(c)
  end)

  it("returns at once when fn calls the callback before returning", function()
    local r = table.pack(spindle.run(function()
      return spindle.await(function(x, cb) cb(x, nil, x * 2) end, 21)
    end))
    assert.equal(3, r.n)
    assert.same({21, nil, 42}, {r[1], r[2], r[3]})
  end)

  it("works with a luv request API (fs_stat)", function()
    local rt = spindle.runtime({loop = "luv"})
    local err, st = rt:run(function()
      return spindle.await(uv.fs_stat, "/")
    end)
    rt:close()
    assert.is_nil(err)
    assert.equal("directory", st.type)
  end)

  it("ignores the callback's second call and calls after an abort", function()
    local rt = spindle.runtime({loop = "luv"})
    local saved
    rt:run(function()
      local x = spindle.await(function(cb) cb(1); cb(2) end)
      assert.equal(1, x)
      local h = spindle.spawn(function()
        return spindle.await(function(cb) saved = cb end)
      end)
      spindle.yield()
      h:abort()
      assert.is_false((h:result()))
      saved("late") -- nobody waits: ignored
      spindle.yield()
    end)
    rt:close()
  end)

  it("raises fn's error in the caller", function()
    local ok, err = pcall(spindle.run, function()
      return spindle.await(function() error({code = 7}) end)
    end)
    assert.is_false(ok)
    assert.equal(7, err.code)
  end)

  it("checks its argument and that it runs in a task", function()
    assert.is_false(pcall(spindle.run, function() return spindle.await(42) end))
    local ok, err = pcall(spindle.await, function(cb) cb() end)
    assert.is_false(ok)
    assert.truthy(err:find("not inside a task", 1, true))
  end)
end)
