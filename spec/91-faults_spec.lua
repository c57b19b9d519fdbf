-- Syscall faults: spindle's I/O under a kernel that interrupts, refuses,
-- shortens and breaks socket calls (issue 9).  Each workload of
-- spec/helpers/fault_workload.lua runs in a child lua5.4 with
-- tools/faultinject preloaded (see the FI_* variables in its banner):
--   - faults a program must absorb (short writes, EINTR, EAGAIN): every
--     conversation completes byte-exact;
--   - fatal faults (ECONNRESET on read, EPIPE on write, EMFILE on accept
--     and socket): each hits only its own connection, which ends with a
--     nil, msg, code result (never a raise, a crash, a hang or wrong
--     bytes); every other conversation completes byte-exact, and no more
--     conversations fail than faults were injected.
-- ENOMEM from epoll_ctl is not here: libuv 1.44 aborts the process on it
-- (docs/reliability.md).  SPINDLE_DEEP=1 (make check-deep) runs more seeds
-- and bigger loads.
local H = require "spec.helpers"

local DEEP = os.getenv("SPINDLE_DEEP") == "1"
local SEEDS = DEEP and {1, 2, 3, 4, 5, 6, 7, 8, 9, 10} or {1, 2}
local SCALE = DEEP and 4 or 1
local WORKLOAD = H.read_file("spec/helpers/fault_workload.lua")

-- The shim is built next to the spindle.so under test (build/ or
-- build-asan/, both plain shared libraries).
local function shim_path()
  local so = assert(package.searchpath("spindle", package.cpath))
  local p = so:gsub("[^/]*$", "") .. "libfaultinject.so"
  assert(H.exists(p), p .. " is missing: build the faultinject target")
  return p
end
local SHIM = shim_path()

-- Runs one workload; returns the counts, the codes and the fault report.
local function run(kind, n, size, faults, seed)
  local report = H.tmpname()
  local preload = ((os.getenv("LD_PRELOAD") or "") .. " " .. SHIM)
                    :gsub("^%s+", "")
  local env = string.format(
    "LD_PRELOAD=%s FI_PROGRAM=lua5.4 FI_SEED=%d FI_REPORT=%s %s",
    H.q(preload), seed, H.q(report), faults)
  local r = H.lua_child(WORKLOAD, {args = string.format("%s %d %d", kind, n,
                                                        size),
                                   env = env, timeout = 240})
  local rep = H.read_file(report) or ""
  H.remove(report)
  assert(r.ok, "workload failed:\n" .. H.describe(r))
  local line = assert(r.stdout:match("RESULT ([^\n]*)"),
                      "no RESULT line:\n" .. H.describe(r))
  local res = {codes = {}, injected = {}, notes = r.stderr}
  for k, v in line:gmatch("(%a+)=(%d+)") do res[k] = tonumber(v) end
  for code, v in (line:match("codes=(%S*)") or ""):gmatch("([^,]+):(%d+)") do
    res.codes[code] = tonumber(v)
  end
  for name, inj in rep:gmatch("(%a[%w_]*)=(%d+)/%d+") do
    res.injected[name] = (res.injected[name] or 0) + tonumber(inj)
  end
  res.text = line .. " | injected: " .. rep:gsub("\n", " ")
  return res
end

-- No bug-shaped outcome at all.
local function clean(res)
  assert.are.equal(0, res.mismatch, "wrong bytes: " .. res.text)
  assert.are.equal(0, res.raised, "an I/O method raised: " .. res.text ..
                   "\n" .. res.notes)
  assert.are.equal(0, res.hang, "a conversation hung: " .. res.text)
end

local ABSORB = "FI_SHORT_WRITE=0.5 FI_EINTR=/3 FI_EAGAIN=/4"

