-- spec/27-http-client-nocurl_spec.lua -- docs/http.md, Building without
-- libcurl: -DSPINDLE_WITH_CURL=OFF builds a module whose spindle.http
-- loads but whose requests raise "spindle.http: built without libcurl".
-- Builds only the Lua module, into build-nocurl/ (kept between runs, so
-- a second run only checks that it is up to date).

local H = dofile("spec/helpers/init.lua")

describe("a build without libcurl", function()
  it("has spindle.http, whose requests say so", function()
    local dir = "build-nocurl"
    local r = H.sh(("env -u LD_PRELOAD sh -c %s"):format(H.q(
      "cmake -S . -B " .. dir .. " -DCMAKE_BUILD_TYPE=Debug " ..
      "-DSPINDLE_WITH_CURL=OFF -DSPINDLE_BUILD_CLI=OFF " ..
      "-DSPINDLE_BUILD_TESTS=OFF -DSPINDLE_SANITIZE=OFF >/dev/null && " ..
      "cmake --build " .. dir .. " --target spindle_module -j2 >/dev/null")),
      {timeout = 600})
    assert.is_true(r.ok, H.describe(r))
    -- the module links no libcurl
    r = H.sh("ldd " .. dir .. "/spindle.so")
    assert.is_nil(r.stdout:find("libcurl", 1, true), r.stdout)
    r = H.sh("env -u LD_PRELOAD lua5.4 -e " .. H.q([[
      package.cpath = "./build-nocurl/?.so"
      package.path = "./lua/?.lua;" .. package.path
      local spindle = require "spindle"
      local http = require "spindle.http"
      assert(spindle.http == http)
      spindle.run(function()
        for _, f in ipairs({function() return http.get("http://127.0.0.1:1/") end,
                            function() return http.post("http://127.0.0.1:1/", "x") end,
                            function() return http.request{url = "http://127.0.0.1:1/"} end}) do
          local ok, err = pcall(f)
          print(ok, err)
        end
        -- everything else works
        spindle.sleep(0.01)
        print("net", spindle.net ~= nil)
      end)]]))
    assert.is_true(r.ok, H.describe(r))
    local _, n = r.stdout:gsub("false\t[^\n]*spindle.http: built without libcurl", "")
    assert.equal(3, n, r.stdout)
    assert.truthy(r.stdout:find("net\ttrue", 1, true))
  end)
end)
