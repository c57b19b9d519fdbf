-- spec/31-sync_spec.lua -- docs/sync.md: semaphore, mutex, event; waiters
-- first come, first served; no permit or lock leaked by an abort.
local H = require "spec.helpers"
local spindle = H.spindle
local T = H.vtest

local function err_of(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok)
  return err
end

describe("§4 spindle.semaphore", function()
  it("acquire returns a permit usable as <close>", T(function()
    local sem = spindle.semaphore(2)
    assert.equal(2, sem:available())
    do
      local p <close> = sem:acquire()
      assert.equal(1, sem:available())
      assert.equal("spindle.permit (held)", tostring(p))
    end
    assert.equal(2, sem:available())
  end))

  it("permit:release() gives the permit back, once", T(function()
    local sem = spindle.semaphore(1)
    local p = sem:acquire()
    assert.equal(0, sem:available())
    p:release()
    assert.equal(1, sem:available())
    p:release()
    assert.equal(1, sem:available())
    assert.equal("spindle.permit (released)", tostring(p))
  end))

  it("acquire waits while no permit is free", T(function()
    local sem = spindle.semaphore(1)
    local p = sem:acquire()
    local h = spindle.spawn(function() local q <close> = sem:acquire(); return "got" end)
    spindle.sleep(1)
    assert.equal("waiting", h:status())
    p:release()
    assert.equal("got", h:join())
    assert.equal(1, sem:available())
  end))

  it("try_acquire never waits", T(function()
    local sem = spindle.semaphore(1)
    local p = sem:try_acquire()
    assert.is_not_nil(p)
    assert.is_nil(sem:try_acquire())
    p:release()
    assert.is_not_nil(sem:try_acquire())
  end))

  it("limits concurrency to n", T(function()
    local sem = spindle.semaphore(3)
    local active, peak = 0, 0
    local hs = {}
    for i = 1, 20 do
      hs[i] = spindle.spawn(function()
        local p <close> = sem:acquire()
        active = active + 1
        peak = math.max(peak, active)
        spindle.sleep(i % 3 + 1)
        active = active - 1
      end)
    end
    spindle.join_all(hs)
    assert.equal(3, peak)
    assert.equal(3, sem:available())
  end))

  it("serves waiters first come, first served, handing a released permit to the first (no barging)", T(function()
    local sem = spindle.semaphore(1)
    local first = sem:acquire()
    local log = {}
    for i = 1, 4 do
      spindle.spawn(function()
        local p <close> = sem:acquire()
        log[#log + 1] = i
        spindle.yield()
      end)
    end
    spindle.yield()
    first:release()
    -- the permit went straight to waiter 1: nobody can take it now
    assert.is_nil(sem:try_acquire())
    spindle.sleep(1)
    assert.same({1, 2, 3, 4}, log)
    assert.equal(1, sem:available())
  end))

  it("a task aborted while waiting never takes a permit", T(function()
    local sem = spindle.semaphore(1)
    local p = sem:acquire()
    local a = spindle.spawn(function() return sem:acquire() end)
    spindle.yield()
    a:abort()
    assert.is_true(spindle.is_cancelled(select(2, a:result())))
    p:release()
    assert.equal(1, sem:available())
  end))

  it("a task handed a permit and aborted before it resumes releases it through <close>", T(function()
    local sem = spindle.semaphore(1)
    local p = sem:acquire()
    local got
    local a = spindle.spawn(function()
      local q <close> = sem:acquire()
      got = tostring(q)
      spindle.yield() -- the abort is delivered here; q is closed
    end)
    spindle.yield()
    p:release() -- handed to a; a is ready
    a:abort()
    a:result()
    assert.equal("spindle.permit (held)", got)
    assert.equal(1, sem:available())
  end))

  it("checks its arguments", function()
    assert.is_true(H.msg_names(err_of(spindle.semaphore), "semaphore"))
    assert.is_true(H.msg_names(err_of(spindle.semaphore, -1), "semaphore"))
    local sem = spindle.semaphore(1)
    assert.is_true(H.msg_has(err_of(sem.acquire, sem), "not inside a task"))
    assert.equal("spindle.semaphore (1 available)", tostring(sem))
  end)
end)

describe("§4 spindle.mutex", function()
  it("lock returns a guard usable as <close>", T(function()
    local m = spindle.mutex()
    assert.is_false(m:is_locked())
    do
      local g <close> = m:lock()
      assert.is_true(m:is_locked())
      assert.is_nil(m:try_lock())
    end
    assert.is_false(m:is_locked())
    local g = m:try_lock()
    g:unlock()
    g:unlock()
    assert.is_false(m:is_locked())
  end))

  it("excludes: one holder at a time, in arrival order", T(function()
    local m = spindle.mutex()
    local inside, log = 0, {}
    local hs = {}
    for i = 1, 5 do
      hs[i] = spindle.spawn(function()
        local g <close> = m:lock()
        inside = inside + 1
        assert(inside == 1)
        log[#log + 1] = i
        spindle.sleep(1)
        inside = inside - 1
      end)
    end
    spindle.join_all(hs)
    assert.same({1, 2, 3, 4, 5}, log)
  end))

  it("is released when the holder fails or is aborted", T(function()
    local m = spindle.mutex()
    local h = spindle.spawn(function()
      local g <close> = m:lock()
      error("oops")
    end)
    assert.is_false(h:result())
    assert.is_false(m:is_locked())
    local h2 = spindle.spawn(function()
      local g <close> = m:lock()
      spindle.sleep(100)
    end)
    spindle.yield()
    assert.is_true(m:is_locked())
    h2:abort()
    h2:result()
    assert.is_false(m:is_locked())
  end))

  it("a waiter aborted while waiting never holds the lock", T(function()
    local m = spindle.mutex()
    local g = m:lock()
    local a = spindle.spawn(function() local x <close> = m:lock(); spindle.sleep(100) end)
    local b = spindle.spawn(function() local x <close> = m:lock(); return "b" end)
    spindle.yield()
    a:abort()
    g:unlock()
    assert.equal("b", b:join())
    a:result()
    assert.is_false(m:is_locked())
  end))

  it("checks its arguments", function()
    local m = spindle.mutex()
    assert.is_true(H.msg_has(err_of(m.lock, m), "not inside a task"))
    assert.is_true(H.msg_has(err_of(m.lock, spindle.semaphore(1)), "spindle.mutex"))
    assert.equal("spindle.mutex (unlocked)", tostring(m))
  end)
end)

describe("§4 spindle.event", function()
  it("wait waits until set; set releases all waiters", T(function()
    local ev = spindle.event()
    assert.is_false(ev:is_set())
    local hs = {}
    for i = 1, 5 do hs[i] = spindle.spawn(function() ev:wait(); return i end) end
    spindle.sleep(1)
    for i = 1, 5 do assert.equal("waiting", hs[i]:status()) end
    ev:set()
    assert.is_true(ev:is_set())
    for i = 1, 5 do assert.equal(i, hs[i]:join()) end
  end))

  it("releases waiters in the order they came", T(function()
    local ev = spindle.event()
    local log = {}
    for i = 1, 5 do spindle.spawn(function() ev:wait(); log[#log + 1] = i end) end
    spindle.yield()
    ev:set()
    spindle.yield()
    assert.same({1, 2, 3, 4, 5}, log)
  end))

  it("later waiters pass at once until clear", T(function()
    local ev = spindle.event()
    ev:set()
    assert.is_true(ev:wait())
    assert.is_true(ev:wait())
    ev:clear()
    assert.is_false(ev:is_set())
    local h = spindle.spawn(function() ev:wait() end)
    spindle.sleep(1)
    assert.equal("waiting", h:status())
    ev:set()
    h:join()
  end))

  it("a waiter aborted while waiting is detached", T(function()
    local ev = spindle.event()
    local a = spindle.spawn(function() ev:wait() end)
    local b = spindle.spawn(function() ev:wait(); return "b" end)
    spindle.yield()
    a:abort()
    ev:set()
    assert.equal("b", b:join())
    assert.is_false((a:result()))
  end))

  it("checks its arguments", function()
    local ev = spindle.event()
    assert.is_true(H.msg_has(err_of(ev.wait, ev), "not inside a task"))
    assert.is_true(H.msg_has(err_of(ev.set, {}), "spindle.event"))
    assert.equal("spindle.event (clear)", tostring(ev))
  end)
end)
