-- spec/23-process_spec.lua -- docs/process.md: spindle.process.spawn
-- (PATH lookup, args after the program name, stdin/stdout/stderr =
-- "pipe" | "inherit" | "ignore", env, cwd) -> p with p.stdin, p.stdout,
-- p.stderr streams, p:wait(), p:kill(); spindle.process.run -> code,
-- stdout, stderr (stdin ignored, both outputs captured concurrently);
-- aborting or timing out run kills the child and reaps it before the
-- cancellation is raised; a process object closed or collected while its
-- child runs kills it unless detached.  Only /bin/sh, cat, echo, sleep,
-- true and false are run.  After every test the open descriptors are back
-- where they started.
local H = require "spec.helpers"
local spindle = H.spindle
local process = spindle.process

local fds = H.fd_count

-- "gone" (reaped), "zombie" or "alive"
local function proc_state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return "gone" end
  local s = f:read("a")
  f:close()
  local st = s:match("%) (%a)")
  if st == nil then return "gone" end
  return st == "Z" and "zombie" or "alive"
end

-- Waits (inside a task) until pid is reaped; returns its final state.
local function until_gone(pid, secs)
  for _ = 1, (secs or 2) * 100 do
    if proc_state(pid) == "gone" then return "gone" end
    spindle.sleep(0.01)
  end
  return proc_state(pid)
end

local run = H.run_real
run(function() end) -- libuv's process-wide pipe, opened once

