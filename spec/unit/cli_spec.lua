-- owinlua's command line (lua/owin/cli.lua): owin.cli.parse(argv, getenv)
-- and owin.cli.usage(), in plain Lua without the C core.  The environment is
-- a table handed in as getenv, so the real one never leaks in.
--
--   busted --lua=lua5.4 spec/unit/cli_spec.lua

local cli = require("owin.cli")

local K, M, G = 1024, 1024 * 1024, 1024 * 1024 * 1024

-- A value of each option kind that differs from every default.
local SAMPLE = { list = "h:1", size = "3k", int = "3", seconds = "3",
                 level = "debug", string = "s", flag = "1", workers = "3" }

-- A value of option o's kind that differs from its default.
local function sample(o)
  if o[3] == "flag" then return o[4] and "0" or "1" end
  if o[3] == "choice" then                      -- the last choice that is not the default
    for i = #o[6], 1, -1 do
      if o[6][i] ~= o[4] then return o[6][i] end
    end
  end
  return SAMPLE[o[3]]
end

-- parse(argv, env_table) -> opts, app  or  nil, err
local function parse(argv, environ)
  environ = environ or {}
  return cli.parse(argv, function(name) return environ[name] end)
end

-- The error parse returns; fails the test when parse succeeds.
local function parse_error(argv, environ)
  local opts, err = parse(argv, environ)
  assert.is_nil(opts, "expected parse to fail")
  assert.is_string(err)
  return err
end

