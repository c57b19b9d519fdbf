-- spec/helpers/public_api.lua -- walks spindle's public surface, for the
-- checks that docs/reference.md and the LuaLS stubs (types/) name every
-- public function and method (spec/60-reference_spec.lua,
-- spec/61-stubs_spec.lua).
--
--   local api = dofile("spec/helpers/public_api.lua")()
--   api.functions  -- {"spindle.sleep", "spindle.net.connect", ...}
--   api.fields     -- {"spindle._VERSION", "spindle.version"} (non-functions)
--   api.classes    -- {["spindle.stream"] = {"close", "read", ...}, ...}
--
-- Module tables: `spindle` (after forcing the lazy fields join_all, race
-- and test), every table in it, and the Lua modules spindle.http_server
-- and, when they load, spindle.http, spindle.tls, spindle.socket and
-- spindle.socket.ssl. Names
-- starting with "_" are private, except _VERSION.
--
-- Classes: every metatable in the registry whose __name starts with
-- "spindle." (C classes are made with luaL_newmetatable), methods taken
-- from __index (a table, or the table upvalue of an __index function, as
-- spindle.process has) or from a `methods` table in the metatable (an
-- __index function that makes fields, as spindle.http.request has); plus
-- the Lua class of the HTTP server ("spindle.http.server"), whose instance
-- is obtained by serving one request on loopback;
-- and those of spindle.socket: "spindle.socket.tcp" and
-- "spindle.socket.ssl.connection".
local spindle = require "spindle"

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function methods_of(mt, out)
  out = out or {}
  local function add(t)
    for k, v in pairs(t) do
      if type(k) == "string" and type(v) == "function" and not k:match("^_") then
        out[k] = true
      end
    end
  end
  local idx = rawget(mt, "__index")
  if type(idx) == "table" then
    add(idx)
  elseif type(idx) == "function" then
    for i = 1, 255 do
      local name, v = debug.getupvalue(idx, i)
      if name == nil then break end
      if type(v) == "table" and v ~= mt and name ~= "_ENV" then add(v) end
    end
  end
  local m = rawget(mt, "methods")
  if type(m) == "table" then add(m) end
  -- Lua classes keep their methods in the metatable itself.
  if rawget(mt, "__name") == nil then add(mt) end
  return out
end

return function()
  local api = {functions = {}, fields = {}, classes = {}}

  -- Lazy fields: reading them loads them.
  local _ = spindle.join_all, spindle.race, spindle.test

  local seen = {}
  local function walk(prefix, t)
    if seen[t] then return end
    seen[t] = true
    for _, k in ipairs(sorted_keys(t)) do
      local v = t[k]
      if type(k) == "string" and (not k:match("^_") or k == "_VERSION") then
        local name = prefix .. "." .. k
        if type(v) == "function" then
          api.functions[#api.functions + 1] = name
        elseif type(v) == "table" then
          walk(name, v)
        else
          api.fields[#api.fields + 1] = name
        end
      end
    end
  end
  walk("spindle", spindle)
  for _, mod in ipairs({"spindle.http_server", "spindle.http", "spindle.tls",
                        "spindle.socket", "spindle.socket.ssl"}) do
    local ok, m = pcall(require, mod)
    if ok and type(m) == "table" and not seen[m] then walk(mod, m) end
  end

  -- C classes, from the registry.
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "string" and k:match("^spindle%.") and type(v) == "table"
        and rawget(v, "__name") == k then
      api.classes[k] = methods_of(v)
    end
  end

  -- LuaSocket's shapes (spindle.socket), from live instances: TCP objects
  -- (master, client and server share one method table), LuaSec's
  -- connections (their own methods; the rest are the TCP client's).
  local has_socket, socket = pcall(require, "spindle.socket")
  if has_socket then
    spindle.run(function()
      local t <close> = socket.tcp()
      api.classes["spindle.socket.tcp"] = methods_of(getmetatable(t))
      local srv <close> = assert(spindle.net.listen("127.0.0.1", 0))
      local c = assert(socket.connect(srv:local_addr()))
      local conn <close> = assert(socket.ssl.wrap(c, {mode = "client", protocol = "any"}))
      api.classes["spindle.socket.ssl.connection"] = methods_of(getmetatable(conn))
      c:close()
    end)
  end

  -- The HTTP server's classes (the server Lua, request and response C),
  -- from live instances.
  local serve = require("spindle.http_server").serve
  spindle.run(function()
    local got = {}
    local srv <close> = assert(serve{host = "127.0.0.1", port = 0,
      handler = function(req, res)
        got.req, got.res = getmetatable(req), getmetatable(res)
        return 204
      end})
    got.srv = getmetatable(srv)
    local s <close> = assert(spindle.net.connect(srv:local_addr()))
    s:write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    s:read_all()
    api.classes["spindle.http.server"] = methods_of(got.srv)
    api.classes["spindle.http.request"] = methods_of(got.req)
    api.classes["spindle.http.response"] = methods_of(got.res)
  end)

  for name, set in pairs(api.classes) do api.classes[name] = sorted_keys(set) end
  table.sort(api.functions)
  table.sort(api.fields)
  return api
end
