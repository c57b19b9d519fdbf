-- Regressions for issue 9: seven defects found by probing spindle from
-- outside.  Each `describe` names the defect; see docs/reliability.md.
local H = require "spec.helpers"
local spindle = H.spindle
local net = spindle.net

local function foreigners()
  return {nil, 42, spindle.channel(), io.stdout, "str", {}, true,
          setmetatable({}, {__index = function() error("boom") end})}
end

describe("9.1 a metamethod given a wrong self", function()
  it("__gc and __close of a listener, stream and runtime ignore foreign values", function()
    local mts = {}
    H.run_real(function()
      local srv <close> = assert(net.listen("127.0.0.1", 0))
      local _, port = srv:local_addr()
      local c <close> = assert(net.connect("127.0.0.1", port))
      mts.listener = getmetatable(srv)
      mts.stream = getmetatable(c)
    end)
    mts.runtime = getmetatable(spindle.runtime())
    for name, mt in pairs(mts) do
      for _, x in ipairs(foreigners()) do
        -- __gc of something that is not ours does nothing
        assert.is_true(pcall(mt.__gc, x), name)
        -- __close checks self like a method: an error, never a crash
        local ok, err = pcall(mt.__close, x)
        assert(ok == false and type(err) == "string", name)
      end
      assert.is_true(pcall(mt.__gc)) -- no argument at all
    end
  end)

  it("__tostring of a mutex or semaphore raises for a foreign self", function()
    for _, obj in ipairs({spindle.mutex(), spindle.semaphore(2)}) do
      local mt = getmetatable(obj)
      assert.is_string(tostring(obj))
      for _, x in ipairs(foreigners()) do
        local ok, err = pcall(mt.__tostring, x)
        assert.is_false(ok)
        assert.truthy(err:find("expected", 1, true), err)
      end
    end
  end)

  it("the __gc of every class of the library ignores foreign values", function()
    local seen = {}
    local reg = debug.getregistry()
    for k, mt in pairs(reg) do
      if type(k) == "string" and k:match("^spindle%.") and type(mt) == "table"
          and type(rawget(mt, "__gc")) == "function" then
        for _, x in ipairs(foreigners()) do
          assert.is_true(pcall(mt.__gc, x), k)
        end
        seen[#seen + 1] = k
      end
    end
    assert.truthy(#seen >= 8, table.concat(seen, " "))
  end)
end)

describe("9.2 a runtime dropped without close()", function()
  it("is collected and closed: descriptors stay flat over thousands", function()
    collectgarbage()
    local before = H.fd_count()
    for i = 1, 3000 do
      local rt = spindle.runtime()
      rt:run(function() spindle.sleep(0) end)
      rt = nil -- dropped, never closed
      if i % 200 == 0 then collectgarbage() end
    end
    collectgarbage()
    collectgarbage()
    assert.is_true(H.fd_count() <= before + 8,
      ("descriptors: %d before, %d after"):format(before, H.fd_count()))
  end)

  it("stays alive while it has tasks, and is collected once idle", function()
    local weak = setmetatable({}, {__mode = "v"})
    local rt = spindle.runtime({clock = "virtual"})
    local ran = false
    rt:spawn(function() spindle.sleep(10); ran = true end)
    weak[1] = rt
    rt = nil
    collectgarbage()
    collectgarbage()
    assert.is_not_nil(weak[1], "a runtime with a live task was collected")
    weak[1]:run()
    assert.is_true(ran)
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1], "an idle, unreferenced runtime was kept")
  end)
end)

describe("9.3 a spindle.runtime(opts) that fails", function()
  it("leaks no loop, whatever option is bad", function()
    collectgarbage()
    local before = H.fd_count()
    local bad = {
      {clock = "sundial"}, {preempt = -1}, {on_error = 1}, {warn_blocking = 0},
      {loop = "mine"}, {nonsense = true}, {[1] = true},
      setmetatable({clock = 5}, {__index = function() error("boom") end}),
    }
    for _ = 1, 300 do
      for _, opts in ipairs(bad) do
        assert.is_false(pcall(spindle.runtime, opts))
      end
    end
    collectgarbage()
    collectgarbage()
    assert.is_true(H.fd_count() <= before + 4)
  end)
end)

