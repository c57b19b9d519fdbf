-- run-examples.lua -- runs the complete programs in docs/*.md (and in the
-- top-level README.md), so the documentation cannot rot.
--
--   lua5.4 docs/run-examples.lua [-v] [pattern]
--
-- A fenced block is run when it is marked ```lua and its first line is
-- `-- example: <name>`. Directly after that line, any number of directive
-- comments may follow:
--
--   -- expect: <text>          stdout must contain <text> (repeatable; any
--                              run of spaces and tabs matches any other,
--                              so `-- expect: 1 nil 3` matches print(1, nil, 3))
--   -- expect-stderr: <text>   stderr must contain <text> (repeatable)
--   -- reject: <text>          stdout must not contain <text> (repeatable)
--   -- exit: <n>               expected exit status (default 0)
--   -- run: lua5.4             run with lua5.4 (LUA_CPATH pointing at
--                              build/) instead of the spindle command; for
--                              programs that call spindle.run or
--                              spindle.runtime themselves, which a script
--                              run by `spindle` cannot (it already is a task)
--   -- run: busted             run as a busted spec file (busted --lua=lua5.4)
--
-- Other ```lua blocks are fragments and are not run. Each example is
-- written to <tmpdir>/<name>.lua, so error messages name the example, and
-- run from the repository root with a 30 s limit. `pattern` (a substring)
-- selects examples by name; -v prints every example's output.
--
-- Environment: SPINDLE (default ./build/spindle), LUA (default lua5.4),
-- SPINDLE_CPATH (default ./build/?.so) -- e.g. to run against build-asan/.
--
-- Prints `N passed, M failed` last; exits 1 if anything failed or no
-- example was found.

local verbose, pattern = false, nil
for _, a in ipairs(arg) do
  if a == "-v" then verbose = true else pattern = a end
end

-- The repository root: the parent of the directory holding this script.
local root = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local spindle_bin = os.getenv("SPINDLE") or "./build/spindle"
local lua_bin = os.getenv("LUA") or "lua5.4"
local cpath = os.getenv("SPINDLE_CPATH") or "./build/?.so"
local busted_bin = os.getenv("BUSTED") or "busted"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function shell_lines(cmd)
  local p = assert(io.popen(cmd))
  local t = {}
  for line in p:lines() do t[#t + 1] = line end
  p:close()
  return t
end

-- Collect the examples. ---------------------------------------------------

local docs = shell_lines("cd " .. q(root) .. " && ls docs/*.md README.md 2>/dev/null")
local examples, names, problems = {}, {}, {}
local fragments = 0

for _, doc in ipairs(docs) do
  local text = assert(read(root .. "/" .. doc))
  local lineno, inblock, lang, block, start = 0, false, nil, nil, 0
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    lineno = lineno + 1
    if not inblock then
      local fence = line:match("^```(%S*)%s*$")
      if fence then
        inblock, lang, block, start = true, fence, {}, lineno
      end
    elseif line:match("^```%s*$") then
      inblock = false
      if lang == "lua" then
        local name = block[1] and block[1]:match("^%-%- example:%s*(%S+)%s*$")
        if not name then
          fragments = fragments + 1
        else
          local ex = {name = name, where = doc .. ":" .. start,
                      expect = {}, expect_err = {}, reject = {}, exit = 0, runner = "spindle",
                      code = table.concat(block, "\n") .. "\n"}
          for i = 2, #block do
            local key, val = block[i]:match("^%-%- ([%w-]+):%s*(.-)%s*$")
            if key == "expect" then ex.expect[#ex.expect + 1] = val
            elseif key == "expect-stderr" then ex.expect_err[#ex.expect_err + 1] = val
            elseif key == "reject" then ex.reject[#ex.reject + 1] = val
            elseif key == "exit" then ex.exit = tonumber(val)
            elseif key == "run" then ex.runner = val
            else break end
          end
          if names[name] then
            problems[#problems + 1] = ("%s: duplicate example name %q (also %s)")
              :format(ex.where, name, names[name])
          elseif ex.runner ~= "spindle" and ex.runner ~= "lua5.4"
                 and ex.runner ~= "busted" then
            problems[#problems + 1] = ("%s: unknown runner %q"):format(ex.where, ex.runner)
          elseif not ex.exit then
            problems[#problems + 1] = ("%s: bad exit status"):format(ex.where)
          else
            names[name] = ex.where
            if not pattern or name:find(pattern, 1, true) then examples[#examples + 1] = ex end
          end
        end
      end
    else
      block[#block + 1] = line
    end
  end
  if inblock then
    problems[#problems + 1] = ("%s:%d: unterminated code block"):format(doc, start)
  end
end

-- Run them. ---------------------------------------------------------------

local tmp = shell_lines("mktemp -d /tmp/spindle-docs.XXXXXX")[1]
assert(tmp, "mktemp failed")
local abs_root = assert(shell_lines("cd " .. q(root) .. " && pwd")[1])
local function absolute(paths) -- "./x/?.so" -> "<root>/x/?.so"
  return (paths:gsub("%f[^;%z]%./", abs_root .. "/"))
end
local has_timeout = os.execute("command -v timeout >/dev/null 2>&1")

local passed, failed = 0, #problems
for _, p in ipairs(problems) do print("FAIL " .. p) end

for _, ex in ipairs(examples) do
  local file = tmp .. "/" .. ex.name .. ".lua"
  local out, err = tmp .. "/" .. ex.name .. ".out", tmp .. "/" .. ex.name .. ".err"
  local f = assert(io.open(file, "wb"))
  f:write(ex.code)
  f:close()
  local cmd
  if ex.runner == "busted" then
    -- From the temp dir, so the repository's .busted does not apply.
    cmd = ("cd %s && env LUA_CPATH=%s LUA_PATH=%s %s --lua=%s %s"):format(
      q(tmp), q(absolute(cpath) .. ";;"),
      q(absolute("./lua/?.lua;./lua/?/init.lua") .. ";;"),
      q(busted_bin), q(lua_bin), q(file))
  elseif ex.runner == "lua5.4" then
    cmd = ("env LUA_CPATH=%s LUA_PATH=%s %s %s"):format(
      q(cpath .. ";;"), q("./lua/?.lua;./lua/?/init.lua;;"), q(lua_bin), q(file))
  else
    cmd = q(spindle_bin) .. " " .. q(file)
  end
  cmd = ("cd %s && %s%s </dev/null >%s 2>%s"):format(q(root),
    has_timeout and "timeout -k 5 30 sh -c " or "",
    has_timeout and q(cmd) or cmd, q(out), q(err))
  local _, how, code = os.execute(cmd)
  if how == "signal" then code = 128 + code end
  local stdout, stderr = read(out) or "", read(err) or ""
  local function squash(t) return (t:gsub("[ \t]+", " ")) end
  local sq_out, sq_err = squash(stdout), squash(stderr)
  local why = {}
  if code ~= ex.exit then
    why[#why + 1] = ("exit status %d, expected %d%s"):format(code, ex.exit,
      code == 124 and " (timed out)" or "")
  end
  for _, e in ipairs(ex.expect) do
    if not sq_out:find(squash(e), 1, true) then
      why[#why + 1] = ("stdout lacks %q"):format(e)
    end
  end
  for _, e in ipairs(ex.reject) do
    if sq_out:find(squash(e), 1, true) then
      why[#why + 1] = ("stdout contains %q"):format(e)
    end
  end
  for _, e in ipairs(ex.expect_err) do
    if not sq_err:find(squash(e), 1, true) then
      why[#why + 1] = ("stderr lacks %q"):format(e)
    end
  end
  if #why == 0 then
    passed = passed + 1
    print(("ok   %-28s %s"):format(ex.name, ex.where))
  else
    failed = failed + 1
    print(("FAIL %-28s %s: %s"):format(ex.name, ex.where, table.concat(why, "; ")))
  end
  if #why > 0 or verbose then
    for line in stdout:gmatch("[^\n]+") do print("     | " .. line) end
    for line in stderr:gmatch("[^\n]+") do print("     ! " .. line) end
  end
  os.remove(file); os.remove(out); os.remove(err)
end
os.remove(tmp)

if #examples == 0 and #problems == 0 then
  print("no runnable examples found" .. (pattern and (" matching " .. pattern) or ""))
  failed = failed + 1
end
print(("(%d lua fragments without `-- example:` were not run)"):format(fragments))
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
