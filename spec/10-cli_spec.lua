-- spec/10-cli_spec.lua -- docs/tasks.md#the-command-line: the `spindle`
-- command, run as a child process (./build/spindle, or $SPINDLE_CLI).
local H = require "spec.helpers"

local function cli(args, script, o)
  o = o or {}
  o.script = script
  return H.cli(args, o)
end

local function expect_exit(r, code)
  assert.equal("exit", r.how, H.describe(r))
  assert.equal(code, r.code, H.describe(r))
end

describe("§10 spindle script.lua", function()
  it("runs the script as the main task; awaits work at top level", function()
    local r = cli("%SCRIPT%", [[
      local spindle = require "spindle"
      local me = spindle.current()
      assert(me ~= nil, "top level is a task")
      assert(me:status() == "running")
      local t0 = spindle.now()
      spindle.sleep(0.02)
      assert(spindle.now() - t0 >= 0.02)
      local h = spindle.spawn(function(x) spindle.sleep(0.01); return x * 2 end, 21)
      print(h:join())
    ]])
    expect_exit(r, 0)
    assert.equal("42\n", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("works without LUA_CPATH: the module is linked into the command", function()
    local r = H.sh(H.CLI .. " -e " .. H.q('print(type(require("spindle").sleep))'),
                   {env = "LUA_CPATH=';;'"})
    expect_exit(r, 0)
    assert.equal("function\n", r.stdout)
  end)

  it("runs the collector in generational mode, as lua5.4 does", function()
    local r = cli("%SCRIPT%", [[
      print(collectgarbage("incremental"))
      print(collectgarbage("generational"))
    ]])
    expect_exit(r, 0)
    local l5 = H.sh("lua5.4 -e " .. H.q('io.write(collectgarbage("incremental"))'))
    assert.equal(l5.stdout .. "\nincremental\n", r.stdout)
    assert.equal("generational\nincremental\n", r.stdout)
  end)

  it("sets arg as lua5.4 does", function()
    local r = cli("%SCRIPT% one 'two words' 3", [[
      print(#arg, arg[1], arg[2], arg[3])
      print(arg[0])
      print(arg[-1])
      print(select("#", ...), ...)
    ]])
    expect_exit(r, 0)
    local lines = {}
    for l in r.stdout:gmatch("[^\n]*\n") do lines[#lines + 1] = l:sub(1, -2) end
    assert.equal("3\tone\ttwo words\t3", lines[1])
    assert.equal(r.script, lines[2])
    assert.truthy(lines[3] and lines[3]:find("spindle$"), lines[3])
    assert.equal("3\tone\ttwo words\t3", lines[4])
  end)

  it("exits 0 when the script succeeds, after unwinding tasks still alive", function()
    local r = cli("%SCRIPT%", [[
      local spindle = require "spindle"
      spindle.spawn(function()
        local c <close> = setmetatable({}, {__close = function() print("background closed") end})
        spindle.sleep(1e6)
      end)
      spindle.sleep(0.01)
      print("main done")
    ]])
    expect_exit(r, 0)
    assert.equal("main done\nbackground closed\n", r.stdout)
  end)

  it("exits 1 with the error and the task's traceback on stderr when the script fails", function()
    local r = cli("%SCRIPT%", [[
      local spindle = require "spindle"
      local function inner_failure()
        spindle.sleep(0.001)
        error("script exploded")
      end
      inner_failure()
    ]])
    expect_exit(r, 1)
    assert.truthy(r.stderr:find("script exploded", 1, true), H.describe(r))
    assert.truthy(r.stderr:find("stack traceback:", 1, true), H.describe(r))
    assert.truthy(r.stderr:find(":4:", 1, true), H.describe(r)) -- the error line
  end)

  it("exits 1 when the script fails with a non-string error value", function()
    local r = cli("%SCRIPT%", [[
      require("spindle").sleep(0.001)
      error({code = 7})
    ]])
    expect_exit(r, 1)
    assert.is_true(#r.stderr > 0)
  end)

  it("shows an error object through its __tostring", function()
    local r = cli("%SCRIPT%", [[
      error(setmetatable({}, {__tostring = function() return "custom error object" end}))
    ]])
    expect_exit(r, 1)
    assert.truthy(r.stderr:find("custom error object", 1, true), H.describe(r))
  end)

  it("lets os.exit choose the exit status, as in lua5.4", function()
    local r = cli("%SCRIPT%", [[
      local spindle = require "spindle"
      spindle.spawn(function() spindle.sleep(1e6) end)
      spindle.sleep(0.001)
      io.stdout:write("bye\n")
      os.exit(3)
    ]])
    expect_exit(r, 3)
    assert.equal("bye\n", r.stdout)
  end)

  it("exits 1 when an error from a joined task reaches the top level", function()
    local r = cli("%SCRIPT%", [[
      local spindle = require "spindle"
      spindle.spawn(function() spindle.sleep(0.001); error("from the child task") end):join()
    ]])
    expect_exit(r, 1)
    assert.truthy(r.stderr:find("from the child task", 1, true), H.describe(r))
  end)

  it("exits 1 with a message for a syntax error or a missing script", function()
    local r = cli("%SCRIPT%", "local x = = 1\n")
    expect_exit(r, 1)
    assert.truthy(r.stderr:find("unexpected symbol", 1, true) or r.stderr:find("syntax", 1, true),
                  H.describe(r))
    local missing = H.tmpname() .. "-missing.lua"
    r = H.cli(H.q(missing))
    expect_exit(r, 1)
    assert.truthy(r.stderr:find(missing, 1, true), H.describe(r))
  end)

  it("reports an unobserved failed task on stderr but still exits 0", function()
    local r = cli("%SCRIPT%", [[
      local spindle = require "spindle"
      spindle.spawn(function() error("nobody joins me") end):name("orphan")
      spindle.sleep(0.01)
    ]])
    expect_exit(r, 0)
    assert.truthy(r.stderr:find("spindle: task ", 1, true), H.describe(r))
    assert.truthy(r.stderr:find("orphan", 1, true), H.describe(r))
    assert.truthy(r.stderr:find("nobody joins me", 1, true), H.describe(r))
    assert.truthy(r.stderr:find("stack traceback:", 1, true), H.describe(r))
  end)
end)

describe("§10 SIGINT", function()
  it("aborts the main task, runs its <close> handlers and exits 130", function()
    local script, marker = H.tmpname() .. ".lua", H.tmpname()
    local out, err, code_f, pid_f = H.tmpname(), H.tmpname(), H.tmpname(), H.tmpname()
    H.write_file(script, [[
      local spindle = require "spindle"
      local marker = arg[1]
      spindle.spawn(function()
        local c <close> = setmetatable({}, {__close = function()
          io.stdout:write("task closed\n"); io.stdout:flush()
        end})
        spindle.sleep(1e6)
      end)
      local c <close> = setmetatable({}, {__close = function()
        io.stdout:write("main closed\n"); io.stdout:flush()
      end})
      spindle.sleep(0.01)
      local f = assert(io.open(marker, "w")); f:write("sleeping"); f:close()
      spindle.sleep(1e6)
      io.stdout:write("not reached\n")
    ]])
    -- A non-interactive shell starts background jobs with SIGINT ignored;
    -- env --default-signal gives the command the disposition a terminal
    -- user's Ctrl-C would meet.  The subshell records the exit status.
    -- exec keeps $$ the command's own pid, so the signal goes to it
    -- directly (a `timeout` wrapper would turn SIGINT into its own signal);
    -- every wait below is bounded instead.
    local inner = string.format(
      "echo $$ > %s; exec env --default-signal=INT LUA_PATH=%s %s %s %s >%s 2>%s </dev/null",
      H.q(pid_f), H.q(package.path), H.CLI, H.q(script), H.q(marker), H.q(out), H.q(err))
    os.execute(string.format("( sh -c %s; echo $? > %s ) >/dev/null 2>&1 &",
      H.q(inner), H.q(code_f)))
    local function wait_for(path)
      for _ = 1, 200 do -- at most ~10 s
        if H.exists(path) and #(H.read_file(path) or "") > 0 then return true end
        H.pause(0.05)
      end
      return false
    end
    local started = wait_for(marker)
    local pid = (H.read_file(pid_f) or ""):match("%d+")
    if started and pid then os.execute("kill -INT " .. pid) end
    local finished = wait_for(code_f)
    if not finished and pid then os.execute("kill -KILL " .. pid .. " 2>/dev/null") ; wait_for(code_f) end
    local code = tonumber((H.read_file(code_f) or ""):match("%d+"))
    local stdout, stderr = H.read_file(out) or "", H.read_file(err) or ""
    H.remove(script, marker, out, err, code_f, pid_f)
    local info = "stdout:\n" .. stdout .. "\nstderr:\n" .. stderr
    assert.is_true(started, "script never reached its sleep\n" .. info)
    assert.is_true(finished, "command did not exit after SIGINT\n" .. info)
    assert.equal(130, code, info)
    assert.truthy(stdout:find("main closed", 1, true), info)
    assert.truthy(stdout:find("task closed", 1, true), info)
    assert.falsy(stdout:find("not reached", 1, true), info)
  end)
end)

describe("§10 spindle -e", function()
  it("runs CODE as the main task", function()
    local r = H.cli("-e " .. H.q([[
      local spindle = require "spindle"
      spindle.sleep(0.01)
      print(spindle.current() ~= nil, 1 + 1)
    ]]))
    expect_exit(r, 0)
    assert.equal("true\t2\n", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("exits 1 with the error on stderr when CODE fails", function()
    local r = H.cli("-e " .. H.q([[require("spindle").sleep(0.001) error("e-failure")]]))
    expect_exit(r, 1)
    assert.truthy(r.stderr:find("e-failure", 1, true), H.describe(r))
    assert.truthy(r.stderr:find("stack traceback:", 1, true), H.describe(r))
  end)

  it("exits 1 on a syntax error in CODE", function()
    local r = H.cli("-e " .. H.q("x = = 1"))
    expect_exit(r, 1)
    assert.is_true(#r.stderr > 0)
  end)
end)

describe("§10 spindle -v", function()
  it("prints 'spindle <version> (Lua 5.4.x, libuv 1.x.y)' and exits 0", function()
    local r = H.cli("-v")
    expect_exit(r, 0)
    assert.truthy(r.stdout:match("^spindle %S+ %(Lua 5%.4%.%d+, libuv 1%.%d+%.%d+%)\n$"), H.describe(r))
  end)
end)

describe("§10 bad command lines", function()
  it("an unknown option exits 1 with a message, never a crash", function()
    local r = H.cli("--no-such-option")
    expect_exit(r, 1)
    assert.is_true(#r.stderr > 0)
  end)

  it("-e without CODE exits 1 with a message", function()
    local r = H.cli("-e")
    expect_exit(r, 1)
    assert.is_true(#r.stderr > 0)
  end)
end)
