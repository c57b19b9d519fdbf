-- Issue 13: the `spindle` command's flags (docs/tasks.md#the-command-line).
local H = require "spec.helpers"

local function cli(args, o) return H.cli(args, o) end

describe("the spindle command", function()
  it("-h and --help print the usage and exit 0", function()
    for _, f in ipairs({"-h", "--help"}) do
      local r = cli(f)
      assert.equal(0, r.code, H.describe(r))
      assert.truthy(r.stderr:find("usage: spindle", 1, true))
      assert.truthy(r.stderr:find("--warn-blocking", 1, true))
    end
  end)

  it("- reads the script from stdin, with its arguments", function()
    local r = H.sh("sh -c " .. H.q("echo 'print(\"from stdin\", ...)' | " .. H.CLI .. " - x y"))
    assert.equal("from stdin\tx\ty\n", r.stdout, H.describe(r))
  end)

  it("-l requires a module into a global before the script", function()
    local r = cli("-l string -e " .. H.q("print(string.rep('a', 3))"))
    assert.equal("aaa\n", r.stdout, H.describe(r))
    r = cli("-l S=spindle -e " .. H.q("S.sleep(0.001) print(type(S.spawn))"))
    assert.equal("function\n", r.stdout, H.describe(r))
  end)

  it("-i gives a prompt where awaits work", function()
    local input = H.tmpname()
    H.write_file(input, 'spindle.sleep(0.01)\n1 + 2\nerror("boom")\nreturn "after"\n')
    local r = H.sh("sh -c " .. H.q(H.CLI .. " -l spindle -i < " .. H.q(input)))
    H.remove(input)
    assert.equal(0, r.code, H.describe(r))
    assert.truthy(r.stdout:find("3", 1, true), H.describe(r))
    assert.truthy(r.stdout:find("after", 1, true), H.describe(r))
    assert.truthy(r.stderr:find("boom", 1, true), H.describe(r))
  end)

  it("--virtual runs on the virtual clock", function()
    local r = cli("--virtual -e " .. H.q("local s = require 'spindle' s.sleep(3600) print(s.now())"))
    assert.equal("3600.0\n", r.stdout, H.describe(r))
  end)

  it("--preempt lets a busy task share the loop", function()
    local r = cli("--preempt 1000 -e " .. H.q([[
      local s = require "spindle"
      local other = false
      s.spawn(function() other = true end)
      local t = os.clock()
      while not other and os.clock() - t < 2 do end
      print(other)
    ]]))
    assert.equal("true\n", r.stdout, H.describe(r))
  end)

  it("--warn-blocking reports a task that runs too long", function()
    local r = cli("--warn-blocking 0.05 -e " .. H.q([[
      local t = os.clock() while os.clock() - t < 0.2 do end
      require("spindle").yield()
    ]]))
    assert.truthy(r.stderr:find("without awaiting", 1, true), H.describe(r))
  end)

  it("rejects an unknown option and a bad number", function()
    assert.equal(1, cli("--nope").code)
    assert.equal(1, cli("--preempt x -e 1").code)
    assert.equal(1, cli("").code)
  end)
end)
