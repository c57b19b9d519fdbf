rockspec_format = "3.0"
package = "spindle"
version = "scm-1"

source = {
  url = "git+https://github.com/spindle-lua/spindle.git",
  branch = "main",
}

description = {
  summary = "An async runtime for Lua 5.4, in C on libuv",
  detailed = [[
Tasks are Lua coroutines scheduled by a C executor on libuv: spawn, join,
abort with <close> unwinding, sleeps, timeouts, and non-blocking I/O,
TLS included (OpenSSL 3).
Also installs the `spindle` command.]],
  license = "MIT",
  homepage = "https://github.com/spindle-lua/spindle",
}

dependencies = {
  "lua >= 5.4, < 5.5",
}

external_dependencies = {
  LIBUV = {
    header = "uv.h",
    library = "uv",
  },
  -- The HTTP client of spindle.http (Debian: libcurl4-openssl-dev).
  CURL = {
    library = "curl",
  },
  -- spindle.tls: OpenSSL >= 3.0 (Debian libssl-dev); CMake finds it with
  -- pkg-config.
  OPENSSL = {
    header = "openssl/ssl.h",
    library = "ssl",
  },
}

build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LUA_CMOD_DIR = "$(LIBDIR)",
    LUA_LMOD_DIR = "$(LUADIR)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    CMAKE_PREFIX_PATH = "$(LIBUV_DIR);$(CURL_DIR)",
    -- A user's compiler may warn where gcc 12 does not; CI builds with
    -- -Werror separately. No C tests in the rock; the header, archive and
    -- spindle.pc would land in the Lua cpath, so they stay out too.
    SPINDLE_WERROR = "OFF",
    SPINDLE_BUILD_TESTS = "OFF",
    SPINDLE_INSTALL_DEV = "OFF",
  },
  -- Into the rock's directory (luarocks show --rock-dir spindle): the
  -- documentation, and the LuaLS stubs (point "workspace.library" at
  -- <rock dir>/types).
  copy_directories = {"docs", "types"},
}
