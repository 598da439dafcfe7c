-- The user documentation (README.md and docs/*.md) stays inside the
-- repository and stays short at the front door:
--   * every markdown link is relative and names a file (or directory) of
--     this repository, optionally with a #anchor that names a heading of
--     the target page; no link goes to another site (http://, https://,
--     any other scheme), above the repository (../) or to an absolute path;
--   * README.md stays under 200 lines, and links every page of docs/;
--   * the pages speak about the software, not about how its work was
--     organised: no "issue" or "session" as a word.
--
--   busted --lua=lua5.4 spec/unit/docs_spec.lua        (from the repository root)

local function read(path)
  local fh = assert(io.open(path, "rb"))
  local s = fh:read("a")
  fh:close()
  return s
end

local function exists(path)
  local fh = io.open(path, "rb")           -- opens directories too, on Linux
  if fh then fh:close() return true end
  return false
end

-- The markdown files under docs/, sorted ({} when there is no docs/).
local function docs_pages()
  local pages = {}
  local proc = io.popen("ls docs 2>/dev/null")
  for name in proc:lines() do
    if name:match("%.md$") then pages[#pages + 1] = "docs/" .. name end
  end
  proc:close()
  table.sort(pages)
  return pages
end

local function all_pages()
  local pages = { "README.md" }
  for _, p in ipairs(docs_pages()) do pages[#pages + 1] = p end
  return pages
end

-- The text with fenced code blocks blanked out (line breaks kept); with
-- `spans` false, inline code spans are blanked out too, so that code is
-- never taken for a link or a heading.
local function prose(text, spans)
  local out, fence = {}, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local mark = line:match("^%s*(```+)") or line:match("^%s*(~~~+)")
    if fence then
      if mark and mark:sub(1, 1) == fence:sub(1, 1) and #mark >= #fence then fence = nil end
      out[#out + 1] = ""
    elseif mark then
      fence = mark
      out[#out + 1] = ""
    elseif spans then
      out[#out + 1] = line
    else
      out[#out + 1] = (line:gsub("(`+)(.-)%1", ""))
    end
  end
  return table.concat(out, "\n")
end

-- Every link target of a page: inline links [text](target "title"),
-- images ![alt](target), reference definitions [id]: target, and
-- autolinks <scheme:...>.  Returns a list of { target, line }.
local function links(text)
  local found = {}
  local n = 0
  for line in (prose(text) .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    for target in line:gmatch("%]%(%s*<?([^%s)>]*)") do
      found[#found + 1] = { target, n }
    end
    local def = line:match("^%s*%[[^%]]+%]:%s*<?([^%s>]+)")
    if def then found[#found + 1] = { def, n } end
    for auto in line:gmatch("<(%a[%w+.%-]*:[^%s>]*)>") do
      found[#found + 1] = { auto, n }
    end
  end
  return found
end

-- GitHub's anchor for a heading: lowercase, punctuation (and the backticks
-- of code spans) dropped, spaces to hyphens; a repeated heading gets -1, -2.
local function anchors(text)
  local set, seen = {}, {}
  for line in (prose(text, true) .. "\n"):gmatch("([^\n]*)\n") do
    local title = line:match("^#+%s+(.-)%s*#*%s*$")
    if title then
      local slug = title:lower():gsub("[^%w%- _\128-\255]", ""):gsub(" ", "-")
      local base = slug
      if seen[base] then
        slug = base .. "-" .. seen[base]
        seen[base] = seen[base] + 1
      else
        seen[base] = 1
      end
      set[slug] = true
    end
  end
  return set
end

local anchor_cache = {}
local function anchors_of(path)
  if not anchor_cache[path] then anchor_cache[path] = anchors(read(path)) end
  return anchor_cache[path]
end

-- path relative to the repository root of a link from page `from`, or nil,
-- why when the link may not be resolved that way.
local function resolve(from, target)
  local dir = from:match("^(.*)/[^/]*$")
  local parts = {}
  if dir then
    for seg in dir:gmatch("[^/]+") do parts[#parts + 1] = seg end
  end
  for seg in target:gmatch("[^/]+") do
    if seg == ".." then
      if #parts == 0 then return nil, "leaves the repository" end
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  if #parts == 0 then return "." end
  return table.concat(parts, "/")
end

-- Problems with one page's links, as a list of strings.
local function link_problems(page)
  local problems = {}
  local function bad(line, target, why)
    problems[#problems + 1] = string.format("%s:%d: %s %s", page, line, target, why)
  end
  for _, l in ipairs(links(read(page))) do
    local target, line = l[1], l[2]
    local path, anchor = target:match("^([^#]*)#?(.*)$")
    path = path:gsub("%%20", " ")
    if target == "" then
      bad(line, "(empty)", "is an empty link")
    elseif target:match("^%a[%w+.%-]*:") then
      bad(line, target, "leaves the repository (only relative links are allowed)")
    elseif target:sub(1, 3) == "../" then
      bad(line, target, "starts with ../")
    elseif target:sub(1, 1) == "/" then
      bad(line, target, "is an absolute path")
    elseif path == "" then
      if anchor ~= "" and not anchors_of(page)[anchor] then
        bad(line, target, "names no heading of " .. page)
      end
    else
      local file, why = resolve(page, path)
      if not file then
        bad(line, target, why)
      elseif not exists(file) then
        bad(line, target, "names no file of the repository (" .. file .. ")")
      elseif anchor ~= "" and file:match("%.md$") and not anchors_of(file)[anchor] then
        bad(line, target, "names no heading of " .. file)
      end
    end
  end
  return problems
end

-- Lines of a page holding word (a whole word, any case).
local function word_lines(page, word)
  local hits, n = {}, 0
  for line in (read(page) .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:lower():find("%f[%w]" .. word .. "%f[%W]") then
      hits[#hits + 1] = string.format("%s:%d: %s", page, n, line)
    end
  end
  return hits
end

describe("the documentation #unit", function()
  describe("the checks themselves", function()
    it("find inline, reference and autolinks, and skip code", function()
      local text = table.concat({
        "See [the API](docs/api.md#streams) and ![logo](img/logo.png \"Logo\").",
        "[ref]: docs/http.md",
        "Mail <mailto:x@example.org> or visit <https://example.org>.",
        "`[not](a-link.md)` is code.",
        "```lua",
        "local t = x[1](y)  -- [also](not-a-link.md)",
        "```",
      }, "\n")
      local got = {}
      for _, l in ipairs(links(text)) do got[#got + 1] = l[1] end
      assert.same({ "docs/api.md#streams", "img/logo.png", "docs/http.md",
                    "mailto:x@example.org", "https://example.org" }, got)
    end)

    it("make GitHub's anchors", function()
      local set = anchors("# owinlua\n## Two commands\n## What works, and what does not (yet)\n" ..
                          "## Two commands\n```sh\n# not a heading\n```\n")
      assert.is_true(set["owinlua"])
      assert.is_true(set["two-commands"])
      assert.is_true(set["two-commands-1"])
      assert.is_true(set["what-works-and-what-does-not-yet"])
      assert.is_nil(set["not-a-heading"])
    end)

    it("resolve paths against the page's directory, never above the root", function()
      assert.equal("docs/api.md", resolve("docs/http.md", "api.md"))
      assert.equal("LICENSE", resolve("docs/http.md", "./../LICENSE"))
      assert.equal("apps/hello.lua", resolve("README.md", "apps/hello.lua"))
      assert.is_nil(resolve("README.md", "../elsewhere/page.md"))
    end)
  end)

  it("has a README.md under 200 lines", function()
    local _, lines = read("README.md"):gsub("\n", "")
    assert.is_true(lines < 200, "README.md has " .. lines .. " lines; keep it under 200 " ..
      "and move reference material to docs/")
  end)

  it("has reference pages in docs/, each linked from README.md", function()
    local pages = docs_pages()
    assert.is_true(#pages > 0, "docs/ holds no .md pages")
    local linked = {}
    for _, l in ipairs(links(read("README.md"))) do
      linked[(l[1]:gsub("#.*$", ""))] = true
    end
    local missing = {}
    for _, p in ipairs(pages) do
      if not linked[p] then missing[#missing + 1] = p end
    end
    assert.same({}, missing, "pages of docs/ that README.md does not link")
  end)

  for _, page in ipairs(all_pages()) do
    it("keeps every link of " .. page .. " inside the repository, on a file that exists", function()
      assert.same({}, link_problems(page))
    end)

    it("does not speak of issues or sessions in " .. page, function()
      local hits = {}
      for _, word in ipairs({ "issue", "session" }) do
        for _, h in ipairs(word_lines(page, word)) do
          -- a TLS session is the protocol's own word
          local l = h:lower()
          if not (word == "session" and (l:find("tls", 1, true) or l:find("ssl", 1, true) or
              l:find("ticket", 1, true) or l:find("resum", 1, true) or l:find("handshake", 1, true))) then
            hits[#hits + 1] = h
          end
        end
      end
      assert.same({}, hits)
    end)
  end
end)
