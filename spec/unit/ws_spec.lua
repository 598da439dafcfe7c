-- The WebSocket codec (src/codec/ws.c) against RFC 6455 and RFC 7692, through
-- the owl_codec test binding.
--
--   busted --lua=lua5.4 spec/unit/ws_spec.lua
local codec = require("owl_codec")

local TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10
local KEY = "\x37\xfa\x21\x3d"          -- RFC 6455 5.7's masking key

-- "c1 07 f2" -> the bytes
local function bytes(hex)
  return (hex:gsub("%s*(%x%x)%s*", function(h) return string.char(tonumber(h, 16)) end))
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- A client's (masked) frame
local function cframe(opcode, payload, opts)
  opts = opts or {}
  return codec.ws_frame(opcode, payload, { fin = opts.fin ~= false, rsv1 = opts.rsv1, mask = KEY })
end

-- A server's (unmasked) frame
local function sframe(opcode, payload, opts)
  opts = opts or {}
  return codec.ws_frame(opcode, payload, { fin = opts.fin ~= false, rsv1 = opts.rsv1 })
end

local function parse(s, opts)
  return codec.ws_parse(type(s) == "table" and s or { s }, opts)
end

-- Parses s whole, with every callback pausing, one byte a read when s is
-- short, and split in two at every position (or at a sample of them when
-- s is long); all must give the same events.  Returns the events.
local function every_split(s, opts)
  opts = opts or {}
  local whole, used = parse(s, opts)
  assert(whole, "the whole input was refused")
  assert.equal(#s, used)
  local paused = {}
  for k, v in pairs(opts) do paused[k] = v end
  paused.pause = true
  assert.same(whole, (parse(s, paused)))
  if #s <= 4096 then
    local each = {}
    for i = 1, #s do each[i] = s:sub(i, i) end
    assert.same(whole, (parse(each, opts)), "one byte a read")
  end
  local step = #s > 4096 and 997 or 1
  for i = 1, #s - 1, step do
    assert.same(whole, (parse({ s:sub(1, i), s:sub(i + 1) }, opts)), "split at " .. i)
  end
  if step > 1 then                      -- the header and the tail in full
    for _, i in ipairs({ 1, 2, 3, 4, 5, 9, 10, 11, 13, 14, 15, #s - 2, #s - 1 }) do
      assert.same(whole, (parse({ s:sub(1, i), s:sub(i + 1) }, opts)), "split at " .. i)
    end
  end
  return whole
end

-- Asserts that s is refused with code, and returns the piece it failed in
local function refused(code, s, opts)
  local ev, got, _, piece = parse(s, opts)
  assert.is_nil(ev)
  assert.equal(code, got)
  return piece
end

local function message(opcode, data) return { opcode = opcode, data = data } end

describe("#unit ws RFC 6455 5.7 examples", function()
  local client = { client = true }

  it("a single-frame unmasked text message", function()
    local f = bytes("81 05 48 65 6c 6c 6f")
    assert.same({ message(TEXT, "Hello") }, every_split(f, client))
    refused(1002, f)                        -- a server needs masks
  end)

  it("a single-frame masked text message", function()
    local f = bytes("81 85 37 fa 21 3d 7f 9f 4d 51 58")
    assert.same({ message(TEXT, "Hello") }, every_split(f))
    assert.equal(f, cframe(TEXT, "Hello"))
    refused(1002, f, client)                -- a client refuses masks
  end)

  it("a fragmented unmasked text message", function()
    local f = bytes("01 03 48 65 6c 80 02 6c 6f")
    assert.same({ message(TEXT, "Hello") }, every_split(f, client))
    local masked = cframe(TEXT, "Hel", { fin = false }) .. cframe(CONT, "lo")
    assert.same({ message(TEXT, "Hello") }, every_split(masked))
  end)

  it("an unmasked ping and a masked pong", function()
    local ping = bytes("89 05 48 65 6c 6c 6f")
    assert.same({ message(PING, "Hello") }, every_split(ping, client))
    local pong = bytes("8a 85 37 fa 21 3d 7f 9f 4d 51 58")
    assert.same({ message(PONG, "Hello") }, every_split(pong))
  end)

  it("256 bytes of binary in one unmasked frame (16-bit length)", function()
    local data = {}
    for i = 0, 255 do data[#data + 1] = string.char(i) end
    data = table.concat(data)
    local f = bytes("82 7e 01 00") .. data
    assert.equal(f, sframe(BINARY, data))
    assert.same({ message(BINARY, data) }, every_split(f, client))
    assert.same({ message(BINARY, data) }, every_split(cframe(BINARY, data)))
  end)

  it("64 KiB of binary in one unmasked frame (64-bit length)", function()
    local data = string.rep("\0\1\2\3\4\5\6\255", 8192)
    local f = bytes("82 7f 00 00 00 00 00 01 00 00") .. data
    assert.equal(f, sframe(BINARY, data))
    assert.same({ message(BINARY, data) }, every_split(f, client))
    assert.same({ message(BINARY, data) }, every_split(cframe(BINARY, data)))
  end)

  it("splits the 64 KiB frame at every byte position", function()
    local data = string.rep("abcdefgh", 8192)
    local f = cframe(BINARY, data)
    local want = { message(BINARY, data) }
    for i = 1, #f - 1 do
      local ev = parse({ f:sub(1, i), f:sub(i + 1) })
      if not (ev and #ev == 1 and ev[1].data == data) then
        assert.same(want, ev, "split at " .. i)
      end
    end
  end)
end)

describe("#unit ws lengths", function()
  it("writes the 7-, 16- and 64-bit encodings", function()
    assert.equal("8200", hex(codec.ws_header(BINARY, 0)))
    assert.equal("827d", hex(codec.ws_header(BINARY, 125)))
    assert.equal("827e007e", hex(codec.ws_header(BINARY, 126)))
    assert.equal("827effff", hex(codec.ws_header(BINARY, 65535)))
    assert.equal("827f0000000000010000", hex(codec.ws_header(BINARY, 65536)))
    assert.equal("827f0000000100000000", hex(codec.ws_header(BINARY, 1 << 32)))
    assert.equal("827f7fffffffffffffff", hex(codec.ws_header(BINARY, math.maxinteger)))
    assert.equal("01fe007e37fa213d", hex(codec.ws_header(TEXT, 126, { fin = false, mask = KEY })))
    assert.equal("c100", hex(codec.ws_header(TEXT, 0, { rsv1 = true })))
  end)

  it("reads every length at the edges of the encodings", function()
    for _, n in ipairs({ 0, 1, 125, 126, 127, 65535, 65536, 65537 }) do
      local data = string.rep("x", n)
      assert.same({ message(BINARY, data) }, (parse(cframe(BINARY, data))), "length " .. n)
    end
  end)

  it("refuses lengths not in their minimal encoding", function()
    refused(1002, bytes("82 fe 00 7d") .. KEY .. string.rep("x", 125))
    refused(1002, bytes("82 fe 00 00") .. KEY)
    refused(1002, bytes("82 ff 00 00 00 00 00 00 ff ff") .. KEY .. string.rep("x", 65535))
  end)

  it("refuses a 64-bit length with the top bit set, at the header", function()
    local head = bytes("82 ff 80 00 00 00 00 00 00 05") .. KEY
    assert.equal(1, refused(1002, { head, "hello" }, { max_frame = 0, max_message = 0 }))
  end)

  it("refuses a frame over max_frame as soon as its header is read", function()
    local head = codec.ws_header(BINARY, 1 << 40, { mask = KEY })
    assert.equal(1, refused(1009, { head, "more" }))
    assert.equal(1, refused(1009, { codec.ws_header(BINARY, 101, { mask = KEY }), "x" },
                            { max_frame = 100 }))
    assert.same({ message(BINARY, string.rep("x", 100)) },
                (parse(cframe(BINARY, string.rep("x", 100)), { max_frame = 100 })))
  end)

  it("refuses a fragmented message over max_message at the frame that passes it", function()
    local f1 = cframe(TEXT, string.rep("a", 60), { fin = false })
    local f2 = cframe(CONT, string.rep("b", 41))
    assert.equal(2, refused(1009, { f1, f2 }, { max_message = 100 }))
    local ok = cframe(CONT, string.rep("b", 40))
    assert.same({ message(TEXT, string.rep("a", 60) .. string.rep("b", 40)) },
                (parse({ f1, ok }, { max_message = 100 })))
  end)
end)

describe("#unit ws refusals", function()
  local client = { client = true }
  local pmd = { deflate = {} }

  it("refuses an unmasked frame from a client and a masked one from a server", function()
    refused(1002, sframe(TEXT, "hi"))
    refused(1002, cframe(TEXT, "hi"), client)
  end)

  it("refuses RSV bits no extension owns", function()
    refused(1002, bytes("c1 82") .. KEY .. "hi")          -- RSV1, no deflate
    refused(1002, bytes("a1 82") .. KEY .. "hi")          -- RSV2
    refused(1002, bytes("91 82") .. KEY .. "hi")          -- RSV3
    refused(1002, bytes("a1 82") .. KEY .. "hi", pmd)
    refused(1002, bytes("91 82") .. KEY .. "hi", pmd)
  end)

  it("refuses RSV1 on a continuation or a control frame even with deflate", function()
    local first = cframe(TEXT, codec.ws_deflate({ "He", "llo" }, {})[1], { fin = false, rsv1 = true })
    refused(1002, { first, bytes("c0 80") .. KEY }, pmd)
    refused(1002, bytes("c9 80") .. KEY, pmd)
    refused(1002, bytes("c8 80") .. KEY, pmd)
  end)

  it("refuses reserved opcodes, at the first byte", function()
    for _, op in ipairs({ 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 }) do
      assert.equal(1, refused(1002, { string.char(0x80 | op), "\x80" .. KEY }), "opcode " .. op)
    end
  end)

  it("refuses control frames over 125 bytes", function()
    refused(1002, cframe(PING, string.rep("x", 126)))
    refused(1002, bytes("89 fe 00 7e") .. KEY .. string.rep("x", 126))
    assert.same({ message(PING, string.rep("x", 125)) }, (parse(cframe(PING, string.rep("x", 125)))))
  end)

  it("refuses fragmented control frames", function()
    refused(1002, cframe(PING, "x", { fin = false }))
    refused(1002, cframe(CLOSE, "", { fin = false }))
  end)

  it("refuses a continuation with no message open", function()
    refused(1002, cframe(CONT, "x"))
    refused(1002, cframe(TEXT, "done") .. cframe(CONT, "x"))
  end)

  it("refuses a new data frame while a fragmented message is open", function()
    refused(1002, cframe(TEXT, "a", { fin = false }) .. cframe(TEXT, "b"))
    refused(1002, cframe(BINARY, "a", { fin = false }) .. cframe(TEXT, "b"))
    refused(1002, cframe(TEXT, "a", { fin = false }) .. cframe(BINARY, "b", { fin = false }))
  end)

  it("refuses invalid UTF-8 in a text message, not in a binary one", function()
    refused(1007, cframe(TEXT, "\xff"))
    assert.same({ message(BINARY, "\xff") }, (parse(cframe(BINARY, "\xff"))))
  end)

  it("refuses a text message that ends inside a character", function()
    refused(1007, cframe(TEXT, "\xe2\x82"))
    refused(1007, cframe(TEXT, "\xe2", { fin = false }) .. cframe(CONT, "\x82"))
    assert.same({ message(TEXT, "\xe2\x82\xac") },
                (parse(cframe(TEXT, "\xe2", { fin = false }) .. cframe(CONT, "\x82\xac"))))
  end)

  it("keeps refusing once it has failed", function()
    local ev, code, _, piece = parse({ cframe(CONT, "x"), cframe(TEXT, "fine") })
    assert.is_nil(ev)
    assert.equal(1002, code)
    assert.equal(1, piece)
  end)
end)

describe("#unit ws close frames", function()
  it("delivers a close with its code and reason, and stops there", function()
    local f = cframe(CLOSE, "\x03\xe8bye") .. cframe(TEXT, "after")
    local ev, used, closed = parse({ f })
    assert.same({ { opcode = CLOSE, data = "\x03\xe8bye", code = 1000 } }, ev)
    assert.equal(#cframe(CLOSE, "\x03\xe8bye"), used)
    assert.is_true(closed)
  end)

  it("gives 1005 for an empty close", function()
    local ev = parse(cframe(CLOSE, ""))
    assert.same({ { opcode = CLOSE, data = "", code = 1005 } }, ev)
  end)

  it("refuses a one-byte close payload", function()
    refused(1002, cframe(CLOSE, "\x03"))
  end)

  it("accepts the codes RFC 6455 7.4 allows", function()
    for _, code in ipairs({ 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                            1012, 1013, 1014, 3000, 3999, 4000, 4999 }) do
      local ev = parse(cframe(CLOSE, string.pack(">I2", code)))
      assert.is_table(ev, "code " .. code)
      assert.equal(code, ev[1].code)
    end
  end)

  it("refuses the codes it does not", function()
    for _, code in ipairs({ 0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                            5000, 65535 }) do
      local ev, got = parse(cframe(CLOSE, string.pack(">I2", code)))
      assert.is_nil(ev, "code " .. code)
      assert.equal(1002, got, "code " .. code)
    end
  end)

  it("refuses a reason that is not UTF-8", function()
    refused(1007, cframe(CLOSE, "\x03\xe8\xff"))
    refused(1007, cframe(CLOSE, "\x03\xe8\xce"))
    assert.equal("κόσμε", parse(cframe(CLOSE, "\x03\xe8κόσμε"))[1].data:sub(3))
  end)

  it("builds close payloads, cutting the reason at a character", function()
    assert.equal("\x03\xe8", codec.ws_close_payload(1000))
    assert.equal("\x03\xe9going", codec.ws_close_payload(1001, "going"))
    assert.equal("", codec.ws_close_payload(0))
    local long = string.rep("a", 122) .. "é"   -- 124 bytes: é does not fit
    local p = codec.ws_close_payload(1000, long)
    assert.equal(124, #p)
    assert.equal(string.rep("a", 122), p:sub(3))
    assert.equal(125, #codec.ws_close_payload(1000, string.rep("b", 200)))
  end)
end)

describe("#unit ws control frames inside a fragmented message", function()
  it("delivers pings and pongs as they come and the message at its end", function()
    local f = cframe(TEXT, "Hel", { fin = false }) .. cframe(PING, "p1") ..
              cframe(CONT, "l", { fin = false }) .. cframe(PONG, "") ..
              cframe(PING, "p2") .. cframe(CONT, "o")
    assert.same({ message(PING, "p1"), message(PONG, ""), message(PING, "p2"),
                  message(TEXT, "Hello") }, every_split(f))
  end)

  it("closes in the middle of a fragmented message", function()
    local f = cframe(BINARY, "ab", { fin = false }) .. cframe(CLOSE, "\x03\xe9")
    local ev, _, closed = parse(f)
    assert.same({ { opcode = CLOSE, data = "\x03\xe9", code = 1001 } }, ev)
    assert.is_true(closed)
  end)

  it("keeps many zero-length fragments apart from control frames", function()
    local f = cframe(BINARY, "", { fin = false }) .. cframe(PING, "") ..
              cframe(CONT, "", { fin = false }) .. cframe(CONT, "")
    assert.same({ message(PING, ""), message(BINARY, "") }, every_split(f))
  end)
end)

describe("#unit ws UTF-8 (Markus Kuhn's decoder stress test)", function()
  local valid = {
    ["an empty string"] = "",
    ["Greek kosme"] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
    ["U+0000"] = "\0",
    ["U+007F"] = "\x7f",
    ["U+0080"] = "\xc2\x80",
    ["U+07FF"] = "\xdf\xbf",
    ["U+0800"] = "\xe0\xa0\x80",
    ["U+D7FF"] = "\xed\x9f\xbf",
    ["U+E000"] = "\xee\x80\x80",
    ["U+FFFD"] = "\xef\xbf\xbd",
    ["U+FFFE (a noncharacter, still UTF-8)"] = "\xef\xbf\xbe",
    ["U+FFFF"] = "\xef\xbf\xbf",
    ["U+10000"] = "\xf0\x90\x80\x80",
    ["U+10FFFF"] = "\xf4\x8f\xbf\xbf",
    ["long ASCII with a character at the end"] = string.rep("a", 37) .. "\xf0\x9f\x98\x80",
  }

  -- { bytes, the 1-based byte where a decoder must already know }
  local invalid = {
    ["a lone first continuation byte"] = { "\x80", 1 },
    ["a lone last continuation byte"] = { "\xbf", 1 },
    ["two continuation bytes"] = { "\x80\xbf", 1 },
    ["a continuation after a character"] = { "a\xc2\x80\x80", 4 },
    ["a lonely 2-byte start and a space"] = { "\xc2 ", 2 },
    ["a lonely 3-byte start and a space"] = { "\xe1 ", 2 },
    ["a lonely 4-byte start and a space"] = { "\xf1 ", 2 },
    ["a 5-byte start"] = { "\xf8 ", 1 },
    ["a 6-byte start"] = { "\xfc ", 1 },
    ["a 2-byte sequence missing its last byte"] = { "\xdf", 2 },
    ["a 3-byte sequence missing its last byte"] = { "\xef\xbf", 3 },
    ["a 4-byte sequence missing its last byte"] = { "\xf4\x8f\xbf", 4 },
    ["concatenated incomplete sequences"] = { "\xc2\xe0\x80", 2 },
    ["impossible byte fe"] = { "\xfe", 1 },
    ["impossible byte ff"] = { "\xff", 1 },
    ["fe fe ff ff"] = { "\xfe\xfe\xff\xff", 1 },
    ["overlong / in 2 bytes"] = { "\xc0\xaf", 1 },
    ["overlong / in 3 bytes"] = { "\xe0\x80\xaf", 2 },
    ["overlong / in 4 bytes"] = { "\xf0\x80\x80\xaf", 2 },
    ["overlong / in 5 bytes"] = { "\xf8\x80\x80\x80\xaf", 1 },
    ["overlong / in 6 bytes"] = { "\xfc\x80\x80\x80\x80\xaf", 1 },
    ["maximum overlong in 2 bytes"] = { "\xc1\xbf", 1 },
    ["maximum overlong in 3 bytes"] = { "\xe0\x9f\xbf", 2 },
    ["maximum overlong in 4 bytes"] = { "\xf0\x8f\xbf\xbf", 2 },
    ["maximum overlong in 5 bytes"] = { "\xf8\x87\xbf\xbf\xbf", 1 },
    ["maximum overlong in 6 bytes"] = { "\xfc\x83\xbf\xbf\xbf\xbf", 1 },
    ["overlong NUL in 2 bytes"] = { "\xc0\x80", 1 },
    ["overlong NUL in 3 bytes"] = { "\xe0\x80\x80", 2 },
    ["overlong NUL in 4 bytes"] = { "\xf0\x80\x80\x80", 2 },
    ["overlong NUL in 5 bytes"] = { "\xf8\x80\x80\x80\x80", 1 },
    ["overlong NUL in 6 bytes"] = { "\xfc\x80\x80\x80\x80\x80", 1 },
    ["surrogate U+D800"] = { "\xed\xa0\x80", 2 },
    ["surrogate U+DB7F"] = { "\xed\xad\xbf", 2 },
    ["surrogate U+DB80"] = { "\xed\xae\x80", 2 },
    ["surrogate U+DBFF"] = { "\xed\xaf\xbf", 2 },
    ["surrogate U+DC00"] = { "\xed\xb0\x80", 2 },
    ["surrogate U+DF80"] = { "\xed\xbe\x80", 2 },
    ["surrogate U+DFFF"] = { "\xed\xbf\xbf", 2 },
    ["paired surrogates U+D800 U+DC00"] = { "\xed\xa0\x80\xed\xb0\x80", 2 },
    ["paired surrogates U+DBFF U+DFFF"] = { "\xed\xaf\xbf\xed\xbf\xbf", 2 },
    ["U+110000"] = { "\xf4\x90\x80\x80", 2 },
    ["U+13FFFF"] = { "\xf4\xbf\xbf\xbf", 2 },
    ["U+140000 (f5)"] = { "\xf5\x80\x80\x80", 1 },
    ["U+1FFFFF (f7)"] = { "\xf7\xbf\xbf\xbf", 1 },
  }

  -- Every continuation byte alone, every lonely start byte before a space
  for c = 0x80, 0xbf do
    invalid[string.format("continuation byte %02x alone", c)] = { string.char(c), 1 }
  end
  for c = 0xc0, 0xfd do
    invalid[string.format("start byte %02x before a space", c)] =
      { string.char(c) .. " ", (c <= 0xc1 or c >= 0xf5) and 1 or 2 }
  end

  for what, s in pairs(valid) do
    it("accepts " .. what, function()
      assert.is_true(codec.utf8_valid(s))
      local each = {}
      for i = 1, #s do each[i] = s:sub(i, i) end
      assert.is_true(codec.utf8_valid(each))
      assert.same({ message(TEXT, s) }, every_split(cframe(TEXT, s)))
    end)
  end

  for what, case in pairs(invalid) do
    it("refuses " .. what .. " at the byte it becomes impossible", function()
      local s, at = case[1], case[2]
      assert.is_false((codec.utf8_valid(s)))
      local each = {}
      for i = 1, #s do each[i] = s:sub(i, i) end
      local ok, piece = codec.utf8_valid(each)
      assert.is_false(ok)
      assert.equal(at, piece)
      refused(1007, cframe(TEXT, s))
    end)
  end

  it("fails in the first fragment before the last one arrives", function()
    local f1 = cframe(TEXT, "ok\xc0\xaf", { fin = false })
    local f2 = cframe(CONT, "rest")
    assert.equal(1, refused(1007, { f1, f2 }))
  end)

  it("fails inside a frame before its payload is all in", function()
    local f = cframe(TEXT, "abc\xed\xa0\x80" .. string.rep("x", 1000))
    assert.equal(1, refused(1007, { f:sub(1, 14), f:sub(15) }))
  end)

  it("checks a character split across fragments", function()
    local f = cframe(TEXT, "\xf0\x9f", { fin = false }) .. cframe(CONT, "\x98", { fin = false }) ..
              cframe(CONT, "\x80!")
    assert.same({ message(TEXT, "\xf0\x9f\x98\x80!") }, every_split(f))
    local bad = cframe(TEXT, "\xf0\x9f", { fin = false }) .. cframe(CONT, "\x28")
    refused(1007, bad)
  end)
end)

describe("#unit ws permessage-deflate (RFC 7692 7.2.3)", function()
  local client = { client = true, deflate = {} }
  local server = { deflate = {} }

  -- The example's server frame as it is, and as a client would mask it
  local function both(hexframe, want, opts_c, opts_s)
    local f = bytes(hexframe)
    assert.same(want, every_split(f, opts_c or client))
    local masked, i = {}, 1
    while i <= #f do                    -- re-frame each frame with a mask
      local b1, b2 = f:byte(i, i + 1)
      local len = b2 & 0x7f
      masked[#masked + 1] = codec.ws_frame(b1 & 0x0f, f:sub(i + 2, i + 1 + len),
                                           { fin = b1 & 0x80 ~= 0, rsv1 = b1 & 0x40 ~= 0, mask = KEY })
      i = i + 2 + len
    end
    assert.same(want, every_split(table.concat(masked), opts_s or server))
  end

  it("7.2.3.1: 'Hello' in one compressed DEFLATE block", function()
    both("c1 07 f2 48 cd c9 c9 07 00", { message(TEXT, "Hello") })
  end)

  it("7.2.3.1: the same message fragmented into two frames", function()
    both("41 03 f2 48 cd 80 04 c9 c9 07 00", { message(TEXT, "Hello") })
  end)

  it("7.2.3.2: two messages sharing the LZ77 window", function()
    both("c1 07 f2 48 cd c9 c9 07 00 c1 05 f2 00 11 00 00",
         { message(TEXT, "Hello"), message(TEXT, "Hello") })
  end)

  it("7.2.3.2: the same message twice with no context takeover", function()
    local nct = { client_no_context_takeover = true, server_no_context_takeover = true }
    both("c1 07 f2 48 cd c9 c9 07 00 c1 07 f2 48 cd c9 c9 07 00",
         { message(TEXT, "Hello"), message(TEXT, "Hello") },
         { client = true, deflate = nct }, { deflate = nct })
  end)

  it("7.2.3.2: refuses a back-reference into a window that was reset", function()
    local f = bytes("c1 07 f2 48 cd c9 c9 07 00 c1 05 f2 00 11 00 00")
    refused(1007, f, { client = true, deflate = { server_no_context_takeover = true } })
  end)

  it("7.2.3.3: a DEFLATE block with no compression", function()
    both("c1 0b 00 05 00 fa ff 48 65 6c 6c 6f 00", { message(TEXT, "Hello") })
  end)

  it("7.2.3.4: a DEFLATE block with BFINAL set, and the window kept after it", function()
    both("c1 08 f3 48 cd c9 c9 07 00 00 c1 05 f2 00 11 00 00",
         { message(TEXT, "Hello"), message(TEXT, "Hello") })
  end)

  it("7.2.3.5: two DEFLATE blocks in one message", function()
    both("c1 0d f2 48 05 00 00 00 ff ff ca c9 c9 07 00", { message(TEXT, "Hello") })
  end)

  it("compresses 'Hello' as the RFC does, with and without context takeover", function()
    assert.equal("f248cdc9c90700", hex(codec.ws_deflate("Hello", {})))
    local two = codec.ws_send({ { opcode = TEXT, data = "Hello", compress = true },
                                { opcode = TEXT, data = "Hello", compress = true } }, {})
    assert.equal("c107f248cdc9c90700c105f200110000", hex(two))
    local nct = codec.ws_send({ { opcode = TEXT, data = "Hello", compress = true },
                                { opcode = TEXT, data = "Hello", compress = true } },
                              { server_no_context_takeover = true })
    assert.equal("c107f248cdc9c90700c107f248cdc9c90700", hex(nct))
  end)

  it("passes uncompressed messages through when deflate was agreed", function()
    assert.same({ message(TEXT, "plain") }, (parse(cframe(TEXT, "plain"), server)))
  end)

  it("delivers control frames between compressed fragments", function()
    local parts = codec.ws_deflate({ "Hel", "lo, ", "world" }, {})
    local f = cframe(TEXT, parts[1], { fin = false, rsv1 = true }) .. cframe(PING, "x") ..
              cframe(CONT, parts[2], { fin = false }) .. cframe(PONG, "y") ..
              cframe(CONT, parts[3])
    assert.same({ message(PING, "x"), message(PONG, "y"), message(TEXT, "Hello, world") },
                every_split(f, server))
  end)

  -- zlib takes a distance past a small window when the bytes it points at
  -- came out in the same inflate call: with the window the peer announced,
  -- such a message was read in one read and refused in several
  it("reads a back-reference past the announced window however it is split", function()
    local seed, t = 7, {}
    for i = 1, 600 do
      seed = (seed * 1103515245 + 12345) % 2147483648
      t[i] = string.char(97 + (seed >> 16) % 26)
    end
    local data = table.concat(t)
    data = data .. data:sub(1, 64)      -- 600 bytes back: past a 9-bit window
    local z = codec.ws_deflate(data, { server_max_window_bits = 15 })
    assert.is_true(#z < #data - 40, "the repeat is a back-reference")
    local f = cframe(TEXT, z, { rsv1 = true })
    for bits = 9, 15 do
      assert.same({ message(TEXT, data) },
                  every_split(f, { deflate = { client_max_window_bits = bits } }))
    end
  end)

  it("refuses corrupt compressed data with 1007", function()
    refused(1007, cframe(BINARY, "\xff\xff\xff\xff", { rsv1 = true }), server)
    refused(1007, cframe(BINARY, "\xf2\x48", { rsv1 = true }), server)   -- cut in a block
  end)

  it("refuses compressed text that inflates to invalid UTF-8", function()
    local z = codec.ws_deflate("ok \xed\xa0\x80 no", {})
    refused(1007, cframe(TEXT, z, { rsv1 = true }), server)
    assert.same({ message(BINARY, "ok \xed\xa0\x80 no") },
                (parse(cframe(BINARY, z, { rsv1 = true }), server)))
  end)

  it("refuses a compressed message larger than max_message once inflated", function()
    local data = string.rep("a", 1000)
    local f = cframe(BINARY, codec.ws_deflate(data, {}), { rsv1 = true })
    refused(1009, f, { deflate = {}, max_message = 999 })
    assert.same({ message(BINARY, data) }, (parse(f, { deflate = {}, max_message = 1000 })))
  end)

  it("refuses a zip bomb with 1009 long before inflating it all", function()
    local zeros = string.rep("\0", 10 << 20)
    local z = codec.ws_deflate(zeros, {})
    assert.is_true(#z < 20 * 1024)
    local f = cframe(BINARY, z, { rsv1 = true })
    local pieces = {}
    for i = 1, #f, 128 do pieces[#pieces + 1] = f:sub(i, i + 127) end
    local ev, code, before, piece, held = parse(pieces, { deflate = {}, max_message = 1 << 20 })
    assert.is_nil(ev)
    assert.equal(1009, code)
    assert.same({}, before)
    assert.is_true(piece < #pieces / 5, "failed at piece " .. piece .. " of " .. #pieces)
    assert.is_true(held <= (1 << 20) + 1, "held " .. held)
    -- the same under a limit it fits: all of it
    local ok = parse(pieces, { deflate = {}, max_message = 16 << 20 })
    assert.equal(#zeros, #ok[1].data)
  end)

  it("counts max_frame on the compressed frame", function()
    local z = codec.ws_deflate(string.rep("a", 5000), {})
    assert.is_true(#z < 100)
    assert.same(5000, #parse(cframe(BINARY, z, { rsv1 = true }),
                             { deflate = {}, max_frame = 100 })[1].data)
    refused(1009, cframe(BINARY, string.rep("\0", 101), { rsv1 = true }),
            { deflate = {}, max_frame = 100 })
  end)
end)

describe("#unit ws permessage-deflate round trips", function()
  local function words(n)
    local t = {}
    for i = 1, n do t[i] = ({ "alpha", "beta", "gamma", "δέλτα", "🙂" })[i % 5 + 1] .. i end
    return table.concat(t, " ")
  end

  local cases = {
    { name = "defaults", params = {} },
    { name = "no context takeover", params = { server_no_context_takeover = true,
                                                client_no_context_takeover = true } },
  }
  for bits = 8, 15 do
    cases[#cases + 1] = { name = "window bits " .. bits,
                          params = { server_max_window_bits = bits, client_max_window_bits = bits } }
  end
  cases[#cases + 1] = { name = "level 1, memLevel 1", params = { level = 1, mem_level = 1 } }

  for _, case in ipairs(cases) do
    it("sends and reads back messages with " .. case.name, function()
      local big = words(20000)
      local frames = {
        { opcode = TEXT, data = "Hello", compress = true },
        { opcode = TEXT, data = "Hello", compress = true },
        { opcode = BINARY, data = "", compress = true },
        { opcode = TEXT, data = big, compress = true },
        { opcode = TEXT, data = "Hel", fin = false, compress = true },
        { opcode = PING, data = "between" },
        { opcode = CONT, data = "", fin = false },
        { opcode = CONT, data = "lo" },
        { opcode = BINARY, data = "a", fin = false, compress = true },
        { opcode = CONT, data = "" },
        { opcode = TEXT, data = "not compressed" },
        { opcode = BINARY, data = string.rep("\0\1", 70000), compress = true },
        { opcode = TEXT, data = big, compress = true },
      }
      local wire = assert(codec.ws_send(frames, case.params))
      local ev = codec.ws_parse({ wire }, { client = true, deflate = case.params })
      assert.same({ message(TEXT, "Hello"), message(TEXT, "Hello"), message(BINARY, ""),
                    message(TEXT, big), message(PING, "between"), message(TEXT, "Hello"),
                    message(BINARY, "a"), message(TEXT, "not compressed"),
                    message(BINARY, string.rep("\0\1", 70000)), message(TEXT, big) }, ev)
      assert.is_true(#wire < #big, "compressed")
    end)
  end

  it("sets RSV1 on a message's first frame only", function()
    local wire = codec.ws_send({ { opcode = TEXT, data = "Hel", fin = false, compress = true },
                                 { opcode = CONT, data = "lo" } }, {})
    assert.equal(0x41, wire:byte(1))
    local second = 2 + (wire:byte(2) & 0x7f) + 1
    assert.equal(0x80, wire:byte(second))
  end)
end)

describe("#unit ws writer", function()
  it("frames messages, fragments and control frames unmasked", function()
    assert.equal(bytes("81 05") .. "Hello", codec.ws_send({ { opcode = TEXT, data = "Hello" } }))
    local f = codec.ws_send({ { opcode = TEXT, data = "Hel", fin = false },
                              { opcode = PING, data = "" },
                              { opcode = CONT, data = "lo" } })
    assert.equal(bytes("01 03 48 65 6c 89 00 80 02 6c 6f"), f)
    local big = string.rep("z", 70000)
    assert.equal(bytes("82 7f 00 00 00 00 00 01 11 70") .. big,
                 codec.ws_send({ { opcode = BINARY, data = big } }))
  end)

  it("ignores compress when deflate was not agreed", function()
    assert.equal(bytes("81 02 68 69"), codec.ws_send({ { opcode = TEXT, data = "hi", compress = true } }))
  end)

  describe("refuses with EINVAL and writes nothing", function()
    local bad = {
      ["a continuation with no message open"] = { { opcode = CONT, data = "x" } },
      ["a new message while one is open"] = { { opcode = TEXT, data = "a", fin = false },
                                              { opcode = BINARY, data = "b" } },
      ["a fragmented ping"] = { { opcode = PING, data = "", fin = false } },
      ["a 126-byte pong"] = { { opcode = PONG, data = string.rep("x", 126) } },
      ["a reserved opcode"] = { { opcode = 3, data = "" } },
    }
    for what, frames in pairs(bad) do
      it(what, function()
        local wire, code, index = codec.ws_send(frames)
        assert.is_nil(wire)
        assert.equal(-22, code)
        assert.equal(#frames, index)
      end)
    end
  end)
end)

describe("#unit ws handshake", function()
  it("computes RFC 6455 1.3's Sec-WebSocket-Accept", function()
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", codec.ws_accept("dGhlIHNhbXBsZSBub25jZQ=="))
  end)

  it("computes other accept values (SHA-1 over block boundaries)", function()
    assert.equal("HSmrc0sMlYUkAGmm5OPpG2HaGWk=", codec.ws_accept("x3JJHMbDL1EzLkh9GBhXDw=="))
    assert.equal("C/0nmHhBztSRGR1CwL6Tf4ZjwpY=", codec.ws_accept("AQIDBAUGBwgJCgsMDQ4PEA=="))
    assert.equal("Kfh9QIsMVZcl6xEPYxPHzW8SZ8w=", codec.ws_accept(""))
    assert.equal("+taVhj8zzaJPYE6HHo1ugamK/Ug=", codec.ws_accept(string.rep("a", 100)))
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", codec.ws_accept(" dGhlIHNhbXBsZSBub25jZQ==\t"))
  end)

  it("accepts keys that are base64 of 16 bytes", function()
    assert.is_true(codec.ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=="))
    assert.is_true(codec.ws_key_valid("AQIDBAUGBwgJCgsMDQ4PEA=="))
    assert.is_true(codec.ws_key_valid("+/+/+/+/+/+/+/+/+/+/+w=="))
    assert.is_true(codec.ws_key_valid("  dGhlIHNhbXBsZSBub25jZQ== "))
  end)

  it("refuses keys that are not", function()
    for _, key in ipairs({ "", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ===",
                           "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQAA",
                           "dGhlIHNhbXBsZSBub25j===", "dGhlIHNhbXBsZSBub25jZ!==",
                           "dGhlIHNhbXBsZSBub25jZ-==", "dGhlIHNhbXBs ZSBub25jZQ==",
                           "dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==",
                           "dGhlIHNhbXBsZSBub25\0ZQ==" }) do
      assert.is_false(codec.ws_key_valid(key), key)
    end
  end)
end)

describe("#unit ws permessage-deflate negotiation", function()
  local default = { server_no_context_takeover = false, client_no_context_takeover = false,
                    server_max_window_bits = 15, client_max_window_bits = 15 }
  local function with(t)
    local r = {}
    for k, v in pairs(default) do r[k] = v end
    for k, v in pairs(t) do r[k] = v end
    return r
  end

  it("accepts a bare offer", function()
    local params, resp = codec.deflate_negotiate("permessage-deflate")
    assert.same(default, params)
    assert.equal("permessage-deflate", resp)
  end)

  it("accepts client_max_window_bits without a value and answers nothing for it", function()
    local params, resp = codec.deflate_negotiate("permessage-deflate; client_max_window_bits")
    assert.same(default, params)
    assert.equal("permessage-deflate", resp)
  end)

  it("echoes the parameters of a full offer", function()
    local params, resp = codec.deflate_negotiate(
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; " ..
      "server_max_window_bits=10; client_max_window_bits=12")
    assert.same(with({ server_no_context_takeover = true, client_no_context_takeover = true,
                       server_max_window_bits = 10, client_max_window_bits = 12 }), params)
    assert.equal("permessage-deflate; server_no_context_takeover; client_no_context_takeover; " ..
                 "server_max_window_bits=10; client_max_window_bits=12", resp)
  end)

  it("accepts window bits 8 to 15, quoted or not, and spaces around '='", function()
    for bits = 8, 15 do
      local params, resp = codec.deflate_negotiate("permessage-deflate; server_max_window_bits=" .. bits)
      assert.equal(bits, params.server_max_window_bits)
      assert.equal("permessage-deflate; server_max_window_bits=" .. bits, resp)
    end
    local params = codec.deflate_negotiate('permessage-deflate ; server_max_window_bits = "9"')
    assert.equal(9, params.server_max_window_bits)
  end)

  it("applies a server policy", function()
    local policy = { server_no_context_takeover = true, server_max_window_bits = 10,
                     client_max_window_bits = 11 }
    local params, resp = codec.deflate_negotiate(
      "permessage-deflate; client_max_window_bits; server_max_window_bits=12", policy)
    assert.same(with({ server_no_context_takeover = true, server_max_window_bits = 10,
                       client_max_window_bits = 11 }), params)
    assert.equal("permessage-deflate; server_no_context_takeover; server_max_window_bits=10; " ..
                 "client_max_window_bits=11", resp)
    -- unasked, the window sizes are not answered: ours is used quietly,
    -- the client's cannot be limited
    params, resp = codec.deflate_negotiate("permessage-deflate", policy)
    assert.same(with({ server_no_context_takeover = true, server_max_window_bits = 10 }), params)
    assert.equal("permessage-deflate; server_no_context_takeover", resp)
  end)

  it("skips other extensions and empty list elements", function()
    local _, resp = codec.deflate_negotiate(" , x-webkit-deflate-frame; no_context_takeover, ,permessage-deflate")
    assert.equal("permessage-deflate", resp)
    assert.is_nil(codec.deflate_negotiate("x-webkit-deflate-frame"))
    assert.is_nil(codec.deflate_negotiate(""))
  end)

  describe("declines an offer and takes the next one when it has", function()
    local bad = {
      ["an unknown parameter"] = "permessage-deflate; foo",
      ["an unknown parameter with a value"] = "permessage-deflate; foo=1",
      ["a repeated server_no_context_takeover"] =
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      ["a repeated client_no_context_takeover"] =
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
      ["a repeated server_max_window_bits"] =
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
      ["a repeated client_max_window_bits"] =
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
      ["server_max_window_bits without a value"] = "permessage-deflate; server_max_window_bits",
      ["server_max_window_bits=7"] = "permessage-deflate; server_max_window_bits=7",
      ["server_max_window_bits=16"] = "permessage-deflate; server_max_window_bits=16",
      ["server_max_window_bits=08"] = "permessage-deflate; server_max_window_bits=08",
      ["server_max_window_bits=abc"] = "permessage-deflate; server_max_window_bits=abc",
      ["client_max_window_bits=0"] = "permessage-deflate; client_max_window_bits=0",
      ["client_max_window_bits=100"] = "permessage-deflate; client_max_window_bits=100",
      ["a value on server_no_context_takeover"] = "permessage-deflate; server_no_context_takeover=1",
      ["a value on client_no_context_takeover"] = 'permessage-deflate; client_no_context_takeover=""',
    }
    for what, offer in pairs(bad) do
      it(what, function()
        assert.is_nil(codec.deflate_negotiate(offer))
        local params, resp = codec.deflate_negotiate(offer .. ", permessage-deflate; client_no_context_takeover")
        assert.same(with({ client_no_context_takeover = true }), params)
        assert.equal("permessage-deflate; client_no_context_takeover", resp)
      end)
    end
  end)

  it("declines everything when the header is not an extension list", function()
    assert.is_nil(codec.deflate_negotiate("permessage-deflate; ; x, permessage-deflate"))
    assert.is_nil(codec.deflate_negotiate('permessage-deflate; a="unterminated'))
    assert.is_nil(codec.deflate_negotiate("=permessage-deflate"))
  end)

  it("agrees on parameters that both ends of a connection use", function()
    local params = codec.deflate_negotiate(
      "permessage-deflate; client_max_window_bits=9; server_max_window_bits=8")
    local wire = codec.ws_send({ { opcode = TEXT, data = string.rep("abc", 1000), compress = true } }, params)
    local ev = codec.ws_parse({ wire }, { client = true, deflate = params })
    assert.equal(string.rep("abc", 1000), ev[1].data)
  end)
end)
