-- spec/22-fs-io_spec.lua -- docs/fs.md, File objects: f:read with io's
-- formats (counts, "a", "l", "L", "n", several in one call), f:lines and
-- f:seek, each compared with Lua's own io library on the same files;
-- interleaved reads and writes, append mode, pipes (no positions), the
-- memory rule for long lines; abort, timeout and close during each new
-- await; "file busy"; descriptors back to where they started.
local H = dofile("spec/helpers/init.lua")
local spindle = H.spindle
local fs = spindle.fs

local run = H.run_real
local fds = H.fd_count

-- libuv opens a process-wide pipe with its first loop; open it now so it
-- is not counted as a leak of the first test.
run(function() end)

-- Runs fn(f, p) in a task with f open (mode; nil: the default) on a new
-- file p holding content; returns what p holds after the task, and
-- removes it.
local function with_file(content, mode, fn)
  local p = H.tmpname()
  H.write_file(p, content)
  run(function()
    local f <close> = assert(fs.open(p, mode))
    fn(f, p)
  end)
  local after = H.read_file(p)
  H.remove(p)
  return after
end

-- A FIFO opened for reading by one task and for writing by another: runs
-- fn(r, w, before) in a task, before being the descriptor count before the
-- two were opened; the FIFO is removed after.
local function with_fifo(fn)
  local p = H.tmpname()
  assert(os.execute("mkfifo " .. H.q(p)))
  run(function()
    local before = fds()
    local opener = spindle.spawn(function() return assert(fs.open(p, "r")) end)
    local w = assert(fs.open(p, "w"))
    fn(opener:join(), w, before)
  end)
  H.remove(p)
end

local settle = H.settle_fds

-- One call's results, comparable between io and spindle.fs: a file (io's
-- write) and true (ours) are both "ok"; after the first nil nothing is
-- kept (io gives nil or nil, msg, errno; we give nil, msg, code).
local function norm(t)
  local out = {n = t.n}
  for i = 1, t.n do
    local v = t[i]
    if v == true or io.type(v) then v = "ok" end
    if type(v) == "userdata" then v = "ok" end -- a spindle.fs.file
    out[i] = v
    if v == nil then
      out.n = i
      break
    end
  end
  return out
end

