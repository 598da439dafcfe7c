-- owin.template: HTML templates compiled once to Lua functions
-- (docs/templates.md), in the syntax of EJS, ERB and etlua.
--
--   local template = require("owin.template")
--   local views = template.new({ root = "views" })   -- beside the calling file
--   local html = views:render("index", { user = user })
--
--   <%= expr %>   the value, HTML-escaped (& < > " ')
--   <%- expr %>   the value as it is (HTML that is trusted)
--   <% code %>    Lua statements: if, for, local, function ... end
--   <%# note %>   a comment, never output;  <%% writes "<%"
--   -%>           ends a tag and eats the newline right after it
--
-- A template is compiled to one Lua chunk, whose lines are the template's
-- lines: every newline of the template is a newline of the chunk, at the
-- same place (text goes in with %q, which keeps its newlines as newlines;
-- glue never adds one).  So Lua's own messages, syntax errors from load()
-- and runtime errors alike, and tracebacks, name the template's file and
-- line with no table to map them back.
--
-- The chunk runs in a sandbox: its _ENV is a fresh table per render with the
-- locals, and reads fall back to the engine's globals and then to a frozen
-- safe subset of Lua's (no _G, load, require, io, os.execute, debug,
-- getmetatable, rawset...).  Assignments land in that table and die with
-- the render.  The sandbox limits what a template can reach; it does not
-- limit CPU or memory, and whatever the app passes in (locals, globals) is
-- reachable.
--
-- Misuse raises (a bad name or option); a template that is missing, does
-- not compile or fails while it runs raises too, with the template's
-- file:line in the message: these are bugs in the app, not conditions of
-- the request.

local type, tostring, error, pairs, setmetatable, getmetatable, load =
  type, tostring, error, pairs, setmetatable, getmetatable, load
local string_byte, string_find, string_format, string_gsub, string_match, string_sub =
  string.byte, string.find, string.format, string.gsub, string.match, string.sub
local table_concat, io_open, os_time = table.concat, io.open, os.time
local debug_getinfo = debug.getinfo
local package_loaded = package.loaded

