-- spec/helpers/fault_workload.lua -- the workloads of spec/91-faults_spec.lua,
-- run as a child process under tools/faultinject (LD_PRELOAD + FI_*).
--
--   lua5.4 spec/helpers/fault_workload.lua KIND N SIZE
--
-- KIND: tcp, unix (N echo clients of SIZE bytes each against an echo
-- server in the same process), pipe (N `cat` children, SIZE bytes each
-- through their stdin and stdout), udp (N datagrams of up to SIZE bytes
-- each way between two sockets).  Every conversation ends in one of:
--   ok        every byte came back, in order, exactly
--   failed    an I/O method returned nil, msg, code (the code is counted)
--   mismatch  the bytes differ from what was sent (a prefix that arrived
--             before an error must still match)           -> a bug
--   raised    an I/O method raised instead of returning   -> a bug
--   hang      nothing happened for 30 s                   -> a bug
-- The last line printed is
--   RESULT ok=.. failed=.. mismatch=.. raised=.. hang=.. codes=CODE:n,...
-- and the process exits 0 whatever the counts (the spec judges them).

local spindle = require "spindle"
local net, process = spindle.net, spindle.process

local kind, N, SIZE = arg[1], tonumber(arg[2]), tonumber(arg[3])
local counts = {ok = 0, failed = 0, mismatch = 0, raised = 0, hang = 0}
local codes = {}
local notes = {}

