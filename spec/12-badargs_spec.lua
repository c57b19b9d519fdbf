-- spec/12-badargs_spec.lua -- the bad-argument sweep (issue 2 §4) over
-- every public function and method of docs/tasks.md and
-- docs/cancellation.md, and docs/README.md#compatibility.
--
-- Sweep: each public function gets, at each argument position, the values
-- below (missing, nil, each wrong type, NaN, +-inf, negative, huge, ...).
-- A value the contract rejects must give a Lua error (caught by pcall)
-- whose message names the function or says "bad argument" -- never a
-- crash, never a hang; a value the contract accepts must give the
-- documented result.  Calls that must run inside a task run in a probe task
-- watched by the main task on the virtual clock, so a call that wrongly
-- blocks is reported instead of hanging the suite.
local H = require "spec.helpers"
local spindle = H.spindle

local NONE = setmetatable({}, {__tostring = function() return "<missing>" end})
local a_thread = coroutine.create(function() end)
local a_function = function() end

-- {label, value}; value NONE means "argument missing".
local VALUES = {
  {"missing", NONE}, {"nil", nil}, {"true", true}, {"false", false},
  {"string", "x"}, {"empty string", ""}, {"table", {}},
  {"function", a_function}, {"userdata", io.stdout}, {"thread", a_thread},
  {"NaN", 0 / 0}, {"+inf", math.huge}, {"-inf", -math.huge},
  {"negative", -1}, {"negative fraction", -0.001}, {"huge", 1e300},
  {"minint", math.mininteger}, {"maxint", math.maxinteger},
  {"zero", 0}, {"one", 1}, {"fraction", 0.5},
}

local function args_of(v)
  if v == NONE then return {n = 0} end
  return {n = 1, v}
end

local function finite(v) return type(v) == "number" and v == v and v > -math.huge and v < math.huge end

-- Kinds: what the contract says about a value at a position.
-- Each returns "ok" (documented to work), "bad" (must raise) or "either".
local KINDS = {
  fn = function(v) return type(v) == "function" and "ok" or "bad" end,
  duration = function(v) -- number >= 0, finite, <= 1e9
    if finite(v) and v >= 0 and v <= 1e9 then return "ok" end
    return "bad"
  end,
  any = function(v) if v == NONE then return "either" end return "ok" end,
  never = function() return "bad" end, -- e.g. awaits outside a task
  ignored = function() return "either" end, -- an extra argument
  name = function(v)
    if v == NONE or v == nil or type(v) == "string" then return "ok" end
    if type(v) == "number" then return "either" end
    return "bad"
  end,
  opts = function(v)
    if v == NONE or v == nil or type(v) == "table" then return "ok" end
    return "bad"
  end,
  main_or_nil = function(v)
    if v == NONE or v == nil or type(v) == "function" then return "ok" end
    return "bad"
  end,
  step_max = function(v)
    if v == NONE or v == nil then return "ok" end
    if finite(v) and v >= 0 and v <= 1e9 then return "ok" end
    -- beyond 1e9 s: "run while tasks are ready" or a range error
    if type(v) == "number" and v > 1e9 then return "either" end
    return "bad"
  end,
}

local function describe_value(label, v)
  return label .. " (" .. (v == NONE and "missing" or tostring(v)) .. ")"
end

