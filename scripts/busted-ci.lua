-- busted output handler for the CTest spec tests (cmake/tests.cmake):
-- busted's plainTerminal output (one mark per test, the "N successes /
-- M failures / E errors / P pending" summary line, then details; no colour
-- codes, so CI logs read as text), plus
--   * one line per spec file: its name, its marks, its wall time;
--   * the counts of the run written to $SPINDLE_BUSTED_COUNTS (when set) at
--     the end of the suite, one line
--         busted <successes> <failures> <errors> <pending> <name>
--     which scripts/test.sh adds up. No file means the run never finished
--     (crash, timeout): the test counts as failed;
--   * the name of the test now running written to $SPINDLE_BUSTED_CURRENT
--     (when set) at every test start, so a run killed by a timeout can say
--     which test hung;
--   * when $SPINDLE_EXPECT_SO is set (an absolute path), a check at the end
--     of the suite that every spindle.so mapped into this process is that
--     file, so a run meant for the sanitizer build cannot quietly test
--     another one (a spec file that loads no spindle.so passes it).
-- Two more conditions count as an error and print a line starting with
-- "busted-ci: " (the CTest tests fail on that text too): the module check
-- failing, and a run in which no test ran at all.
-- Use: busted -o scripts/busted-ci.lua

return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.plainTerminal"(options)
  local clock = os.clock
  local ok_socket, socket = pcall(require, "socket")
  if ok_socket and socket.gettime then clock = socket.gettime end

  local current_path = os.getenv("SPINDLE_BUSTED_CURRENT")
  local counts_path = os.getenv("SPINDLE_BUSTED_COUNTS")
  local file_name, file_t0
  local files = {}
  local own_errors = 0

  local function write_file(path, text)
    local f, err = io.open(path, "w")
    if not f then return nil, err end
    f:write(text, "\n")
    return f:close()
  end

  local function mark(text)
    if current_path then write_file(current_path, text) end
  end

  local function complain(...)
    own_errors = own_errors + 1
    io.write("\nbusted-ci: ", ...)
    io.write("\n")
    io.flush()
  end

  local function file_start(file)
    file_name, file_t0 = file.name, clock()
    files[#files + 1] = file.name
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
    if not want then return end
    local maps = io.open("/proc/self/maps", "r")
    if not maps then return end
    local seen, bad = {}, {}
    for line in maps:lines() do
      local path = line:match("(/%S*/spindle%.so)$")
      if path and not seen[path] then
        seen[path] = true
        if path ~= want then bad[#bad + 1] = path end
      end
    end
    maps:close()
    if #bad > 0 then
      complain("module check failed: expected ", want, ", found ",
               table.concat(bad, ", "))
    end
  end

  local function suite_end()
    check_module()
    local h = handler
    if h.successesCount + h.failuresCount + h.errorsCount
       + h.pendingsCount == 0 then
      complain("no tests ran")
    end
    if counts_path then
      local ok, err = write_file(counts_path, string.format(
        "busted %d %d %d %d %s", h.successesCount, h.failuresCount,
        h.errorsCount + own_errors, h.pendingsCount, table.concat(files, ",")))
      if not ok then complain("cannot write the counts: ", tostring(err)) end
    end
    return nil, true
  end

  busted.subscribe({ "file", "start" }, file_start)
  busted.subscribe({ "suite", "end" }, suite_end)
  busted.subscribe({ "file", "end" }, file_end)
  busted.subscribe({ "test", "start" }, test_start)
  return handler
end
