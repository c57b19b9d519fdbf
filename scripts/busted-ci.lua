-- busted output handler for scripts/test.sh: busted's utfTerminal output
-- (one mark per test, the "N successes / M failures / E errors / P pending"
-- summary line, then details), plus
--   * one line per spec file: its name, its marks, its wall time, so a slow
--     file shows in the CI log;
--   * the name of the test now running written to $SPINDLE_BUSTED_CURRENT
--     (when set) at every test start, so a run killed by a timeout can say
--     which test hung;
--   * when $SPINDLE_EXPECT_SO is set (an absolute path), a check at the end
--     of the suite that every spindle.so mapped into this process is that
--     file, so a run meant for the sanitizer build cannot quietly test
--     another one. A mismatch prints a line starting "busted-ci: module
--     check failed".
-- Use: busted -o scripts/busted-ci.lua

return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.utfTerminal"(options)
  local clock = os.clock
  local ok_socket, socket = pcall(require, "socket")
  if ok_socket and socket.gettime then clock = socket.gettime end

  local current_path = os.getenv("SPINDLE_BUSTED_CURRENT")
  local file_name, file_t0

  local function mark(text)
    if not current_path then return end
    local f = io.open(current_path, "w")
    if f then
      f:write(text, "\n")
      f:close()
    end
  end

  local function file_start(file)
    file_name, file_t0 = file.name, clock()
    io.write("\n", file.name, " ")
    io.flush()
    mark(file.name)
    return nil, true
  end

  local function file_end()
    if file_t0 then
      io.write(string.format(" %.1f s", clock() - file_t0))
      io.flush()
    end
    mark("(between files, after " .. tostring(file_name) .. ")")
    return nil, true
  end

  local function test_start(element)
    mark(tostring(file_name) .. ": " .. handler.getFullName(element))
    return nil, true
  end

  local function check_module()
    local want = os.getenv("SPINDLE_EXPECT_SO")
    if not want then return nil, true end
    local maps = io.open("/proc/self/maps", "r")
    if not maps then return nil, true end
    local seen, bad = {}, {}
    for line in maps:lines() do
      local path = line:match("(/%S*/spindle%.so)$")
      if path and not seen[path] then
        seen[path] = true
        if path ~= want then bad[#bad + 1] = path end
      end
    end
    maps:close()
    if not seen[want] then bad[#bad + 1] = "(" .. want .. " not loaded)" end
    if #bad > 0 then
      io.write("busted-ci: module check failed: expected ", want, ", found ",
               table.concat(bad, ", "), "\n")
      io.flush()
    end
    return nil, true
  end

  busted.subscribe({ "file", "start" }, file_start)
  busted.subscribe({ "suite", "end" }, check_module)
  busted.subscribe({ "file", "end" }, file_end)
  busted.subscribe({ "test", "start" }, test_start)
  return handler
end
