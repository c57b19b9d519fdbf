-- spec/22-fs_spec.lua -- api.md §5 files: spindle.fs.read_file,
-- write_file, open (read, write, close, <close>, __gc), stat, remove,
-- rename, mkdir, list_dir -- all on the thread pool, never blocking the
-- loop; I/O failures as nil, message, code; abort and timeout while a
-- request is in flight (an open() that completes for an aborted task
-- closes its descriptor).  Every test removes its temp files, and the
-- process's open descriptors are back where they started after each one.
local H = dofile("spec/helpers/init.lua")
local spindle = H.spindle
local fs = spindle.fs

-- Open descriptors of this process: /proc/self/fdinfo/N exists while fd N
-- is open (probing it opens a descriptor of its own, which is not yet
-- visible there while it is looked up).  No child process, no race.
local function fds()
  local n = 0
  for i = 0, 1023 do
    local f = io.open("/proc/self/fdinfo/" .. i)
    if f then
      n = n + 1
      f:close()
    end
  end
  return n
end

-- What the open descriptors are (for failure messages).
local function fd_list()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  local p = io.popen("ls -l /proc/" .. pid .. "/fd")
  local s = p:read("a")
  p:close()
  return s
end

-- Inside a task: waits (bounded) until the count is back to n -- a file
-- is closed on the thread pool, so a moment after close() returns.
local function settle(n)
  for _ = 1, 200 do
    if fds() == n then return n end
    spindle.sleep(0.005)
  end
  return fds(), fd_list()
end

-- A fresh temp directory path (created by the test that needs it).
local function tmpdir()
  return H.tmpname() .. ".d"
end

local function rm_rf(p)
  os.execute("rm -rf " .. H.q(p))
end

local function mkfifo(p)
  assert(os.execute("mkfifo " .. H.q(p)))
end

local run = H.run_real

-- libuv opens a process-wide pipe with its first loop; open it now so it
-- is not counted as a leak of the first test.
run(function() end)

