-- spec/24-signal_spec.lua -- docs/process.md#signals: spindle.signal(name)
-- installs the handler at once; sig:wait() returns once per delivery and
-- deliveries before a wait are counted, not lost; sig:close(), <close>,
-- __gc.  Signals are sent to this process by a child (`kill`), after
-- every test the open descriptors are back where they started.
local H = require "spec.helpers"
local spindle = H.spindle

local PID = (function()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return pid
end)()

local fds = H.fd_count

-- Sends sig to this process from a child; inside a task the child is
-- spawned with spindle.process (the loop keeps running), else os.execute.
local function kill_self(sig)
  if spindle.current() and spindle.process then
    local code = spindle.process.run("sh", {"-c", "kill -" .. sig .. " " .. PID})
    assert(code == 0, "kill failed")
  else
    assert(os.execute("kill -" .. sig .. " " .. PID))
  end
end

local run = H.run_real
run(function() end) -- libuv's process-wide pipe, opened once

describe("spindle.signal", function()
  H.check_fds(_ENV)

  it("installs the handler at once and counts deliveries made before wait", function()
    run(function()
      local sig <close> = assert(spindle.signal("USR1"))
      kill_self("USR1") -- would end the process if no handler were installed
      kill_self("USR1")
      spindle.sleep(0.05)
      assert.is_true(sig:wait())
      assert.is_true(sig:wait())
      -- nothing more was delivered: a third wait blocks
      local ok, err = pcall(spindle.timeout, 0.05, sig.wait, sig)
      assert.is_false(ok)
      assert.is_true(spindle.is_timeout(err))
    end)
  end)

  it("wait blocks until the next delivery; other tasks keep running", function()
    run(function()
      local sig <close> = assert(spindle.signal("SIGUSR2"))
      local ticks = 0
      local ticker = spindle.spawn(function()
        for _ = 1, 3 do spindle.sleep(0.01); ticks = ticks + 1 end
      end)
      local sender = spindle.spawn(function()
        spindle.sleep(0.05)
        kill_self("USR2")
      end)
      local t0 = spindle.now()
      assert.is_true(sig:wait())
      assert.is_true(spindle.now() - t0 >= 0.04)
      ticker:join(); sender:join()
      assert.are.equal(3, ticks)
    end)
  end)

  it("serves waiters first come, first served, one delivery each", function()
    run(function()
      local sig <close> = assert(spindle.signal("usr1"))
      local order = {}
      local hs = {}
      for i = 1, 3 do
        hs[i] = spindle.spawn(function()
          assert.is_true(sig:wait())
          order[#order + 1] = i
        end)
      end
      spindle.sleep(0.02)
      for n = 1, 3 do
        kill_self("USR1")
        for _ = 1, 100 do
          if #order >= n then break end
          spindle.sleep(0.005)
        end
        assert.are.equal(n, #order)
      end
      for i = 1, 3 do hs[i]:join() end
      assert.are.same({1, 2, 3}, order)
    end)
  end)

  it("accepts names with or without SIG, any case, and numbers", function()
    run(function()
      for _, name in ipairs{"USR1", "SIGUSR1", "sigusr1", "Usr1", 10} do
        local sig = assert(spindle.signal(name))
        assert.truthy(tostring(sig):find("SIGUSR1", 1, true))
        sig:close()
      end
    end)
  end)

  it("an abort while waiting loses no later delivery", function()
    run(function()
      local sig <close> = assert(spindle.signal("USR1"))
      local h = spindle.spawn(function() return sig:wait() end)
      spindle.sleep(0.01)
      h:abort()
      assert.is_false((h:result()))
      kill_self("USR1")
      assert.is_true(spindle.timeout(2, sig.wait, sig))
    end)
  end)

  it("close wakes waiters with nil, 'closed', 'ECANCELED' and is idempotent", function()
    run(function()
      local sig = assert(spindle.signal("USR1"))
      local h = spindle.spawn(function() return sig:wait() end)
      spindle.sleep(0.01)
      assert.is_true(sig:close())
      assert.is_true(sig:close())
      assert.are.same({nil, "closed", "ECANCELED"}, {h:join()})
      assert.are.same({nil, "closed", "ECANCELED"}, {sig:wait()})
      assert.truthy(tostring(sig):find("closed", 1, true))
    end)
  end)

  it("is closed by <close>, by __gc and by the runtime's close", function()
    run(function()
      do local s <close> = assert(spindle.signal("USR1")) end
      do local s = assert(spindle.signal("USR2")); s = nil end
      collectgarbage(); collectgarbage()
    end)
    local keep
    run(function() keep = assert(spindle.signal("USR1")) end)
    assert.are.same({nil, "closed", "ECANCELED"}, {run(function() return keep:wait() end)})
  end)

  it("closing the last handler restores the default action", function()
    local r = H.lua_child([[
      local spindle = require "spindle"
      spindle.run(function()
        local s = spindle.signal("USR1")
        s:close()
      end)
      local f = io.open("/proc/self/stat"); local pid = f:read("n"); f:close()
      os.execute("kill -USR1 " .. pid)
      os.execute("sleep 1")
      print("survived")
    ]])
    assert.are.equal("", r.stdout, H.describe(r))
  end)

  it("an unwatched signal does not keep the runtime alive", function()
    local t0 = os.time()
    assert.are.equal(7, run(function()
      local sig = spindle.signal("USR1")
      spindle.spawn(function() spindle.sleep(0.01) end)
      return 7
    end))
    assert.is_true(os.time() - t0 < 3)
  end)

  it("spindle.dump names the signal a task waits for", function()
    run(function()
      local sig <close> = assert(spindle.signal("USR2"))
      local h = spindle.spawn(function() return sig:wait() end)
      spindle.sleep(0.01)
      assert.truthy(spindle.dump():find("signal SIGUSR2", 1, true))
      h:abort()
    end)
  end)

  it("raises for bad names and outside a runtime; wait outside a task", function()
    run(function()
      for _, v in ipairs{"NOPE", "", 0, 65, -1, 1.5, {}, true} do
        local ok, err = pcall(spindle.signal, v)
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "bad argument"), err)
      end
      local ok, err = pcall(spindle.signal)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "bad argument"), err)
      local ok2, err2 = pcall(function()
        local s <close> = spindle.signal("USR1")
        return s.wait({})
      end)
      assert.is_false(ok2)
      assert.truthy(H.msg_has(err2, "bad argument"), err2)
    end)
    local ok, err = pcall(spindle.signal, "USR1")
    assert.is_false(ok)
    assert.truthy(H.msg_has(err, "not inside a runtime"), err)
  end)

  it("a signal that cannot be caught returns nil, message, code", function()
    run(function()
      local s, msg, code = spindle.signal("KILL")
      assert.is_nil(s)
      assert.are.equal("string", type(msg))
      assert.are.equal("EINVAL", code)
    end)
  end)
end)
