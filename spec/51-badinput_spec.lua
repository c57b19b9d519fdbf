-- spec/51-badinput_spec.lua -- the bad-input sweep (issue 9): every public
-- function and method, metamethods included, called with wrong values as
-- self and as each argument, inside and outside tasks, on live, closed and
-- foreign objects.  Pass: a Lua error or a result -- never a crash, never a
-- hang, no descriptor left open, the library still working afterwards.
--
-- The calls run in child processes (spec/helpers/badinput_child.lua, which
-- documents the plan: targets, values, contexts), one per group (the
-- module functions, then each class), so a crash cannot take busted down.
-- The child prints the number of each call before making it; when it dies
-- the parent records that call, runs it again alone to see whether it
-- crashes by itself, and resumes the group after it, so one run reports
-- every crashing call.  Children run in a scratch directory (wrong values
-- such as "abc" are valid relative paths there) and inherit the sanitizer
-- preload of the asan stage, where a sanitizer report counts as a crash.
local H = dofile("spec/helpers/init.lua")

-- The working directory (not $PWD: ctest changes directory without it).
local ROOT
do
  local p = assert(io.popen("pwd -P"))
  ROOT = assert(p:read("l"), "pwd failed")
  p:close()
end
local CHILD = ROOT .. "/spec/helpers/badinput_child.lua"

-- Module paths of this process, made absolute for a child in another
-- directory.
local function absolute(path)
  return (path:gsub("%./", ROOT .. "/"))
end
local ENV = "LUA_PATH=" .. H.q(absolute(package.path)) .. " LUA_CPATH="
  .. H.q(absolute(package.cpath))

-- The sanitizer run is slower: every second call there (about 38,000).
local STRIDE = H.ENV == "asan" and 2 or 1
-- A whole group takes a few seconds; a child that runs this long hangs.
local CHILD_TIMEOUT = H.ENV == "plain" and 30 or 120
-- Crashing calls re-run alone (to tell a crash from heap damage done by
-- earlier calls), at most this many per group.
local ALONE_MAX = 12

local SANITIZER = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   ": runtime error: ", "AddressSanitizer:DEADLYSIGNAL"}

local function child(dir, args, timeout)
  local out, err = H.tmpname(), H.tmpname()
  local cmd = ("cd %s && %s timeout -k 5 %d lua5.4 %s %s >%s 2>%s </dev/null")
    :format(H.q(dir), ENV, timeout or 120, H.q(CHILD), args, H.q(out), H.q(err))
  local ok, how, code = os.execute(cmd)
  local r = {ok = ok, how = how, code = code, stdout = H.read_file(out) or "",
             stderr = H.read_file(err) or ""}
  H.remove(out, err)
  r.sanitizer = false
  for _, pat in ipairs(SANITIZER) do
    if r.stderr:find(pat, 1, true) then r.sanitizer = true end
  end
  return r
end

local function scratch()
  local p = io.popen("mktemp -d /tmp/spindle-badinput.XXXXXX")
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp failed")
  return dir
end

local function rmdir(dir)
  assert(dir:match("^/tmp/spindle%-badinput%."))
  os.execute("rm -rf " .. H.q(dir))
end

local function how_it_died(r)
  if r.sanitizer then
    return "sanitizer: " .. (r.stderr:match("ERROR: [^\n]*") or r.stderr:match("[^\n]*runtime error: [^\n]*") or "report")
  end
  if r.how == "signal" then return "signal " .. tostring(r.code) end
  if r.code == 124 or r.code == 137 then return "hang (timed out)" end
  if r.code and r.code > 128 then return "signal " .. (r.code - 128) end
  local tail = r.stderr:match("([^\n]+)\n?$") or ""
  return "exit " .. tostring(r.code) .. " " .. tail
end

