-- The chunked decoder (src/codec/chunked.c) against RFC 9112 section 7.1,
-- through the owl_codec test binding.
local codec = require("owl_codec")

local function decode(s, max_line)
  return codec.chunked({ s }, max_line)
end

-- Every way of cutting s into two reads gives the same result as one read.
local function every_split(s)
  local whole = { decode(s) }
  for i = 1, #s - 1 do
    local got = { codec.chunked({ s:sub(1, i), s:sub(i + 1) }) }
    assert.same(whole, got, "split at " .. i)
  end
  return table.unpack(whole)
end

describe("#unit chunked decoder", function()
  it("decodes chunks and the last chunk", function()
    local body, used, done = decode("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert.equal("hello world", body)
    assert.equal(26, used)
    assert.is_true(done)
  end)

  it("stops at the end of the body and leaves the next message", function()
    local s = "3\r\nabc\r\n0\r\n\r\n"
    local body, used, done = decode(s .. "GET / HTTP/1.1\r\n")
    assert.equal("abc", body)
    assert.equal(#s, used)
    assert.is_true(done)
  end)

  it("accepts hex sizes in either case and leading zeros", function()
    assert.equal(string.rep("x", 26), (decode("1A\r\n" .. string.rep("x", 26) .. "\r\n0000\r\n\r\n")))
    assert.equal(string.rep("y", 26), (decode("001a\r\n" .. string.rep("y", 26) .. "\r\n0\r\n\r\n")))
  end)

  it("gives the same answer for every split of the input", function()
    local body, _, done = every_split("4;a=1;b=\"x y\"\r\nwiki\r\n5 ; c\r\npedia\r\n0\r\nX-T: v\r\n\r\n")
    assert.equal("wikipedia", body)
    assert.is_true(done)
  end)

  it("reports an unfinished body as not done", function()
    local body, used, done = decode("5\r\nhel")
    assert.equal("hel", body)
    assert.equal(6, used)
    assert.is_false(done)
  end)

  describe("accepts the extension forms of RFC 9112 7.1.1", function()
    for _, ext in ipairs({ ";a", ";a=b", ";a=1;b=2", ";a=1;b", " ;a", "; a", ";a = b",
                           ";a=\"quoted \\\" pair\"", ";a=\"\"", "\t;a=b", ";a=\"q\" ;b" }) do
      it(string.format("%q", ext), function()
        local body, _, done = decode("3" .. ext .. "\r\nabc\r\n0\r\n\r\n")
        assert.equal("abc", body)
        assert.is_true(done)
      end)
    end
  end)

  describe("refuses", function()
    local bad = {
      ["a size with no digits"] = "\r\nabc\r\n0\r\n\r\n",
      ["a non-hex size"] = "g\r\nabc\r\n0\r\n\r\n",
      ["a negative size"] = "-3\r\nabc\r\n0\r\n\r\n",
      ["a size that overflows"] = "fffffffffffffffff\r\nabc\r\n0\r\n\r\n",
      ["a bare LF after the size"] = "3\nabc\r\n0\r\n\r\n",
      ["a bare CR after the size"] = "3\rabc\r\n0\r\n\r\n",
      ["data not followed by CRLF"] = "3\r\nabcXY0\r\n\r\n",
      ["data followed by a bare LF"] = "3\r\nabc\n0\r\n\r\n",
      ["an empty extension name"] = "3;=v\r\nabc\r\n0\r\n\r\n",
      ["two semicolons"] = "3;;a\r\nabc\r\n0\r\n\r\n",
      ["a space inside a name"] = "3;a b\r\nabc\r\n0\r\n\r\n",
      ["an unterminated quoted value"] = "3;a=\"b\r\nabc\r\n0\r\n\r\n",
      ["a CTL in a quoted value"] = "3;a=\"\1\"\r\nabc\r\n0\r\n\r\n",
      ["an obs-folded trailer"] = "0\r\nX-T: a\r\n b\r\n\r\n",
      ["a trailer with a space before the colon"] = "0\r\nX-T : a\r\n\r\n",
      ["a trailer without a colon"] = "0\r\nX-T\r\n\r\n",
      ["a trailer ended by a bare LF"] = "0\r\nX-T: a\n\r\n",
      ["a bare LF at the end"] = "0\r\n\n",
      -- BWS comes only before ";" or "=" (chunk-ext = *( BWS ";" ... ))
      ["a space after the size"] = "3 \r\nabc\r\n0\r\n\r\n",
      ["a tab after the size"] = "3\t\r\nabc\r\n0\r\n\r\n",
      ["a space after the last size"] = "3\r\nabc\r\n0 \r\n\r\n",
      ["a space after an extension name"] = "3;a \r\nabc\r\n0\r\n\r\n",
      ["a space after an extension value"] = "3;a=b \r\nabc\r\n0\r\n\r\n",
      ["a space after a quoted value"] = "3;a=\"b\" \r\nabc\r\n0\r\n\r\n",
      ["a space after a semicolon only"] = "3; \r\nabc\r\n0\r\n\r\n",
    }
    for what, input in pairs(bad) do
      it(what, function()
        local body, err = decode(input)
        assert.is_nil(body)
        assert.matches("framing error", err)
      end)
    end
  end)

  it("limits the length of size and trailer lines", function()
    local long = "3;" .. string.rep("a", 100) .. "\r\nabc\r\n0\r\n\r\n"
    assert.equal("abc", (decode(long, 200)))
    local _, err = decode(long, 50)
    assert.matches("framing error", err)
    local _, terr = decode("0\r\nX: " .. string.rep("v", 100) .. "\r\n\r\n", 50)
    assert.matches("framing error", terr)
  end)
end)