describe("faults a program must absorb (short writes, EINTR, EAGAIN)", function()
  for _, seed in ipairs(SEEDS) do
    it("TCP echo, 50 clients x 200 KB, seed " .. seed, function()
      local res = run("tcp", 50 * SCALE, 200000, ABSORB, seed)
      clean(res)
      assert.are.equal(50 * SCALE, res.ok, res.text)
      assert.is_true(res.injected.short_write > 0 and res.injected.eintr > 0
                     and res.injected.eagain > 0, res.text)
    end)

    it("Unix socket echo, 50 clients x 200 KB, seed " .. seed, function()
      local res = run("unix", 50 * SCALE, 200000, ABSORB, seed)
      clean(res)
      assert.are.equal(50 * SCALE, res.ok, res.text)
      assert.is_true(res.injected.short_write > 0, res.text)
    end)

    it("pipes to 4 cat children x 300 KB, seed " .. seed, function()
      local res = run("pipe", 4 * SCALE, 300000, ABSORB, seed)
      clean(res)
      assert.are.equal(4 * SCALE, res.ok, res.text)
      assert.is_true(res.injected.short_write > 0 and res.injected.eintr > 0,
                     res.text)
    end)

    it("UDP, 300 datagrams echoed, seed " .. seed, function()
      local res = run("udp", 300 * SCALE, 8000, "FI_EINTR=/3 FI_EAGAIN=/4",
                      seed)
      clean(res)
      assert.are.equal(300 * SCALE, res.ok, res.text)
      assert.is_true(res.injected.eintr > 0 and res.injected.eagain > 0,
                     res.text)
    end)
  end
end)

-- Fatal faults: every failure is an error result of its own connection.
local function only_its_own(res, n, fault, allowed)
  clean(res)
  assert.are.equal(n, res.ok + res.failed, res.text)
  local injected = res.injected[fault] or 0
  assert.is_true(injected > 0, "nothing injected: " .. res.text)
  assert.is_true(res.failed <= injected,
                 "more conversations failed than faults: " .. res.text)
  assert.is_true(res.ok > 0, "nothing survived: " .. res.text)
  for code in pairs(res.codes) do
    if not code:match("^accept:") then
      assert.is_true(allowed[code] == true, "unexpected code " .. code ..
                     ": " .. res.text)
    end
  end
end

-- What the other end of a broken connection may see.
local BROKEN = {ECONNRESET = true, EPIPE = true, EOF = true, ECANCELED = true}

describe("fatal faults reach only their own connection", function()
  for _, seed in ipairs(SEEDS) do
    for _, kind in ipairs({"tcp", "unix"}) do
      it(kind .. ": ECONNRESET on reads, seed " .. seed, function()
        local n = 50 * SCALE
        local res = run(kind, n, 200000, "FI_ECONNRESET=0.01", seed)
        only_its_own(res, n, "econnreset", BROKEN)
        assert.is_true(res.failed > 0, res.text)
      end)

      it(kind .. ": EPIPE on writes, seed " .. seed, function()
        local n = 50 * SCALE
        local res = run(kind, n, 200000, "FI_EPIPE=0.01", seed)
        only_its_own(res, n, "epipe", BROKEN)
      end)

      it(kind .. ": EMFILE on accept and socket, seed " .. seed, function()
        local n = 50 * SCALE
        local res = run(kind, n, 50000, "FI_EMFILE=0.1", seed)
        only_its_own(res, n, "emfile", {EMFILE = true, ECONNRESET = true,
                                        EOF = true, ECANCELED = true,
                                        EPIPE = true})
        assert.is_true((res.codes["accept:EMFILE"] or 0) > 0,
                       "accept never reported EMFILE: " .. res.text)
      end)
    end

    it("pipes: EPIPE and ECONNRESET on a child's pipes, seed " .. seed, function()
      local n = 6 * SCALE
      local res = run("pipe", n, 300000, "FI_EPIPE=0.05 FI_ECONNRESET=0.05",
                      seed)
      clean(res)
      assert.are.equal(n, res.ok + res.failed, res.text)
      local injected = (res.injected.epipe or 0) + (res.injected.econnreset or 0)
      assert.is_true(res.failed <= injected, res.text)
      for code in pairs(res.codes) do
        assert.is_true(BROKEN[code] == true, "unexpected code " .. code)
      end
    end)

    it("tcp: every fault at once, seed " .. seed, function()
      local n = 40 * SCALE
      local res = run("tcp", n, 100000, ABSORB ..
                      " FI_ECONNRESET=0.005 FI_EPIPE=0.005 FI_EMFILE=0.05",
                      seed)
      clean(res)
      assert.are.equal(n, res.ok + res.failed, res.text)
      local fatal = (res.injected.econnreset or 0) + (res.injected.epipe or 0)
                    + (res.injected.emfile or 0)
      assert.is_true(res.failed <= fatal, res.text)
      assert.is_true(res.ok > 0, res.text)
    end)
  end
end)
