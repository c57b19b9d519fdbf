-- spec/61-stubs_spec.lua -- the LuaLS stubs in types/ (installed with the
-- rock) declare every public function, field, class and method that
-- spec/helpers/public_api.lua finds, and they load as Lua.
--
-- Stub conventions the check reads:
--   * each file starts with `---@meta <module>`; the core module's file
--     declares `function spindle.net.connect(...)`; a submodule's file
--     uses a local named after the module's last part
--     (`function socket.dns.toip(...)` in `---@meta spindle.socket`);
--     fields whose names are not identifiers: `t["keep-open"] = function`;
--   * module fields that are not functions: `---@field <name>` in the
--     module's file;
--   * a class: `---@class <name>` then `local x = {}` and methods
--     `function x:method(...)`; a class without methods: its @class line.
-- Classes listed under "Not public" in docs/reference.md need no stub.
local H = dofile("spec/helpers/init.lua")
local _ = H
local walk = dofile("spec/helpers/public_api.lua")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function stub_files()
  local p = assert(io.popen("find types -name '*.lua' | sort"))
  local files = {}
  for line in p:lines() do files[#files + 1] = line end
  p:close()
  return files
end

local function parse_stubs()
  local st = {functions = {}, fields = {}, classes = {}, files = {}}
  for _, path in ipairs(stub_files()) do
    local text = read(path)
    local mod = assert(text:match("^%-%-%-@meta ([%w_.]+)"), path .. ": no ---@meta line")
    st.files[#st.files + 1] = path
    local last = mod:match("([%w_]+)$")
    local function full(name) -- "socket.dns.toip" -> "spindle.socket.dns.toip"
      if name == last then return mod end
      if name:sub(1, #last + 1) == last .. "." then return mod .. name:sub(#last + 1) end
      return nil
    end
    -- pending: the @class whose annotation block we are in; the first
    -- class of a file is the module's own (its @field lines are fields).
    local pending, first, alias = nil, nil, {}
    for line in (text .. "\n"):gmatch("(.-)\n") do
      local cls = line:match("^%-%-%-@class ([%w_.]+)")
      if cls then
        st.classes[cls] = st.classes[cls] or {}
        pending, first = cls, first or cls
      else
        local field = line:match("^%-%-%-@field ([%w_]+)")
        if field and pending and pending == first then
          st.fields[mod .. "." .. field] = true
        end
        local loc = line:match("^local ([%w_]+) = {}")
        if loc and pending then alias[loc] = pending end
        if not line:match("^%-%-%-") then pending = nil end
        local obj, m = line:match("^function ([%w_]+):([%w_]+)%(")
        if obj and alias[obj] then st.classes[alias[obj]][m] = true end
        local fn = line:match("^function ([%w_.]+)%(")
        if fn and full(fn) then st.functions[full(fn)] = true end
        local t, key = line:match('^([%w_.]+)%["([^"]+)"%]%s*=%s*function')
        if t and full(t) then st.functions[full(t) .. "." .. key] = true end
        local f2 = line:match("^([%w_.]+)%s*=%s*function")
        if f2 and full(f2) then st.functions[full(f2)] = true end
      end
    end
  end
  return st
end

local function private_classes()
  local text, private, inside = read("docs/reference.md"), {}, false
  for line in (text .. "\n"):gmatch("(.-)\n") do
    local heading = line:match("^##+%s+(.*)$")
    if heading then inside = heading:match("^Not public") ~= nil
    elseif inside then
      for name in line:gmatch("`(spindle%.[%w_.*]+)`") do private[name] = true end
    end
  end
  return private
end

describe("types/ (LuaLS stubs)", function()
  local api = walk()
  local st = parse_stubs()
  local private = private_classes()

  it("load as Lua 5.4 and start with ---@meta", function()
    assert.is_true(#st.files >= 4)
    for _, path in ipairs(st.files) do
      assert(loadfile(path))
    end
  end)

  it("declare every module function", function()
    local missing = {}
    for _, name in ipairs(api.functions) do
      if not st.functions[name] then missing[#missing + 1] = name end
    end
    assert.same({}, missing)
  end)

  it("declare every module field", function()
    local missing = {}
    for _, name in ipairs(api.fields) do
      if not st.fields[name] then missing[#missing + 1] = name end
    end
    assert.same({}, missing)
  end)

  it("declare every public class and its methods", function()
    local missing = {}
    for class, methods in pairs(api.classes) do
      if not private[class] then
        if not st.classes[class] then
          missing[#missing + 1] = class
        else
          for _, m in ipairs(methods) do
            if not st.classes[class][m] then missing[#missing + 1] = class .. ":" .. m end
          end
        end
      end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)

  -- Without lua-language-server on the machine, a check of our own: every
  -- qualified name `spindle.x.y` used in examples/ and the guide is one
  -- the stubs declare (a function, a field, or a module table holding
  -- them), so a misspelt or undeclared name in them fails here.
  it("declare every spindle.* name used in examples/ and docs/guide/", function()
    local known = {}
    for _, set in ipairs({st.functions, st.fields}) do
      for name in pairs(set) do
        known[name] = true
        local prefix = name
        while true do
          prefix = prefix:match("^(.*)%.[^.]+$")
          if not prefix then break end
          known[prefix] = true
        end
      end
    end
    local p = assert(io.popen("find examples docs/guide -name '*.lua' -o -name '*.md' | sort"))
    local unknown, files = {}, 0
    for path in p:lines() do
      files = files + 1
      local text = read(path)
      for name in text:gmatch("%f[%w_.]spindle%.[%a_][%w_]*[%w_.]*") do
        name = name:gsub("%.$", "")
        local mod = name:match("^spindle%.(%a+)_server$") -- require("spindle.http_server")
        if not known[name] and not mod and not name:match("^spindle%.[hso]o?$") then -- spindle.h, spindle.so
          unknown[#unknown + 1] = path .. ": " .. name
        end
      end
    end
    p:close()
    assert.is_true(files >= 10)
    table.sort(unknown)
    assert.same({}, unknown)
  end)

  it("declare the options tables", function()
    for _, cls in ipairs({"spindle.runtime.opts", "spindle.test.opts",
                          "spindle.net.listen.opts", "spindle.net.connect.opts",
                          "spindle.process.run.opts", "spindle.process.spawn.opts",
                          "spindle.tls.context.opts", "spindle.tls.connect.opts",
                          "spindle.http.serve.opts", "spindle.socket.ssl.params"}) do
      assert.is_truthy(st.classes[cls], cls)
    end
  end)
end)