-- A payload that differs per conversation and per position, so that a
-- byte from the wrong connection or the wrong place is a mismatch.
local function payload(i, size)
  local unit = string.format("<%06d:", i)
  local parts, n = {}, 0
  while n < size do
    local piece = unit .. string.format("%09d>", n)
    parts[#parts + 1] = piece
    n = n + #piece
  end
  return table.concat(parts):sub(1, size)
end

local function tally(h)
  local ok, verdict, code = h:result()
  if not ok then
    if spindle.is_timeout(verdict) then
      counts.hang = counts.hang + 1
    else
      counts.raised = counts.raised + 1
      notes[#notes + 1] = tostring(verdict)
    end
  elseif verdict == true then
    counts.ok = counts.ok + 1
  elseif verdict == "mismatch" then
    counts.mismatch = counts.mismatch + 1
    notes[#notes + 1] = tostring(code)
  else
    counts.failed = counts.failed + 1
    codes[tostring(code)] = (codes[tostring(code)] or 0) + 1
  end
end

-- got: what arrived (possibly nil), partial: the bytes before an error.
local function judge(want, got, code, partial)
  if got == want then return true end
  if got ~= nil then return "mismatch", "wrong bytes" end
  if partial and want:sub(1, #partial) ~= partial then
    return "mismatch", "wrong partial bytes before " .. tostring(code)
  end
  return false, code
end

-- One client conversation on stream c: write p while reading it back.
local function converse(c, p)
  local writer = spindle.spawn(function()
    local ok, _, code = c:write(p)
    if ok then ok, _, code = c:shutdown() end
    if not ok then c:close() end -- wakes our reader: the conversation failed
    return ok, code
  end)
  local got, _, code, partial = c:read(#p)
  local wok, wcode = writer:join()
  local rest, _, rcode = nil, nil, nil
  if got ~= nil then
    rest, _, rcode = c:read_some()
    if rest ~= nil then return "mismatch", "bytes after the echo" end
  end
  c:close()
  local v, why = judge(p, got, code, partial)
  if v == true and not wok then return false, wcode end
  if v == true and rcode ~= "EOF" then return false, rcode end
  return v, why
end

local function echo_server(srv)
  local conns = {}
  while true do
    local c, _, code = srv:accept()
    if not c then
      if code == "EBADF" or code == "ECANCELED" then break end
      codes["accept:" .. tostring(code)] =
          (codes["accept:" .. tostring(code)] or 0) + 1
      spindle.sleep(0.001) -- EMFILE: accept works again later
    else
      conns[#conns + 1] = spindle.spawn(function()
        while true do
          local d = c:read_some()
          if not d then break end
          if not c:write(d) then break end
        end
        c:shutdown()
        c:close()
      end)
    end
  end
  for _, h in ipairs(conns) do h:result() end
end

local function stream_clients(connect, srv)
  local server = spindle.spawn(echo_server, srv)
  local hs = {}
  for i = 1, N do
    hs[i] = spindle.spawn(function()
      return spindle.timeout(30, function()
        local p = payload(i, SIZE)
        local c, _, code = connect()
        for _ = 1, 3 do -- EMFILE on socket() or accept: try again
          if c or (code ~= "EMFILE" and code ~= "ECONNRESET") then break end
          spindle.sleep(0.005)
          c, _, code = connect()
        end
        if not c then return false, code end
        return converse(c, p)
      end)
    end)
  end
  for _, h in ipairs(hs) do tally(h) end
  srv:close()
  server:result()
end

local function run_tcp()
  local srv = assert(net.listen("127.0.0.1", 0, {backlog = 1024}))
  local _, port = srv:local_addr()
  stream_clients(function() return net.connect("127.0.0.1", port) end, srv)
end

local function run_unix()
  local path = os.tmpname()
  os.remove(path)
  local srv = assert(net.listen_unix(path, {backlog = 1024}))
  stream_clients(function() return net.connect_unix(path) end, srv)
  os.remove(path)
end

local function run_pipe()
  local hs = {}
  for i = 1, N do
    hs[i] = spindle.spawn(function()
      return spindle.timeout(30, function()
        local p = payload(i, SIZE)
        local child <close> = assert(process.spawn("cat", {},
          {stdin = "pipe", stdout = "pipe"}))
        local writer = spindle.spawn(function()
          local ok, _, code = child.stdin:write(p)
          child.stdin:close()
          return ok, code
        end)
        local got, _, code, partial = child.stdout:read(#p)
        local wok, wcode = writer:join()
        local rcode
        if got ~= nil then
          local rest, _, c2 = child.stdout:read_some()
          if rest ~= nil then return "mismatch", "bytes after the echo" end
          rcode = c2
        else
          child:kill("KILL")
        end
        child:wait()
        local v, why = judge(p, got, code, partial)
        if v == true and not wok then return false, wcode end
        if v == true and rcode ~= "EOF" then return false, rcode end
        return v, why
      end)
    end)
  end
  for _, h in ipairs(hs) do tally(h) end
end

local function run_udp()
  local a <close> = net.udp()
  local b <close> = net.udp()
  assert(a:bind("127.0.0.1", 0))
  assert(b:bind("127.0.0.1", 0))
  local _, pb = b:local_addr()
  -- b echoes every datagram back to its sender
  local echo = spindle.spawn(function()
    while true do
      local d, host, port = b:recv_from(65536)
      if not d then return end
      if d == "stop" then return end
      local ok, _, code = b:send_to(d, host, port)
      if not ok then codes["echo:" .. code] = (codes["echo:" .. code] or 0) + 1 end
    end
  end)
  local h = spindle.spawn(function()
    return spindle.timeout(30, function()
      -- one datagram in flight at a time: loopback does not reorder, and
      -- the receive buffer never overflows, so every one must come back
      for i = 1, N do
        local p = payload(i, 1 + (i * 7919) % SIZE)
        local ok, _, code = a:send_to(p, "127.0.0.1", pb)
        if not ok then return false, code end
        local d, _, rcode = a:recv_from(65536)
        if d == nil then return false, rcode end
        if d ~= p then return "mismatch", "datagram " .. i end
      end
      return true
    end)
  end)
  tally(h)
  a:send_to("stop", "127.0.0.1", pb)
  echo:result()
  -- each datagram counts as one conversation in the totals
  if counts.ok == 1 then counts.ok = N end
end

local runs = {tcp = run_tcp, unix = run_unix, pipe = run_pipe, udp = run_udp}
spindle.run(assert(runs[kind], "unknown workload " .. tostring(kind)))

local list = {}
for k, v in pairs(codes) do list[#list + 1] = k .. ":" .. v end
table.sort(list)
for _, n in ipairs(notes) do io.stderr:write("note: ", n, "\n") end
print(string.format("RESULT ok=%d failed=%d mismatch=%d raised=%d hang=%d codes=%s",
  counts.ok, counts.failed, counts.mismatch, counts.raised, counts.hang,
  table.concat(list, ",")))