-- Plays a script ({method, args...} each) on a file; the results of each.
local function play(f, script)
  local out = {}
  for i, op in ipairs(script) do
    local name = op[1]
    if name == "lines" then
      local got = {}
      for a, b in f:lines(table.unpack(op, 2)) do
        got[#got + 1] = {a, b}
      end
      out[i] = got
    else
      out[i] = norm(table.pack(f[name](f, table.unpack(op, 2))))
    end
  end
  return out
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

-- Runs script on a file holding content, opened with mode, once with io and
-- once with spindle.fs: the same results and the same file afterwards.
local function compare(content, mode, script)
  local p = H.tmpname()
  H.write_file(p, content)
  local f = assert(io.open(p, mode))
  local want = play(f, script)
  f:close()
  local want_content = H.read_file(p)
  H.write_file(p, content)
  local got = run(function()
    local g <close> = assert(fs.open(p, mode))
    return play(g, script)
  end)
  local got_content = H.read_file(p)
  H.remove(p)
  for i = 1, #script do
    assert.are.same(want[i], got[i], "op " .. i .. " " .. table.concat(
      (function()
        local s = {}
        for j, v in ipairs(script[i]) do s[j] = show(v) end
        return s
      end)(), " ") .. " on " .. show(content:sub(1, 60)))
  end
  assert.are.equal(want_content, got_content)
end

local contents = {
  "", "one", "one\n", "one\ntwo", "one\ntwo\n", "\n", "\n\n\n", "x\n\ny\n\n",
  "a\r\nb\r\n", "a\r\nb", "\r\n\r", "zero\0byte\n\0", ("z"):rep(70000) .. "\nend",
  ("long line "):rep(20000), "x\n" .. ("y"):rep(200000) .. "\n" .. ("w"):rep(3),
}

local function rep(op, n)
  local s = {}
  for i = 1, n do s[i] = op end
  return s
end

describe("spindle.fs file objects like io", function()
  H.check_fds(_ENV)

  describe("read formats", function()
    it("'l' and '*l' read lines without the newline, then nil", function()
      for _, c in ipairs(contents) do
        compare(c, "r", rep({"read", "l"}, 7))
        compare(c, "r", rep({"read", "*l"}, 7))
        compare(c, "r", rep({"read"}, 7)) -- the default is "l"
      end
    end)

    it("'L' and '*L' keep the newline; CR is kept as io keeps it", function()
      for _, c in ipairs(contents) do
        compare(c, "r", rep({"read", "L"}, 7))
        compare(c, "r", rep({"read", "*L"}, 7))
      end
    end)

    it("'a' reads everything to the end, '' at the end", function()
      for _, c in ipairs(contents) do
        compare(c, "r", {{"read", "a"}, {"read", "a"}, {"read", "*a"}, {"read", "l"}})
        compare(c, "r", {{"read", 2}, {"read", "a"}, {"read", "a"}})
        compare(c, "r", {{"read", "l"}, {"read", "*a"}})
      end
    end)

    it("counts read up to n bytes, nil at the end", function()
      for _, c in ipairs(contents) do
        compare(c, "r", {{"read", 1}, {"read", 3}, {"read", 65536}, {"read", 5}, {"read", 1}})
        compare(c, "r", {{"read", 200000}, {"read", 1}})
        compare(c, "r", {{"read", "l"}, {"read", 2}, {"read", "L"}, {"read", 100000}})
      end
    end)

    it("'n' and '*n' read numbers as io does, nil when there is none", function()
      local nums = {
        "12", "  12 3.5 0x1F -7e2 +4 .5 5. abc", "1e", "0x", "0x1p4 1E+2 -0",
        "\n\t 42\n", "--1", "1.2.3", "12abc", "0xg", "", "   ", "inf nan",
        ("9"):rep(199), ("9"):rep(250), ("1"):rep(20) .. "e400", "3 ",
        (" "):rep(70000) .. "7",
      }
      for _, c in ipairs(nums) do
        compare(c, "r", rep({"read", "n"}, 8))
        compare(c, "r", {{"read", "*n"}, {"read", "a"}})
        compare(c, "r", {{"read", "n", "n", "n"}, {"read", "l"}})
      end
    end)

    it("several formats in one call, stopping at the first failure", function()
      for _, c in ipairs(contents) do
        compare(c, "r", {{"read", "l", "L", 2, "a"}, {"read", "l", "l"}})
        compare(c, "r", {{"read", 1, "l", "n", "l"}, {"read", "a", "l"}})
        compare(c, "r", {{"read", "l", "l", "l", "l", "l", "l"}})
      end
      compare("1 2\n3\nx", "r", {{"read", "n", "n", "l", "n", "n"}, {"read", "a"}})
    end)

    it("a failure returns nil, message, code after the values read", function()
      with_file("one\n12 x", nil, function(f)
        assert.are.same({"one", 12, nil, "not a number", "EILSEQ"},
                        {f:read("l", "n", "n", "l")})
        assert.are.same({"x"}, {f:read("l")}) -- the space went, "x" stays
        assert.are.same({"", nil, "eof", "EOF"}, {f:read("a", "l")})
        assert.are.same({nil, "eof", "EOF"}, {f:read(1)})
        assert.are.equal("", f:read(0))
      end)
    end)

    it("reads a line far longer than the read-ahead", function()
      local long = ("0123456789"):rep(300000) -- 3 MB, one line
      with_file(long .. "\nnext\n" .. long, nil, function(f)
        assert.is_true(f:read("l") == long)
        assert.are.equal("next\n", f:read("L"))
        assert.is_true(f:read("l") == long)
        assert.is_nil((f:read("l")))
      end)
    end)

    it("sees data appended to the file after it met the end", function()
      with_file("a\n", nil, function(f, p)
        assert.are.equal("a", f:read("l"))
        assert.are.same({nil, "eof", "EOF"}, {f:read("l")})
        local w <close> = assert(fs.open(p, "a"))
        assert.is_true(w:write("b\n"))
        assert.are.equal("b", f:read("l"))
        assert.are.equal("", f:read("a"))
      end)
    end)
  end)

  describe("lines", function()
    it("iterates like io's f:lines, with and without formats", function()
      for _, c in ipairs(contents) do
        compare(c, "r", {{"lines"}})
        compare(c, "r", {{"lines", "L"}})
        compare(c, "r", {{"lines", 3}})
        compare(c, "r", {{"lines", "l", 1}})
        compare(c, "r", {{"read", "l"}, {"lines", "*L"}, {"read", "a"}})
      end
      compare("1 2 3\n4 x 5", "r", {{"lines", "n"}, {"read", "a"}})
    end)

    it("stops at the first nil; for ... in f:lines() in a task", function()
      with_file("one\n\nthree", nil, function(f)
        local got = {}
        for line in f:lines() do got[#got + 1] = line end
        assert.are.same({"one", "", "three"}, got)
        assert.are.same({nil, "eof", "EOF"}, {f:read("l")})
      end)
    end)

    it("raises for a bad format when lines is called, not later", function()
      with_file("x", nil, function(f)
        for _, bad in ipairs{"x", "*", "", -1, {}, 0.5} do
          local ok, err = pcall(f.lines, f, bad)
          assert.is_false(ok)
          assert.truthy(H.msg_has(err, "bad argument"), err)
        end
      end)
    end)
  end)

  describe("seek", function()
    it("from each whence, as io; the default is 'cur', 0", function()
      for _, c in ipairs(contents) do
        compare(c, "r", {
          {"seek"}, {"read", 2}, {"seek"}, {"seek", "cur"}, {"seek", "cur", 1},
          {"read", "l"}, {"seek", "set"}, {"read", "L"}, {"seek", "set", 3},
          {"read", 1}, {"seek", "end"}, {"read", 1}, {"seek", "end", -2},
          {"read", "a"}, {"seek", "cur", -1}, {"read", "a"}, {"seek", "set", 1},
          {"lines"}, {"seek", "end", 5}, {"read", "a"}, {"seek", "cur", -3},
        })
      end
    end)

    it("a position before the start is nil, message, 'EINVAL'; the position stays", function()
      compare("abcdef", "r", {{"read", 2}, {"seek", "set", -1}, {"seek", "cur", -3},
                              {"seek", "end", -7}, {"seek"}, {"read", "a"}})
      with_file("abcdef", nil, function(f)
        assert.are.same({nil, "invalid argument", "EINVAL"}, {f:seek("set", -1)})
        assert.are.same({nil, "invalid argument", "EINVAL"}, {f:seek("end", -7)})
        assert.are.equal(0, f:seek())
        assert.are.equal(math.maxinteger, f:seek("set", math.maxinteger))
        assert.are.same({nil, "invalid argument", "EINVAL"}, {f:seek("cur", 1)})
      end)
    end)

    it("raises for a bad whence or offset", function()
      with_file("x", nil, function(f)
        for _, args in ipairs{{"top"}, {1}, {"set", 0.5}, {"set", "x"}} do
          local ok, err = pcall(f.seek, f, table.unpack(args))
          assert.is_false(ok)
          assert.truthy(H.msg_has(err, "bad argument"), err)
        end
      end)
    end)
  end)

  describe("reads and writes", function()
    it("interleave at one position, as io with a seek between them", function()
      for _, c in ipairs{"", "one\ntwo\nthree\n", ("q"):rep(100000), "a\r\nb"} do
        compare(c, "r+", {
          {"read", "l"}, {"seek", "cur"}, {"write", "XY"}, {"seek", "cur"},
          {"read", 3}, {"seek", "cur"}, {"write", "Z", "\n"}, {"seek", "set"},
          {"read", "a"}, {"seek", "set", 2}, {"write", "!"}, {"seek", "cur"},
          {"lines", "L"},
        })
        compare(c, "w+", {
          {"write", "hello\nworld\n"}, {"seek", "set"}, {"read", "l"},
          {"seek", "cur"}, {"write", "W"}, {"seek", "set"}, {"read", "a"},
          {"seek", "end", -3}, {"write", "123456"}, {"seek", "set", 1}, {"read", "L"},
        })
      end
    end)

    it("need no seek between a read and a write", function()
      local after = with_file("one\ntwo\nthree\n", "r+", function(f)
        assert.are.equal("one", f:read("l")) -- the read-ahead holds the rest
        assert.is_true(f:write("TWO"))       -- written at 4, not at the end
        assert.are.equal(7, f:seek())
        assert.are.equal("", f:read("l"))
        assert.are.equal("three", f:read("l"))
      end)
      assert.are.equal("one\nTWO\nthree\n", after)
    end)

    it("append mode writes at the end whatever the position", function()
      for _, c in ipairs{"", "one\ntwo\n", "no newline"} do
        compare(c, "a+", {
          {"seek"}, {"read", "a"}, {"seek", "set"}, {"read", "l"}, {"write", "X\n"},
          {"seek"}, {"seek", "set", 1}, {"write", "Y"}, {"seek"}, {"read", "a"},
          {"seek", "set"}, {"read", "a"},
        })
        compare(c, "a", {{"seek", "set"}, {"write", "A"}, {"seek"}, {"write", "B", "C"}, {"seek"}})
      end
    end)

    it("a write failure is nil, message, code (a read-only file)", function()
      with_file("x", "r", function(f)
        local ok, msg, code = f:write("y")
        assert.is_nil(ok)
        assert.are.equal("string", type(msg))
        assert.are.equal("EBADF", code)
        assert.are.equal(0, f:seek())
        assert.are.equal("x", f:read("a"))
      end)
    end)
  end)

  describe("pipes", function()
    it("read lines in order; seek is nil, message, 'ESPIPE' once that is known", function()
      with_fifo(function(r, w)
        local reader = spindle.spawn(function()
          local got = {}
          for line in r:lines() do got[#got + 1] = line end
          return got
        end)
        for i = 1, 3 do
          assert.is_true(w:write("line " .. i .. "\n"))
          spindle.sleep(0.01)
        end
        w:write("last")
        w:close()
        assert.are.same({"line 1", "line 2", "line 3", "last"}, reader:join())
        local _, _, code = r:seek("set", 0)
        assert.are.equal("ESPIPE", code)
        r:close()
      end)
    end)
  end)

  describe("cancellation and busy", function()
    -- Each await a method can make, waiting on a FIFO nobody writes yet.
    local waits = {
      {"read 'l'", function(f) return f:read("l") end},
      {"read 'L'", function(f) return f:read("L") end},
      {"read 'a'", function(f) return f:read("a") end},
      {"read 'n'", function(f) return f:read("n") end},
      {"read count", function(f) return f:read(5) end},
      {"read several", function(f) return f:read("l", 2, "a") end},
      {"lines", function(f) for l in f:lines() do return l end end},
    }

    for _, w in ipairs(waits) do
      it("abort during " .. w[1] .. ": at once; the file is busy until the step ends, then usable", function()
        with_fifo(function(f, wr, before)
          local h = spindle.spawn(w[2], f)
          spindle.sleep(0.02)
          assert.are.equal("waiting", h:status())
          assert.truthy(spindle.dump():find("file read fd", 1, true))
          for _, m in ipairs{"read", "lines", "seek", "write"} do
            local ok, err = pcall(function()
              if m == "lines" then return f:lines()() end
              return f[m](f, ({read = "l", seek = "cur", write = "x"})[m])
            end)
            assert.is_false(ok, m)
            assert.truthy(H.msg_has(err, m .. ": file busy"), err)
          end
          assert.is_true(h:abort())
          local ok, err = h:result()
          assert.is_false(ok)
          assert.is_true(spindle.is_cancelled(err))
          assert.is_true(wr:write("12\n")) -- the pool thread's read ends
          local done
          for _ = 1, 200 do
            done = pcall(f.seek, f)
            if done then break end
            spindle.sleep(0.005)
          end
          assert.is_true(done) -- not busy any more
          wr:write("34\n")
          assert.are.equal("34", f:read("l")) -- the abandoned read's bytes are gone
          wr:close()
          f:close()
          assert.are.equal(before, settle(before))
        end)
      end)

      it("timeout during " .. w[1] .. ": raised, nothing leaks", function()
        with_fifo(function(f, wr, before)
          local ok, err = pcall(spindle.timeout, 0.03, w[2], f)
          assert.is_false(ok)
          assert.is_true(spindle.is_timeout(err))
          wr:close() -- end of file: the pool thread's read returns
          f:close()
          assert.are.equal(before, settle(before))
        end)
      end)

      it("close during " .. w[1] .. ": the reader gets nil, 'closed', 'ECANCELED'", function()
        with_fifo(function(f, wr, before)
          local h = spindle.spawn(function() return table.pack(w[2](f)) end)
          spindle.sleep(0.02)
          f:close()
          local res = h:join()
          if w[1] == "lines" then
            assert.are.equal(0, res.n) -- the loop ended
          else
            assert.are.same({nil, "closed", "ECANCELED"}, {res[1], res[2], res[3]})
          end
          wr:close()
          assert.are.equal(before, settle(before))
        end)
      end)
    end

    it("abort right after a read, a seek('end') or an append write started: the position is sound", function()
      with_file("one\ntwo\n", "a+", function(f)
        for _, fn in ipairs{
          function() return f:read("l") end,
          function() return f:seek("end") end,
          function() return f:write("x") end,
        } do
          local h = spindle.spawn(fn)
          spindle.yield()
          h:abort()
          h:result()
          for _ = 1, 200 do -- busy until the step ends
            if pcall(f.seek, f) then break end
            spindle.sleep(0.005)
          end
        end
        assert.are.equal(0, f:seek("set"))
        local all = f:read("a")
        assert.truthy(all == "one\ntwo\n" or all == "one\ntwo\nx", all)
        assert.are.equal(#all, f:seek())
      end)
    end)

    it("reads and seeks on a regular file with an abort pending keep the position", function()
      with_file("alpha\nbeta\n", nil, function(f)
        local h = spindle.spawn(function() return f:read("l") end)
        spindle.yield() -- h's read is on the pool
        h:abort()
        assert.is_false((h:result()))
        for _ = 1, 200 do
          if pcall(f.seek, f) then break end
          spindle.sleep(0.005)
        end
        assert.are.equal(0, f:seek()) -- nothing consumed
        assert.are.equal("alpha", f:read("l"))
      end)
    end)

    it("a closed file: every method returns nil, 'closed', 'ECANCELED'", function()
      local p = H.tmpname()
      H.write_file(p, "x")
      run(function()
        local f = assert(fs.open(p))
        f:close()
        assert.are.same({nil, "closed", "ECANCELED"}, {f:read("a")})
        assert.are.same({nil, "closed", "ECANCELED"}, {f:seek("end")})
        assert.are.same({nil, "closed", "ECANCELED"}, {f:seek()})
        local n = 0
        for _ in f:lines() do n = n + 1 end
        assert.are.equal(0, n)
      end)
      H.remove(p)
    end)

    it("methods raise 'not inside a task' outside a task", function()
      local p = H.tmpname()
      H.write_file(p, "x")
      local f = run(function() return assert(fs.open(p)) end) -- closed with the runtime
      for m, arg in pairs{read = "a", seek = "end", write = "x"} do
        local ok, err = pcall(f[m], f, arg)
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "not inside a task"), err)
      end
      H.remove(p)
    end)
  end)
end)