describe("spindle.fs", function()
  local base
  before_each(function()
    collectgarbage(); collectgarbage()
    base = fds()
  end)
  after_each(function()
    collectgarbage(); collectgarbage()
    local n = fds()
    assert.are.equal(base, n, n ~= base and fd_list() or nil)
  end)

  describe("read_file / write_file", function()
    it("round-trips text, binary data with zero bytes, empty and large files", function()
      local p = H.tmpname()
      run(function()
        local bin = {}
        for i = 0, 255 do bin[#bin + 1] = string.char(i) end
        bin = table.concat(bin):rep(5)
        for _, data in ipairs{"hello\n", bin, "", ("0123456789abcdef"):rep(65536 + 3)} do
          assert.is_true(fs.write_file(p, data))
          local got = fs.read_file(p)
          assert.are.equal(#data, #got)
          assert.is_true(got == data)
          assert.are.equal(data, H.read_file(p))
        end
      end)
      H.remove(p)
    end)

    it("write_file truncates an existing file", function()
      local p = H.tmpname()
      H.write_file(p, ("x"):rep(1000))
      run(function()
        assert.is_true(fs.write_file(p, "short"))
        assert.are.equal("short", fs.read_file(p))
      end)
      H.remove(p)
    end)

    it("reads files whose size stat does not know (/proc)", function()
      run(function()
        local s = assert(fs.read_file("/proc/self/status"))
        assert.truthy(s:find("Name:", 1, true))
      end)
    end)

    it("returns nil, message, code on failure and never raises", function()
      run(function()
        local d, msg, code = fs.read_file("/nonexistent/spindle/x")
        assert.is_nil(d)
        assert.are.equal("string", type(msg))
        assert.are.equal("ENOENT", code)
        local ok, msg2, code2 = fs.write_file("/nonexistent/spindle/x", "data")
        assert.is_nil(ok)
        assert.are.equal("string", type(msg2))
        assert.are.equal("ENOENT", code2)
        local _, _, code3 = fs.read_file("/")
        assert.are.equal("EISDIR", code3)
      end)
    end)
  end)

  describe("open", function()
    it("reads with read(n): up to n bytes, then nil, 'eof', 'EOF'", function()
      local p = H.tmpname()
      H.write_file(p, "abcdefghij")
      run(function()
        local f = assert(fs.open(p, "r"))
        assert.are.equal("abc", f:read(3))
        assert.are.equal("", f:read(0))
        assert.are.equal("defghij", f:read(100))
        assert.are.same({nil, "eof", "EOF"}, {f:read(1)})
        assert.is_true(f:close())
      end)
      H.remove(p)
    end)

    it("opens with the default mode 'r' and with 'rb'", function()
      local p = H.tmpname()
      H.write_file(p, "xy")
      run(function()
        local f = assert(fs.open(p))
        assert.are.equal("xy", f:read(2))
        f:close()
        f = assert(fs.open(p, "rb"))
        assert.are.equal("x", f:read(1))
        f:close()
      end)
      H.remove(p)
    end)

    it("writes with 'w' (truncating), appends with 'a', updates with 'r+'", function()
      local p = H.tmpname()
      H.write_file(p, "old contents")
      run(function()
        local f = assert(fs.open(p, "w"))
        assert.is_true(f:write("one", " ", "two"))
        assert.is_true(f:write(""))
        f:close()
        assert.are.equal("one two", fs.read_file(p))
        f = assert(fs.open(p, "a"))
        assert.is_true(f:write("!"))
        f:close()
        assert.are.equal("one two!", fs.read_file(p))
        f = assert(fs.open(p, "r+"))
        assert.are.equal("one", f:read(3))
        assert.is_true(f:write("_"))
        f:close()
        assert.are.equal("one_two!", fs.read_file(p))
        f = assert(fs.open(p, "w+"))
        assert.is_true(f:write("new"))
        f:close()
        assert.are.equal("new", fs.read_file(p))
      end)
      H.remove(p)
    end)

    it("writes and reads large data in one call", function()
      local p = H.tmpname()
      local big = ("spindle!"):rep(300000)
      run(function()
        local f = assert(fs.open(p, "w"))
        assert.is_true(f:write(big))
        f:close()
        f = assert(fs.open(p, "r"))
        local got = f:read(#big + 10)
        f:close()
        assert.is_true(got == big)
      end)
      H.remove(p)
    end)

    it("fails with nil, message, code for a missing file; bad modes raise", function()
      run(function()
        local f, msg, code = fs.open("/nonexistent/spindle/x", "r")
        assert.is_nil(f)
        assert.are.equal("string", type(msg))
        assert.are.equal("ENOENT", code)
        for _, m in ipairs{"", "x", "rw", "r+x", "+"} do
          local ok, err = pcall(fs.open, "/tmp", m)
          assert.is_false(ok)
          assert.truthy(H.msg_has(err, "bad argument", "invalid mode"), err)
        end
      end)
    end)

    it("close is idempotent; a closed file returns nil, 'closed', 'ECANCELED'", function()
      local p = H.tmpname()
      H.write_file(p, "data")
      run(function()
        local f = assert(fs.open(p, "r"))
        assert.is_true(f:close())
        assert.is_true(f:close())
        assert.are.same({nil, "closed", "ECANCELED"}, {f:read(1)})
        assert.are.same({nil, "closed", "ECANCELED"}, {f:write("x")})
        assert.truthy(tostring(f):find("closed", 1, true))
      end)
      H.remove(p)
    end)

    it("is closed by <close> and by the garbage collector", function()
      local p = H.tmpname()
      H.write_file(p, "data")
      run(function()
        local before = fds()
        do
          local f <close> = assert(fs.open(p, "r"))
          assert.are.equal(before + 1, fds())
        end
        assert.are.equal(before, settle(before))
        do
          local f = assert(fs.open(p, "r"))
          assert.are.equal(before + 1, fds())
          f = nil
        end
        collectgarbage(); collectgarbage()
        assert.are.equal(before, settle(before))
      end)
      H.remove(p)
    end)

    it("a file left open is closed when the runtime closes", function()
      local p = H.tmpname()
      H.write_file(p, "data")
      local keep
      run(function() keep = assert(fs.open(p, "r")) end)
      assert.are.same({nil, "closed", "ECANCELED"}, {run(function() return keep:read(1) end)})
      keep = nil
      H.remove(p)
    end)

    it("a second concurrent read raises 'file busy'; close wakes the reader", function()
      local p = H.tmpname()
      mkfifo(p)
      run(function()
        local w
        local opener = spindle.spawn(function() return assert(fs.open(p, "r")) end)
        w = assert(fs.open(p, "w"))
        local f = opener:join()
        local reader = spindle.spawn(function() return f:read(10) end)
        spindle.sleep(0.05)
        assert.are.equal("waiting", reader:status())
        local ok, err = pcall(f.read, f, 1)
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "file busy"), err)
        f:close()
        assert.are.same({nil, "closed", "ECANCELED"}, {reader:join()})
        w:write("x") -- lets the pool thread's read finish
        w:close()
      end)
      H.remove(p)
    end)
  end)

  describe("stat", function()
    it("returns size, type, mtime and mode", function()
      local p = H.tmpname()
      H.write_file(p, "12345")
      local now = os.time()
      run(function()
        local st = assert(fs.stat(p))
        assert.are.equal(5, st.size)
        assert.are.equal("file", st.type)
        assert.are.equal("number", type(st.mtime))
        assert.is_true(math.abs(st.mtime - now) < 60)
        assert.are.equal("number", math.type(st.mode) and "number")
        assert.are.equal(math.type(st.mode), "integer")
        local d = assert(fs.stat("/"))
        assert.are.equal("directory", d.type)
        local c = assert(fs.stat("/dev/null"))
        assert.are.equal("char", c.type)
      end)
      H.remove(p)
    end)

    it("follows links; lstat reports 'link'", function()
      local p, l = H.tmpname(), H.tmpname()
      H.write_file(p, "x")
      assert(os.execute("ln -s " .. H.q(p) .. " " .. H.q(l)))
      run(function()
        assert.are.equal("file", fs.stat(l).type)
        assert.are.equal("link", fs.lstat(l).type)
      end)
      H.remove(p, l)
    end)

    it("fails with nil, message, 'ENOENT'", function()
      run(function()
        local st, msg, code = fs.stat("/nonexistent/spindle")
        assert.is_nil(st)
        assert.are.equal("string", type(msg))
        assert.are.equal("ENOENT", code)
      end)
    end)
  end)

  describe("remove, rename, mkdir, list_dir", function()
    it("mkdir creates a directory; twice is EEXIST", function()
      local d = tmpdir()
      run(function()
        assert.is_true(fs.mkdir(d))
        assert.are.equal("directory", fs.stat(d).type)
        local ok, msg, code = fs.mkdir(d)
        assert.is_nil(ok)
        assert.are.equal("string", type(msg))
        assert.are.equal("EEXIST", code)
        assert.is_true(fs.remove(d))
      end)
      rm_rf(d)
    end)

    it("list_dir returns the names without . and ..", function()
      local d = tmpdir()
      run(function()
        assert.is_true(fs.mkdir(d))
        assert.are.same({}, fs.list_dir(d))
        for _, n in ipairs{"b", "a", ".hidden", "c d"} do
          assert.is_true(fs.write_file(d .. "/" .. n, n))
        end
        assert.is_true(fs.mkdir(d .. "/sub"))
        local names = fs.list_dir(d)
        table.sort(names)
        assert.are.same({".hidden", "a", "b", "c d", "sub"}, names)
        local _, _, code = fs.list_dir(d .. "/nope")
        assert.are.equal("ENOENT", code)
      end)
      rm_rf(d)
    end)

    it("remove deletes a file or an empty directory, like os.remove", function()
      local d = tmpdir()
      run(function()
        assert.is_true(fs.mkdir(d))
        assert.is_true(fs.write_file(d .. "/f", "x"))
        local ok, _, code = fs.remove(d)
        assert.is_nil(ok)
        assert.are.equal("ENOTEMPTY", code)
        assert.is_true(fs.remove(d .. "/f"))
        assert.is_nil(fs.stat(d .. "/f"))
        assert.is_true(fs.remove(d))
        assert.is_nil(fs.stat(d))
        local ok2, msg2, code2 = fs.remove(d)
        assert.is_nil(ok2)
        assert.are.equal("string", type(msg2))
        assert.are.equal("ENOENT", code2)
      end)
      rm_rf(d)
    end)

    it("rename moves a file; a missing source is ENOENT", function()
      local a, b = H.tmpname(), H.tmpname()
      H.write_file(a, "moved")
      run(function()
        assert.is_true(fs.rename(a, b))
        assert.is_nil(fs.stat(a))
        assert.are.equal("moved", fs.read_file(b))
        local ok, _, code = fs.rename(a, b)
        assert.is_nil(ok)
        assert.are.equal("ENOENT", code)
      end)
      H.remove(a, b)
    end)
  end)

  describe("the thread pool", function()
    it("never blocks the loop: other tasks run while an open waits", function()
      local p = H.tmpname()
      mkfifo(p)
      run(function()
        local ticks = 0
        local reader = spindle.spawn(function()
          local f <close> = assert(fs.open(p, "r")) -- blocks a pool thread
          return f:read(5)
        end)
        for _ = 1, 5 do spindle.sleep(0.01); ticks = ticks + 1 end
        assert.are.equal(5, ticks)
        assert.are.equal("waiting", reader:status())
        local w = assert(fs.open(p, "w"))
        assert.is_true(w:write("hello"))
        w:close()
        assert.are.equal("hello", reader:join())
      end)
      H.remove(p)
    end)

    it("keeps the virtual clock still while a request is in flight", function()
      local p = H.tmpname()
      H.write_file(p, ("x"):rep(100000))
      H.run_virtual(function()
        local t0 = spindle.now()
        for _ = 1, 20 do
          assert.are.equal(100000, #spindle.timeout(1, fs.read_file, p))
        end
        assert.are.equal(t0, spindle.now())
      end)
      H.remove(p)
    end)

    it("abort while open() is in flight: cancelled at once, and the fd it got is closed", function()
      local p = H.tmpname()
      mkfifo(p)
      run(function()
        local before = fds()
        local h = spindle.spawn(function() return fs.open(p, "r") end)
        spindle.sleep(0.02)
        assert.are.equal("waiting", h:status())
        assert.is_true(h:abort())
        local ok, err = h:result()
        assert.is_false(ok)
        assert.is_true(spindle.is_cancelled(err))
        -- the pool thread is still in open(); a writer lets it complete
        local w = assert(fs.open(p, "w"))
        w:close()
        local n, list = settle(before)
        assert.are.equal(before, n, list)
      end)
      H.remove(p)
    end)

    it("timeout while read_file waits: the timeout is raised, nothing leaks", function()
      local p = H.tmpname()
      mkfifo(p)
      run(function()
        local ok, err = pcall(spindle.timeout, 0.05, fs.read_file, p)
        assert.is_false(ok)
        assert.is_true(spindle.is_timeout(err))
        local w = assert(fs.open(p, "w")) -- unblocks the abandoned open
        w:close()
        spindle.sleep(0.05)
        -- the file and the runtime stay usable
        assert.are.equal("directory", fs.stat("/").type)
      end)
      H.remove(p)
    end)

    it("abort during a read on an open file leaves the file closable", function()
      local p = H.tmpname()
      mkfifo(p)
      run(function()
        local opener = spindle.spawn(function() return assert(fs.open(p, "r")) end)
        local w = assert(fs.open(p, "w"))
        local f = opener:join()
        local h = spindle.spawn(function() return f:read(3) end)
        spindle.sleep(0.02)
        h:abort()
        assert.is_false((h:result()))
        w:write("abc")
        w:close()
        f:close()
      end)
      H.remove(p)
    end)

    it("spindle.dump names the request a task waits for", function()
      local p = H.tmpname()
      mkfifo(p)
      run(function()
        local h = spindle.spawn(function() return fs.open(p, "r") end)
        spindle.sleep(0.02)
        assert.truthy(spindle.dump():find("fs open " .. p, 1, true))
        h:abort()
        local w = assert(fs.open(p, "w")) -- lets the pool thread finish
        w:close()
      end)
      H.remove(p)
    end)

    it("many concurrent requests all complete", function()
      local d = tmpdir()
      run(function()
        assert.is_true(fs.mkdir(d))
        local hs = {}
        for i = 1, 50 do
          hs[i] = spindle.spawn(function()
            local path = d .. "/" .. i
            assert(fs.write_file(path, tostring(i)))
            return fs.read_file(path)
          end)
        end
        for i = 1, 50 do assert.are.equal(tostring(i), hs[i]:join()) end
        assert.are.equal(50, #fs.list_dir(d))
      end)
      rm_rf(d)
    end)
  end)

  describe("bad input", function()
    it("raises for wrong argument types and zero bytes in paths", function()
      run(function()
        for _, fn in ipairs{"read_file", "stat", "lstat", "remove", "mkdir", "list_dir", "open"} do
          local ok, err = pcall(fs[fn], nil)
          assert.is_false(ok)
          assert.truthy(H.msg_has(err, "bad argument"), err)
          ok, err = pcall(fs[fn], "a\0b")
          assert.is_false(ok)
          assert.truthy(H.msg_has(err, "zero byte"), err)
        end
        local ok, err = pcall(fs.write_file, "/tmp/x", {})
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "bad argument"), err)
        ok, err = pcall(fs.rename, "/tmp/x")
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "bad argument"), err)
        ok, err = pcall(fs.mkdir, "/tmp/x", -1)
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "bad argument"), err)
      end)
    end)

    it("raises for read(n) with a bad count and for a wrong self", function()
      local p = H.tmpname()
      H.write_file(p, "x")
      run(function()
        local f <close> = assert(fs.open(p, "r"))
        for _, n in ipairs{-1, 0.5, "x", math.huge} do
          local ok, err = pcall(f.read, f, n)
          assert.is_false(ok)
          assert.truthy(H.msg_has(err, "bad argument"), err)
        end
        local ok, err = pcall(f.read, {}, 1)
        assert.is_false(ok)
        assert.truthy(H.msg_has(err, "bad argument"), err)
      end)
      H.remove(p)
    end)

    it("raises 'not inside a task' outside a task", function()
      local ok, err = pcall(fs.read_file, "/etc/passwd")
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "spindle.fs.read_file: not inside a task"), err)
      ok, err = pcall(fs.stat, "/")
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "not inside a task"), err)
    end)
  end)
end)
