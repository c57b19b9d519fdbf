-- fuzz/stream_fuzz.lua -- the model side of fuzz/stream_fuzz.c.
--
-- case(data) runs one fuzz input: a peer task writes chunks of bytes taken
-- from the input (with yields between them, so that reads meet every kind
-- of partial buffering) to a Unix socket, then shuts down; the reader
-- issues a sequence of reads chosen by the input.  The whole byte stream S
-- is known in advance, so every read's result is predicted by a naive model
-- (string.find over S); only read_some may return any non-empty prefix.
-- A difference raises "MODEL: ..." (the C side aborts: a libFuzzer crash).
--
-- Input layout: byte 1 = number of peer chunks k (mod 16); then k chunks
-- (1 length byte, then that many bytes; the chunks form S); the rest are
-- reader operations, one opcode byte each plus arguments.
local spindle = require "spindle"
local net = spindle.net

local M = {}

local function fail(fmt, ...)
  error("MODEL: " .. string.format(fmt, ...), 0)
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

-- one path per process (fuzzers may run in parallel)
local path = string.format("/tmp/spindle-stream-fuzz-%s-%d.sock",
                           tostring({}):match("0x(%x+)") or "0", os.time())

-- The reads: each returns the opcode's arguments consumed from the input.
local DELIMS = {"\n", ";", "\r\n", "ab", "aab", "--", "\0"}

function M.case(data)
  local pos = 1
  local function byte()
    local b = data:byte(pos)
    pos = pos + 1
    return b or 0
  end
  local nchunks = byte() % 16
  local chunks = {}
  for i = 1, nchunks do
    local len = byte()
    chunks[i] = data:sub(pos, pos + len - 1)
    pos = pos + len
  end
  local S = table.concat(chunks)
  local cur = 0 -- bytes of S the reader has consumed
  local ops = data:sub(pos)

  local rt = spindle.runtime()
  local ok, err = pcall(rt.run, rt, function()
    os.remove(path)
    local srv <close> = assert(net.listen_unix(path))
    local acc = spindle.spawn(function() return assert(srv:accept()) end)
    local w <close> = assert(net.connect_unix(path))
    local r <close> = acc:join()
    os.remove(path)

    local peer = spindle.spawn(function()
      for i = 1, nchunks do
        if #chunks[i] > 0 then assert(w:write(chunks[i])) end
        spindle.yield() -- let the reader see this much
      end
      assert(w:shutdown())
    end)

    local p = 1
    local function arg()
      local b = ops:byte(p)
      p = p + 1
      return b or 0
    end
    local rest = function() return S:sub(cur + 1) end

    local function expect_eof(v, msg, code)
      if v ~= nil or code ~= "EOF" then
        fail("at %d: want EOF, got %s %s %s", cur, show(v), show(msg),
             show(code))
      end
    end

    -- the model of read_line / read_until
    local function line_model(delim, max, strip_cr)
      local rs = rest()
      local at = rs:find(delim, 1, true)
      if at and at - 1 <= max then
        local line = rs:sub(1, at - 1)
        if strip_cr and line:sub(-1) == "\r" then line = line:sub(1, -2) end
        return "line", line, at - 1 + #delim
      end
      if at or #rs > max then return "ELINE" end
      if #rs == 0 then return "EOF" end
      return "line", rs, #rs
    end

    local function check_line(kind, line, used, v, msg, code)
      if kind == "line" then
        if v ~= line then
          fail("at %d: want line %s, got %s %s %s", cur, show(line), show(v),
               show(msg), show(code))
        end
        cur = cur + used
      elseif kind == "ELINE" then
        if v ~= nil or code ~= "ELINE" then
          fail("at %d: want ELINE, got %s %s", cur, show(v), show(code))
        end
      else
        expect_eof(v, msg, code)
      end
    end

    local nops = 0
    while p <= #ops and nops < 64 do
      nops = nops + 1
      local op = arg() % 8
      if op == 0 then -- read(n)
        local n = arg() * (arg() % 4 + 1)
        local v, msg, code, partial = r:read(n)
        local rs = rest()
        if #rs >= n then
          if v ~= rs:sub(1, n) then
            fail("at %d: read(%d) want %s got %s %s", cur, n,
                 show(rs:sub(1, n)), show(v), show(code))
          end
          cur = cur + n
        else
          expect_eof(v, msg, code)
          if partial ~= rs then
            fail("at %d: read(%d) partial want %s got %s", cur, n, show(rs),
                 show(partial))
          end
          cur = #S
        end
      elseif op == 1 then -- read_some(max)
        local max = arg() + 1
        local v, msg, code = r:read_some(max)
        if cur == #S then
          expect_eof(v, msg, code)
        elseif type(v) ~= "string" or #v < 1 or #v > max or
            v ~= S:sub(cur + 1, cur + #v) then
          fail("at %d: read_some(%d) got %s %s %s", cur, max, show(v),
               show(msg), show(code))
        else
          cur = cur + #v
        end
      elseif op == 2 then -- read_line(max)
        local max = arg() + 1
        local kind, line, used = line_model("\n", max, true)
        local v, msg, code = r:read_line(max)
        check_line(kind, line, used, v, msg, code)
      elseif op == 3 then -- read_until(delim, max)
        local delim = DELIMS[arg() % #DELIMS + 1]
        local max = arg() + 1
        local kind, line, used = line_model(delim, max, false)
        local v, msg, code = r:read_until(delim, max)
        check_line(kind, line, used, v, msg, code)
      elseif op == 4 then -- read_all(max)
        local max = arg() * 8 + 1
        local rs = rest()
        local v, msg, code = r:read_all(max)
        if #rs > max then
          if v ~= nil or code ~= "ENOBUFS" then
            fail("at %d: read_all(%d) want ENOBUFS, got %s %s", cur, max,
                 show(v), show(code))
          end
        else
          if v ~= rs then
            fail("at %d: read_all(%d) want %s got %s %s", cur, max, show(rs),
                 show(v), show(code))
          end
          cur = #S
        end
      elseif op == 5 then -- a read in another task, aborted: nothing lost
        local max = arg() + 1
        local h = spindle.spawn(function() return r:read_line(max) end)
        if arg() % 2 == 0 then spindle.yield() end
        h:abort()
        local hok, v, msg, code = h:result()
        if hok then -- it completed before the abort reached it
          local kind, line, used = line_model("\n", max, true)
          check_line(kind, line, used, v, msg, code)
        elseif not spindle.is_cancelled(v) then
          fail("aborted read raised %s", show(v))
        end
      elseif op == 6 then -- let the peer run
        spindle.yield()
      else -- lines(): up to 4 lines of what is left
        local max = arg() + 1
        local it = r:lines(max)
        for _ = 1, 4 do
          local kind, line, used = line_model("\n", max, true)
          local v = it()
          if v == nil then
            if kind == "line" then fail("at %d: lines() ended early", cur) end
            break
          end
          check_line(kind, line, used, v)
        end
      end
    end
    -- whatever is left comes out with read_all, then EOF
    local v, msg, code = r:read_all()
    if v ~= rest() then
      fail("at %d: final read_all want %s got %s %s %s", cur, show(rest()),
           show(v), show(msg), show(code))
    end
    cur = #S
    expect_eof(r:read_some())
    peer:join()
  end)
  rt:close()
  os.remove(path)
  if not ok then error(err, 0) end
end

return M