-- The env key under which template.middleware/engine:middleware() leaves
-- the engine (ctx.response:render finds it there), and the per-request
-- locals (template.locals(env), Express's res.locals).
local ENGINE_KEY, LOCALS_KEY = "template.Engine", "template.Locals"

local MAX_DEPTH = 100          -- nested includes and layouts in one render

------------------------------------------------------------------------------
-- Values to text

local ESCAPES = {
  ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#x27;",
}

-- JSON null of the JSON libraries that are loaded (cjson.null, dkjson.null,
-- owin.json's null) renders as nil does.
local function is_null(v)
  for _, name in pairs({ "cjson", "dkjson", "owin.json" }) do
    local lib = package_loaded[name]
    if type(lib) == "table" and lib.null ~= nil and lib.null == v then return true end
  end
  return false
end

-- The text of a value: strings as they are, numbers and booleans through
-- tostring, nil and JSON null as "", a table or userdata with __tostring
-- through it.  Anything else raises at the template's line (level 3: the
-- template called __e or __r, which called this).
local function text(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" then return tostring(v) end
  if v == nil then return "" end
  if (t == "table" or t == "userdata") then
    if is_null(v) then return "" end
    local mt = getmetatable(v)
    if type(mt) == "table" and mt.__tostring then return tostring(v) end
  end
  error(string_format("cannot render a %s value (render one of its fields, or give it " ..
    "a __tostring metamethod)", t), 3)
end

-- escape(v) -> v as text with & < > " ' replaced by entities (OWASP's five:
-- enough for element content and quoted attribute values).
local function escape(v)
  local s = type(v) == "string" and v or text(v)
  if not string_find(s, "[&<>\"']") then return s end
  return (string_gsub(s, "[&<>\"']", ESCAPES))
end

-- What <%= %> and <%- %> call: __e escapes, __r does not.
local function out_escaped(v)
  if type(v) == "string" then
    if not string_find(v, "[&<>\"']") then return v end
    return (string_gsub(v, "[&<>\"']", ESCAPES))
  end
  local s = text(v)
  if not string_find(s, "[&<>\"']") then return s end
  return (string_gsub(s, "[&<>\"']", ESCAPES))
end

local function out_raw(v)
  if type(v) == "string" then return v end
  local s = text(v)                    -- not a tail call: text's level counts on it
  return s
end

------------------------------------------------------------------------------
-- The sandbox's globals: a frozen safe subset of Lua's

local function frozen(name, t)
  return setmetatable({}, {
    __index = t,
    __newindex = function(_, k)
      error(string_format("templates cannot change %s.%s", name, tostring(k)), 2)
    end,
    __metatable = false,
  })
end

local function pick(lib, names)
  local t = {}
  for name in names:gmatch("%S+") do t[name] = lib[name] end
  return t
end

local SAFE = {
  _VERSION = _VERSION,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
  pcall = pcall, select = select, tonumber = tonumber, tostring = tostring,
  type = type, xpcall = xpcall,
  string = frozen("string", pick(string, "byte char find format gmatch gsub len lower " ..
    "match pack packsize rep reverse sub unpack upper")),
  table = frozen("table", pick(table, "concat insert move pack remove sort unpack")),
  math = frozen("math", pick(math, "abs ceil cos exp floor fmod huge log max maxinteger " ..
    "min mininteger modf pi rad random sin sqrt tan tointeger type ult acos asin atan deg")),
  utf8 = frozen("utf8", pick(utf8, "char charpattern codes codepoint len offset")),
  os = frozen("os", pick(os, "clock date difftime time")),
}

------------------------------------------------------------------------------
-- The compiler: template text -> Lua source with the same lines

-- The position of a line comment ("--" not followed by a long bracket) that
-- runs to the end of `code`, or nil.  Such a comment would swallow the glue
-- that follows the code on the same line, so it is cut off.  Strings, long
-- strings and long comments are skipped; code that does not lex ends the
-- scan (load() reports it).
local function trailing_comment(code)
  local i = 1
  while true do
    local c = string_find(code, "[%-\"'%[]", i)
    if not c then return nil end
    local ch = string_sub(code, c, c)
    if ch == "-" then
      if string_sub(code, c + 1, c + 1) == "-" then
        local eq = string_match(code, "^%[(=*)%[", c + 2)
        if eq then
          local close = string_find(code, "]" .. eq .. "]", c + 2, true)
          if not close then return nil end
          i = close + #eq + 2
        else
          local nl = string_find(code, "\n", c + 2, true)
          if not nl then return c end
          i = nl + 1
        end
      else
        i = c + 1
      end
    elseif ch == "[" then
      local eq = string_match(code, "^%[(=*)%[", c)
      if eq then
        local close = string_find(code, "]" .. eq .. "]", c, true)
        if not close then return nil end
        i = close + #eq + 2
      else
        i = c + 1
      end
    else                                              -- a quoted string
      local j = c + 1
      while true do
        local k = string_find(code, ch == '"' and '[\\"\n]' or "[\\'\n]", j)
        if not k then return nil end
        local kc = string_sub(code, k, k)
        if kc == "\\" then
          j = k + 2
        elseif kc == "\n" then
          return nil
        else
          i = k + 1
          break
        end
      end
    end
  end
end

local function strip_comment(code)
  local c = trailing_comment(code)
  if c then return string_sub(code, 1, c - 1) end
  return code
end

local function count_lines(s, i, j)
  local _, n = string_gsub(string_sub(s, i, j), "\n", "")
  return n
end

local TAG_NAMES = { [61] = "<%=", [45] = "<%-", [35] = "<%#" }   -- = - #

-- translate(source, chunkname) -> Lua source, or nil, err.  The chunk takes
-- (_ENV, buffer, escape, raw) and appends the output's pieces to buffer.
-- An expression's value goes through __v first: in __b[#__b+1] = f(), Lua
-- computes #__b+1 before calling f, and a block() in f appends to __b.
local function translate(source, display)
  local parts = { "local _ENV, __b, __e, __r = ...; local __v; " }
  local n = 1
  local last_code = false
  local pos, len = 1, #source
  local function emit(s)
    n = n + 1
    parts[n] = s
  end
  local function emit_text(s)
    if s ~= "" then
      emit("__b[#__b+1]=" .. string_format("%q", s) .. " ")
      last_code = false
    end
  end
  while pos <= len do
    local s = string_find(source, "<%", pos, true)
    if not s then
      emit_text(string_sub(source, pos))
      break
    end
    if string_sub(source, s + 2, s + 2) == "%" then        -- <%% is a literal <%
      emit_text(string_sub(source, pos, s + 1))
      pos = s + 3
    else
      emit_text(string_sub(source, pos, s - 1))
      local kind = string_byte(source, s + 2)
      local first = TAG_NAMES[kind] and s + 3 or s + 2
      local e = string_find(source, "%>", first, true)
      if not e then
        return nil, string_format("%s:%d: %s is not closed (no %%> after it)", display,
          count_lines(source, 1, s) + 1, TAG_NAMES[kind] or "<%")
      end
      local body = string_sub(source, first, e - 1)
      local trim = false
      if string_sub(body, -1) == "-" and not (kind == 45 and body == "") then
        trim = true
        body = string_sub(body, 1, -2)
      end
      if kind == 35 then                                    -- <%# comment %>
        emit(string.rep("\n", count_lines(body, 1, -1)))
      elseif kind == 61 or kind == 45 then                  -- <%= %>, <%- %>
        if string_find(body, "^%s*$") then
          return nil, string_format("%s:%d: %s %%> holds no expression", display,
            count_lines(source, 1, s) + 1, TAG_NAMES[kind])
        end
        emit((kind == 61 and "__v=__e(" or "__v=__r(") ..
          strip_comment(body) .. ") __b[#__b+1]=__v ")
        last_code = false
      else                                                  -- <% code %>
        emit((last_code and ";" or "") .. strip_comment(body) .. " ")
        last_code = true
      end
      pos = e + 2
      if trim then
        if string_sub(source, pos, pos) == "\n" then
          emit("\n")
          pos = pos + 1
        elseif string_sub(source, pos, pos + 1) == "\r\n" then
          emit("\n")
          pos = pos + 2
        end
      end
    end
  end
  return table_concat(parts)
end

-- compile(source, display) -> the chunk, or nil, err (with display:line).
local function compile(source, display)
  if string_sub(source, 1, 3) == "\239\187\191" then source = string_sub(source, 4) end  -- BOM
  local code, err = translate(source, display)
  if not code then return nil, err end
  local fn
  fn, err = load(code, "@" .. display, "t", {})
  if not fn then
    -- the glue after a tag starts with __b or __v: say where the tag ended
    err = string_gsub(err, "near '__[bv]'", "near '%%>'")
    return nil, err
  end
  return fn
end

------------------------------------------------------------------------------
-- Names and files

-- A template name is a relative path under the root, "/"-separated, without
-- empty, "." or ".." segments; the engine's extension is added when the
-- last segment has no ".".
local function check_name(name)
  if type(name) ~= "string" then
    return nil, "a template name (string) expected, got " .. type(name)
  end
  if name == "" or string_find(name, "[%z\\]") or string_sub(name, 1, 1) == "/"
     or string_find("/" .. name .. "/", "/%.?%.?/") then
    return nil, string_format("bad template name %q (a relative path under the root, " ..
      "without empty, '.' or '..' segments)", name)
  end
  return name
end

local function read_file(path)
  local f, err = io_open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  if s == nil then return nil, path .. ": cannot read" end
  return s
end

-- The directory of the Lua file that called (level) as a path prefix ("" for
-- code that was not loaded from a file).
local function caller_dir(level)
  local info = debug_getinfo(level + 1, "S")
  local src = info and info.source or ""
  if string_sub(src, 1, 1) ~= "@" then return "" end
  return string_match(string_sub(src, 2), "^(.*/)") or ""
end

------------------------------------------------------------------------------
-- Engines

local Engine = {}
Engine.__index = Engine

-- The compiled template for `name`, from the cache when it is up to date;
-- or nil, err, kind: "name" (a bad name), "missing" (no such file) or
-- "syntax" (it does not compile; err names the file and line).
local function load_template(self, name)
  local ok, err = check_name(name)
  if not ok then return nil, err, "name" end
  local file = name
  if not string_find(string_match(name, "[^/]*$"), ".", 1, true) then
    file = name .. self.extension
  end
  local path = self.root .. file
  local cache = self.cache
  local entry = cache[path]
  if entry then
    if not self.reload then return entry end
    local stat = self.stat
    if stat then
      local st = stat(path)
      if st and st.mtime == entry.mtime and st.size == entry.size then
        if not entry.racy then return entry end
        -- Changed in the second it was read (mtime has whole seconds):
        -- compare the text until that second is over.
        local src = read_file(path)
        if src == entry.source then
          if os_time() > st.mtime then entry.racy, entry.source = false, nil end
          return entry
        end
      end
    else
      local src = read_file(path)
      if src == entry.source then return entry end
    end
    cache[path] = nil
  end
  local st = self.stat and self.reload and self.stat(path)
  local source, rerr = read_file(path)
  if not source then
    return nil, string_format("template %q not found (%s)", name, tostring(rerr)), "missing"
  end
  local fn, cerr = compile(source, path)
  if not fn then return nil, cerr, "syntax" end
  entry = { fn = fn, name = name }
  if self.reload then
    if st then
      entry.mtime, entry.size = st.mtime, st.size
      entry.racy = st.mtime >= os_time()
      if entry.racy then entry.source = source end
    else
      entry.source = source
    end
  end
  cache[path] = entry
  return entry
end

-- Copies the pairs of t into into (t may be nil).
local function merge(into, t)
  if t ~= nil then
    for k, v in pairs(t) do into[k] = v end
  end
  return into
end

-- Restores the render state's current frame when a template's run ends, by
-- return or by error.
local frame_mt = {
  __close = function(frame)
    local state = frame.state
    state.frame = frame.parent
    state.depth = state.depth - 1
  end,
}

local execute

-- The HTML of a block's content: a function's output captured (it writes
-- to the buffer of the template that defined it, the current one), a
-- string escaped, nil as "".
local function capture(state, content)
  if content == nil then return "" end
  if type(content) == "function" then
    local buf = state.frame.buf
    local m = #buf
    content()
    local n = #buf
    local s = table_concat(buf, "", m + 1, n)
    for i = n, m + 1, -1 do buf[i] = nil end
    return s
  end
  return out_escaped(content)
end

-- The per-render helpers every template sees: include, layout and block.
local function helpers(state)
  local engine = state.engine

  -- include(name, locals) -> the partial's HTML (write it with <%- %>).
  -- The partial sees the including template's locals (not what it
  -- assigned) and these over them.
  function state.include(name, locals)
    if locals ~= nil and type(locals) ~= "table" then
      error("bad argument #2 to 'include' (table expected, got " .. type(locals) .. ")", 2)
    end
    local entry, err, kind = engine:_load(name, 3, state.seen)
    if not entry then error(err, kind == "syntax" and 0 or 2) end
    local html = execute(state, entry, merge(merge({}, state.frame.vars), locals), 3)
    return html                        -- not a tail call: error levels count on it
  end

  -- layout(name, locals): wrap this template's output in the layout `name`,
  -- which gets it as `content` (and as block "content"); layout(false)
  -- drops the engine's default layout.
  function state.layout(name, locals)
    local frame = state.frame
    if frame.blocks_used then
      error("layout() must come before the template's first block()", 2)
    end
    if name == false then
      frame.layout = nil
      return ""
    end
    if locals ~= nil and type(locals) ~= "table" then
      error("bad argument #2 to 'layout' (table expected, got " .. type(locals) .. ")", 2)
    end
    local entry, err, kind = engine:_load(name, 3, state.seen)
    if not entry then error(err, kind == "syntax" and 0 or 2) end
    frame.layout, frame.layout_locals = entry, locals
    return ""
  end

  -- block(name, content): in a template that has a layout, defines the
  -- block (the first definition wins, and the child renders before its
  -- layout); in the outermost template, writes the block: its definition,
  -- else content.  content: a function whose output is captured, a string
  -- (escaped), or nil.  Returns nothing: it is used in <% %>.
  function state.block(name, content)
    if type(name) ~= "string" then
      error("bad argument #1 to 'block' (string expected, got " .. type(name) .. ")", 2)
    end
    local tc = type(content)
    if content ~= nil and tc ~= "function" and tc ~= "string" and tc ~= "number" then
      error("bad argument #2 to 'block' (a function, a string or nil expected, got " ..
        tc .. ")", 2)
    end
    local frame, blocks = state.frame, state.blocks
    frame.blocks_used = true
    if frame.layout then
      if blocks[name] == nil then blocks[name] = capture(state, content) end
      return
    end
    local html = blocks[name]
    if html == nil then html = capture(state, content) end
    local buf = frame.buf
    buf[#buf + 1] = html
  end
end

-- Runs a compiled template with vars (a table of its own, kept as the
-- scope of its includes and layout) and returns its HTML, wrapped in its
-- layout when it has one.
function execute(state, entry, vars, level, default_layout)
  if state.depth >= MAX_DEPTH then
    error(string_format("templates nested more than %d deep (does %q include itself?)",
      MAX_DEPTH, entry.name), level)
  end
  local env = setmetatable(merge({}, vars), state.engine.env_mt)
  env.include, env.layout, env.block = state.include, state.layout, state.block
  local buf = {}
  local frame <close> = setmetatable({
    state = state, parent = state.frame, vars = vars, buf = buf, layout = default_layout,
  }, frame_mt)
  state.frame = frame
  state.depth = state.depth + 1
  entry.fn(env, buf, out_escaped, out_raw)
  local html = table_concat(buf)
  local layout = frame.layout
  if layout then
    if state.blocks.content == nil then state.blocks.content = html end
    local lvars = merge(merge({}, vars), frame.layout_locals)
    lvars.content = html
    html = execute(state, layout, lvars, level)
  end
  return html
end

-- Loads a template for include() or layout(), called from a template at
-- `level` (counted from _load): a syntax error says where it was used.
-- `seen` (the render's) keeps what was loaded, so that a partial included
-- in a loop is looked up (and its file checked) once per render.
function Engine:_load(name, level, seen)
  local entry = seen and seen[name]
  if entry then return entry end
  local err, kind
  entry, err, kind = load_template(self, name)
  if entry then
    if seen then seen[name] = entry end
    return entry
  end
  if kind == "syntax" then
    local info = debug_getinfo(level, "Sl")
    if info and info.currentline and info.currentline > 0 then
      err = string_format("%s (used at %s:%d)", err, info.short_src, info.currentline)
    end
  end
  return nil, err, kind
end

local function new_state(engine)
  local state = { engine = engine, blocks = {}, depth = 0, seen = {} }
  helpers(state)
  return state
end

-- The scope of a render: globals are read through the env's metatable;
-- the request's locals (template.locals(env)) and then `locals` are copied.
local function scope(locals, env)
  local vars = {}
  if env ~= nil then
    local req = env[LOCALS_KEY]
    if type(req) == "table" then merge(vars, req) end
  end
  return merge(vars, locals)
end

-- engine:_render(name, locals, env, level): engine:render for callers that
-- want misuse reported `level` frames up (2: their caller), as
-- ctx.response:render does.
function Engine:_render(name, locals, env, level)
  level = level + 1
  if locals ~= nil and type(locals) ~= "table" then
    error("bad argument #2 to 'render' (table expected, got " .. type(locals) .. ")", level)
  end
  if env ~= nil and type(env) ~= "table" then
    error("bad argument #3 to 'render' (an env table expected, got " .. type(env) .. ")", level)
  end
  local entry, err, kind = load_template(self, name)
  if not entry then error(err, kind == "syntax" and 0 or level) end
  local default_layout
  if self.layout_name then
    default_layout, err, kind = load_template(self, self.layout_name)
    if not default_layout then
      error(kind == "syntax" and err or "the default layout: " .. err, 0)
    end
  end
  local html = execute(new_state(self), entry, scope(locals, env), level, default_layout)
  return html
end

-- engine:render(name, locals, env) -> the HTML.  env, when given, adds the
-- request's locals (template.locals(env)) under `locals`.
function Engine:render(name, locals, env)
  local html = self:_render(name, locals, env, 2)
  return html
end

-- engine:compile(name) -> function(locals, env) -> HTML: loads and compiles
-- the template now (so a start-up can fail fast on a broken template).
function Engine:compile(name)
  local entry, err, kind = load_template(self, name)
  if not entry then error(err, kind == "syntax" and 0 or 2) end
  return function(locals, env)
    local html = self:_render(name, locals, env, 2)
    return html
  end
end

-- engine:clear(): forgets every compiled template.
function Engine:clear()
  self.cache = {}
end

-- engine:middleware() -> function(env, next) that makes this engine the
-- request's: ctx.response:render(name, locals) uses it.
function Engine:middleware()
  return function(env, next)
    env[ENGINE_KEY] = self
    return next()
  end
end

local OPTIONS = {
  root = "string", extension = "string", reload = "boolean", globals = "table",
  layout = "string", fs = "table",
}

-- template.new(opts) -> an engine.  opts: root (the directory of the
-- templates, "views" by default; a relative root is taken from the
-- directory of the file that calls new), extension (".html"), reload (true:
-- a template is compiled again when its file changed; false: compiled once),
-- globals (names every template sees, below its locals), layout (the
-- default layout of every render), fs (a table with stat(path) -> { mtime,
-- size }; owin.fs by default).
local function new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then error("bad argument #1 to 'new' (unknown option " .. tostring(k) .. ")", 2) end
    if type(v) ~= want then
      error(string_format("bad option %s to 'new' (%s expected, got %s)", k, want, type(v)), 2)
    end
  end
  local root = opts.root or "views"
  if string_sub(root, 1, 1) ~= "/" then
    if debug_getinfo(1, "t").istailcall then
      error("template.new was called in a tail call (return template.new(...)), so the file " ..
        "a relative root is taken from is unknown: assign the engine to a local first, " ..
        "or give an absolute root", 2)
    end
    root = caller_dir(2) .. root
  end
  root = string_gsub(root, "^%./", "")
  if string_sub(root, -1) ~= "/" then root = root .. "/" end
  local ext = opts.extension or ".html"
  if ext ~= "" and string_sub(ext, 1, 1) ~= "." then ext = "." .. ext end
  local stat
  if opts.fs then
    stat = opts.fs.stat
    if type(stat) ~= "function" then
      error("bad option fs to 'new' (a table with a stat function expected)", 2)
    end
  else
    local ok, owin = pcall(require, "owin")
    if ok and type(owin) == "table" and type(owin.fs) == "table" then stat = owin.fs.stat end
  end
  if opts.layout then
    local ok, err = check_name(opts.layout)
    if not ok then error("bad option layout to 'new' (" .. err .. ")", 2) end
  end
  local globals = merge({}, opts.globals)
  local self = setmetatable({
    root = root,
    extension = ext,
    reload = opts.reload ~= false,
    globals = globals,
    layout_name = opts.layout,
    stat = stat,
    cache = {},
  }, Engine)
  -- Reads a template does not satisfy from its locals: the engine's
  -- globals (self.globals, which the app may change later), then SAFE.
  self.env_mt = {
    __index = function(_, k)
      local v = self.globals[k]
      if v == nil then v = SAFE[k] end
      return v
    end,
    __metatable = false,
  }
  return self
end

------------------------------------------------------------------------------
-- Templates from strings, without an engine

local no_engine = setmetatable({
  globals = {}, cache = {}, reload = false,
  _load = function(_, name)
    return nil, string_format("template %q: include() and layout() need an engine " ..
      "(template.new) to find templates", tostring(name))
  end,
}, Engine)
no_engine.env_mt = {
  __index = function(_, k) return SAFE[k] end,
  __metatable = false,
}

-- template.compile(source, name) -> function(locals) -> HTML.  name (default
-- "template") is what errors call the source.  Raises when it does not
-- compile.
local function compile_string(source, name)
  if type(source) ~= "string" then
    error("bad argument #1 to 'compile' (string expected, got " .. type(source) .. ")", 2)
  end
  if name ~= nil and type(name) ~= "string" then
    error("bad argument #2 to 'compile' (string expected, got " .. type(name) .. ")", 2)
  end
  local fn, err = compile(source, name or "template")
  if not fn then error(err, 0) end
  local entry = { fn = fn, name = name or "template" }
  return function(locals)
    if locals ~= nil and type(locals) ~= "table" then
      error("bad argument #1 to template (table expected, got " .. type(locals) .. ")", 2)
    end
    return execute(new_state(no_engine), entry, merge({}, locals), 2)
  end
end

-- template.locals(env) -> the request's own locals (Express's res.locals):
-- a table every render of this request sees, below the render's locals.
local function locals(env)
  local t = env[LOCALS_KEY]
  if t == nil then
    t = {}
    env[LOCALS_KEY] = t
  end
  return t
end

-- template.engine(env) -> the engine engine:middleware() left in env, or nil.
local function engine_of(env)
  return env[ENGINE_KEY]
end

return {
  new = new,
  compile = compile_string,
  escape = escape,
  locals = locals,
  engine = engine_of,
  ENGINE_KEY = ENGINE_KEY,
  LOCALS_KEY = LOCALS_KEY,
  Engine = Engine,
}
