-- spec/60-reference_spec.lua -- docs/reference.md names every public
-- function, field and method: the module tables (lazy fields forced) and
-- every class's metatable, as walked by spec/helpers/public_api.lua.
--
-- What counts as an entry:
--   * a module function or field: its full name in a code span, followed
--     by "(" or the closing backtick (`spindle.net.connect(host, ...)`,
--     `spindle.version`); a function of a Lua module may also be written
--     `require("mod").fn(...)`;
--   * a method: a table row whose first code span is `x:method(...)`,
--     in the section whose heading names the class in a code span
--     ("## Streams — `spindle.stream`");
--   * a class without methods (error values): its name in a code span.
-- Classes listed in the "## Not public" section are implementation
-- details and need no entry.
local H = dofile("spec/helpers/init.lua")
local _ = H
local walk = dofile("spec/helpers/public_api.lua")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Parses the reference: methods per class section, the private classes,
-- and the text itself.
local function parse(text)
  local ref = {methods = {}, private = {}, text = text}
  local class, private_section
  for line in (text .. "\n"):gmatch("(.-)\n") do
    local heading = line:match("^##+%s+(.*)$")
    if heading then
      private_section = heading:match("^Not public") ~= nil
      class = heading:match("—%s*`(spindle%.[%w_.*]+)`%s*$")
      if class then ref.methods[class] = ref.methods[class] or {} end
    elseif private_section then
      for name in line:gmatch("`(spindle%.[%w_.*]+)`") do ref.private[name] = true end
    elseif class then
      local m = line:match("^|%s*`[%w_]+:([%w_]+)%(")
      if m then ref.methods[class][m] = true end
    end
  end
  return ref
end

local function has_function(ref, name)
  local text = ref.text
  if text:find("`" .. name .. "(", 1, true) or text:find("`" .. name .. "`", 1, true) then
    return true
  end
  local mod, fn = name:match("^(.*)%.([%w_]+)$")
  return text:find(('`require("%s").%s('):format(mod, fn), 1, true) ~= nil
end

describe("docs/reference.md", function()
  local api = walk()
  local ref = parse(read("docs/reference.md"))

  it("finds the public surface (the walker works)", function()
    -- A few names that must be there, lazy ones included, so that a
    -- broken walker cannot make the checks below pass vacuously.
    local fns = {}
    for _, n in ipairs(api.functions) do fns[n] = true end
    for _, n in ipairs({"spindle.spawn", "spindle.join_all", "spindle.race",
                        "spindle.test", "spindle.net.udp", "spindle.fs.open",
                        "spindle.http_server.serve"}) do
      assert.is_true(fns[n], n .. " not found by the walker")
    end
    assert.is_true(#api.functions >= 40)
    local stream = {}
    for _, m in ipairs(api.classes["spindle.stream"]) do stream[m] = true end
    assert.is_true(stream.read_line and stream.write and true)
    local p = {}
    for _, m in ipairs(api.classes["spindle.process"]) do p[m] = true end
    assert.is_true(p.wait and p.kill and true, "process methods behind __index")
    assert.is_truthy(api.classes["spindle.http.response"])
  end)

  it("has an entry for every module function and field", function()
    local missing = {}
    for _, list in ipairs({api.functions, api.fields}) do
      for _, name in ipairs(list) do
        if not has_function(ref, name) then missing[#missing + 1] = name end
      end
    end
    assert.same({}, missing)
  end)

  it("has an entry for every method of every public class", function()
    local missing = {}
    for class, methods in pairs(api.classes) do
      if not ref.private[class] then
        if #methods == 0 then
          if not ref.text:find("`" .. class .. "`", 1, true) then
            missing[#missing + 1] = class
          end
        elseif not ref.methods[class] then
          missing[#missing + 1] = class .. " (no section)"
        else
          for _, m in ipairs(methods) do
            if not ref.methods[class][m] then missing[#missing + 1] = class .. ":" .. m end
          end
        end
      end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)

  it("documents no method that does not exist", function()
    local extra = {}
    for class, methods in pairs(ref.methods) do
      local real = api.classes[class]
      if not real then
        extra[#extra + 1] = class .. " (no such class)"
      else
        local set = {}
        for _, m in ipairs(real) do set[m] = true end
        for m in pairs(methods) do
          if not set[m] then extra[#extra + 1] = class .. ":" .. m end
        end
      end
    end
    table.sort(extra)
    assert.same({}, extra)
  end)
end)