describe("owin.cli.parse #unit", function()
  describe("defaults", function()
    it("gives every option its documented default", function()
      local opts, app = parse({})
      assert.is_nil(app)
      assert.are.same({ "127.0.0.1:8080" }, opts.listen)
      assert.are.equal(32 * K, opts["max-header-bytes"])
      assert.are.equal(100, opts["max-headers"])
      assert.are.equal(8 * K, opts["max-target"])
      assert.are.equal(32 * M, opts["max-body"])
      assert.are.equal(30, opts["header-timeout"])
      assert.are.equal(60, opts["body-timeout"])
      assert.are.equal(75, opts["keepalive-timeout"])
      assert.are.equal(10000, opts["max-connections"])
      assert.are.equal(30, opts["graceful-timeout"])
      assert.are.equal(511, opts.backlog)
      assert.are.equal("owinlua", opts["server-header"])
      assert.are.equal("info", opts["log-level"])
      assert.is_false(opts.dev)
      assert.is_false(opts.check)
      assert.is_false(opts.help)
      assert.is_false(opts.version)
    end)

    it("sets a value for every option in OPTIONS that has a default, and nothing else", function()
      local opts = parse({})
      local names = {}
      for _, o in ipairs(cli.OPTIONS) do
        names[o[1]] = true
        if o[4] ~= nil or o[3] == "list" then
          assert.is_not_nil(opts[o[1]], "no default for --" .. o[1])
        else
          assert.is_nil(opts[o[1]], "--" .. o[1] .. " has no default: unset")
        end
      end
      for k in pairs(opts) do
        assert.is_true(names[k], "unexpected option key " .. tostring(k))
      end
    end)

    it("gives sizes as integers", function()
      local opts = parse({})
      assert.are.equal("integer", math.type(opts["max-body"]))
      assert.are.equal("integer", math.type(opts["max-header-bytes"]))
    end)
  end)

  describe("command-line syntax", function()
    it("takes --opt value", function()
      assert.are.equal(7, parse({ "--max-headers", "7" })["max-headers"])
    end)

    it("takes --opt=value", function()
      assert.are.equal(7, parse({ "--max-headers=7" })["max-headers"])
    end)

    it("keeps everything after the first = as the value", function()
      assert.are.equal("a=b", parse({ "--server-header=a=b" })["server-header"])
    end)

    it("takes an empty value with --opt=", function()
      assert.are.equal("", parse({ "--server-header=" })["server-header"])
    end)

    it("lets a later option override an earlier one", function()
      assert.are.equal(2 * K, parse({ "--max-body", "1k", "--max-body=2k" })["max-body"])
    end)

    it("takes the app script among the options", function()
      local opts, app = parse({ "--dev", "app.lua", "--max-body", "1k" })
      assert.are.equal("app.lua", app)
      assert.is_true(opts.dev)
      assert.are.equal(K, opts["max-body"])
    end)

    it("turns flags on without consuming the next argument", function()
      local opts, app = parse({ "--check", "app.lua" })
      assert.is_true(opts.check)
      assert.are.equal("app.lua", app)
    end)

    it("accepts --flag=1/0 and true/false", function()
      assert.is_true(parse({ "--dev=1" }).dev)
      assert.is_false(parse({ "--dev=0" }).dev)
      assert.is_true(parse({ "--dev=true" }).dev)
      assert.is_false(parse({ "--dev=false" }).dev)
    end)

    it("knows -h as --help", function()
      assert.is_true(parse({ "-h" }).help)
      assert.is_true(parse({ "--help" }).help)
      assert.is_true(parse({ "--version" }).version)
    end)
  end)

  describe("sizes", function()
    local cases = {
      { "65536", 65536 }, { "0", 0 }, { "1k", K }, { "64k", 64 * K }, { "64K", 64 * K },
      { "1m", M }, { "32M", 32 * M }, { "1g", G }, { "2G", 2 * G }, { "1kb", K }, { "1KiB", K },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " is " .. c[2] .. " bytes", function()
        local v = parse({ "--max-body", c[1] })["max-body"]
        assert.are.equal(c[2], v)
        assert.are.equal("integer", math.type(v))
      end)
    end

    for _, bad in ipairs({ "lots", "1x", "-1", "1.5k", "k", "", "1 t" }) do
      it("refuses '" .. bad .. "', naming the option", function()
        local err = parse_error({ "--max-body", bad })
        assert.matches("--max-body", err, 1, true)
        assert.matches("'" .. bad .. "'", err, 1, true)
      end)
    end

    it("applies to every size option", function()
      local opts = parse({ "--max-header-bytes=16k", "--max-target", "2k" })
      assert.are.equal(16 * K, opts["max-header-bytes"])
      assert.are.equal(2 * K, opts["max-target"])
    end)
  end)

  describe("seconds", function()
    it("takes whole and fractional seconds", function()
      assert.are.equal(5, parse({ "--header-timeout", "5" })["header-timeout"])
      assert.are.equal(0.25, parse({ "--body-timeout=0.25" })["body-timeout"])
      assert.are.equal(0, parse({ "--graceful-timeout", "0" })["graceful-timeout"])
    end)

    for _, bad in ipairs({ "soon", "-1", "5s", "" }) do
      it("refuses '" .. bad .. "', naming the option", function()
        local err = parse_error({ "--keepalive-timeout", bad })
        assert.matches("--keepalive-timeout", err, 1, true)
      end)
    end
  end)

  describe("other kinds", function()
    it("takes whole numbers for counts and refuses the rest", function()
      assert.are.equal(50, parse({ "--max-connections", "50" })["max-connections"])
      assert.matches("--backlog", parse_error({ "--backlog", "2.5" }), 1, true)
      assert.matches("--backlog", parse_error({ "--backlog", "-3" }), 1, true)
      assert.matches("--max-headers", parse_error({ "--max-headers", "many" }), 1, true)
    end)

    it("takes the four log levels and refuses others", function()
      for _, level in ipairs({ "debug", "info", "warn", "error" }) do
        assert.are.equal(level, parse({ "--log-level", level })["log-level"])
      end
      assert.matches("--log-level", parse_error({ "--log-level=verbose" }), 1, true)
    end)

    it("refuses a flag value that is not 1/0", function()
      assert.matches("--dev", parse_error({ "--dev=maybe" }), 1, true)
    end)
  end)

  describe("--listen", function()
    it("can be repeated, replacing the default", function()
      local opts = parse({ "--listen", "127.0.0.1:0", "--listen=[::1]:8081", "--listen", "unix:/tmp/s" })
      assert.are.same({ "127.0.0.1:0", "[::1]:8081", "unix:/tmp/s" }, opts.listen)
    end)

    it("keeps the default when not given", function()
      assert.are.same({ "127.0.0.1:8080" }, parse({ "app.lua" }).listen)
    end)
  end)

  describe("OWINLUA_* environment variables", function()
    it("set sizes: OWINLUA_MAX_BODY=1k", function()
      assert.are.equal(K, parse({}, { OWINLUA_MAX_BODY = "1k" })["max-body"])
    end)

    it("set lists: OWINLUA_LISTEN=\"a:1,b:2\"", function()
      assert.are.same({ "a:1", "b:2" }, parse({}, { OWINLUA_LISTEN = "a:1,b:2" }).listen)
      assert.are.same({ "a:1", "b:2" }, parse({}, { OWINLUA_LISTEN = "a:1, b:2" }).listen)
    end)

    it("never leave the server with no address: an empty OWINLUA_LISTEN is the default or an error", function()
      -- owinlua would otherwise bind nothing, print nothing and exit 0.
      for _, value in ipairs({ "", ",", " " }) do
        local opts, err = parse({}, { OWINLUA_LISTEN = value })
        if opts then
          assert.is_true(#opts.listen > 0, "OWINLUA_LISTEN='" .. value .. "' left no address")
        else
          assert.matches("OWINLUA_LISTEN", err, 1, true)
        end
      end
    end)

    it("set flags: OWINLUA_DEV=1 / 0", function()
      assert.is_true(parse({}, { OWINLUA_DEV = "1" }).dev)
      assert.is_false(parse({}, { OWINLUA_DEV = "0" }).dev)
    end)

    it("map dashes to underscores: OWINLUA_KEEPALIVE_TIMEOUT, OWINLUA_SERVER_HEADER", function()
      local opts = parse({}, { OWINLUA_KEEPALIVE_TIMEOUT = "5", OWINLUA_SERVER_HEADER = "x" })
      assert.are.equal(5, opts["keepalive-timeout"])
      assert.are.equal("x", opts["server-header"])
    end)

    it("exist for every option that takes a value", function()
      for _, o in ipairs(cli.OPTIONS) do
        local var = "OWINLUA_" .. o[1]:upper():gsub("-", "_")
        local opts = parse({}, { [var] = sample(o) })
        if o[1] ~= "help" and o[1] ~= "version" then
          assert.are_not.same(parse({})[o[1]], opts[o[1]], var .. " had no effect")
        end
      end
    end)

    it("lose to the command line", function()
      local environ = { OWINLUA_MAX_BODY = "1k", OWINLUA_LISTEN = "a:1,b:2", OWINLUA_DEV = "1" }
      local opts = parse({ "--max-body", "2k", "--listen", "c:3", "--dev=0" }, environ)
      assert.are.equal(2 * K, opts["max-body"])
      assert.are.same({ "c:3" }, opts.listen)
      assert.is_false(opts.dev)
    end)

    it("fill in what the command line leaves out", function()
      local opts = parse({ "--max-body", "2k" }, { OWINLUA_MAX_HEADERS = "9" })
      assert.are.equal(2 * K, opts["max-body"])
      assert.are.equal(9, opts["max-headers"])
    end)

    it("refuse a choice not offered, naming those that are", function()
      assert.equal("--tls-min-version expects 1.2 or 1.3, got '1.1'",
        parse_error({ "--tls-min-version", "1.1" }))
      assert.matches("OWINLUA_TLS_CLIENT_CERT", parse_error({}, { OWINLUA_TLS_CLIENT_CERT = "maybe" }),
        1, true)
    end)

    it("give errors that name the option and the variable", function()
      local err = parse_error({}, { OWINLUA_MAX_BODY = "lots" })
      assert.matches("--max-body", err, 1, true)
      assert.matches("OWINLUA_MAX_BODY", err, 1, true)
      err = parse_error({}, { OWINLUA_DEV = "perhaps" })
      assert.matches("OWINLUA_DEV", err, 1, true)
    end)

    it("read os.getenv when no getenv is given", function()
      assert.is_table((cli.parse({ "--max-body", "1k" })))
    end)
  end)

  describe("--workers and --reload", function()
    it("default to one process without reloading", function()
      local opts = parse({})
      assert.are.equal(1, opts.workers)
      assert.is_false(opts.reload)
    end)

    it("take a count, auto, or OWINLUA_WORKERS", function()
      assert.are.equal(4, parse({ "--workers", "4" }).workers)
      assert.are.equal("auto", parse({ "--workers=auto" }).workers)
      assert.are.equal("auto", parse({ "--workers", "AUTO" }).workers)
      assert.are.equal(3, parse({}, { OWINLUA_WORKERS = "3" }).workers)
      assert.is_true(parse({ "--reload" }).reload)
      assert.is_true(parse({}, { OWINLUA_RELOAD = "1" }).reload)
    end)

    it("refuse counts below 1 or above 512, and words", function()
      for _, bad in ipairs({ "0", "-1", "513", "many", "1.5", "" }) do
        local err = parse_error({ "--workers", bad })
        assert.matches("--workers expects a number from 1 to 512 or auto", err, 1, true)
      end
      assert.matches("OWINLUA_WORKERS", parse_error({}, { OWINLUA_WORKERS = "x" }), 1, true)
    end)
  end)

  describe("errors", function()
    it("names an unknown option", function()
      local err = parse_error({ "--nope" })
      assert.matches("unknown option --nope", err, 1, true)
      assert.matches("unknown option --frobnicate", parse_error({ "--frobnicate=1" }), 1, true)
    end)

    it("names an option whose value is missing", function()
      assert.matches("--max-body needs a value", parse_error({ "--max-body" }), 1, true)
      assert.matches("--listen needs a value", parse_error({ "app.lua", "--listen" }), 1, true)
    end)

    it("takes exactly one app script", function()
      local err = parse_error({ "a.lua", "b.lua" })
      assert.matches("'b.lua'", err, 1, true)
      assert.matches("one app script", err, 1, true)
      local _, app = parse({ "a.lua" })
      assert.are.equal("a.lua", app)
    end)

    it("returns nil, err rather than raising", function()
      local ok, opts, err = pcall(parse, { "--nope" })
      assert.is_true(ok)
      assert.is_nil(opts)
      assert.is_string(err)
    end)
  end)
end)

describe("owin.cli.usage #unit", function()
  local text = cli.usage()

  it("starts with the usage line", function()
    assert.matches("^usage: owinlua %[options%] app%.lua\n", text)
  end)

  for _, o in ipairs(cli.OPTIONS) do
    local name = o[1]
    local var = "OWINLUA_" .. name:upper():gsub("-", "_")
    -- usage shows the variable exactly when parse reads it
    local default, from_var = parse({})[name], parse({}, { [var] = sample(o) })[name]
    if type(default) == "table" then default, from_var = table.concat(default, ","), table.concat(from_var, ",") end
    local reads_var = default ~= from_var
    it("mentions --" .. name .. (reads_var and (" and " .. var) or (" (no " .. var .. ")")), function()
      local line = text:match("\n(  %-%-" .. name:gsub("%-", "%%-") .. "[ \n][^\n]*)")
      assert.is_string(line, "--" .. name .. " is not listed")
      if reads_var then
        assert.matches(var, line, 1, true)
      else
        assert.is_nil(text:find(var, 1, true), var .. " is shown but parse ignores it")
      end
    end)
  end

  it("shows each default", function()
    for _, o in ipairs(cli.OPTIONS) do
      if o[3] ~= "flag" and o[4] ~= nil then
        assert.matches("(default: " .. tostring(o[4]) .. ")", text, 1, true)
      end
    end
  end)

  it("ends with a newline", function()
    assert.are.equal("\n", text:sub(-1))
  end)
end)

describe("owin.cli.usage #unit: --listen", function()
  local text = cli.usage()

  it("says what localhost:PORT and :PORT stand for", function()
    assert.matches("localhost:PORT%s+the loopback addresses: 127%.0%.0%.1 and %[::1%]", text)
    assert.matches("\n%s+:PORT%s+every interface: 0%.0%.0%.0 and %[::%]", text)
    assert.matches("other host names are refused", text, 1, true)
  end)

  it("says what SIGHUP does without workers", function()
    assert.matches("Without\n--workers or --reload, SIGHUP reloads the TLS certificates and keys",
      text, 1, true)
  end)
end)

describe("owin.cli.check_listen #unit", function()
  -- the C core's check, as a stub: every spec but "bad" passes
  local core = { check_listen = function(spec)
    if spec == "bad" then return nil, "invalid listen address 'bad'" end
    return true
  end }

  it("checks every address and returns the first error", function()
    assert.is_true(cli.check_listen({ "a:1", "localhost:2" }, core))
    local ok, err = cli.check_listen({ "a:1", "bad", "c:3" }, core)
    assert.is_nil(ok)
    assert.equal("invalid listen address 'bad'", err)
  end)
end)

describe("owin.cli.load_app #unit: errors", function()
  local function tmpfile(text)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    return path
  end

  it("say a missing file is missing", function()
    local app, err = cli.load_app("/nonexistent/app.lua")
    assert.is_nil(app)
    assert.equal("cannot load /nonexistent/app.lua: no such file", err)
  end)

  it("say a directory is not a script", function()
    local app, err = cli.load_app("spec")
    assert.is_nil(app)
    assert.equal("cannot load spec: it is a directory, not a Lua script", err)
  end)

  it("give a syntax error's line and message", function()
    local path = tmpfile("local x = (\n")
    finally(function() os.remove(path) end)
    local app, err = cli.load_app(path)
    assert.is_nil(app)
    assert.equal("cannot load " .. path .. ": syntax error on line 2: unexpected symbol near <eof>", err)
  end)

  it("give the script's error and its traceback, not the loader's frames", function()
    local path = tmpfile("error('no config')\n")
    finally(function() os.remove(path) end)
    local app, err = cli.load_app(path)
    assert.is_nil(app)
    assert.matches("^error while loading " .. path:gsub("%p", "%%%0") .. ": " .. path:gsub("%p", "%%%0") ..
      ":1: no config\nstack traceback:\n", err)
    assert.matches("in main chunk$", err)
  end)

  it("leave a readable script alone", function()
    assert.is_nil(cli.unreadable("apps/hello.lua"))
  end)
end)