describe("spindle.process", function()
  H.check_fds(_ENV)

  describe("run", function()
    it("returns the exit code and both outputs", function()
      run(function()
        assert.are.same({0, "hello world\n", ""}, {process.run("echo", {"hello", "world"})})
        assert.are.same({3, "out\n", "err\n"},
          {process.run("sh", {"-c", "echo out; echo err >&2; exit 3"})})
        assert.are.same({0, "", ""}, {process.run("true", {})})
        assert.are.same({1, "", ""}, {process.run("false")})
        assert.are.same({0, "abs\n", ""}, {process.run("/bin/sh", {"-c", "echo abs"})})
      end)
    end)

    it("passes arguments verbatim (no shell), numbers as strings", function()
      run(function()
        local code, out = process.run("sh", {"-c", 'printf "%s|" "$@"', "sh", "a b", "", "$HOME", "*", 42})
        assert.are.equal(0, code)
        assert.are.equal("a b||$HOME|*|42|", out)
      end)
    end)

    it("reports a child killed by a signal: nil code and the signal name", function()
      run(function()
        local code, out, err, sig = process.run("sh", {"-c", "echo before; kill -KILL $$"})
        assert.is_nil(code)
        assert.are.equal("before\n", out)
        assert.are.equal("", err)
        assert.are.equal("SIGKILL", sig)
      end)
    end)

    it("reads both outputs concurrently: a chatty child cannot deadlock", function()
      run(function()
        -- 1 MiB to each of stdout and stderr, interleaved in 4 KiB lines
        local script = [[
          i=0
          line=$(printf '%04095d' 0)
          while [ $i -lt 256 ]; do echo "$line"; echo "$line" >&2; i=$((i+1)); done
        ]]
        local code, out, err = spindle.timeout(20, process.run, "sh", {"-c", script})
        assert.are.equal(0, code)
        assert.are.equal(256 * 4096, #out)
        assert.are.equal(256 * 4096, #err)
        assert.is_true(out == (("0"):rep(4095) .. "\n"):rep(256))
      end)
    end)

    it("gives the child no stdin (like 'ignore')", function()
      run(function()
        assert.are.same({0, "", ""}, {process.run("cat", {})})
      end)
    end)

    it("honours env (the whole environment) and cwd", function()
      local d = H.tmpname() .. ".d"
      assert(os.execute("mkdir " .. H.q(d)))
      run(function()
        local code, out = process.run("sh", {"-c", 'echo "$FOO,$BAR,${HOME-unset}"; pwd'},
          {env = {FOO = "foo value", BAR = 7, PATH = os.getenv("PATH")}, cwd = d})
        assert.are.equal(0, code)
        local pp = io.popen("cd " .. H.q(d) .. " && pwd -P")
        local real = pp:read("l")
        pp:close()
        assert.are.equal("foo value,7,unset\n" .. real .. "\n", out)
        -- an empty environment still finds sh through the default PATH
        code, out = process.run("sh", {"-c", "echo ok"}, {env = {}})
        assert.are.equal(0, code)
        assert.are.equal("ok\n", out)
      end)
      os.execute("rmdir " .. H.q(d))
    end)

    it("returns nil, message, code when the program cannot be started", function()
      run(function()
        local code, msg, ecode = process.run("spindle-no-such-program", {})
        assert.is_nil(code)
        assert.truthy(msg:find("spindle-no-such-program", 1, true))
        assert.are.equal("ENOENT", ecode)
        code, msg, ecode = process.run("sh", {"-c", "true"}, {cwd = "/nonexistent/spindle"})
        assert.is_nil(code)
        assert.are.equal("string", type(msg))
        assert.are.equal("ENOENT", ecode)
      end)
    end)

    it("abort kills the child and reaps it before the cancellation is raised", function()
      local pidfile = H.tmpname()
      run(function()
        local h = spindle.spawn(function()
          return process.run("sh", {"-c", "echo $$ > " .. H.q(pidfile) .. "; exec sleep 30"})
        end)
        local pid
        for _ = 1, 200 do
          local s = H.read_file(pidfile)
          pid = s and tonumber(s:match("%d+"))
          if pid then break end
          spindle.sleep(0.01)
        end
        assert.is_number(pid)
        assert.are.equal("alive", proc_state(pid))
        local t0 = spindle.now()
        h:abort()
        local ok, err = h:result()
        assert.is_false(ok)
        assert.is_true(spindle.is_cancelled(err))
        assert.are.equal("gone", proc_state(pid)) -- reaped already
        assert.is_true(spindle.now() - t0 < 5)
      end)
      H.remove(pidfile)
    end)

    it("a timeout kills and reaps the child before the timeout error is raised", function()
      local pidfile = H.tmpname()
      run(function()
        local t0 = spindle.now()
        local ok, err = pcall(spindle.timeout, 0.2, process.run, "sh",
          {"-c", "echo $$ > " .. H.q(pidfile) .. "; exec sleep 30"})
        assert.is_false(ok)
        assert.is_true(spindle.is_timeout(err))
        assert.is_true(spindle.now() - t0 < 5)
        local pid = tonumber(H.read_file(pidfile):match("%d+"))
        assert.are.equal("gone", proc_state(pid))
        -- the task goes on normally afterwards
        assert.are.equal(0, (process.run("true")))
      end)
      H.remove(pidfile)
    end)

    it("runs many children concurrently", function()
      run(function()
        local hs = {}
        for i = 1, 20 do
          hs[i] = spindle.spawn(process.run, "sh", {"-c", "sleep 0.05; echo " .. i})
        end
        for i = 1, 20 do
          local code, out = hs[i]:join()
          assert.are.equal(0, code)
          assert.are.equal(i .. "\n", out)
        end
      end)
    end)
  end)

  describe("spawn", function()
    it("pipes stdin, stdout and stderr as streams", function()
      run(function()
        local p <close> = assert(process.spawn("sh", {"-c", "cat; echo done >&2"},
          {stdin = "pipe", stdout = "pipe", stderr = "pipe"}))
        assert.is_true(p.stdin:write("line 1\n", "line 2\n"))
        assert.is_true(p.stdin:close())
        assert.are.equal("line 1", p.stdout:read_line())
        assert.are.equal("line 2", p.stdout:read_line())
        assert.are.same({nil, "eof", "EOF"}, {p.stdout:read_line()})
        assert.are.equal("done\n", p.stderr:read_all())
        assert.are.same({0, nil}, {p:wait()})
      end)
    end)

    it("defaults to inherit; 'ignore' and 'inherit' give no stream", function()
      run(function()
        local p <close> = assert(process.spawn("true", {}))
        assert.is_nil(p.stdin)
        assert.is_nil(p.stdout)
        assert.is_nil(p.stderr)
        assert.are.equal(0, (p:wait()))
        local q <close> = assert(process.spawn("echo", {"ignored"}, {stdout = "ignore", stdin = "inherit"}))
        assert.is_nil(q.stdout)
        assert.are.equal(0, (q:wait()))
        assert.is_number(q:pid())
        assert.truthy(tostring(q):find("exited", 1, true))
      end)
    end)

    it("wait returns the exit code, or nil and the signal name; any number of waiters", function()
      run(function()
        local p <close> = assert(process.spawn("sh", {"-c", "sleep 0.05; exit 7"}))
        local a = spindle.spawn(function() return p:wait() end)
        local b = spindle.spawn(function() return p:wait() end)
        assert.are.same({7, nil}, {p:wait()})
        assert.are.same({7, nil}, {a:join()})
        assert.are.same({7, nil}, {b:join()})
        assert.are.same({7, nil}, {p:wait()}) -- again, at once
      end)
    end)

    it("kill sends TERM by default, or the named or numbered signal", function()
      run(function()
        for _, case in ipairs{{nil, "SIGTERM"}, {"KILL", "SIGKILL"}, {"SIGINT", "SIGINT"},
                              {"usr1", "SIGUSR1"}, {9, "SIGKILL"}} do
          local p <close> = assert(process.spawn("sleep", {"30"}))
          assert.is_true(p:kill(case[1]))
          assert.are.same({nil, case[2]}, {p:wait()})
          local ok, msg, code = p:kill()
          assert.is_nil(ok)
          assert.are.equal("string", type(msg))
          assert.are.equal("ESRCH", code)
        end
      end)
    end)

    it("an aborted wait loses nothing: the status is there for a later wait", function()
      run(function()
        local p <close> = assert(process.spawn("sh", {"-c", "sleep 0.05; exit 4"}))
        local h = spindle.spawn(function() return p:wait() end)
        spindle.sleep(0.01)
        h:abort()
        assert.is_false((h:result()))
        assert.are.equal(4, (spindle.timeout(5, p.wait, p)))
      end)
    end)

    it("close while the child runs kills it (and reaps it); waiters get 'closed'", function()
      run(function()
        local p = assert(process.spawn("sleep", {"30"}))
        local pid = p:pid()
        local h = spindle.spawn(function() return p:wait() end)
        spindle.sleep(0.01)
        assert.are.equal("alive", proc_state(pid))
        assert.is_true(p:close())
        assert.is_true(p:close())
        assert.are.same({nil, "closed", "ECANCELED"}, {h:join()})
        assert.are.same({nil, "closed", "ECANCELED"}, {p:wait()})
        assert.are.same({nil, "closed", "ECANCELED"}, {p:kill()})
        assert.are.equal("gone", until_gone(pid))
      end)
    end)

    it("a process object collected while its child runs kills it", function()
      run(function()
        local pid
        do
          local p = assert(process.spawn("sleep", {"30"}, {stdout = "pipe"}))
          pid = p:pid()
          p = nil
        end
        collectgarbage(); collectgarbage()
        assert.are.equal("gone", until_gone(pid))
      end)
    end)

    it("closing the runtime kills and reaps a child still running", function()
      local pid
      run(function()
        local p = assert(process.spawn("sleep", {"30"}, {stdin = "pipe", stdout = "pipe"}))
        pid = p:pid()
        _G.__spindle_keep = p -- not even collected: the runtime closes it
      end)
      assert.are.equal("gone", proc_state(pid))
      _G.__spindle_keep = nil
    end)

    it("a detached child survives close; it is still reaped when it exits", function()
      run(function()
        local p = assert(process.spawn("sleep", {"30"}, {detached = true}))
        local pid = p:pid()
        p:close()
        spindle.sleep(0.05)
        assert.are.equal("alive", proc_state(pid))
        assert(os.execute("kill " .. pid))
        assert.are.equal("gone", until_gone(pid))
      end)
    end)

    it("returns nil, message, code when the program cannot be started", function()
      run(function()
        local p, msg, code = process.spawn("spindle-no-such-program", {"x"},
          {stdin = "pipe", stdout = "pipe", stderr = "pipe"})
        assert.is_nil(p)
        assert.are.equal("string", type(msg))
        assert.are.equal("ENOENT", code)
      end)
    end)

    it("a child's <close> in an aborted task kills it", function()
      run(function()
        local pid
        local h = spindle.spawn(function()
          local p <close> = assert(process.spawn("sleep", {"30"}))
          pid = p:pid()
          return p:wait()
        end)
        spindle.sleep(0.02)
        h:abort()
        assert.is_false((h:result()))
        assert.are.equal("gone", until_gone(pid))
      end)
    end)
  end)

  it("spindle.dump names waits for a process", function()
    run(function()
      local p <close> = assert(process.spawn("sleep", {"30"}))
      local w = spindle.spawn(function() return p:wait() end)
      local r = spindle.spawn(process.run, "sleep", {"30"})
      spindle.sleep(0.02)
      local d = spindle.dump()
      assert.truthy(d:find("process wait pid " .. p:pid(), 1, true), d)
      assert.truthy(d:find("process run pid %d+"), d)
      w:abort(); r:abort()
      assert.is_false((r:result()))
    end)
  end)

  describe("bad input", function()
    it("raises for bad arguments and options", function()
      run(function()
        local bad = {
          {nil},
          {{}},
          {"sh", "notatable"},
          {"sh", {{}}},
          {"sh", {}, "opts"},
          {"sh", {}, {stdout = "bogus"}},
          {"sh", {}, {stdin = 1}},
          {"sh", {}, {env = "x"}},
          {"sh", {}, {env = {[1] = "x"}}},
          {"sh", {}, {env = {A = {}}}},
          {"sh", {}, {env = {["A=B"] = "x"}}},
          {"sh", {}, {cwd = 5}},
          {"a\0b", {}},
          {"sh", {"a\0b"}},
          {"sh", {}, {env = {A = "x\0y"}}},
          {"sh", {}, {cwd = "/tmp\0x"}},
        }
        for _, fn in ipairs{"spawn", "run"} do
          for _, args in ipairs(bad) do
            -- run has no stdio options: it ignores them
            local stdio = type(args[3]) == "table" and (args[3].stdout or args[3].stdin)
            if not (fn == "run" and stdio) then
              local ok, err = pcall(process[fn], table.unpack(args, 1, 3))
              assert.is_false(ok, fn)
              assert.truthy(H.msg_has(err, "bad argument", "bad option"), err)
            end
          end
        end
        local p <close> = assert(process.spawn("true"))
        for _, sig in ipairs{"NOPE", 0, 1.5, {}} do
          local ok, err = pcall(p.kill, p, sig)
          assert.is_false(ok)
          assert.truthy(H.msg_has(err, "bad argument"), err)
        end
        p:wait()
      end)
    end)

    it("raises outside a runtime or a task", function()
      local ok, err = pcall(process.spawn, "true", {})
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "not inside a runtime"), err)
      ok, err = pcall(process.run, "true", {})
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "spindle.process.run: not inside a task"), err)
      local keep
      run(function() keep = assert(process.spawn("true")); keep:wait() end)
      ok, err = pcall(keep.wait, keep)
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "not inside a task"), err)
    end)
  end)
end)
