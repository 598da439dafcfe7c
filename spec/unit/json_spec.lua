-- owin.json (lua/owin/json.lua, docs/json.md): encode and decode that
-- round-trip over Debian's lua-cjson 2.1.0, the array mark, null, numbers,
-- the errors, and JSON bombs.
--
--   busted --lua=lua5.4 spec/unit/json_spec.lua

local json = require("owin.json")
local cjson = require("cjson")

local function fails(code, text, max)
  local r = { json.decode(text, max) }
  assert.is_nil(r[1])
  assert.are.equal(code, r[3])
  assert.are.equal(code .. ": ", r[2]:sub(1, #code + 2))
  return r[2]
end

local function nest(depth, leaf)
  local v = leaf or {}
  for _ = 2, depth do v = { v } end
  return v
end

describe("owin.json #unit", function()
  describe("encode", function()
    it("writes scalars, null and nil", function()
      assert.are.equal("true", json.encode(true))
      assert.are.equal("false", json.encode(false))
      assert.are.equal("null", json.encode(json.null))
      assert.are.equal("null", json.encode(nil))
      assert.are.equal("42", json.encode(42))
      assert.are.equal('"a\\"b\\\\c\\n\\u0001é"', json.encode('a"b\\c\n\1é'))
    end)

    it("writes / as it is, next to backslashes too", function()
      assert.are.equal('"/a/b"', json.encode("/a/b"))
      assert.are.equal('{"url":"http://x/y"}', json.encode({ url = "http://x/y" }))
      for _, s in ipairs({ "\\/", "\\", "\\\\/", "/\\", '"/"', "a\\/\\//" }) do
        assert.are.equal(s, json.decode(json.encode(s)))
        assert.are.equal(s, json.decode(json.encode({ s, json.array(), 2 ^ 60 }))[1])
      end
    end)

    it("writes sequences as arrays and string-keyed tables as objects", function()
      assert.are.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
      assert.are.equal('{"a":1}', json.encode({ a = 1 }))
      assert.are.equal('[{"a":[true,null]}]', json.encode({ { a = { true, json.null } } }))
    end)

    it("writes an empty table as {}, and one marked with json.array as []", function()
      assert.are.equal("{}", json.encode({}))
      assert.are.equal("[]", json.encode(json.array({})))
      assert.are.equal("[]", json.encode(json.array()))
      assert.are.equal('{"items":[],"meta":{}}',
        json.encode({ items = json.array(), meta = {} }):gsub('"meta":{},"items":%[%]',
          '"items":[],"meta":{}'), nil)
      assert.are.equal("[[],[[]],{}]", json.encode({ json.array(), { json.array() }, {} }))
    end)

    it("leaves the marked tables as they were", function()
      local empty = json.array()
      local v = { empty, { empty }, x = nil }
      json.encode(v)
      assert.is_nil(next(empty))
      assert.is_true(json.is_array(empty))
    end)

    it("writes an array that holds the placeholder string as it is", function()
      local odd = "\0owin.json: an empty array\0"
      assert.are.equal(cjson.encode({ odd }), json.encode({ odd }))
      assert.are.equal("[[]," .. cjson.encode(odd) .. "]", json.encode({ json.array(), odd }))
    end)

    it("writes integers exactly, beyond lua-cjson's 14 digits", function()
      assert.are.equal("9007199254740993", json.encode(9007199254740993))
      assert.are.equal("[9223372036854775807,-9223372036854775808]",
        json.encode({ math.maxinteger, math.mininteger }))
      assert.are.equal("[100000000000000]", json.encode({ 100000000000000 }))
    end)

    it("writes floats with the fewest digits that read back the same", function()
      for _, x in ipairs({ 0.1, 0.1 + 0.2, 1 / 3, 2 / 3, 1e300, 5e-324, 123456.789, -0.5,
                           2 ^ 60 + 0.0, 1.7976931348623157e308 }) do
        local s = json.encode(x)
        assert.are.equal(x, tonumber(s), s)
        local inner = json.encode({ x })
        assert.are.equal("[" .. s .. "]", inner)
      end
      assert.are.equal("0.30000000000000004", json.encode(0.1 + 0.2))
      assert.are.equal("0.1", json.encode(0.1))
      assert.are.equal("3", json.encode(3.0))
    end)

    it("gives the same bytes from lua-cjson and from its Lua writer", function()
      math.randomseed(1313)
      local words = { "a", "b", "title", "x y", "é", "\"q\"", "/", "\n", "" }
      local function value(depth)
        local r = math.random(depth > 3 and 5 or 8)
        if r == 1 then return math.random(-1e6, 1e6) end
        if r == 2 then return math.random(-1e6, 1e6) / 8 end
        if r == 3 then return words[math.random(#words)] end
        if r == 4 then return math.random(2) == 1 end
        if r == 5 then return json.null end
        if r == 6 then
          local t = {}
          for i = 1, math.random(0, 4) do t[i] = value(depth + 1) end
          return t
        end
        local t = {}
        for _ = 1, math.random(1, 4) do t[words[math.random(#words)] .. "k"] = value(depth + 1) end
        return t
      end
      for _ = 1, 300 do
        local v = value(1)
        assert.are.equal(json.encode(v), json._write_lua(v))
      end
    end)

    it("raises on holes, mixed keys and keys JSON cannot have, naming the path", function()
      assert.has_error(function() json.encode({ 1, nil, 3 }) end,
        "json.encode: an array has a hole at index 2 (use json.null for a null element) at value")
      assert.has_error(function() json.encode({ a = { 1, 2, x = 3 } }) end,
        "json.encode: a table with both string keys and array indexes cannot be JSON " ..
        "(mixed keys; make it an object or an array) at value.a")
      assert.has_error(function() json.encode({ list = { [0] = "z" } }) end,
        "json.encode: the number key 0 cannot be JSON (keys are strings, or array indexes " ..
        "from 1) at value.list")
      assert.has_error(function() json.encode({ [1.5] = 1 }) end,
        "json.encode: the number key 1.5 cannot be JSON (keys are strings, or array indexes " ..
        "from 1) at value")
      assert.has_error(function() json.encode({ [true] = 1 }) end,
        "json.encode: a boolean key cannot be JSON (keys are strings, or array indexes " ..
        "from 1) at value")
      assert.has_error(function() json.encode({ [404] = "Not Found" }) end,
        "json.encode: an array has a hole at index 1 (use json.null for a null element) at value")
      assert.has_error(function() json.encode(json.array({ x = 1 })) end,
        "json.encode: a table marked as an array has string keys at value")
    end)

    it("raises on NaN, inf and values that are not JSON, naming the path", function()
      assert.has_error(function() json.encode({ items = { { price = 0 / 0 } } }) end,
        "json.encode: NaN cannot be JSON at value.items[1].price")
      assert.has_error(function() json.encode({ ["a b"] = { math.huge } }) end,
        'json.encode: inf cannot be JSON at value["a b"][1]')
      assert.has_error(function() json.encode(-math.huge) end,
        "json.encode: -inf cannot be JSON at value")
      assert.has_error(function() json.encode({ f = print }) end,
        "json.encode: a function cannot be JSON at value.f")
      assert.has_error(function() json.encode({ io.stdout }) end,
        "json.encode: a userdata cannot be JSON at value[1]")
      assert.has_error(function() json.encode(coroutine.create(print)) end,
        "json.encode: a thread cannot be JSON at value")
    end)

    it("raises on strings and keys that are not UTF-8", function()
      assert.has_error(function() json.encode({ name = "caf\233" }) end,
        "json.encode: a string is not valid UTF-8 at value.name")
      assert.has_error(function() json.encode({ ["\255"] = 1 }) end,
        'json.encode: a key is not valid UTF-8 at value["\\255"]')
      assert.has_error(function() json.encode("\237\160\128") end,     -- a UTF-16 surrogate
        "json.encode: a string is not valid UTF-8 at value")
    end)

    it("raises past 1000 levels, and on a table that contains itself", function()
      assert.is_string(json.encode(nest(1000)))
      assert.has_error(function() json.encode(nest(1001)) end)
      local t = {}
      t.self = t
      local ok, err = pcall(json.encode, t)
      assert.is_false(ok)
      assert.matches("^json.encode: tables nested deeper than 1000 levels %(does a table " ..
        "contain itself%?%) at value%.self%.self%.self%.self%.self%(%.%.%.990 more%.%.%.%)%.self", err)
    end)

    it("encodes a table after an error as before", function()
      pcall(json.encode, { json.array(), 0 / 0 })
      assert.are.equal('[[],1]', json.encode({ json.array(), 1 }))
    end)
  end)

  describe("decode", function()
    it("decodes objects, arrays and scalars", function()
      assert.are.same({ a = { 1, 2 }, b = "x", c = true }, json.decode('{"a":[1,2],"b":"x","c":true}'))
      assert.are.equal("x", json.decode('"x"'))
      assert.are.equal(false, json.decode("false"))
      assert.are.equal(5, json.decode(" 5 "))
    end)

    it("marks decoded arrays, empty ones too, and not objects", function()
      local v = json.decode('{"a":[],"b":{},"c":[[],{}],"d":[1]}')
      assert.is_true(json.is_array(v.a))
      assert.is_false(json.is_array(v.b))
      assert.is_true(json.is_array(v.c))
      assert.is_true(json.is_array(v.c[1]))
      assert.is_false(json.is_array(v.c[2]))
      assert.is_true(json.is_array(v.d))
      assert.is_false(json.is_array(v))
      assert.is_true(json.is_array(json.decode("[ \n ]")))
      assert.is_false(json.is_array(json.decode("{ \t }")))
    end)

    it("tells [] from {} when only one kind is in the text, or both, or in strings", function()
      local v = json.decode('[[],[],{"k":[]}]')
      assert.is_true(json.is_array(v[1]) and json.is_array(v[3].k))
      v = json.decode('[{},{"k":{}}]')
      assert.is_false(json.is_array(v[1]) or json.is_array(v[2].k))
      v = json.decode('{"s":"[] and {}","a":[ ],"o":{ }}')
      assert.are.equal("[] and {}", v.s)
      assert.is_true(json.is_array(v.a))
      assert.is_false(json.is_array(v.o))
      v = json.decode('{"s":"a \\" [] {}","o":{}}')
      assert.are.equal('a " [] {}', v.s)
      assert.is_false(json.is_array(v.o))
    end)

    it("decodes null to json.null, distinct from nil", function()
      assert.are.equal(json.null, json.decode("null"))
      local v = json.decode('{"a":null,"b":[null]}')
      assert.are.equal(json.null, v.a)
      assert.are.equal(json.null, v.b[1])
      assert.are.equal(1, #v.b)
      assert.are_not.equal(nil, json.null)
      assert.are.equal(cjson.null, json.null)
    end)

    it("gives integers for whole numbers and exact values for long integers", function()
      local v = json.decode("[1,1.0,1e3,-0,2.5,12345678901234567,-9223372036854775808," ..
        "9223372036854775807,9007199254740993,99999999999999999999,1e17]")
      local types = {}
      for i = 1, #v do types[i] = math.type(v[i]) end
      assert.are.same({ "integer", "integer", "integer", "integer", "float", "integer", "integer",
                        "integer", "integer", "float", "float" }, types)
      assert.are.equal(12345678901234567, v[6])
      assert.are.equal(math.mininteger, v[7])
      assert.are.equal(math.maxinteger, v[8])
      assert.are.equal(9007199254740993, v[9])
      assert.are.equal(1e20, v[10])
      assert.are.equal(9007199254740993, json.decode("9007199254740993"))
      assert.are.equal(-9007199254740993, json.decode("-9007199254740993"))
      assert.are.same({ "12345678901234567", 12345678901234567 },
        json.decode('["12345678901234567",12345678901234567]'))
      assert.are.equal(1234567890123456.5, json.decode("1234567890123456.5"))
    end)

    it("accepts a byte order mark, and keeps the last of repeated keys", function()
      assert.are.same({ 1 }, json.decode("\239\187\191[1]"))
      assert.are.same({ a = 2 }, json.decode('{"a":1,"a":2}'))
    end)

    it("returns nil, EINVAL for text that is not JSON, saying where", function()
      assert.are.equal("EINVAL: invalid JSON: expected value but found the end of the text at byte 4",
        fails("EINVAL", "[1,"))
      assert.are.equal("EINVAL: invalid JSON: expected value but found '}' at byte 6",
        fails("EINVAL", '{"a":}'))
      assert.are.equal("EINVAL: invalid JSON: expected the end but found invalid token at byte 5",
        fails("EINVAL", "[1] x"))
      assert.are.equal("EINVAL: invalid JSON: expected value but found the end of the text at byte 1",
        fails("EINVAL", ""))
      assert.are.equal("EINVAL: invalid JSON: expected value but found ']' at byte 7",
        fails("EINVAL", "\239\187\191[1,]"))
      fails("EINVAL", "[NaN]")
      fails("EINVAL", "[Infinity]")
      fails("EINVAL", "[0x10]")
      fails("EINVAL", "{'a':1}")
      fails("EINVAL", '["\\ud800"]')
    end)

    it("returns nil, EINVAL for text that is not UTF-8", function()
      assert.are.equal("EINVAL: invalid JSON: not UTF-8 at byte 3", fails("EINVAL", '["\255"]'))
    end)

    it("refuses numbers out of a double's range", function()
      for _, text in ipairs({ "1e400", "[-1e400]", '{"a":1e999999999}', "1" .. string.rep("0", 400) }) do
        assert.are.equal("EINVAL: invalid JSON: a number is too large for a double (out of range)",
          fails("EINVAL", text))
      end
    end)

    it("refuses nesting deeper than 1000 levels", function()
      assert.is_table(json.decode(string.rep("[", 1000) .. string.rep("]", 1000)))
      assert.are.equal("EINVAL: invalid JSON: nested deeper than 1000 levels at byte 1001",
        fails("EINVAL", string.rep("[", 1001) .. string.rep("]", 1001)))
      assert.are.equal("EINVAL: invalid JSON: nested deeper than 1000 levels at byte 3001",
        fails("EINVAL", string.rep('{"a":[', 600)))
    end)

    it("refuses text longer than max_bytes before parsing it", function()
      local big = '"' .. string.rep("x", 2 * 1024 * 1024) .. '"'
      assert.are.equal("E2BIG: the JSON text is 2097154 bytes, over the limit of 1048576",
        fails("E2BIG", big, 1024 * 1024))
      assert.are.equal(2 * 1024 * 1024, #json.decode(big))              -- no limit unless given
      assert.are.same({}, json.decode("{}", 2))
      fails("E2BIG", "{} ", 2)
    end)

    it("survives bombs: a megabyte of brackets, of digits, of a number's exponent", function()
      local mb = 1024 * 1024
      fails("EINVAL", string.rep("[", mb))
      fails("EINVAL", string.rep("1", mb))
      fails("EINVAL", "1e" .. string.rep("9", mb))
      assert.are.equal(0, json.decode("0." .. string.rep("0", mb)))
      local many = "[" .. string.rep("[],", 100000) .. "{}]"
      local v = json.decode(many)
      assert.are.equal(100001, #v)
      assert.is_true(json.is_array(v[100000]))
      assert.is_false(json.is_array(v[100001]))
    end)

    it("raises on arguments of the wrong type", function()
      assert.has_error(function() json.decode({}) end,
        "bad argument #1 to 'decode' (string expected, got table)")
      assert.has_error(function() json.decode("{}", -1) end,
        "bad argument #2 to 'decode' (a size in bytes expected, got -1)")
      assert.has_error(function() json.decode("{}", "1k") end,
        "bad argument #2 to 'decode' (a size in bytes expected, got 1k)")
    end)
  end)

  describe("round trips", function()
    it("gives back the same text", function()
      for _, text in ipairs({
        "[]", "{}", "[[]]", "[{}]", "null", "[null]", '{"a":null}', "[1,2.5,-3]",
        '{"list":[],"map":{}}', "[[],[[]],[{}],{}]", "9007199254740993",
        "[0.30000000000000004,0.1,1e+300]", '["\\u0000",""]',
      }) do
        local back = json.encode(json.decode(text))
        if text:find("list", 1, true) then
          assert.is_true(back == '{"list":[],"map":{}}' or back == '{"map":{},"list":[]}', back)
        else
          assert.are.equal(text, back)
        end
      end
    end)

    it("keeps a value through encode and decode", function()
      local v = { name = "Ana", tags = json.array(), none = json.null, n = 9007199254740993,
                  x = 0.1, list = { 1, { a = json.array({ json.null }) } } }
      local back = json.decode(json.encode(v))
      assert.are.same(v, back)
      assert.is_true(json.is_array(back.tags))
      assert.is_true(json.is_array(back.list[2].a))
      assert.are.equal(json.null, back.none)
    end)
  end)

  describe("array", function()
    it("marks a table and returns it", function()
      local t = { 1, 2 }
      assert.are.equal(t, json.array(t))
      assert.is_true(json.is_array(t))
      assert.are.equal(t, json.array(t))                    -- twice is fine
      assert.is_false(json.is_array({}))
      assert.is_false(json.is_array("x"))
    end)

    it("takes tables dkjson marks too, and refuses other metatables", function()
      local dk = setmetatable({}, { __jsontype = "array" })
      assert.are.equal(dk, json.array(dk))
      assert.are.equal("[]", json.encode(dk))
      assert.has_error(function() json.array(setmetatable({}, {})) end,
        "bad argument #1 to 'array' (the table has a metatable of its own)")
      assert.has_error(function() json.array("x") end,
        "bad argument #1 to 'array' (table expected, got string)")
    end)
  end)
end)
