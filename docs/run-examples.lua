-- run-examples.lua -- runs the complete programs in docs/*.md, the guide
-- (docs/guide/*.md) and the top-level README.md, so the documentation
-- cannot rot.
--
--   lua5.4 docs/run-examples.lua [-v] [name]
--
-- A fenced block is run when it is marked ```lua and its first line is
-- `-- example: <name>`. Directly after that line, any number of directive
-- comments may follow:
--
--   -- expect: <text>         stdout must contain <text> (repeatable). Any
--                             run of spaces and tabs matches any other, so
--                             `-- expect: 1 nil 3` matches print(1, nil, 3)
--   -- expect-stderr: <text>  stderr must contain <text> (repeatable)
--   -- reject: <text>         stdout must not contain <text> (repeatable)
--   -- exit: <n>              expected exit status (default 0)
--   -- run: lua5.4            run with lua5.4 (LUA_CPATH pointing at build/)
--                             instead of the spindle command: for programs
--                             that call spindle.run or spindle.runtime
--                             themselves, which a script run by `spindle`
--                             cannot do (it already is a task)
--   -- run: busted            run as a busted spec file (busted --lua=lua5.4)
--
-- Other ```lua blocks are fragments and are not run. Each example is
-- written to <tmpdir>/<name>.lua, so error messages name the example, and
-- runs from the repository root with a 30 s limit. `name` (a plain
-- substring) selects examples; -v prints every example's output.
--
-- Environment: SPINDLE (default ./build/spindle), LUA (default lua5.4),
-- SPINDLE_CPATH (default ./build/?.so), BUSTED (default busted) -- e.g. to
-- run against build-asan/.
--
-- Unless a name is given, it also checks that the pages can be cited:
-- every Markdown link to a page (`[x](io.md#streams)`, `[x](#udp)`) in
-- README.md, docs/*.md and docs/guide/*.md, and every citation `docs/<page>.md#<anchor>`
-- in the sources (csrc, lua, spec, examples, bench, scripts, rockspec),
-- must name an existing page and one of its headings (anchors as GitHub
-- makes them: lower case, punctuation dropped, spaces to hyphens). Each
-- broken one counts as a failure.
--
-- Prints `N passed, M failed` last; exits 1 if anything failed or no
-- example was found.

local verbose, only = false, nil
for _, a in ipairs(arg) do
  if a == "-v" then verbose = true else only = a end
end

-- The repository root: the parent of the directory holding this script.
local root = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."

local SPINDLE = os.getenv("SPINDLE") or "./build/spindle"
local LUA = os.getenv("LUA") or "lua5.4"
local CPATH = os.getenv("SPINDLE_CPATH") or "./build/?.so"
local BUSTED = os.getenv("BUSTED") or "busted"
local LPATH = "./lua/?.lua;./lua/?/init.lua"
local RUNNERS = {spindle = true, ["lua5.4"] = true, busted = true}

local function q(s) -- quote for sh
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

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

-- Collect the examples. -------------------------------------------------

local examples, seen, problems = {}, {}, {}
local fragments = 0

local function problem(fmt, ...) problems[#problems + 1] = fmt:format(...) end

-- A finished ```lua block: lines, and where it started.
local function add_block(block, where)
  local name = block[1] and block[1]:match("^%-%- example:%s*(%S+)%s*$")
  if not name then
    fragments = fragments + 1
    return
  end
  local ex = {name = name, where = where, expect = {}, expect_err = {},
              reject = {}, exit = 0, runner = "spindle",
              code = table.concat(block, "\n") .. "\n"}
  for i = 2, #block do
    local key, val = block[i]:match("^%-%- ([%w-]+):%s*(.-)%s*$")
    if key == "expect" then ex.expect[#ex.expect + 1] = val
    elseif key == "expect-stderr" then ex.expect_err[#ex.expect_err + 1] = val
    elseif key == "reject" then ex.reject[#ex.reject + 1] = val
    elseif key == "exit" then ex.exit = math.tointeger(tonumber(val))
    elseif key == "run" then ex.runner = val
    else break end
  end
  if seen[name] then
    problem("%s: duplicate example name %q (also at %s)", where, name,
            seen[name])
  elseif not RUNNERS[ex.runner] then
    problem("%s: unknown runner %q", where, ex.runner)
  elseif not ex.exit then
    problem("%s: bad exit status", where)
  else
    seen[name] = where
    if not only or name:find(only, 1, true) then
      examples[#examples + 1] = ex
    end
  end
end

local docs = shell_lines("cd " .. q(root) ..
                         " && ls docs/*.md docs/guide/*.md README.md 2>/dev/null")
local anchors, links = {}, {} -- page -> set of anchors; links to check

-- GitHub's anchor for a heading: lower case, drop everything but letters,
-- digits, spaces, '-' and '_', spaces to hyphens; repeats get -1, -2 ...
local function slug(title, seen_in_page)
  local s = title:gsub("%[([^%]]*)%]%b()", "%1") -- links: keep their text
  s = s:lower():gsub("[^%w _-]", ""):gsub(" ", "-")
  local n = seen_in_page[s]
  seen_in_page[s] = (n or -1) + 1
  return n and (s .. "-" .. (n + 1)) or s
end

for _, doc in ipairs(docs) do
  local text = assert(read(root .. "/" .. doc))
  local lineno, lang, block, start = 0, nil, nil, 0
  local set, seen_in_page = {}, {}
  anchors[doc] = set
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    lineno = lineno + 1
    if not block then
      local fence = line:match("^```(%S*)%s*$")
      if fence then
        lang, block, start = fence, {}, lineno
      else
        local title = line:match("^#+%s+(.-)%s*$")
        if title then set[slug(title, seen_in_page)] = true end
        for target in line:gmatch("%]%(([^)%s]+)%)") do
          if not target:match("^%a[%w+.-]*:") then -- not http: or mailto:
            links[#links + 1] = {from = doc, where = doc .. ":" .. lineno,
                                 target = target}
          end
        end
      end
    elseif line:match("^```%s*$") then
      if lang == "lua" then add_block(block, doc .. ":" .. start) end
      block = nil
    else
      block[#block + 1] = line
    end
  end
  if block then problem("%s:%d: unterminated code block", doc, start) end
end

-- Check links and citations. --------------------------------------------

local function normalize(path) -- "docs/../README.md" -> "README.md"
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." and #parts > 0 and parts[#parts] ~= ".." then
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return table.concat(parts, "/")
end

local function check_target(where, page, anchor, text)
  if not anchors[page] then
    if page:match("%.md$") and not read(root .. "/" .. page) then
      problem("%s: %s: no such page", where, text)
    end
  elseif anchor and not anchors[page][anchor] then
    problem("%s: %s: no heading with that anchor in %s", where, text, page)
  end
end

if not only then
  for _, l in ipairs(links) do
    local file, anchor = l.target:match("^([^#]*)#?(.*)$")
    local dir = l.from:match("^(.*)/[^/]*$")
    local page = file == "" and l.from
                 or normalize((dir and dir .. "/" or "") .. file)
    check_target(l.where, page, anchor ~= "" and anchor or nil, l.target)
  end
  local cites = shell_lines("cd " .. q(root) .. " && grep -rIno " ..
    "'docs/[A-Za-z0-9_.-]*\\.md#[A-Za-z0-9_-]*' csrc lua spec examples " ..
    "bench scripts rockspec 2>/dev/null")
  for _, c in ipairs(cites) do
    local where, page, anchor = c:match("^(.-:%d+):(docs/[^#]+)#(.*)$")
    if where then check_target(where, page, anchor, page .. "#" .. anchor) end
  end
end

-- Run them. -------------------------------------------------------------

local tmp = assert(shell_lines("mktemp -d /tmp/spindle-docs.XXXXXX")[1],
                   "mktemp failed")
local abs_root = assert(shell_lines("cd " .. q(root) .. " && pwd")[1])
local function absolute(paths) -- "./x/?.so;./y" -> "<root>/x/?.so;<root>/y"
  return (paths:gsub("%f[^;%z]%./", abs_root .. "/"))
end
local has_timeout = os.execute("command -v timeout >/dev/null 2>&1")

local function command(ex, file)
  if ex.runner == "busted" then
    -- From the temp dir, so that the repository's .busted does not apply.
    return ("cd %s && env LUA_CPATH=%s LUA_PATH=%s %s --lua=%s %s"):format(
      q(tmp), q(absolute(CPATH) .. ";;"), q(absolute(LPATH) .. ";;"),
      q(BUSTED), q(LUA), q(file))
  elseif ex.runner == "lua5.4" then
    return ("env LUA_CPATH=%s LUA_PATH=%s %s %s"):format(
      q(CPATH .. ";;"), q(LPATH .. ";;"), q(LUA), q(file))
  end
  return q(SPINDLE) .. " " .. q(file)
end

local function squash(s) return (s:gsub("[ \t]+", " ")) end

local passed, failed = 0, #problems
for _, p in ipairs(problems) do print("FAIL " .. p) end

for _, ex in ipairs(examples) do
  local base = tmp .. "/" .. ex.name
  local file, out, err = base .. ".lua", base .. ".out", base .. ".err"
  local f = assert(io.open(file, "wb"))
  f:write(ex.code)
  f:close()
  local cmd = command(ex, file)
  if has_timeout then cmd = "timeout -k 5 30 sh -c " .. q(cmd) end
  local _, how, code = os.execute(("cd %s && %s </dev/null >%s 2>%s")
    :format(q(root), cmd, q(out), q(err)))
  if how == "signal" then code = 128 + code end
  local stdout, stderr = read(out) or "", read(err) or ""
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
    print(("ok   %-24s %s"):format(ex.name, ex.where))
  else
    failed = failed + 1
    print(("FAIL %-24s %s: %s"):format(ex.name, ex.where,
                                       table.concat(why, "; ")))
  end
  if #why > 0 or verbose then
    for line in stdout:gmatch("[^\n]+") do print("     | " .. line) end
    for line in stderr:gmatch("[^\n]+") do print("     ! " .. line) end
  end
  os.remove(file)
  os.remove(out)
  os.remove(err)
end
os.remove(tmp)

if #examples == 0 and #problems == 0 then
  print("no runnable examples found" ..
        (only and (" matching " .. only) or ""))
  failed = failed + 1
end
print(("(%d lua fragments without `-- example:` not run)"):format(fragments))
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