-- Check one outcome.  res: table.pack(pcall(...)) or nil if it blocked.
local function verdict(failures, what, expect, res, names, check)
  if res == nil then
    failures[#failures + 1] = what .. ": did not return (blocked)"
    return
  end
  if res[1] then
    if expect == "bad" then
      failures[#failures + 1] = what .. ": expected an error, got success"
    elseif check then
      local ok, why = pcall(check, table.unpack(res, 2, res.n))
      if not ok then failures[#failures + 1] = what .. ": wrong result: " .. tostring(why) end
    end
  else
    if expect == "ok" then
      failures[#failures + 1] = what .. ": expected success, got error: " .. tostring(res[2])
    elseif not H.msg_names(res[2], table.unpack(names)) then
      failures[#failures + 1] = what .. ": error does not name the function: " .. tostring(res[2])
    end
  end
end

local function report(failures)
  assert(#failures == 0, #failures .. " problem(s):\n  " .. table.concat(failures, "\n  "))
end

-- Run `call(args)` inside a probe task; the caller (a task) waits up to one
-- virtual second.  Returns table.pack(pcall(call, args)) or nil if blocked.
local function probe(call, args)
  local res
  local h = spindle.spawn(function() res = table.pack(pcall(call, args)) end)
  spindle.sleep(1)
  if res == nil then h:abort(); spindle.sleep(0) end
  return res
end

-- Sweep one argument position.  entry: {what, names, kind, call, check,
-- where = "task" | "outside", values (optional extra list)}
local function sweep(entry)
  local failures = {}
  local values = {}
  for _, lv in ipairs(VALUES) do values[#values + 1] = lv end
  for _, lv in ipairs(entry.values or {}) do values[#values + 1] = lv end
  local function body()
    for _, lv in ipairs(values) do
      local label, v = lv[1], lv[2]
      local expect = KINDS[entry.kind](v)
      local args = args_of(v)
      local res
      if entry.where == "task" then
        res = probe(entry.call, args)
      else
        res = table.pack(pcall(entry.call, args))
      end
      verdict(failures, entry.what .. " with " .. describe_value(label, v), expect, res,
              entry.names, entry.check)
    end
  end
  if entry.where == "task" then H.run_virtual(body) else body() end
  report(failures)
end

local function returns_nothing(...) assert(select("#", ...) == 0, "returned values") end
local function returns_false(...) assert(select("#", ...) == 1 and select(1, ...) == false, "expected false") end
local function is_handle(h) assert(type(h) == "userdata" and tostring(h):match("^task %d+$"), "not a handle") end

describe("bad-argument sweep: module functions", function()
  it("spindle.run(main)", function()
    sweep{what = "spindle.run", names = {"run"}, kind = "fn", where = "outside",
      call = function(a) return spindle.run(table.unpack(a, 1, a.n)) end,
      check = returns_nothing}
  end)

  it("spindle.spawn(fn) inside a task", function()
    sweep{what = "spindle.spawn", names = {"spawn"}, kind = "fn", where = "task",
      call = function(a) return spindle.spawn(table.unpack(a, 1, a.n)) end,
      check = is_handle}
  end)

  it("spindle.spawn(anything) outside a runtime raises", function()
    local failures = {}
    for _, lv in ipairs(VALUES) do
      local a = args_of(lv[2])
      verdict(failures, "spindle.spawn outside with " .. describe_value(lv[1], lv[2]), "bad",
              table.pack(pcall(spindle.spawn, table.unpack(a, 1, a.n))), {"spawn", "not inside a runtime"})
    end
    report(failures)
  end)

  it("spindle.sleep(seconds)", function()
    sweep{what = "spindle.sleep", names = {"sleep"}, kind = "duration", where = "task",
      values = {{"just over 1e9", 1e9 + 1}, {"-0", -0.0}},
      call = function(a) return spindle.sleep(table.unpack(a, 1, a.n)) end,
      check = returns_nothing}
  end)

  it("awaits outside a task raise for every argument", function()
    local awaits = {
      sleep = function(a) return spindle.sleep(table.unpack(a, 1, a.n)) end,
      yield = function(a) return spindle.yield(table.unpack(a, 1, a.n)) end,
      timeout = function(a) return spindle.timeout(a[1], function() return 1 end) end,
      shield = function(a) return spindle.shield(table.unpack(a, 1, a.n)) end,
    }
    for name, call in pairs(awaits) do
      sweep{what = "spindle." .. name .. " outside a task", names = {name}, kind = "never",
        where = "outside", call = call}
    end
    -- valid arguments outside a task are errors too (not inside a task)
    for _, call in ipairs({function() spindle.sleep(0) end, function() spindle.sleep(1) end,
                           function() spindle.timeout(1, function() end) end,
                           function() spindle.shield(function() end) end}) do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "not inside a task"), tostring(err))
    end
  end)

  it("spindle.yield(extra)", function()
    sweep{what = "spindle.yield", names = {"yield"}, kind = "ignored", where = "task",
      call = function(a) return spindle.yield(table.unpack(a, 1, a.n)) end,
      check = returns_nothing}
  end)

  it("spindle.now(extra)", function()
    sweep{what = "spindle.now", names = {"now"}, kind = "ignored", where = "task",
      call = function(a) return spindle.now(table.unpack(a, 1, a.n)) end,
      check = function(t) assert(type(t) == "number", "not a number") end}
  end)

  it("spindle.current(extra)", function()
    sweep{what = "spindle.current", names = {"current"}, kind = "ignored", where = "task",
      call = function(a) return spindle.current(table.unpack(a, 1, a.n)) end,
      check = is_handle}
    sweep{what = "spindle.current outside", names = {"current"}, kind = "ignored", where = "outside",
      call = function(a) return spindle.current(table.unpack(a, 1, a.n)) end,
      check = function(...) assert(select("#", ...) <= 1 and (...) == nil, "expected nil") end}
  end)

  it("spindle.timeout(seconds, fn)", function()
    sweep{what = "spindle.timeout #1", names = {"timeout"}, kind = "duration", where = "task",
      values = {{"just over 1e9", 1e9 + 1}},
      call = function(a) return spindle.timeout(a[1], function() return "in time" end) end,
      check = function(r) assert(r == "in time", "fn's result") end}
    sweep{what = "spindle.timeout #2", names = {"timeout"}, kind = "fn", where = "task",
      call = function(a) return spindle.timeout(1, table.unpack(a, 1, a.n)) end,
      check = returns_nothing}
  end)

  it("spindle.shield(fn)", function()
    sweep{what = "spindle.shield", names = {"shield"}, kind = "fn", where = "task",
      call = function(a) return spindle.shield(table.unpack(a, 1, a.n)) end,
      check = returns_nothing}
  end)

  it("spindle.is_cancelled(anything) and is_timeout(anything) are false for non-errors", function()
    local extra = {{"string 'cancelled'", "cancelled"}, {"string 'timeout'", "timeout"},
                   {"look-alike table", {cancelled = true, timeout = true}}}
    for _, f in ipairs({"is_cancelled", "is_timeout"}) do
      for _, where in ipairs({"task", "outside"}) do
        sweep{what = "spindle." .. f .. " " .. where, names = {f}, kind = "any", where = where,
          values = extra,
          call = function(a) return spindle[f](table.unpack(a, 1, a.n)) end,
          check = returns_false}
      end
    end
  end)

  it("spindle.is_cancelled / is_timeout recognise the real errors", function()
    H.run_virtual(function()
      local h = spindle.spawn(function() spindle.sleep(5) end)
      spindle.sleep(1)
      h:abort()
      local _, cancel_err = h:result()
      local ok, timeout_err = pcall(spindle.timeout, 1, function() spindle.sleep(5) end)
      assert.is_false(ok)
      assert.is_true(spindle.is_cancelled(cancel_err))
      assert.is_false(spindle.is_timeout(cancel_err))
      assert.is_true(spindle.is_cancelled(timeout_err))
      assert.is_true(spindle.is_timeout(timeout_err))
      assert.equal("cancelled", tostring(cancel_err))
      assert.equal("timeout", tostring(timeout_err))
    end)
  end)

  it("spindle.runtime(opts)", function()
    sweep{what = "spindle.runtime", names = {"runtime"}, kind = "opts", where = "outside",
      call = function(a)
        local rt = spindle.runtime(table.unpack(a, 1, a.n))
        rt:close()
        return rt
      end}
  end)
end)

describe("bad-argument sweep: runtime options", function()
  local function option_sweep(key, classify, extra)
    local failures = {}
    local values = {}
    for _, lv in ipairs(VALUES) do values[#values + 1] = lv end
    for _, lv in ipairs(extra or {}) do values[#values + 1] = lv end
    for _, lv in ipairs(values) do
      local label, v = lv[1], lv[2]
      if v ~= NONE then
        local expect = v == nil and "ok" or classify(v)
        local res = table.pack(pcall(function()
          local rt = spindle.runtime({[key] = v})
          local ok, r = pcall(rt.run, rt, function() spindle.sleep(0.001); return "ran" end)
          rt:close()
          if not ok then error(r, 0) end
          return r
        end))
        verdict(failures, "runtime{" .. key .. " = " .. describe_value(label, v) .. "}", expect, res,
                {"runtime", key}, function(r) assert(r == "ran", "runtime did not run") end)
      end
    end
    report(failures)
  end

  it("clock", function()
    option_sweep("clock", function(v)
      return (v == "virtual" or v == "real") and "ok" or "bad"
    end, {{"'virtual'", "virtual"}, {"'real'", "real"}, {"'fake'", "fake"}})
  end)

  it("on_error", function()
    option_sweep("on_error", function(v) return type(v) == "function" and "ok" or "bad" end)
  end)

  it("preempt", function()
    option_sweep("preempt", function(v)
      if math.type(v) == "integer" and v > 0 and v <= 1e9 then return "ok" end
      if v == 0 or v == math.maxinteger then return "either" end -- 0: off? huge: range
      return "bad"
    end, {{"1000", 1000}})
  end)

  it("warn_blocking", function()
    option_sweep("warn_blocking", function(v)
      if finite(v) and v > 0 and v <= 1e9 then return "ok" end
      if v == 0 or v == math.huge or v == 1e300 or v == math.maxinteger then return "either" end
      return "bad"
    end)
  end)

  it("loop", function()
    option_sweep("loop", function() return "bad" end, {{"'x'", "x"}, {"'uv'", "uv"}})
  end)

  it("an unknown key", function()
    for _, key in ipairs({"colour", "Clock", "on_err", 1}) do
      local ok, err = pcall(spindle.runtime, {[key] = 1})
      assert.is_false(ok, tostring(key))
      assert.truthy(H.msg_names(err, "runtime", tostring(key)), tostring(err))
    end
  end)
end)

describe("bad-argument sweep: runtime methods", function()
  local function with_rt(f)
    local rt = spindle.runtime({clock = "virtual"})
    local ok, err = pcall(f, rt)
    rt:close()
    if not ok then error(err, 0) end
  end

  it("rt:run(main)", function()
    sweep{what = "rt:run", names = {"run"}, kind = "main_or_nil", where = "outside",
      call = function(a)
        local rt = spindle.runtime({clock = "virtual"})
        local r = table.pack(pcall(rt.run, rt, table.unpack(a, 1, a.n)))
        rt:close()
        if not r[1] then error(r[2], 0) end
        return table.unpack(r, 2, r.n)
      end,
      check = returns_nothing}
  end)

  it("rt:step(max_seconds)", function()
    with_rt(function(rt)
      sweep{what = "rt:step", names = {"step"}, kind = "step_max", where = "outside",
        call = function(a) return rt:step(table.unpack(a, 1, a.n)) end,
        check = function(n) assert(n == 0 and math.type(n) == "integer", "live count " .. tostring(n)) end}
    end)
  end)

  it("rt:spawn(fn)", function()
    with_rt(function(rt)
      sweep{what = "rt:spawn", names = {"spawn"}, kind = "fn", where = "outside",
        call = function(a) return rt:spawn(table.unpack(a, 1, a.n)) end,
        check = is_handle}
      rt:run()
    end)
  end)

  it("wrong self for rt:run / rt:step / rt:spawn / rt:close", function()
    local failures = {}
    local h = spindle.run(function() return spindle.spawn(function() end) end)
    local selves = {}
    for _, lv in ipairs(VALUES) do selves[#selves + 1] = lv end
    selves[#selves + 1] = {"a task handle", h}
    for _, m in ipairs({"run", "step", "spawn", "close"}) do
      local f = spindle.runtime({clock = "virtual"})
      local method = f[m]
      f:close()
      for _, lv in ipairs(selves) do
        local a = args_of(lv[2])
        local res
        if m == "spawn" or m == "run" then
          res = table.pack(pcall(method, a.n == 0 and nil or a[1], function() end))
        else
          res = table.pack(pcall(method, table.unpack(a, 1, a.n)))
        end
        verdict(failures, "rt." .. m .. "(" .. describe_value(lv[1], lv[2]) .. ")", "bad", res, {m})
      end
    end
    report(failures)
  end)

  it("a closed runtime: close is idempotent, spawn raises, step/run never crash", function()
    local rt = spindle.runtime({clock = "virtual"})
    rt:close()
    assert.is_true(pcall(rt.close, rt))
    local ok, err = pcall(rt.spawn, rt, function() end)
    assert.is_false(ok)
    assert.is_string(err)
    local ok2, n = pcall(rt.step, rt)
    if ok2 then assert.equal(0, n) else assert.is_string(n) end
    local ok3, err3 = pcall(rt.run, rt, function() return 1 end)
    if not ok3 then assert.is_string(err3) end
  end)
end)

describe("bad-argument sweep: handle methods", function()
  -- A runtime whose finished handle the sweep can use.
  local function with_handle(f)
    H.run_virtual(function()
      local h = spindle.spawn(function() return 1 end)
      h:join()
      f(h)
    end)
  end

  it("wrong self for every method (inside a task)", function()
    local failures = {}
    local rt = spindle.runtime()
    H.run_virtual(function()
      local h = spindle.spawn(function() return 1 end)
      h:join()
      local selves = {}
      for _, lv in ipairs(VALUES) do selves[#selves + 1] = lv end
      selves[#selves + 1] = {"a runtime", rt}
      for _, m in ipairs({"join", "result", "abort", "status", "traceback", "id", "name"}) do
        local method = h[m]
        for _, lv in ipairs(selves) do
          local res = probe(function(a) return method(table.unpack(a, 1, a.n)) end, args_of(lv[2]))
          verdict(failures, "h." .. m .. "(" .. describe_value(lv[1], lv[2]) .. ")", "bad", res, {m})
        end
      end
    end)
    rt:close()
    report(failures)
  end)

  it("wrong self for the non-await methods outside a task", function()
    local failures = {}
    local h = spindle.run(function() return spindle.spawn(function() end) end)
    for _, m in ipairs({"abort", "status", "traceback", "id", "name"}) do
      local method = h[m]
      for _, lv in ipairs(VALUES) do
        local a = args_of(lv[2])
        verdict(failures, "h." .. m .. "(" .. describe_value(lv[1], lv[2]) .. ") outside", "bad",
                table.pack(pcall(method, table.unpack(a, 1, a.n))), {m})
      end
    end
    report(failures)
  end)

  it("h:join / h:result with extra arguments still return the results", function()
    with_handle(function(h)
      local failures = {}
      for _, m in ipairs({"join", "result"}) do
        for _, lv in ipairs(VALUES) do
          local a = args_of(lv[2])
          local res = probe(function() return h[m](h, table.unpack(a, 1, a.n)) end, a)
          verdict(failures, "h:" .. m .. "(" .. describe_value(lv[1], lv[2]) .. ")", "either", res, {m},
            function(...)
              local r = table.pack(...)
              if m == "join" then assert(r.n == 1 and r[1] == 1, "join results")
              else assert(r.n == 2 and r[1] == true and r[2] == 1, "result results") end
            end)
        end
      end
      report(failures)
    end)
  end)

  it("h:abort / status / traceback / id with extra arguments", function()
    with_handle(function(h)
      local checks = {
        abort = function(r) assert(r == false, "abort of a finished task") end,
        status = function(s) assert(s == "done", "status") end,
        traceback = function(...) assert(select("#", ...) <= 1 and (...) == nil, "traceback of a done task") end,
        id = function(i) assert(i == h:id() and math.type(i) == "integer", "id") end,
      }
      local failures = {}
      for m, check in pairs(checks) do
        for _, lv in ipairs(VALUES) do
          local a = args_of(lv[2])
          verdict(failures, "h:" .. m .. "(" .. describe_value(lv[1], lv[2]) .. ")", "either",
                  table.pack(pcall(h[m], h, table.unpack(a, 1, a.n))), {m}, check)
        end
      end
      report(failures)
    end)
  end)

  it("h:name(new)", function()
    with_handle(function(h)
      local failures = {}
      for _, lv in ipairs(VALUES) do
        local v = lv[2]
        local a = args_of(v)
        h:name("before")
        local res = table.pack(pcall(h.name, h, table.unpack(a, 1, a.n)))
        verdict(failures, "h:name(" .. describe_value(lv[1], v) .. ")", KINDS.name(v), res, {"name"},
          function(r)
            if v == NONE or v == nil then assert(r == "before", "getter returned " .. tostring(r))
            elseif type(v) == "string" then assert(r == v and h:name() == v, "setter")
            else assert(r == tostring(v), "number name") end
          end)
        if not res[1] then
          -- a rejected name leaves the old one
          if h:name() ~= "before" then failures[#failures + 1] = "rejected name changed the name" end
        end
      end
      report(failures)
    end)
  end)
end)

describe("bad-argument sweep: values passed through", function()
  it("extra arguments of run, spawn, rt:spawn, rt:run, timeout and shield reach fn unchanged", function()
    local function same(x, y) return x == y or (x ~= x and y ~= y) end
    for _, lv in ipairs(VALUES) do
      local v = lv[2]
      if v ~= NONE then
        local function fn(...) return select("#", ...), ... end
        local results = {}
        results.run = table.pack(spindle.run(fn, v))
        H.run_virtual(function()
          results.spawn = table.pack(spindle.spawn(fn, v):join())
          results.timeout = table.pack(spindle.timeout(1, fn, v))
          results.shield = table.pack(spindle.shield(fn, v))
        end)
        local rt = spindle.runtime({clock = "virtual"})
        rt:spawn(function(...) results.rt_spawn = table.pack(fn(...)) end, v)
        rt:run()
        rt:close()
        rt = spindle.runtime({clock = "virtual"})
        results.rt_run = table.pack(rt:run(fn, v))
        rt:close()
        for what, r in pairs(results) do
          assert.equal(2, r.n, what .. " " .. lv[1])
          assert.equal(1, r[1], what .. " " .. lv[1])
          assert.is_true(same(v, r[2]), what .. " " .. lv[1])
        end
      end
    end
  end)
end)

-- ---------------------------------------------------------------- §12

local function sh_out(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local s = p:read("a")
  p:close()
  return s
end

describe("§12 compatibility", function()
  it("the module loads in Lua 5.4 and exports the §1-§3 functions", function()
    assert.equal("Lua 5.4", _VERSION)
    assert.equal("table", type(spindle))
    for _, f in ipairs({"run", "runtime", "spawn", "yield", "sleep", "now", "current",
                        "timeout", "shield", "is_cancelled", "is_timeout"}) do
      assert.is_function(spindle[f], f)
    end
  end)

  it("spindle -v names the Lua and libuv it was built with; libuv >= 1.44", function()
    local v = sh_out(H.CLI .. " -v")
    local lua_v, uv_v = v:match("%(Lua (5%.4%.%d+), libuv (1%.%d+%.%d+)%)")
    assert.truthy(lua_v, v)
    local pc_lua = sh_out("pkg-config --modversion lua5.4"):match("[%d.]+")
    local pc_uv = sh_out("pkg-config --modversion libuv"):match("[%d.]+")
    assert.equal(pc_lua, lua_v)
    assert.equal(pc_uv, uv_v)
    local minor = tonumber(uv_v:match("^1%.(%d+)"))
    assert.is_true(minor >= 44, uv_v)
  end)

  it("the build finds Lua 5.4 and libuv >= 1.44 with pkg-config", function()
    local cm = H.read_file("CMakeLists.txt")
    assert.truthy(cm, "CMakeLists.txt")
    assert.truthy(cm:find("pkg_check_modules", 1, true) or cm:find("pkg_search_module", 1, true), "pkg-config in CMake")
    assert.truthy(cm:find("lua5.4", 1, true), "lua5.4 pkg-config module")
    assert.truthy(cm:find("libuv%s*>=%s*1%.44"), "libuv>=1.44 pkg-config requirement")
  end)

  it("compat.h picks lua_resetthread before 5.4.6 and lua_closethread from 5.4.6", function()
    local compat = assert(H.read_file("csrc/compat.h"))
    local macro = compat:match("#define%s+([%w_]+)%(([^)]*)%)[^\n]*lua_closethread")
    assert.truthy(macro, "a macro expanding to lua_closethread in compat.h")
    local params = compat:match("#define%s+" .. macro .. "%(([^)]*)%)")
    local nparams = select(2, params:gsub(",", "")) + 1
    local call = macro .. "(" .. (nparams == 2 and "co, from" or "co") .. ")"
    local dir = H.tmpname()
    os.execute("mkdir -p " .. H.q(dir))
    local function expand(release)
      H.write_file(dir .. "/lua.h", "#define LUA_VERSION_RELEASE_NUM " .. release .. "\n")
      H.write_file(dir .. "/t.c", '#include "compat.h"\nEXPANDED: ' .. call .. "\n")
      return sh_out("cc -E -P -I" .. H.q(dir) .. " -Icsrc " .. H.q(dir .. "/t.c"))
    end
    local results = {}
    for _, rel in ipairs({50400, 50404, 50405, 50406, 50408}) do results[rel] = expand(rel) end
    os.execute("rm -rf " .. H.q(dir))
    for _, rel in ipairs({50400, 50404, 50405}) do
      assert.truthy(results[rel]:find("lua_resetthread", 1, true), rel .. ": " .. results[rel])
      assert.falsy(results[rel]:find("lua_closethread", 1, true), rel .. ": " .. results[rel])
    end
    for _, rel in ipairs({50406, 50408}) do
      assert.truthy(results[rel]:find("lua_closethread", 1, true), rel .. ": " .. results[rel])
    end
  end)

  it("no source file calls lua_closethread / lua_resetthread except through compat.h", function()
    local list = sh_out("grep -lE 'lua_(closethread|resetthread)' csrc/*.c csrc/*.h")
    for f in list:gmatch("[^\n]+") do
      assert.equal("csrc/compat.h", f)
    end
  end)

  it("the public header needs nothing Linux-only", function()
    local hdr = assert(H.read_file("csrc/spindle.h"))
    for inc in hdr:gmatch("#%s*include%s*[<\"]([^>\"]+)[>\"]") do
      assert.truthy(inc:match("^lua") or inc == "lauxlib.h" or inc == "uv.h" or inc:match("^std"),
                    "include " .. inc)
    end
    assert.falsy(hdr:find("linux", 1, true))
    assert.falsy(hdr:find("epoll", 1, true))
    assert.falsy(hdr:find("pthread", 1, true))
  end)
end)