describe("9.4 read errors after a reset", function()
  for _, how in ipairs({"read_line", "read_until", "lines", "read_all", "read"}) do
    it(how .. ": the bytes before the reset first, then the error, every time after", function()
      H.run_real(function()
        local srv <close> = assert(net.listen("127.0.0.1", 0))
        local _, port = srv:local_addr()
        local c = assert(net.connect("127.0.0.1", port))
        local s <close> = assert(srv:accept())
        c:write("no newline")
        spindle.sleep(0.05)
        c:close_reset()
        spindle.sleep(0.05)
        local first
        if how == "read_line" then first = table.pack(s:read_line())
        elseif how == "read_until" then first = table.pack(s:read_until("\r\n"))
        elseif how == "lines" then first = table.pack(s:lines()())
        elseif how == "read_all" then first = table.pack(s:read_all())
        else first = table.pack(s:read(100)) end
        if how == "read_all" or how == "read" then
          assert.same({nil, "ECONNRESET", "no newline"}, {first[1], first[3], first[4]})
        else
          assert.equal("no newline", first[1])
        end
        for _ = 1, 3 do
          assert.equal("ECONNRESET", select(3, s:read_some()))
          assert.equal("ECONNRESET", select(3, s:read_line()))
        end
      end)
    end)
  end
end)

describe("9.5 errors caught after spindle.timeout", function()
  it("are not retained once the task has ended", function()
    local weak = setmetatable({}, {__mode = "k"})
    H.run_virtual(function()
      for _ = 1, 200 do
        spindle.spawn(function()
          local ok, err = pcall(spindle.timeout, 0.01, function()
            spindle.sleep(1)
          end)
          assert(not ok and spindle.is_timeout(err))
          weak[err] = true
          local ok2, err2 = pcall(spindle.timeout, 1, function()
            error({"mine"})
          end)
          assert(not ok2 and err2[1] == "mine")
          weak[err2] = true
        end)
      end
      spindle.sleep(1)
    end)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak), "an error value caught inside a task outlived it")
  end)

  it("a long-lived task catching many timeouts keeps the heap flat", function()
    H.run_virtual(function()
      local function round()
        for _ = 1, 2000 do
          pcall(spindle.timeout, 0.001, spindle.sleep, 1)
        end
        collectgarbage()
        collectgarbage()
        return collectgarbage("count")
      end
      round()
      local a = round()
      local b = round()
      assert.is_true(b < a * 1.05 + 16, ("%.1f KiB -> %.1f KiB"):format(a, b))
    end)
  end)
end)

describe("9.6 join_all and race", function()
  it("do not hang when a shutdown routine aborts every other task", function()
    H.run_virtual(function()
      local hs = {}
      for i = 1, 4 do hs[i] = spindle.spawn(spindle.sleep, i) end
      local waiter
      waiter = spindle.spawn(function()
        return pcall(spindle.join_all, hs)
      end)
      local racer = spindle.spawn(function() return pcall(spindle.race, hs) end)
      spindle.sleep(0.5)
      -- no helper task is visible: only ours
      assert.equal(7, #spindle.tasks())
      local me = spindle.current()
      for _, h in ipairs(spindle.tasks()) do
        if h ~= me and h ~= waiter and h ~= racer then h:abort() end
      end
      local ok, err = waiter:join()
      assert.is_false(ok)
      assert.is_true(spindle.is_cancelled(err))
      local rok, rerr = racer:join()
      assert.is_false(rok)
      assert.is_true(spindle.is_cancelled(rerr))
    end)
  end)
end)