local function lines_of(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

-- Runs one group; returns the number of calls made and a list of problems.
local function sweep(group)
  local dir = scratch()
  local problems = {}
  local ok, err = pcall(function()
    local r = child(dir, H.q(group) .. " count", 60)
    local total = tonumber(r.stdout:match("N (%d+)"))
    assert(total, "child could not count " .. group .. ":\n" .. r.stderr)
    local from, made, restarts = 1, 0, 0
    local crashes = {}
    while from <= total do
      r = child(dir, ("%s run %d %d %d"):format(H.q(group), from, total, STRIDE), CHILD_TIMEOUT)
      local last, done, phase_done
      for _, l in ipairs(lines_of(r.stdout)) do
        local tag, rest = l:match("^(%u+) (.*)$")
        phase_done = nil
        if tag == "C" then last = tonumber(rest)
        elseif tag == "P" then phase_done = rest
        elseif tag == "H" then
          problems[#problems + 1] = "call " .. rest .. " blocked and could not be aborted"
          crashes[#crashes + 1] = {id = tonumber(rest), how = "stuck probe", hang = true}
        elseif tag == "A" then
          problems[#problems + 1] = "call " .. rest .. " ended the sweeping task"
          crashes[#crashes + 1] = {id = tonumber(rest), how = "ended the sweeping task", hang = true}
        elseif tag == "E" then
          problems[#problems + 1] = "the sweep's runtime raised after call " .. rest
        elseif tag == "T" then
          problems[#problems + 1] = "descriptors left open by " .. rest:gsub("^(%d+) ", "%1: ")
        elseif tag == "FD" then
          local a, b = rest:match("(%d+) (%d+)")
          if a ~= b then
            problems[#problems + 1] = ("descriptors: %s open before the sweep, %s after"):format(a, b)
          end
        elseif tag == "UNHEALTHY" then
          problems[#problems + 1] = "the library failed after the sweep: " .. rest
        elseif tag == "DONE" then
          done = tonumber(rest)
        end
      end
      if done and not r.sanitizer and r.ok then
        made = made + done
        break
      end
      if not last then
        problems[#problems + 1] = "child died before its first call: " .. how_it_died(r)
          .. "\n" .. r.stderr:sub(1, 2000)
        break
      end
      local how = how_it_died(r)
      if phase_done then
        -- every call of the phase returned; closing its runtimes failed
        how = how .. " closing the runtimes after the calls " .. phase_done
          .. " a task (an earlier call left something behind)"
      end
      crashes[#crashes + 1] = {id = last, how = how, hang = how:find("hang", 1, true) ~= nil}
      made = made + (last - from) // STRIDE + 1
      from = last + STRIDE
      restarts = restarts + 1
      if restarts > 300 then
        problems[#problems + 1] = "more than 300 crashes; stopped at call " .. last
        break
      end
    end
    -- describe each crash, and whether it crashes alone; one line per
    -- (how, function, context), listing the values
    local lines, order = {}, {}
    for k, c in ipairs(crashes) do
      local d = child(dir, ("%s describe %d"):format(H.q(group), c.id), 60)
      local what = (d.stdout:match("[^\n]+")) or ("call " .. c.id)
      local head, value = what:match("^(.-, [^,]+), (.*)$")
      head, value = head or what, value or ""
      if not c.hang and k <= ALONE_MAX then
        local a = child(dir, ("%s run %d %d 1"):format(H.q(group), c.id, c.id), CHILD_TIMEOUT)
        if a.ok and a.stdout:find("DONE", 1, true) and not a.sanitizer then
          value = value .. " (only after earlier calls)"
        end
      end
      local key = c.how .. ": " .. head
      if not lines[key] then lines[key] = {}; order[#order + 1] = key end
      table.insert(lines[key], value)
    end
    for _, key in ipairs(order) do
      problems[#problems + 1] = ("CRASH %s -- %d call(s): %s"):format(key, #lines[key],
        table.concat(lines[key], "; "))
    end
    problems.calls = made
  end)
  rmdir(dir)
  if not ok then error(err, 0) end
  return problems
end

local function report(group, problems)
  if #problems == 0 then return end
  -- crashes first
  table.sort(problems, function(a, b)
    local ca, cb = a:sub(1, 5) == "CRASH", b:sub(1, 5) == "CRASH"
    if ca ~= cb then return ca end
    return a < b
  end)
  local shown = {}
  for i = 1, math.min(#problems, 60) do shown[i] = problems[i] end
  error(("%s: %d problem(s) in %d calls:\n  %s%s"):format(group, #problems,
    problems.calls or 0, table.concat(shown, "\n  "),
    #problems > 60 and ("\n  ... " .. (#problems - 60) .. " more") or ""), 0)
end

-- The groups, from the child (one source of truth).
local GROUPS, GROUPS_WHY = {}, ""
do
  local dir = scratch()
  local r = child(dir, "groups", 60)
  rmdir(dir)
  for _, l in ipairs(lines_of(r.stdout)) do GROUPS[#GROUPS + 1] = l end
  GROUPS_WHY = ("the child: %s, stderr: %s"):format(how_it_died(r), r.stderr)
end

describe("bad input sweep", function()
  it("knows every class: each spindle.* metatable with a function has an instance", function()
    assert.is_true(#GROUPS > 10, "no groups from the child; " .. GROUPS_WHY)
    local dir = scratch()
    local r = child(dir, "classes", 60)
    rmdir(dir)
    assert.is_true(r.ok == true, "classes: " .. how_it_died(r) .. "\n" .. r.stderr)
    local built, mts = {}, {}
    for _, l in ipairs(lines_of(r.stdout)) do
      local m = l:match("^M (.+)$")
      if m then mts[#mts + 1] = m end
      local name, same = l:match("^C (%S+) (%S+)$")
      if name then
        built[name] = true
        assert.are.equal("true", same, name .. ": the instance has another metatable")
      end
    end
    assert.is_true(#mts > 10)
    for _, m in ipairs(mts) do
      assert.is_true(built[m] == true, "no instance of class " .. m .. " in the sweep")
    end
  end)

  for _, group in ipairs(GROUPS) do
    it(group, function()
      report(group, sweep(group))
    end)
  end

  -- Found by the sweep: closing a runtime while a watchdog object (made by
  -- spindle.test's helper spindle._watchdog in a task that has ended) is
  -- still referenced never returns.
  it("spindle.run and rt:close() return while a watchdog object is alive", function()
    local dir = scratch()
    local src = H.tmpname()
    H.write_file(src, [[
      local spindle = require "spindle"
      spindle.run(function()
        spindle.spawn(function() W1 = spindle._watchdog(1e6) end)
        spindle.sleep(0.01)
      end)
      local rt = spindle.runtime()
      rt:spawn(function() W2 = spindle._watchdog(1e6) end)
      rt:step()
      rt:close()
      print("returned")
    ]])
    local r = H.sh("sh -c " .. H.q(("cd %s && %s lua5.4 %s"):format(H.q(dir), ENV, H.q(src))),
                   {timeout = 10})
    H.remove(src)
    rmdir(dir)
    assert.is_true(r.ok == true and r.stdout:find("returned", 1, true) ~= nil,
      "did not return: " .. how_it_died(r))
  end)
end)
