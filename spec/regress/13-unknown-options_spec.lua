-- Issue 13: a misspelt option raises "unknown option 'timout'" instead of
-- being ignored (docs/errors.md#programming-errors) -- every options table
-- outside the stream, TCP and pipe calls: spindle.runtime, spindle.test,
-- spindle.process.spawn/run, spindle.http_server's serve, spindle.tls.
-- Each call raises before it does anything: no task, process, socket or
-- descriptor is left behind.
local H = dofile("spec/helpers/init.lua")
local spindle = H.spindle

local function raises_unknown(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "did not raise")
  assert.truthy(H.msg_has(err, "unknown option 'timout'"), tostring(err))
  return err
end

-- libuv opens process-wide descriptors with its first loop and its first
-- child (the SIGCHLD pipe): open them now so they are not counted as leaks.
H.run_real(function() spindle.process.run("true", {}) end)

describe("a misspelt option raises", function()
  H.check_fds(_ENV)

  it("spindle.runtime", function()
    local err = raises_unknown(spindle.runtime, {timout = 1})
    assert.truthy(H.msg_has(err, "spindle.runtime"), err)
    raises_unknown(spindle.runtime, {clock = "virtual", timout = 1})
  end)

  it("spindle.test", function()
    local err = raises_unknown(spindle.test, function() end, {timout = 1})
    assert.truthy(H.msg_has(err, "bad argument #2 to 'test'"), err)
    -- the correct spelling is accepted
    assert.are.equal("function", type(spindle.test(function() end, {timeout = 1})))
  end)

  it("spindle.process.spawn and run", function()
    H.run_real(function()
      local before = H.fd_count()
      local err = raises_unknown(spindle.process.spawn, "true", {}, {timout = 1})
      assert.truthy(H.msg_has(err, "bad argument #3"), err)
      raises_unknown(spindle.process.run, "true", {}, {stdout = "pipe", timout = 1})
      raises_unknown(function() return spindle.process.spawn("true", {}, {timout = 1}) end)
      assert.are.equal(0, #spindle.tasks() - 1) -- only this task
      assert.are.equal(before, H.fd_count())
      -- the correct spelling works; run ignores stdio options (docs/process.md)
      assert.are.equal(0, (spindle.process.run("true", {}, {stdout = "pipe"})))
      assert.are.equal(0, (spindle.process.run("true", {}, {cwd = "/"})))
    end)
  end)

  it("the HTTP server's serve", function()
    H.run_real(function()
      local serve = require("spindle.http_server").serve
      local err = raises_unknown(serve, {host = "127.0.0.1", port = 0, timout = 1,
                                         handler = function() end})
      assert.truthy(H.msg_has(err, "bad argument #1 to 'serve'"), err)
    end)
  end)

  it("spindle.tls.context and tls.connect", function()
    assert.is_table(spindle.tls, "spindle.tls is built in")
    H.run_real(function()
      raises_unknown(spindle.tls.context, {timout = 1})
      raises_unknown(spindle.tls.connect, "127.0.0.1", 1, {timout = 1})
    end)
  end)

  it("a non-string option name raises too", function()
    H.run_real(function()
      local ok, err = pcall(spindle.process.spawn, "true", {}, {[1] = "x"})
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "option names must be strings"), err)
      ok, err = pcall(spindle.runtime, {[true] = 1})
      assert.is_false(ok)
      assert.truthy(H.msg_has(err, "option names must be strings"), err)
    end)
  end)
end)
