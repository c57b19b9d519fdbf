-- spec/27-http-client-cancel_spec.lua -- docs/http.md, cancellation:
-- aborting or timing out a task at any await of a request ends the
-- transfer at once (it is out of libcurl's multi handle before the abort
-- returns), the task unwinds, nothing leaks, and the client goes on.
-- Every await: connecting, waiting for the response, sending a body,
-- inside the body function, waiting for a streamed head, read_some,
-- read_all and lines.  Against Python's http.server and a listener that
-- never accepts.

local HT = dofile("spec/helpers/http.lua")
local spindle, http, run = HT.spindle, HT.http, HT.run

local py = HT.peer(_ENV, HT.python)

-- Each await: a function run in a task that ends up waiting there, and
-- the phrase spindle.dump() shows while it waits.
local awaits = {
  {"connecting", "http GET", function(ctx)
    return http.get("http://127.0.0.1:" .. ctx.port .. "/")
  end},
  {"waiting for the response", "http GET", function()
    return http.get(py.base .. "/slow?delay=10")
  end},
  {"sending a body the peer does not read", "http POST", function()
    return http.post(py.base .. "/slow?delay=10", ("b"):rep(32 * 1024 * 1024))
  end},
  {"sending a body from a function", "http POST", function(ctx)
    return http.post(py.base .. "/slow?delay=10", function()
      ctx.calls = ctx.calls + 1
      return ("c"):rep(1024 * 1024)
    end)
  end},
  -- here the task waits for its own sleep, not for the transfer (which is
  -- paused meanwhile): the transfer ends as the task unwinds out of the
  -- request, before the abort reaches the caller of post
  {"inside the body function", "sleep", unwinds = true, function(ctx)
    return http.post(py.base .. "/echo", function()
      ctx.calls = ctx.calls + 1
      spindle.sleep(10)
      return "never"
    end)
  end},
  {"waiting for a streamed head", "http GET", function()
    return http.get(py.base .. "/slow?delay=10", {stream = true})
  end},
  {"read_some", "http read GET", function()
    local res <close> = assert(http.get(py.base .. "/trickle?n=10&delay=10", {stream = true}))
    return res:read_some()
  end},
  {"read_all", "http read GET", function()
    local res = assert(http.get(py.base .. "/trickle?n=10&delay=10", {stream = true}))
    return res:read_all() -- no <close>: the interrupted wait ends it
  end},
  {"lines", "http read GET", function()
    local res = assert(http.get(py.base .. "/trickle?n=10&delay=10", {stream = true}))
    for _ in res:lines() do end
  end},
}

-- Waits (real time) until the task h shows `phrase` in spindle.dump().
local function wait_for(phrase)
  for _ = 1, 400 do
    spindle.sleep(0.01)
    if spindle.dump():find(phrase, 1, true) then return true end
  end
  error("never waited for: " .. phrase .. "\n" .. spindle.dump())
end

-- After an interruption: no transfer is left, and a request works.
local function client_goes_on()
  assert.equal(0, HT.stats().transfers)
  local res = assert(http.get(py.base .. "/status/200"))
  assert.equal(200, res.status)
end

for _, a in ipairs(awaits) do
  local what, phrase, fn, unwinds = a[1], a[2], a[3], a.unwinds
  describe("at the await " .. what, function()
    it("an abort ends the transfer at once and unwinds the task", function()
      run(function()
        local ctx = {calls = 0}
        local release
        ctx.port, release = HT.hanging_port()
        local closed = false
        local h = spindle.spawn(function()
          local guard <close> = setmetatable({}, {__close = function() closed = true end})
          return fn(ctx)
        end)
        wait_for(phrase)
        local calls = ctx.calls
        h:abort()
        if not unwinds then
          assert.equal(0, HT.stats().transfers) -- out of the multi already
        end
        pcall(h.join, h)
        assert.equal(0, HT.stats().transfers) -- gone as it unwound
        assert.equal("cancelled", h:status())
        assert.is_true(closed)
        spindle.sleep(0.1)
        assert.equal(calls, ctx.calls) -- the body function is not called again
        release()
        client_goes_on()
      end)
    end)

    it("a timeout ends the transfer at once and raises the timeout", function()
      run(function()
        local ctx = {calls = 0}
        local release
        ctx.port, release = HT.hanging_port()
        local ok, err = pcall(spindle.timeout, 0.3, fn, ctx)
        assert.is_false(ok)
        assert.is_true(spindle.is_timeout(err))
        assert.equal(0, HT.stats().transfers)
        release()
        client_goes_on()
      end)
    end)
  end)
end

describe("shutdown", function()
  it("a runtime closed with requests in flight ends them all", function()
    run(function()
      for i = 1, 10 do
        spindle.spawn(http.get, py.base .. "/slow?delay=10&i=" .. i)
      end
      spindle.spawn(function()
        local res = assert(http.get(py.base .. "/trickle?n=10&delay=10", {stream = true}))
        return res:read_all()
      end)
      spindle.sleep(0.3)
      assert.equal(11, HT.stats().transfers)
      -- the main task returns: the others are aborted
    end)
    assert.equal(0, HT.stats().transfers)
    assert.equal(0, HT.stats().clients)
  end)

  it("many aborts of many transfers leave nothing behind", function()
    run(function()
      local hs = {}
      for i = 1, 100 do
        hs[i] = spindle.spawn(http.get, py.base .. "/slow?delay=10&i=" .. i)
      end
      spindle.sleep(0.5)
      for i = 1, 100, 2 do hs[i]:abort() end
      for i = 2, 100, 2 do
        spindle.spawn(function() hs[i]:abort() end)
      end
      for i = 1, 100 do pcall(hs[i].join, hs[i]) end
      client_goes_on()
    end)
  end)
end)
