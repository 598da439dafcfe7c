-- owin.template (lua/owin/template.lua, docs/templates.md): the syntax,
-- escaping, includes, layouts and blocks, errors that name the template's
-- file and line, the cache and its reload, the sandbox, and
-- ctx.response:render through owin.test.  Templates are written to a fresh
-- temporary directory for each test.
--
--   busted --lua=lua5.4 spec/unit/template_spec.lua

local test = require("owin.test")
local template = require("owin.template")
local context = require("owin.context")
local owin = require("owin")

local function sh(cmd)
  assert(os.execute(cmd), cmd)
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A fresh directory, removed when the test ends.
local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. quote(dir))
  finally(function() sh("rm -rf " .. quote(dir)) end)
  return dir
end

local function write(dir, name, text)
  local path = dir .. "/" .. name
  sh("mkdir -p " .. quote(path:match("^(.*)/")))
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- An engine over a fresh directory holding `files` (name -> text).
local function views(files, opts)
  local dir = tmpdir()
  for name, text in pairs(files or {}) do write(dir, name, text) end
  opts = opts or {}
  opts.root = dir
  return template.new(opts), dir
end

-- The error a call raises, as a string.
local function raised(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- One template, rendered once.
local function render(src, locals)
  return template.compile(src, "t.html")(locals)
end

describe("owin.template #unit", function()
  describe("<%= %>", function()
    it("escapes the five characters OWASP names, and nothing else", function()
      assert.are.equal("&amp; &lt; &gt; &quot; &#x27; / = ` é",
        render([[<%= s %>]], { s = "& < > \" ' / = ` é" }))
      assert.are.equal("&amp;lt;", render("<%= '&lt;' %>"), "escaped once more, never decoded")
      assert.are.equal("plain", render("<%= 'plain' %>"))
    end)

    it("renders nil as nothing, numbers and booleans as tostring does", function()
      assert.are.equal("[][3][2.5][true][false]",
        render("[<%= missing %>][<%= 3 %>][<%= 2.5 %>][<%= true %>][<%= false %>]"))
    end)

    it("renders the JSON libraries' null as nothing", function()
      local ok, cjson = pcall(require, "cjson")
      if ok then assert.are.equal("[]", render("[<%= v %>]", { v = cjson.null })) end
      local dk_ok, dkjson = pcall(require, "dkjson")
      if dk_ok then assert.are.equal("[]", render("[<%= v %>]", { v = dkjson.null })) end
      assert.is_true(ok or dk_ok, "no JSON library to check against")
    end)

    it("renders a table through its __tostring, escaped", function()
      local money = setmetatable({}, { __tostring = function() return "<5 €>" end })
      assert.are.equal("&lt;5 €&gt;", render("<%= m %>", { m = money }))
    end)

    it("refuses a table without __tostring, naming the template's line", function()
      local err = raised(render, "one\ntwo <%= t %>", { t = {} })
      assert.matches("^t%.html:2: cannot render a table value", err)
      err = raised(render, "<%- f %>", { f = print })
      assert.matches("^t%.html:1: cannot render a function value", err)
    end)

    it("takes an expression over several lines, and a trailing comment", function()
      assert.are.equal("6|x", render("<%= 1 +\n 2 +\n 3 %>|<%= 'x' -- the name %>"))
    end)

    it("template.escape is the same escaping, for helpers", function()
      assert.are.equal("&lt;a href=&quot;x&quot;&gt;", template.escape('<a href="x">'))
      assert.are.equal("", template.escape(nil))
      assert.are.equal("42", template.escape(42))
    end)
  end)

  describe("<%- %>", function()
    it("writes the value as it is, nil as nothing", function()
      assert.are.equal("<b>bold</b> & []", render("<%- html %> & [<%- nothing %>]",
        { html = "<b>bold</b>" }))
    end)
  end)

  describe("<% %> code", function()
    it("runs Lua statements: conditions, locals, functions", function()
      local src = table.concat({
        "<% local function twice(s) return s .. s end %>",
        "<% if admin then %>admin<% elseif user then %><%= twice(user) %><% else %>guest<% end %>",
      })
      assert.are.equal("admin", render(src, { admin = true }))
      assert.are.equal("abab", render(src, { user = "ab" }))
      assert.are.equal("guest", render(src, {}))
    end)

    it("loops with for, ipairs, pairs and while", function()
      local src = "<% for i, v in ipairs(list) do %>[<%= i %>:<%= v %>]<% end %>" ..
        "<% local n = 0 while n < 3 do n = n + 1 %><%= n %><% end %>"
      assert.are.equal("[1:a][2:&lt;b&gt;]123", render(src, { list = { "a", "<b>" } }))
      local keys = {}
      for k in render("<% for k in pairs(t) do %><%= k %>,<% end %>",
          { t = { x = 1, y = 2 } }):gmatch("(%w+),") do
        keys[#keys + 1] = k
      end
      table.sort(keys)
      assert.are.same({ "x", "y" }, keys)
    end)

    it("keeps text and newlines as written, and -%> eats the newline after a tag", function()
      local src = "<ul>\n<% for _, v in ipairs(list) do -%>\n  <li><%= v %></li>\n<% end -%>\n</ul>\n"
      assert.are.equal("<ul>\n  <li>a</li>\n  <li>b</li>\n</ul>\n", render(src, { list = { "a", "b" } }))
      assert.are.equal("a\n\nb", render("a\n<% x = 1 %>\nb"))
      assert.are.equal("a\nb", render("a\r\n<% x = 1 -%>\r\nb"):gsub("\r", ""))
    end)

    it("has comments, <%% for a literal <%, and Lua comments inside code", function()
      assert.are.equal("a<% b %>c", render("a<%% b %>c"))
      assert.are.equal("ab", render("a<%# not\n output, <%= x is text here %>b"))
      assert.are.equal("1 2 3", render("<% local x = 1 -- one %><%= x %> <% x = 2 --[[ two ]] %>" ..
        "<%= x %> <% x = '--3' %><%= x:sub(3) %>"))
    end)

    it("keeps assignments to the render (not to the locals table given)", function()
      local locals = { n = 1 }
      assert.are.equal("2", render("<% n = n + 1 %><%= n %>", locals))
      assert.are.equal(1, locals.n)
    end)

    it("compiles once and renders many times with other locals", function()
      local f = template.compile("<%= a %>-<%= b %>")
      assert.are.equal("1-2", f({ a = 1, b = 2 }))
      assert.are.equal("x-", f({ a = "x" }))
      assert.are.equal("-", f())
    end)
  end)

  describe("injection", function()
    it("escapes markup that comes from data, in text and in quoted attributes", function()
      local src = [[<p title="<%= t %>" data-x='<%= t %>'><%= t %></p>]]
      local out = render(src, { t = [["><script>alert('x')</script><"]] })
      assert.are.equal([[<p title="&quot;&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&lt;&quot;" ]] ..
        [[data-x='&quot;&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&lt;&quot;'>]] ..
        [[&quot;&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&lt;&quot;</p>]], out)
      assert.is_nil(out:find("<script>", 1, true))
    end)

    it("escapes a literal <script> written in the expression itself", function()
      assert.are.equal("&lt;script&gt;", render([[<%= "<script>" %>]]))
    end)

    it("never runs template syntax that comes from data", function()
      local data = "<%= os.exit() %><% error('x') %>%>"
      assert.are.equal("&lt;%= os.exit() %&gt;&lt;% error(&#x27;x&#x27;) %&gt;%&gt;",
        render("<%= d %>", { d = data }))
      assert.are.equal(data, render("<%- d %>", { d = data }))
    end)

    it("renders text with quotes, backslashes, brackets and NULs byte for byte", function()
      local s = "a \"q\" 'q' \\ \\n ]] ]=] [[ \0 \r \27 end"
      assert.are.equal(s, render(s))
    end)
  end)

  describe("the sandbox", function()
    it("has no _G, load, require, io, debug, package or os.execute", function()
      local names = { "_G", "load", "loadfile", "dofile", "require", "io", "debug", "package",
        "getmetatable", "setmetatable", "rawset", "rawget", "collectgarbage", "coroutine",
        "print", "module", "setfenv" }
      for _, name in ipairs(names) do
        assert.are.equal("nil", render("<%= type(" .. name .. ") %>"), name)
      end
      assert.are.equal("nil nil nil nil", render("<%= type(os.execute) %> <%= type(os.exit) %> " ..
        "<%= type(os.getenv) %> <%= type(string.dump) %>"))
      assert.matches("^t%.html:1: attempt to call a nil value %(field 'execute'%)",
        raised(render, "<% os.execute('touch /tmp/pwned') %>"))
    end)

    it("has the safe parts of Lua", function()
      assert.are.equal("ABC 3 2 x,y 2026 07 é",
        render("<%= string.upper('abc') %> <%= math.max(1, 3) %> <%= #table.pack(1, 2) %> " ..
          "<%= table.concat({ 'x', 'y' }, ',') %> <%= os.date('!%Y', 1780000000) %> " ..
          "<%= ('%02d'):format(7) %> <%= utf8.char(233) %>"))
    end)

    it("does not let a template write globals of the process", function()
      render("<% x_from_template = 1 %><% _ENV.y_from_template = 2 %>")
      assert.is_nil(rawget(_G, "x_from_template"))
      assert.is_nil(rawget(_G, "y_from_template"))
    end)

    it("does not let a template change the libraries it sees", function()
      assert.matches("^t%.html:1: templates cannot change string%.rep",
        raised(render, "<% string.rep = nil %>"))
      assert.matches("^t%.html:1: templates cannot change os%.execute",
        raised(render, "<% os.execute = print %>"))
      assert.is_function(string.rep)
      assert.are.equal("aa", render("<%= string.rep('a', 2) %>"))
    end)

    it("keeps one render's assignments from the next", function()
      local v = views({ ["a.html"] = "<%= type(helper) %>|<% helper = 1 %><% string_x = 1 %>" },
        { globals = { helper = function() end } })
      assert.are.equal("function|", v:render("a"))
      assert.are.equal("function|", v:render("a"))
    end)

    it("gives no way out through _ENV", function()
      assert.are.equal("nil", render("<% local _ENV = { type = type } %><%= type(io) %>"))
      assert.are.equal("nil", render("<%= type(_ENV._G) %>"))
      local keys = {}
      for k in render("<% for k in pairs(_ENV) do %><%= k %> <% end %>", { a = 1 }):gmatch("%S+") do
        keys[#keys + 1] = k
      end
      table.sort(keys)
      assert.are.same({ "a", "block", "include", "layout" }, keys)
    end)

    it("reaches what the app passes in, and only that", function()
      assert.are.equal("yes", render("<%= helpers.ok() %>", { helpers = { ok = function() return "yes" end } }))
    end)
  end)

  describe("errors", function()
    it("name the template's line for a syntax error", function()
      assert.matches("^views/t%.html:3: 'then' expected near '%%>'",
        raised(template.compile, "a\nb\n<% if x %>y<% end %>", "views/t.html"))
      assert.matches("^t%.html:6: 'end' expected %(to close 'if' at line 3%) near <eof>",
        raised(template.compile, "a\n\n<% if x then %>\n<%= 1\n %>\n", "t.html"))
      assert.matches("^t%.html:4: unexpected symbol",
        raised(template.compile, "a\n<% x = 1 %>\n\n<%= x + %>", "t.html"))
    end)

    it("name the line of a tag that is not closed, or empty", function()
      assert.matches("^t%.html:3: <%%= is not closed %(no %%> after it%)",
        raised(template.compile, "a\n\nb <%= x\n\n", "t.html"))
      assert.matches("^t%.html:2: <%% is not closed", raised(template.compile, "\n<% x", "t.html"))
      assert.matches("^t%.html:2: <%%%- %%> holds no expression",
        raised(template.compile, "a\n<%- %>", "t.html"))
    end)

    it("name the template's line for a runtime error, after text, code and multi-line tags", function()
      local src = table.concat({
        "<html>",                                   -- 1
        "<%# a comment",                            -- 2
        "over two lines %>",                        -- 3
        "<% local x = {",                           -- 4
        "  a = 1,",                                 -- 5
        "} %>",                                     -- 6
        "<p>\"quoted\" ]] text</p>",                -- 7
        "<% for i = 1, 2 do -%>",                   -- 8
        "  <%= i %>",                               -- 9
        "<% end -%>",                               -- 10
        "<%= user.name %>",                         -- 11
      }, "\n")
      assert.matches("^views/page%.html:11: attempt to index a nil value %(global 'user'%)",
        raised(template.compile(src, "views/page.html"), {}))
    end)

    it("name the template's line for error() and for bad calls", function()
      assert.matches("^t%.html:3: boom", raised(render, "\n\n<% error('boom') %>"))
      assert.matches("^t%.html:2: attempt to call a nil value %(global 'nope'%)",
        raised(render, "x\n<%= nope() %>"))
    end)

    it("put the template's lines in the traceback, through includes", function()
      local v = views({
        ["page.html"] = "a\nb\n<%- include('part') %>\n",
        ["part.html"] = "\n<%= broken.x %>",
      })
      local ok, tb = xpcall(v.render, debug.traceback, v, "page")
      assert.is_false(ok)
      assert.matches("part%.html:2: attempt to index a nil value %(global 'broken'%)", tb)
      assert.matches("page%.html:3: in ", tb)
    end)

    it("name the template that is missing, and where it was included", function()
      local v, dir = views({ ["page.html"] = "\n<%- include('gone') %>" })
      local err = raised(v.render, v, "page")
      assert.are.equal(dir .. "/page.html:2: template \"gone\" not found (" .. dir ..
        "/gone.html: No such file or directory)", err)
      assert.matches("template \"nothing\" not found", raised(v.render, v, "nothing"))
    end)

    it("give a partial's syntax error with its own line and where it was used", function()
      local v, dir = views({ ["page.html"] = "\n\n<%- include('bad') %>", ["bad.html"] = "ok\n<% if x then %>x" })
      assert.are.equal(dir .. "/bad.html:2: 'end' expected near <eof> (used at " .. dir ..
        "/page.html:3)", raised(v.render, v, "page"))
    end)

    it("refuse names that leave the root", function()
      local v = views({ ["a.html"] = "a" })
      for _, name in ipairs({ "../a", "/etc/passwd", "x/../../a", "./a", "a//b", "", "a\0b", "a\\b" }) do
        assert.matches("bad template name", raised(v.render, v, name), name)
      end
      assert.matches("a template name %(string%) expected, got number", raised(v.render, v, 1))
      local page = views({ ["p.html"] = "<%- include('../etc/passwd') %>" })
      assert.matches("p%.html:1: bad template name \"%.%./etc/passwd\"", raised(page.render, page, "p"))
    end)

    it("stop a template that includes itself", function()
      local v = views({ ["loop.html"] = "x<%- include('loop') %>" })
      assert.matches("templates nested more than 100 deep %(does \"loop\" include itself%?%)",
        raised(v.render, v, "loop"))
    end)

    it("reject bad arguments and options by name", function()
      assert.matches("bad argument #2 to 'render' %(table expected, got string%)",
        raised(function() return views():render("a", "x") end))
      assert.matches("unknown option roots", raised(template.new, { roots = "x" }))
      assert.matches("bad option reload to 'new' %(boolean expected, got string%)",
        raised(template.new, { reload = "no" }))
      assert.matches("bad argument #1 to 'compile' %(string expected, got nil%)",
        raised(template.compile))
    end)
  end)

  describe("include", function()
    it("renders a partial with the render's locals and its own", function()
      local v = views({
        ["list.html"] = "<% for _, t in ipairs(todos) do %><%- include('partials/item', { todo = t }) %><% end %>",
        ["partials/item.html"] = "<li class=\"<%= class %>\"><%= todo %></li>",
      })
      assert.are.equal('<li class="c">a</li><li class="c">&lt;b&gt;</li>',
        v:render("list", { todos = { "a", "<b>" }, class = "c" }))
    end)

    it("returns HTML: <%= %> would escape it again", function()
      local v = views({ ["p.html"] = "<%= include('q') %>", ["q.html"] = "<b>" })
      assert.are.equal("&lt;b&gt;", v:render("p"))
    end)

    it("does not see the including template's assignments", function()
      local v = views({ ["p.html"] = "<% x = 1 %><%- include('q') %>", ["q.html"] = "[<%= x %>]" })
      assert.are.equal("[]", v:render("p"))
    end)

    it("gives a nested partial the locals its parent partial was given", function()
      local v = views({ ["p.html"] = "<%- include('a', { x = 1 }) %>", ["a.html"] = "<%- include('b', { y = 2 }) %>",
        ["b.html"] = "<%= x %><%= y %><%= z %>" })
      assert.are.equal("123", v:render("p", { z = 3 }))
    end)

    it("sees globals the app adds after the engine was made", function()
      local v = views({ ["p.html"] = "<%= site %>" })
      v.globals.site = "S"
      assert.are.equal("S", v:render("p"))
      assert.are.equal("local", v:render("p", { site = "local" }))
    end)

    it("takes names with an extension of their own", function()
      local v = views({ ["p.html"] = "<%- include('style.css') %>", ["style.css"] = "b{}" })
      assert.are.equal("b{}", v:render("p"))
      local txt = views({ ["mail.txt"] = "hi <%- name %>" }, { extension = "txt" })
      assert.are.equal("hi <x>", txt:render("mail", { name = "<x>" }))
    end)
  end)

  describe("layouts and blocks", function()
    local files = {
      ["base.html"] = "<title><%= title %></title><% block('head') %>" ..
        "<main><%- content %></main><% block('foot', function() %><p>default</p><% end) %>",
      ["page.html"] = "<% layout('base', { title = 'A & B' }) %>" ..
        "<% block('head', function() %><link href=\"/p.css\"><% end) %>" ..
        "<h1><%= heading %></h1>",
    }

    it("wraps the page in its layout, which gets it as content", function()
      local v = views(files)
      assert.are.equal('<title>A &amp; B</title><link href="/p.css"><main><h1>Hi</h1></main>' ..
        "<p>default</p>", v:render("page", { heading = "Hi" }))
    end)

    it("lets a page fill a block, and the layout keep its default for the others", function()
      local v = views({
        ["base.html"] = files["base.html"],
        ["page.html"] = "<% layout('base') %><% block('foot', 'by <me>') %>x",
      })
      assert.are.equal("<title>T</title><main>x</main>by &lt;me&gt;", v:render("page", { title = "T" }))
    end)

    it("lets a partial of the layout write the page's blocks", function()
      local v = views({
        ["l.html"] = "<head><%- include('head') %></head><%- content %>",
        ["head.html"] = "<title><% block('title', 'default') %></title>",
        ["p.html"] = "<% layout('l') %><% block('title', 'Page') %>body",
      })
      assert.are.equal("<head><title>Page</title></head>body", v:render("p"))
    end)

    it("has the page as block content too", function()
      local v = views({ ["l.html"] = "[<% block('content') %>]", ["p.html"] = "<% layout('l') %>body" })
      assert.are.equal("[body]", v:render("p"))
    end)

    it("nests layouts: the page's blocks win at every level", function()
      local v = views({
        ["outer.html"] = "<html><% block('title', 'Site') %>|<%- content %></html>",
        ["inner.html"] = "<% layout('outer') %><% block('title', 'Section') %><div><%- content %></div>",
        ["page.html"] = "<% layout('inner') %><% block('title', 'Page') %>text",
        ["plain.html"] = "<% layout('inner') %>text",
      })
      assert.are.equal("<html>Page|<div>text</div></html>", v:render("page"))
      assert.are.equal("<html>Section|<div>text</div></html>", v:render("plain"))
    end)

    it("uses the engine's default layout unless a page says layout(false)", function()
      local v = views({
        ["layout.html"] = "<body><%- content %></body>",
        ["page.html"] = "x",
        ["bare.html"] = "<% layout(false) %>y",
        ["part.html"] = "p",
        ["withpart.html"] = "<%- include('part') %>",
      }, { layout = "layout" })
      assert.are.equal("<body>x</body>", v:render("page"))
      assert.are.equal("y", v:render("bare"))
      assert.are.equal("<body>p</body>", v:render("withpart"), "includes get no layout")
    end)

    it("gives the layout the render's locals under its own", function()
      local v = views({
        ["l.html"] = "<%= who %>/<%= title %>|<%- content %>",
        ["p.html"] = "<% layout('l', { title = 'from page' }) %>body",
      })
      assert.are.equal("me/from page|body", v:render("p", { who = "me", title = "from render" }))
    end)

    it("says where a missing layout was asked for", function()
      local v, dir = views({ ["p.html"] = "\n<% layout('nolayout') %>" })
      assert.are.equal(dir .. "/p.html:2: template \"nolayout\" not found (" .. dir ..
        "/nolayout.html: No such file or directory)", raised(v.render, v, "p"))
    end)

    it("wants layout() before the first block()", function()
      local v = views({ ["l.html"] = "", ["p.html"] = "<% block('a', 'x') %>\n<% layout('l') %>" })
      assert.matches("p%.html:2: layout%(%) must come before the template's first block%(%)",
        raised(v.render, v, "p"))
    end)
  end)

  describe("the cache", function()
    -- A fake owin.fs whose mtimes the test sets.
    local function fake_fs()
      local mtimes = {}
      return {
        mtimes = mtimes,
        stat = function(path)
          local f = io.open(path, "rb")
          if not f then return nil, "ENOENT: no such file", "ENOENT" end
          local size = f:seek("end")
          f:close()
          return { type = "file", size = size, mtime = mtimes[path] or 1000, mode = 420 }
        end,
      }
    end

    it("compiles a template once while its file's mtime and size stay the same", function()
      local fs = fake_fs()
      local v, dir = views({ ["a.html"] = "one" }, { fs = fs })
      assert.are.equal("one", v:render("a"))
      write(dir, "a.html", "two")                 -- same size, same (old) mtime
      assert.are.equal("one", v:render("a"))
      fs.mtimes[dir .. "/a.html"] = 2000
      assert.are.equal("two", v:render("a"))
      write(dir, "a.html", "three")               -- another size
      assert.are.equal("three", v:render("a"))
    end)

    it("checks each file once per render, however often it is included", function()
      local fs = fake_fs()
      local calls = 0
      local stat = fs.stat
      fs.stat = function(path)
        calls = calls + 1
        return stat(path)
      end
      local v = views({ ["list.html"] = "<% for i = 1, 50 do %><%- include('item', { i = i }) %><% end %>",
        ["item.html"] = "<%= i %>," }, { fs = fs })
      assert.are.equal(("x"):rep(50), (v:render("list"):gsub("%d+,", "x")))
      calls = 0
      v:render("list")
      assert.are.equal(2, calls)
    end)

    it("compares the text of a file changed in the second it was read", function()
      local fs = fake_fs()
      local v, dir = views({ ["a.html"] = "one" }, { fs = fs })
      fs.mtimes[dir .. "/a.html"] = os.time() + 60  -- this second, as far as the cache knows
      assert.are.equal("one", v:render("a"))
      write(dir, "a.html", "two")
      assert.are.equal("two", v:render("a"))
    end)

    it("reads the file again without a stat function (plain Lua)", function()
      local v, dir = views({ ["a.html"] = "one", ["b.html"] = "<%- include('a') %>" })
      if owin.fs then v.stat = nil end
      assert.are.equal("one", v:render("b"))
      write(dir, "a.html", "two")
      assert.are.equal("two", v:render("b"))
    end)

    it("with reload = false compiles once, until clear()", function()
      local v, dir = views({ ["a.html"] = "one" }, { reload = false, fs = fake_fs() })
      assert.are.equal("one", v:render("a"))
      write(dir, "a.html", "a longer two")
      assert.are.equal("one", v:render("a"))
      v:clear()
      assert.are.equal("a longer two", v:render("a"))
    end)

    it("does not keep a template that failed to compile", function()
      local v, dir = views({ ["a.html"] = "<% if %>" })
      assert.matches("a%.html:1:", raised(v.render, v, "a"))
      write(dir, "a.html", "fixed")
      assert.are.equal("fixed", v:render("a"))
    end)

    it("notices a template that went away", function()
      local v, dir = views({ ["a.html"] = "one" }, { fs = fake_fs() })
      assert.are.equal("one", v:render("a"))
      os.remove(dir .. "/a.html")
      assert.matches("template \"a\" not found", raised(v.render, v, "a"))
    end)

    it("compile(name) loads now, so a start-up fails on a broken template", function()
      local v = views({ ["ok.html"] = "<%= x %>", ["bad.html"] = "\n<% for %>" })
      assert.are.equal("1", v:compile("ok")({ x = 1 }))
      assert.matches("bad%.html:2: ", raised(v.compile, v, "bad"))
    end)

    it("takes a relative root from the directory of the file that calls new", function()
      local dir = tmpdir()
      write(dir, "views/hello.html", "hello <%= name %>")
      write(dir, "app.lua", "local v = require('owin.template').new({ root = 'views' })\nreturn v")
      local v = assert(loadfile(dir .. "/app.lua"))()
      assert.are.equal("hello you", v:render("hello", { name = "you" }))
    end)
  end)

  describe("with owin.context", function()
    local function app_with(v, handler, before)
      local app = owin.new()
      app.use(v:middleware())
      if before then app.use(before) end
      app.run(context.app(handler))
      return test.client(app)
    end

    it("ctx.response:render writes text/html with the status", function()
      local v = views({ ["hi.html"] = "<p>Hi <%= name %></p>" })
      local client = app_with(v, function(ctx)
        ctx.response:render("hi", { name = ctx.request.query.name }, 201)
      end)
      local res = client:get("/?name=%3Cb%3E")
      assert.are.equal(201, res.status)
      assert.are.equal("text/html; charset=utf-8", res.headers["content-type"])
      assert.are.equal("<p>Hi &lt;b&gt;</p>", res.body)
    end)

    it("gives templates the request's locals, set by earlier middleware", function()
      local v = views({ ["hi.html"] = "<%= user %>/<%= site %>/<%= title %>" },
        { globals = { site = "S", title = "global" } })
      local client = app_with(v, function(ctx)
        ctx.response:render("hi", { title = "mine" })
      end, function(env, next)
        template.locals(env).user = "ann"
        template.locals(env).title = "request"
        next()
      end)
      assert.are.equal("ann/S/mine", client:get("/").body)
    end)

    it("answers 500 with the template's line in the error", function()
      local v, dir = views({ ["bad.html"] = "\n\n<%= user.name %>" })
      local client = app_with(v, function(ctx) ctx.response:render("bad") end)
      local res = client:get("/")
      assert.are.equal(500, res.status)
      assert.are.equal(dir .. "/bad.html:3: attempt to index a nil value (global 'user')",
        tostring(res.error))
    end)

    it("raises at the app's line without an engine", function()
      local app = owin.new()
      app.run(context.app(function(ctx) ctx.response:render("x") end))
      local res = test.client(app):get("/")
      assert.are.equal(500, res.status)
      assert.matches("template_spec%.lua:%d+: response:render: no template engine for this request",
        tostring(res.error))
    end)

    it("says which template is missing, at the app's line", function()
      local v = views({})
      local client = app_with(v, function(ctx) ctx.response:render("nope") end)
      local res = client:get("/")
      assert.matches("template_spec%.lua:%d+: template \"nope\" not found", tostring(res.error))
    end)

    it("template.engine(env) is the engine the middleware left", function()
      local v = views({})
      local seen
      local client = app_with(v, function(ctx) seen = template.engine(ctx.env) end)
      client:get("/")
      assert.are.equal(v, seen)
    end)
  end)
end)
