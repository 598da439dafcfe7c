#!/usr/bin/env node
// wsfuzz: a WebSocket conformance ("fuzzing client") runner in the style of
// the Autobahn testsuite, written from RFC 6455 (WebSocket) and RFC 7692
// (permessage-deflate). It connects to an echo server (every message comes
// back as it was sent, text as text, binary as binary), runs the cases and
// grades each one the way Autobahn does:
//
//   OK             the strictest conforming behaviour
//   NON-STRICT     acceptable, but not the strictest (e.g. invalid UTF-8
//                  detected only at the end of the frame or message)
//   INFORMATIONAL  the spec leaves the outcome open; reported only
//   FAILED         wrong behaviour: wrong echo, wrong close code, accepting
//                  what must be refused, a protocol violation by the server
//   UNCLEAN        the TCP connection ended without the close handshake where
//                  one was required, or the server did not close it at all
//
// Usage: node wsfuzz.js --port PORT [--host H] [--tls [--ca FILE] [--servername N]]
//        [--cases 1,2,5.*] [--exclude ...]
//        [--json FILE] [--timeout SEC] [--wait SEC] [--max-message SIZE]
//        [--full] [--deflate required|optional] [--list] [--verbose]
// Exit status: 0 iff no case is FAILED or UNCLEAN (2 on usage errors).
//
// Case numbering follows Autobahn's sections (1 framing, 2 ping/pong,
// 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close, 9 limits and
// performance, 10 auto-fragmentation, 12/13 permessage-deflate). Cases that
// Autobahn does not have are appended at the end of a section and say
// "(extra)" in their description.
'use strict';

const net = require('net');
const tls = require('tls');
const zlib = require('zlib');
const crypto = require('crypto');
const fs = require('fs');

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const OK = 'OK', NS = 'NON-STRICT', INFO = 'INFORMATIONAL', FAILED = 'FAILED', UNCLEAN = 'UNCLEAN';
const KiB = 1024, MiB = 1024 * 1024;
const ZSYNC = zlib.constants.Z_SYNC_FLUSH;
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

// ---------------------------------------------------------------------------
// options

function usage(msg) {
  if (msg) process.stderr.write('wsfuzz: ' + msg + '\n');
  (msg ? process.stderr : process.stdout).write(`usage: node wsfuzz.js --port PORT [options]
  --host HOST            server address (default 127.0.0.1)
  --port PORT            server port (required unless --list)
  --path PATH            request target (default /)
  --tls                  wss: TLS to the server, verified (--ca, --servername)
  --ca FILE              PEM CA certificates to trust for --tls (default: Node's)
  --servername NAME      the name to ask for and check (default: --host)
  --cases LIST           comma-separated ids or prefixes to run; * is a wildcard
                         ("1,2,5.*", "6.4", "9.1.1"); default all
  --exclude LIST         ids or prefixes to leave out (same syntax)
  --json FILE            write a JSON report
  --timeout SEC          longest wait for any one expected event (default 10)
  --wait SEC             the pause Autobahn inserts between the parts of a
                         fail-fast or delayed case (default 0.5; Autobahn: 1)
  --max-message SIZE     the server's --ws-max-message (default 16m; 0: no
                         limit); larger cases are skipped, 9.9/12.6 test it
  --full                 Autobahn's message counts in 12.x/13.x (1000 each)
  --deflate MODE         required (default): a declined plain
                         permessage-deflate offer is FAILED; optional:
                         INFORMATIONAL
  --settle SEC           quiet time before closing where nothing is expected
                         back (default 0.2)
  --one-write            frames a case sends one after another without a
                         pause (no chops, no delays) go out in one write, so
                         the server reads them together
  --list                 print the cases and exit
  --verbose              print events of non-OK cases
`);
  process.exit(msg ? 2 : 0);
}

function parseSize(s) {
  const m = /^(\d+)([kmg]?)$/i.exec(String(s).trim());
  if (!m) usage('bad size: ' + s);
  const mult = { '': 1, k: KiB, m: MiB, g: 1024 * MiB }[m[2].toLowerCase()];
  return Number(m[1]) * mult;
}

function parseArgs(argv) {
  const o = {
    host: '127.0.0.1', port: null, path: '/', cases: null, exclude: null, json: null,
    timeout: 10, wait: 0.5, settle: 0.2, maxMessage: 16 * MiB, full: false,
    deflate: 'required', list: false, verbose: false,
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i], inline = null;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { inline = a.slice(eq + 1); a = a.slice(0, eq); }
    const val = () => {
      if (inline !== null) return inline;
      if (i + 1 >= argv.length) usage(a + ' needs a value');
      return argv[++i];
    };
    switch (a) {
      case '--host': o.host = val(); break;
      case '--port': o.port = Number(val()); break;
      case '--path': o.path = val(); break;
      case '--tls': o.tls = true; break;
      case '--ca': o.ca = val(); break;
      case '--servername': o.servername = val(); break;
      case '--cases': o.cases = val().split(',').map(s => s.trim()).filter(Boolean); break;
      case '--exclude': o.exclude = val().split(',').map(s => s.trim()).filter(Boolean); break;
      case '--json': o.json = val(); break;
      case '--timeout': o.timeout = Number(val()); break;
      case '--wait': o.wait = Number(val()); break;
      case '--settle': o.settle = Number(val()); break;
      case '--max-message': o.maxMessage = parseSize(val()); break;
      case '--full': o.full = true; break;
      case '--one-write': o.oneWrite = true; break;
      case '--deflate': o.deflate = val(); break;
      case '--list': o.list = true; break;
      case '--verbose': case '-v': o.verbose = true; break;
      case '--help': case '-h': usage();
      // eslint-disable-next-line no-fallthrough
      default: usage('unknown option ' + a);
    }
  }
  if (!o.list && !(o.port > 0 && o.port < 65536)) usage('--port is required');
  if (!(o.timeout > 0) || !(o.wait >= 0)) usage('bad --timeout or --wait');
  if (o.deflate !== 'required' && o.deflate !== 'optional') usage('--deflate takes required or optional');
  return o;
}

function idMatches(id, pat) {
  if (pat.includes('*')) {
    const re = new RegExp('^' + pat.split('*').map(s => s.replace(/[.?+^$()[\]{}|\\]/g, '\\$&')).join('.*') + '$');
    return re.test(id);
  }
  return id === pat || id.startsWith(pat + '.');
}

// ---------------------------------------------------------------------------
// small helpers

const sleep = ms => new Promise(r => setTimeout(r, ms));
const T = s => Buffer.from(s, 'utf8');
const H = hex => Buffer.from(hex.replace(/\s+/g, ''), 'hex');
const now = () => Number(process.hrtime.bigint() / 1000n) / 1000; // ms

function rng(seed) {               // mulberry32: deterministic test data
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(n, seed) {
  const r = rng(seed), b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

function repeatTo(pattern, n) {
  const p = Buffer.isBuffer(pattern) ? pattern : T(pattern);
  const b = Buffer.allocUnsafe(n);
  if (n === 0) return b;
  p.copy(b, 0, 0, Math.min(p.length, n));
  let filled = Math.min(p.length, n);
  while (filled < n) { const c = Math.min(filled, n - filled); b.copy(b, filled, 0, c); filled += c; }
  return b;
}

function fmtSize(n) {
  if (n >= MiB && n % MiB === 0) return n / MiB + ' MiB';
  if (n >= KiB && n % KiB === 0) return n / KiB + ' KiB';
  return n + ' B';
}

function preview(buf, max = 24) {
  if (buf.length === 0) return '""';
  let printable = true;
  for (let i = 0; i < Math.min(buf.length, max); i++) if (buf[i] < 0x20 || buf[i] > 0x7e) { printable = false; break; }
  const s = buf.subarray(0, max);
  const body = printable ? JSON.stringify(s.toString('latin1')) : '0x' + s.toString('hex');
  return body + (buf.length > max ? '...' : '');
}

// Incremental UTF-8 check (RFC 3629 table 4): index of the first octet at
// which no valid continuation exists, -1 if the octets are valid so far;
// .incomplete tells whether a sequence is left open at the end.
function utf8Scan(buf) {
  let need = 0, lo = 0x80, hi = 0xbf;
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (need === 0) {
      if (b < 0x80) continue;
      if (b >= 0xc2 && b <= 0xdf) { need = 1; lo = 0x80; hi = 0xbf; }
      else if (b === 0xe0) { need = 2; lo = 0xa0; hi = 0xbf; }
      else if ((b >= 0xe1 && b <= 0xec) || b === 0xee || b === 0xef) { need = 2; lo = 0x80; hi = 0xbf; }
      else if (b === 0xed) { need = 2; lo = 0x80; hi = 0x9f; }
      else if (b === 0xf0) { need = 3; lo = 0x90; hi = 0xbf; }
      else if (b >= 0xf1 && b <= 0xf3) { need = 3; lo = 0x80; hi = 0xbf; }
      else if (b === 0xf4) { need = 3; lo = 0x80; hi = 0x8f; }
      else return { bad: i, incomplete: false };
    } else {
      if (b < lo || b > hi) return { bad: i, incomplete: false };
      need--; lo = 0x80; hi = 0xbf;
    }
  }
  return { bad: -1, incomplete: need > 0 };
}
const utf8Valid = buf => { const r = utf8Scan(buf); return r.bad < 0 && !r.incomplete; };

// A DEFLATE stream scanner (RFC 1951), used only to verify what zlib cannot:
// the largest back-reference distance the server used, so that a negotiated
// server_max_window_bits is checked. Returns { out, maxDist, beforeStart }
// where beforeStart counts references reaching into earlier messages.
function scanDeflate(data) {
  let pos = 0, bitbuf = 0, bitcnt = 0;
  const bits = need => {
    while (bitcnt < need) {
      if (pos >= data.length) throw new Error('eof');
      bitbuf |= data[pos++] << bitcnt; bitcnt += 8;
    }
    const v = bitbuf & ((1 << need) - 1);
    bitbuf >>>= need; bitcnt -= need;
    return v;
  };
  const build = (lengths, n) => {
    const count = new Array(16).fill(0), symbol = new Array(n).fill(0), offs = new Array(16).fill(0);
    for (let s = 0; s < n; s++) count[lengths[s]]++;
    count[0] = 0;
    for (let l = 1; l < 16; l++) offs[l] = offs[l - 1] + count[l - 1];
    for (let s = 0; s < n; s++) if (lengths[s]) symbol[offs[lengths[s]]++] = s;
    return { count, symbol };
  };
  const decode = h => {
    let code = 0, first = 0, index = 0;
    for (let len = 1; len < 16; len++) {
      code |= bits(1);
      const c = h.count[len];
      if (code - c < first) return h.symbol[index + (code - first)];
      index += c; first += c; first <<= 1; code <<= 1;
    }
    throw new Error('bad code');
  };
  const LBASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
  const LEXT = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
  const DBASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
  const DEXT = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
  let out = 0, maxDist = 0, beforeStart = 0;
  const codes = (lc, dc) => {
    for (;;) {
      let sym = decode(lc);
      if (sym < 256) { out++; continue; }
      if (sym === 256) return;
      sym -= 257;
      if (sym >= 29) throw new Error('bad length symbol');
      const len = LBASE[sym] + bits(LEXT[sym]);
      const ds = decode(dc);
      if (ds >= 30) throw new Error('bad distance symbol');
      const dist = DBASE[ds] + bits(DEXT[ds]);
      if (dist > maxDist) maxDist = dist;
      if (dist > out) beforeStart++;
      out += len;
    }
  };
  let fixed = null;
  for (;;) {
    if (pos >= data.length && bitcnt < 3) break;        // ended on a block boundary
    let last, type;
    try { last = bits(1); type = bits(2); } catch (e) { break; }
    if (type === 0) {
      bitbuf = 0; bitcnt = 0;
      if (pos + 4 > data.length) throw new Error('short stored block');
      const len = data[pos] | (data[pos + 1] << 8);
      pos += 4 + len; out += len;
      if (pos > data.length) throw new Error('short stored block');
    } else if (type === 1) {
      if (!fixed) {
        const l = new Array(288);
        for (let s = 0; s < 288; s++) l[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
        fixed = [build(l, 288), build(new Array(30).fill(5), 30)];
      }
      codes(fixed[0], fixed[1]);
    } else if (type === 2) {
      const nlen = bits(5) + 257, ndist = bits(5) + 1, ncode = bits(4) + 4;
      const ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
      const cl = new Array(19).fill(0);
      for (let i = 0; i < ncode; i++) cl[ORDER[i]] = bits(3);
      const clh = build(cl, 19);
      const lengths = [];
      while (lengths.length < nlen + ndist) {
        const sym = decode(clh);
        if (sym < 16) lengths.push(sym);
        else if (sym === 16) { const prev = lengths[lengths.length - 1]; for (let r = 3 + bits(2); r > 0; r--) lengths.push(prev); }
        else if (sym === 17) { for (let r = 3 + bits(3); r > 0; r--) lengths.push(0); }
        else { for (let r = 11 + bits(7); r > 0; r--) lengths.push(0); }
      }
      codes(build(lengths.slice(0, nlen), nlen), build(lengths.slice(nlen), ndist));
    } else throw new Error('invalid block type 3');
    if (last) break;
  }
  return { out, maxDist, beforeStart };
}

// ---------------------------------------------------------------------------
// permessage-deflate negotiation (RFC 7692 section 7.1)

// Parses a Sec-WebSocket-Extensions value into [{name, params: [[k, v]]}].
function parseExtensions(s) {
  const out = [];
  for (const ext of s.split(',')) {
    const parts = ext.split(';').map(x => x.trim());
    if (!parts[0]) continue;
    const params = [];
    for (const p of parts.slice(1)) {
      if (!p) continue;
      const eq = p.indexOf('=');
      if (eq < 0) params.push([p.toLowerCase(), null]);
      else {
        let v = p.slice(eq + 1).trim();
        if (v.length >= 2 && v[0] === '"' && v[v.length - 1] === '"') v = v.slice(1, -1);
        params.push([p.slice(0, eq).trim().toLowerCase(), v]);
      }
    }
    out.push({ name: parts[0].toLowerCase(), params });
  }
  return out;
}

// An offer as the client sends it: { text, valid, snct, cnct, smwb, cmwb }.
// cmwb: undefined (not offered), true (offered without a value) or a number.
function offerOf(text) {
  const [e] = parseExtensions(text);
  const o = { text, valid: true };
  const seen = new Set();
  for (const [k, v] of e.params) {
    if (seen.has(k)) o.valid = false;
    seen.add(k);
    if (k === 'server_no_context_takeover') { o.snct = true; if (v !== null) o.valid = false; }
    else if (k === 'client_no_context_takeover') { o.cnct = true; if (v !== null) o.valid = false; }
    else if (k === 'server_max_window_bits') {
      if (v === null || !/^(8|9|1[0-5])$/.test(v)) o.valid = false; else o.smwb = Number(v);
    } else if (k === 'client_max_window_bits') {
      if (v === null) o.cmwb = true;
      else if (!/^(8|9|1[0-5])$/.test(v)) o.valid = false; else o.cmwb = Number(v);
    } else o.valid = false;
  }
  return o;
}

// Checks a permessage-deflate response against one offer; returns the agreed
// parameters or a string saying why the response does not fit it.
function agree(resp, offer) {
  const a = { snct: false, cnct: false, smwb: 15, cmwb: 15, text: resp.text };
  const seen = new Set();
  for (const [k, v] of resp.params) {
    if (seen.has(k)) return `parameter ${k} given twice (RFC 7692 7)`;
    seen.add(k);
    if (k === 'server_no_context_takeover') {
      if (v !== null) return 'server_no_context_takeover with a value (RFC 7692 7.1.1.1)';
      a.snct = true;
    } else if (k === 'client_no_context_takeover') {
      if (v !== null) return 'client_no_context_takeover with a value (RFC 7692 7.1.1.2)';
      a.cnct = true;
    } else if (k === 'server_max_window_bits') {
      if (v === null || !/^(8|9|1[0-5])$/.test(v)) return `server_max_window_bits=${v} is not 8..15 (RFC 7692 7.1.2.1)`;
      if (offer.smwb !== undefined && Number(v) > offer.smwb) return `server_max_window_bits=${v} is larger than offered ${offer.smwb} (RFC 7692 7.1.2.1)`;
      a.smwb = Number(v);
    } else if (k === 'client_max_window_bits') {
      if (offer.cmwb === undefined) return 'client_max_window_bits in the response but not in the offer (RFC 7692 7.1.2.2)';
      if (v === null || !/^(8|9|1[0-5])$/.test(v)) return `client_max_window_bits=${v} in the response is not 8..15 (RFC 7692 7.1.2.2)`;
      if (typeof offer.cmwb === 'number' && Number(v) > offer.cmwb) return `client_max_window_bits=${v} is larger than offered ${offer.cmwb} (RFC 7692 7.1.2.2)`;
      a.cmwb = Number(v);
    } else return `unknown parameter ${k} (RFC 7692 7)`;
  }
  if (offer.snct && !a.snct) return 'offer had server_no_context_takeover, response lacks it (RFC 7692 7.1.1.1)';
  if (offer.smwb !== undefined && !seen.has('server_max_window_bits')) return `offer had server_max_window_bits=${offer.smwb}, response lacks it (RFC 7692 7.1.2.1)`;
  return a;
}

// ---------------------------------------------------------------------------
// a byte queue without quadratic concatenation

class ByteQueue {
  constructor() { this.chunks = []; this.length = 0; }
  push(b) { if (b.length) { this.chunks.push(b); this.length += b.length; } }
  peek(n) {
    if (this.chunks[0].length >= n) return this.chunks[0].subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    for (const c of this.chunks) {
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k); off += k;
      if (off === n) break;
    }
    return out;
  }
  take(n) {
    if (n === 0) return Buffer.alloc(0);
    const out = n <= this.chunks[0].length ? this.chunks[0].subarray(0, n) : this.peek(n);
    let left = n;
    while (left > 0) {
      const c = this.chunks[0];
      if (c.length <= left) { left -= c.length; this.chunks.shift(); }
      else { this.chunks[0] = c.subarray(left); left = 0; }
    }
    this.length -= n;
    return out;
  }
}

// ---------------------------------------------------------------------------
// frames

let maskPool = Buffer.alloc(0), maskPos = 0;
function maskKey() {
  if (maskPos + 4 > maskPool.length) { maskPool = crypto.randomBytes(4096); maskPos = 0; }
  const k = maskPool.subarray(maskPos, maskPos + 4); maskPos += 4;
  return k;
}

// Builds one frame. o: fin (true), rsv (0..7, RSV1 = 4), mask (true),
// lenBytes (0, 2 or 8: force a length encoding), declaredLen (lie about it).
function frame(opcode, payload = Buffer.alloc(0), o = {}) {
  payload = Buffer.isBuffer(payload) ? payload : T(payload);
  const fin = o.fin !== false, mask = o.mask !== false, rsv = o.rsv || 0;
  const len = o.declaredLen !== undefined ? o.declaredLen : payload.length;
  const lenBytes = o.lenBytes !== undefined ? o.lenBytes : len < 126 ? 0 : len < 65536 ? 2 : 8;
  const hlen = 2 + lenBytes + (mask ? 4 : 0);
  const buf = Buffer.allocUnsafe(hlen + payload.length);
  buf[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  if (lenBytes === 0) buf[1] = len;
  else if (lenBytes === 2) { buf[1] = 126; buf.writeUInt16BE(len, 2); }
  else { buf[1] = 127; buf.writeUInt32BE(Math.floor(len / 4294967296), 2); buf.writeUInt32BE(len >>> 0, 6); }
  if (mask) {
    buf[1] |= 0x80;
    const k = maskKey(), at = 2 + lenBytes;
    k.copy(buf, at);
    const k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], n = payload.length, base = hlen;
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      buf[base + i] = payload[i] ^ k0; buf[base + i + 1] = payload[i + 1] ^ k1;
      buf[base + i + 2] = payload[i + 2] ^ k2; buf[base + i + 3] = payload[i + 3] ^ k3;
    }
    for (; i < n; i++) buf[base + i] = payload[i] ^ k[i & 3];
  } else payload.copy(buf, hlen);
  return buf;
}

function closePayload(code, reason) {
  if (code === null || code === undefined) return Buffer.alloc(0);
  const r = reason === undefined ? Buffer.alloc(0) : Buffer.isBuffer(reason) ? reason : T(reason);
  const b = Buffer.allocUnsafe(2 + r.length);
  b.writeUInt16BE(code, 0); r.copy(b, 2);
  return b;
}

// RFC 6455 7.4: codes a peer may put in a Close frame (plus 1012-1014 and
// 3000-4999, registered or private).
function validCloseCode(c) {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

// ---------------------------------------------------------------------------
// one WebSocket client connection

class Conn {
  constructor(cfg, deadline) {
    this.cfg = cfg;
    this.deadline = deadline;
    this.events = [];          // what the cases compare: message, pong, timeout marks
    this.serverPings = [];
    this.violations = [];      // protocol errors by the server
    this.closeSent = null;     // { t, code, auto }
    this.closeReceived = null; // { t, code, reason }
    this.tcpClosed = null;     // { t, how }
    this.droppedByMe = false;
    this.tcpError = null;
    this.rx = new ByteQueue();
    this.frag = null;
    this.waiters = new Set();
    this.autoClose = true;     // answer a server close with a close
    this.pmd = null;           // agreed permessage-deflate parameters
    this.txHist = Buffer.alloc(0);
    this.rxHist = Buffer.alloc(0);
    this.stats = { framesIn: 0, messagesIn: 0, compressedIn: 0, bytesIn: 0, bytesOut: 0, wireIn: 0 };
    this.sock = null;
    this.sending = 0;          // send() calls under way
    this.pendingReply = undefined;
    this.desync = false;       // a frame of ours was cut off
  }

  remaining() { return Math.max(0, this.deadline - now()); }

  open(offer) {
    const cfg = this.cfg;
    return new Promise((resolve, reject) => {
      const key = crypto.randomBytes(16).toString('base64');
      const sock = cfg.tls
        ? tls.connect({ host: cfg.host, port: cfg.port, servername: cfg.servername || cfg.host,
                        ca: cfg.ca ? fs.readFileSync(cfg.ca) : undefined,
                        ALPNProtocols: ['http/1.1'] })
        : net.connect({ host: cfg.host, port: cfg.port });
      this.sock = sock;
      sock.setNoDelay(true);
      let head = Buffer.alloc(0), settled = false;
      const timer = setTimeout(() => fail(new Error('no handshake response within the timeout')), Math.max(1, Math.min(this.remaining(), cfg.timeout * 1000)));
      const fail = err => {
        if (settled) return;
        settled = true; clearTimeout(timer); sock.destroy();
        this.tcpClosed = { t: now(), how: 'handshake' };
        reject(err);
      };
      const onData = d => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) { if (head.length > 65536) fail(new Error('response head too large')); return; }
        sock.removeListener('data', onData); sock.removeListener('error', fail); sock.removeListener('close', onClose);
        settled = true; clearTimeout(timer);
        const rest = head.subarray(end + 4);
        let info;
        try { info = this._checkResponse(head.subarray(0, end).toString('latin1'), key, offer); }
        catch (e) { sock.destroy(); this.tcpClosed = { t: now(), how: 'handshake' }; reject(e); return; }
        this._attach();
        resolve(info);
        if (rest.length) this._onData(rest);
      };
      const onClose = () => fail(new Error('connection closed during the opening handshake'));
      sock.on('data', onData);
      sock.on('error', fail);
      sock.on('close', onClose);
      sock.on(cfg.tls ? 'secureConnect' : 'connect', () => {
        let req = `GET ${cfg.path} HTTP/1.1\r\nHost: ${cfg.host}:${cfg.port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`;
        if (offer) req += `Sec-WebSocket-Extensions: ${offer}\r\n`;
        sock.write(req + 'User-Agent: wsfuzz\r\n\r\n');
      });
    });
  }

  // RFC 6455 4.1 (the client's checks of the server's handshake) and
  // RFC 7692 7.1 for the extension response.
  _checkResponse(text, key, offer) {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3})/.exec(lines[0]);
    if (!m) throw new Error('bad status line: ' + lines[0]);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i <= 0) continue;
      const k = l.slice(0, i).trim().toLowerCase(), v = l.slice(i + 1).trim();
      headers[k] = headers[k] === undefined ? v : headers[k] + ', ' + v;
    }
    const info = { status: Number(m[1]), headers };
    if (info.status !== 101) { const e = new Error('status ' + info.status + ' instead of 101'); e.info = info; throw e; }
    if ((headers.upgrade || '').toLowerCase() !== 'websocket') throw new Error('Upgrade header is ' + headers.upgrade);
    if (!(headers.connection || '').toLowerCase().split(/\s*,\s*/).includes('upgrade')) throw new Error('Connection header is ' + headers.connection);
    const accept = crypto.createHash('sha1').update(key + GUID).digest('base64');
    if (headers['sec-websocket-accept'] !== accept) throw new Error('Sec-WebSocket-Accept is ' + headers['sec-websocket-accept'] + ', expected ' + accept);
    if (headers['sec-websocket-protocol'] !== undefined) throw new Error('Sec-WebSocket-Protocol in the response, none was requested (RFC 6455 4.1)');
    const ext = headers['sec-websocket-extensions'];
    info.extensions = ext || null;
    if (ext !== undefined) {
      const exts = parseExtensions(ext);
      if (!offer) throw new Error('Sec-WebSocket-Extensions "' + ext + '" in the response, none was offered (RFC 6455 4.1)');
      if (exts.length !== 1 || exts[0].name !== 'permessage-deflate') throw new Error('response extensions "' + ext + '" do not fit the offer');
      const offers = offer.split(/,(?=\s*permessage-deflate)/i).map(s => offerOf(s.trim()));
      const resp = { text: ext, params: exts[0].params };
      let why = 'no offer fits';
      for (const o of offers) {
        if (!o.valid) continue;
        const a = agree(resp, o);
        if (typeof a === 'string') { why = a; continue; }
        this.pmd = a; this.pmd.offer = o.text;
        break;
      }
      if (!this.pmd) throw new Error('invalid permessage-deflate response "' + ext + '": ' + why);
    }
    return info;
  }

  _attach() {
    const sock = this.sock;
    sock.on('data', d => this._onData(d));
    sock.on('end', () => { if (!this.tcpClosed) this.tcpFin = now(); });
    sock.on('error', e => { this.tcpError = e.code || e.message; });
    sock.on('close', () => {
      if (!this.tcpClosed) this.tcpClosed = { t: now(), how: this.droppedByMe ? 'by client' : this.tcpError ? this.tcpError : 'by server' };
      this._notify();
    });
  }

  _violation(msg) { if (this.violations.length < 10) this.violations.push(msg); }

  _onData(d) {
    this.stats.wireIn += d.length;
    this.rx.push(d);
    try { this._parse(); } catch (e) { this._violation('client error: ' + e.stack); }
    this._notify();
  }

  _parse() {
    for (;;) {
      if (this.rx.length < 2) return;
      const h0 = this.rx.peek(2);
      const b0 = h0[0], b1 = h0[1];
      let len = b1 & 0x7f, hlen = 2;
      if (len === 126) hlen = 4; else if (len === 127) hlen = 10;
      const masked = (b1 & 0x80) !== 0;
      if (masked) hlen += 4;
      if (this.rx.length < hlen) return;
      const h = this.rx.peek(hlen);
      if (len === 126) {
        len = h.readUInt16BE(2);
        if (len < 126) this._violation(`frame length ${len} in 16 bits, not the minimal encoding (RFC 6455 5.2)`);
      } else if (len === 127) {
        const hi = h.readUInt32BE(2);
        if (hi & 0x80000000) { this._violation('64-bit frame length with the most significant bit set (RFC 6455 5.2)'); this.sock.destroy(); return; }
        len = hi * 4294967296 + h.readUInt32BE(6);
        if (len < 65536) this._violation(`frame length ${len} in 64 bits, not the minimal encoding (RFC 6455 5.2)`);
        if (len > 1024 * MiB) { this._violation('frame of ' + len + ' bytes'); this.sock.destroy(); return; }
      }
      if (this.rx.length < hlen + len) return;
      this.rx.take(hlen);
      let payload = this.rx.take(len);
      if (masked) {
        this._violation('masked frame from the server (RFC 6455 5.1: a server MUST NOT mask)');
        const k = h.subarray(hlen - 4, hlen), p = Buffer.from(payload);
        for (let i = 0; i < p.length; i++) p[i] ^= k[i & 3];
        payload = p;
      }
      this._frame(b0 & 0x0f, (b0 & 0x80) !== 0, (b0 >> 4) & 7, payload);
    }
  }

  _frame(opcode, fin, rsv, payload) {
    this.stats.framesIn++;
    const t = now();
    if (this.closeReceived) { this._violation(`frame (opcode ${opcode}) after the server's close frame (RFC 6455 5.5.1)`); return; }
    if (rsv & 3) this._violation(`RSV2/RSV3 set on a frame from the server (rsv=${rsv}) (RFC 6455 5.2)`);
    if (rsv & 4) {
      if (!this.pmd) this._violation('RSV1 set on a frame from the server without a negotiated extension (RFC 6455 5.2)');
      else if (opcode >= 8) this._violation('RSV1 set on a control frame (RFC 7692 6)');
      else if (opcode === 0) this._violation('RSV1 set on a continuation frame (RFC 7692 6.1)');
    }
    if (opcode >= 8) {
      if (!fin) this._violation(`fragmented control frame (opcode ${opcode}) (RFC 6455 5.5)`);
      if (payload.length > 125) this._violation(`control frame with ${payload.length} bytes of payload (RFC 6455 5.5)`);
    }
    switch (opcode) {
      case 0:
        if (!this.frag) { this._violation('continuation frame with nothing to continue (RFC 6455 5.4)'); return; }
        this.frag.parts.push(payload); this.frag.frames++;
        if (fin) this._deliver();
        return;
      case 1: case 2:
        if (this.frag) { this._violation('new data frame inside a fragmented message (RFC 6455 5.4)'); this.frag = null; }
        this.frag = { binary: opcode === 2, parts: [payload], frames: 1, compressed: (rsv & 4) !== 0 && !!this.pmd };
        if (fin) this._deliver();
        return;
      case 8: {
        let code = null, reason = Buffer.alloc(0);
        if (payload.length === 1) this._violation('close frame with a 1-byte payload (RFC 6455 5.5.1)');
        if (payload.length >= 2) {
          code = payload.readUInt16BE(0); reason = payload.subarray(2);
          if (!validCloseCode(code)) this._violation(`close code ${code} from the server is not one an endpoint may send (RFC 6455 7.4)`);
          if (!utf8Valid(reason)) this._violation('close reason from the server is not valid UTF-8 (RFC 6455 5.5.1)');
        }
        this.closeReceived = { t, code, reason };
        if (!this.closeSent && this.autoClose) {
          // RFC 6455 5.5.1: answer with a close, typically echoing the code;
          // after the buffer being written, if any, so as not to split a frame
          const echo = code === null ? null : validCloseCode(code) ? code : 1002;
          if (this.sending > 0) this.pendingReply = echo;
          else this.sendClose(echo, undefined, { auto: true });
        }
        return;
      }
      case 9:
        this.serverPings.push(payload);
        if (!this.closeSent) this.write(frame(10, payload));
        return;
      case 10:
        this.events.push({ type: 'pong', data: payload, t });
        return;
      default:
        this._violation(`reserved opcode ${opcode} from the server (RFC 6455 5.2)`);
    }
  }

  _deliver() {
    const f = this.frag; this.frag = null;
    let data = f.parts.length === 1 ? f.parts[0] : Buffer.concat(f.parts);
    const wire = data.length;
    if (f.compressed) {
      try { data = this._inflate(data); }
      catch (e) { this._violation('cannot decompress a message from the server: ' + e.message + ' (RFC 7692 7.2.2)'); return; }
      this.stats.compressedIn++;
    }
    if (!f.binary && !utf8Valid(data)) this._violation('text message from the server is not valid UTF-8 (RFC 6455 8.1)');
    this.stats.messagesIn++;
    this.stats.bytesIn += data.length;
    this.events.push({ type: 'message', binary: f.binary, data, t: now(), frames: f.frames, compressed: f.compressed, wire });
  }

  // RFC 7692 7.2.2: append 00 00 ff ff and inflate with the window the
  // agreed parameters allow; with context takeover the window is the tail of
  // the previous compressed messages.
  _inflate(payload) {
    const p = this.pmd, bitsW = p.smwb;
    const dict = p.snct ? null : this.rxHist;
    const input = Buffer.concat([payload, TAIL]);
    const opts = { windowBits: Math.max(9, bitsW), finishFlush: ZSYNC, maxOutputLength: 256 * MiB };
    if (dict && dict.length) opts.dictionary = dict;
    const out = zlib.inflateRawSync(input, opts);
    if (bitsW < 15 || p.snct) {
      const s = scanDeflate(input);
      if (s.maxDist > (1 << bitsW)) throw new Error(`back-reference distance ${s.maxDist} exceeds server_max_window_bits=${bitsW}`);
      if (p.snct && s.beforeStart) throw new Error(`${s.beforeStart} back-references into earlier messages despite server_no_context_takeover`);
    }
    if (!p.snct) this.rxHist = Buffer.concat([this.rxHist, out]).subarray(-(1 << bitsW));
    return out;
  }

  // Compresses one message as RFC 7692 7.2.1 says. o.final: end with a
  // BFINAL block instead of a sync flush; o.fresh: no context this time.
  deflate(data, o = {}) {
    const p = this.pmd, w = Math.min(15, p.cmwb);
    if (w < 9) throw new Error('client_max_window_bits=8 cannot be honoured by zlib');
    const useCtx = !p.cnct && !o.fresh;
    const opts = { windowBits: w };
    if (!o.final) opts.finishFlush = ZSYNC;
    if (useCtx && this.txHist.length) opts.dictionary = this.txHist;
    let out = zlib.deflateRawSync(data, opts);
    if (!o.final) out = out.subarray(0, out.length - 4);
    this.txHist = p.cnct ? Buffer.alloc(0) : Buffer.concat([this.txHist, data]).subarray(-(1 << w));
    return out;
  }

  // One write to the socket, resolved from setImmediate: a write that
  // completes at once calls back on the next tick, and a tight loop of them
  // would never let the event loop poll the socket. The server's answers
  // (its close frame above all) must be read between our writes: once a
  // write fails (EPIPE/ECONNRESET after the server closed), Node destroys the
  // socket and drops whatever it had not read yet.
  write(buf) {
    return new Promise(resolve => {
      if (!this.sock || this.sock.destroyed || this.tcpClosed || !this.sock.writable) { resolve(false); return; }
      this.stats.bytesOut += buf.length;
      const onClose = () => resolve(false);
      this.sock.once('close', onClose);
      this.sock.write(buf, err => { this.sock.removeListener('close', onClose); setImmediate(() => resolve(!err)); });
    });
  }

  // Writes buf, in pieces of at most 64 KiB (larger writes fail inside
  // write() before the socket is polled; see write()), or in chops of
  // o.chop bytes with o.delay ms between them. When the server's close frame
  // arrives mid-buffer the rest is dropped: the server has failed the
  // connection and reads no more, and our framing is broken from then on, so
  // no close is sent back (RFC 6455 7.1.7 lets the server just close).
  async send(buf, o = {}) {
    if (this.cfg.oneWrite && !o.chop && !o.delay && !o.direct) return this.batched(buf);
    o = Object.assign({}, o, { _t0: now() });
    const piece = o.chop || 64 * KiB;
    this.sending++;
    try {
      for (let i = 0; i < buf.length; i += piece) {
        if (this.tcpClosed) return false;
        if (i > 0 && this.closeReceived && !this.closeReceivedBefore(o)) { this.desync = true; return false; }
        await this.write(buf.subarray(i, i + piece));
        if (o.delay) await sleep(o.delay);
      }
      if (buf.length === 0 && o.delay) await sleep(o.delay);
      return !this.tcpClosed;
    } finally {
      this.sending--;
      if (this.sending === 0 && this.pendingReply !== undefined) {
        const code = this.pendingReply;
        this.pendingReply = undefined;
        if (!this.desync) this.sendClose(code, undefined, { auto: true });
      }
    }
  }

  // --one-write: buf joins the frames sent since the event loop last ran;
  // they go out together, in one write, from setImmediate.  The caller's
  // await ends at once, so its next frame joins the same batch.
  batched(buf) {
    if (this.tcpClosed) return Promise.resolve(false);
    if (!this.batch) {
      this.batch = [];
      setImmediate(() => {
        const all = Buffer.concat(this.batch);
        this.batch = null;
        this.send(all, { direct: true });
      });
    }
    this.batch.push(buf);
    return Promise.resolve(true);
  }

  // true when the close frame was already there when this send started
  closeReceivedBefore(o) { return o._t0 !== undefined && this.closeReceived.t < o._t0; }

  sendFrame(opcode, payload, o = {}) { return this.send(frame(opcode, payload, o), o); }

  // A whole message: o.frag = fragment size, o.compress (needs pmd),
  // o.chop/o.delay as for send().
  sendMessage(data, binary, o = {}) {
    data = Buffer.isBuffer(data) ? data : T(data);
    let rsv = 0;
    if (o.compress) { data = this.deflate(data, o); rsv = 4; }
    const opcode = binary ? 2 : 1;
    if (!o.frag || data.length <= o.frag) return this.send(frame(opcode, data, { rsv }), o);
    const frames = [];
    for (let i = 0; i < data.length; i += o.frag) {
      const last = i + o.frag >= data.length;
      frames.push(frame(i === 0 ? opcode : 0, data.subarray(i, i + o.frag), { fin: last, rsv: i === 0 ? rsv : 0 }));
    }
    return this.send(Buffer.concat(frames), o);
  }

  sendClose(code, reason, o = {}) {
    if (this.closeSent && !o.again) return Promise.resolve(false);
    if (!this.closeSent) this.closeSent = { t: now(), code, auto: !!o.auto };
    this._notify();
    return this.sendFrame(8, o.raw !== undefined ? o.raw : closePayload(code, reason), o);
  }

  mark(name) { this.events.push({ type: 'timeout', name, t: now() }); }

  closing() { return !!(this.closeReceived || this.tcpClosed); }

  _notify() { for (const w of [...this.waiters]) if (w.pred()) { this.waiters.delete(w); clearTimeout(w.timer); w.resolve(true); } }

  // Resolves true when pred() holds, false after ms (bounded by the case's
  // deadline).
  waitFor(pred, ms) {
    if (pred()) return Promise.resolve(true);
    const limit = Math.min(ms === undefined ? Infinity : ms, this.remaining());
    return new Promise(resolve => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => { this.waiters.delete(w); resolve(pred()); }, Math.max(0, limit));
      this.waiters.add(w);
    });
  }

  // The next message after index `from` in events (or null on timeout/close).
  async nextMessage(from, ms) {
    const find = () => { for (let i = from; i < this.events.length; i++) if (this.events[i].type === 'message') return i; return -1; };
    await this.waitFor(() => find() >= 0 || !!this.tcpClosed || !!this.closeReceived || this.violations.length > 0, ms);
    const i = find();
    return i < 0 ? null : { index: i, ev: this.events[i] };
  }

  destroy() {
    if (this.sock && !this.sock.destroyed) { this.droppedByMe = !this.tcpClosed; this.sock.destroy(); }
  }
}

// ---------------------------------------------------------------------------
// expected events

const msg = (data, binary = false) => ({ type: 'message', binary, data: Buffer.isBuffer(data) ? data : T(data) });
const pong = data => ({ type: 'pong', data: Buffer.isBuffer(data) ? data : T(data) });
const mark = name => ({ type: 'timeout', name });

function evEqual(a, b) {
  if (a.type !== b.type) return false;
  if (a.type === 'message') return a.binary === b.binary && a.data.equals(b.data);
  if (a.type === 'pong') return a.data.equals(b.data);
  return a.name === b.name;
}
const listEqual = (a, b) => a.length === b.length && a.every((x, i) => evEqual(x, b[i]));

function evText(e) {
  if (e.type === 'message') return `${e.binary ? 'binary' : 'text'}(${e.data.length} B ${preview(e.data, 16)})`;
  if (e.type === 'pong') return `pong(${e.data.length} B ${preview(e.data, 16)})`;
  return `wait-${e.name}`;
}
const listText = l => '[' + l.map(evText).join(', ') + ']';

// ---------------------------------------------------------------------------
// the cases

const CASES = [];
const SECTIONS = {};
function section(id, title) { SECTIONS[id] = title; }
function add(c) {
  c.close = Object.assign({ byMe: true, codes: [1000], clean: true }, c.close || {});
  CASES.push(c);
}
// the usual shapes
const echoClose = { byMe: true, codes: [1000], clean: true };
const failClose = (...codes) => ({ byMe: false, codes: codes.length ? codes : [1002], clean: false });

const HELLO = 'Hello, world!';
const KOSME = H('cebae1bdb9cf83cebcceb5');

// 1 framing --------------------------------------------------------------
section('1', 'Framing');
section('1.1', 'Text messages');
section('1.2', 'Binary messages');
section('1.3', 'Frame encoding (extra)');
{
  const lens = [0, 125, 126, 127, 128, 65535, 65536];
  for (const [sub, binary] of [[1, false], [2, true]]) {
    const mk = n => binary ? repeatTo(Buffer.from([0xfe]), n) : repeatTo('*', n);
    lens.forEach((n, i) => add({
      id: `1.${sub}.${i + 1}`,
      desc: `Send a ${binary ? 'binary' : 'text'} message with a payload of ${n} bytes.`,
      exp: 'The message is echoed; clean close with 1000.',
      expect: { [OK]: [msg(mk(n), binary)] },
      run: ws => ws.sendMessage(mk(n), binary),
    }));
    add({
      id: `1.${sub}.8`,
      desc: `Send a ${binary ? 'binary' : 'text'} message of 65536 bytes in one frame, written in chops of 997 bytes.`,
      exp: 'The message is echoed; clean close with 1000.',
      expect: { [OK]: [msg(mk(65536), binary)] },
      run: ws => ws.sendMessage(mk(65536), binary, { chop: 997 }),
    });
  }
  add({
    id: '1.3.1', desc: '(extra) Send an unmasked text frame.',
    exp: 'RFC 6455 5.1: the server MUST close the connection (MAY with 1002); no echo.',
    expect: { [OK]: [] }, close: failClose(1002),
    run: ws => ws.sendFrame(1, HELLO, { mask: false }),
  });
  add({
    id: '1.3.2', desc: '(extra) Send a 5-byte text frame whose length uses the 16-bit encoding (not minimal).',
    exp: 'RFC 6455 5.2 requires the minimal encoding of the sender but names no reaction; echo or 1002 are both reported.',
    expect: { [INFO]: [msg('Hello')], [OK]: [] }, close: { byMe: null, codes: [1000, 1002], clean: false },
    run: async ws => { await ws.sendFrame(1, 'Hello', { lenBytes: 2 }); },
    judge: r => { r.behavior = INFO; r.note = r.received.length ? 'echoed it' : 'refused it (close ' + r.closeCode + ')'; },
  });
  add({
    id: '1.3.3', desc: '(extra) Send a frame header whose 64-bit length has the most significant bit set.',
    exp: 'RFC 6455 5.2: the most significant bit MUST be 0; the connection is failed (1002, or 1009 as too big).',
    expect: { [OK]: [] }, close: failClose(1002, 1009),
    run: async ws => {
      const h = Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4]);
      await ws.send(Buffer.concat([h, Buffer.from('hello')]));
    },
  });
}

// 2 ping / pong ------------------------------------------------------------
section('2', 'Pings/Pongs');
{
  const bin8 = Buffer.from([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]);
  const p125 = repeatTo(Buffer.from([0xfe]), 125), p126 = repeatTo(Buffer.from([0xfe]), 126);
  add({ id: '2.1', desc: 'Send a ping without payload.', exp: 'A pong without payload.',
    expect: { [OK]: [pong('')] }, run: ws => ws.sendFrame(9, '') });
  add({ id: '2.2', desc: 'Send a ping with a small text payload.', exp: 'A pong with the same payload.',
    expect: { [OK]: [pong(HELLO)] }, run: ws => ws.sendFrame(9, HELLO) });
  add({ id: '2.3', desc: 'Send a ping with a small binary (non UTF-8) payload.', exp: 'A pong with the same payload.',
    expect: { [OK]: [pong(bin8)] }, run: ws => ws.sendFrame(9, bin8) });
  add({ id: '2.4', desc: 'Send a ping with a 125-byte binary payload.', exp: 'A pong with the same payload.',
    expect: { [OK]: [pong(p125)] }, run: ws => ws.sendFrame(9, p125) });
  add({ id: '2.5', desc: 'Send a ping with a 126-byte binary payload.',
    exp: 'RFC 6455 5.5: control frames carry at most 125 bytes; the connection is failed with 1002, no pong.',
    expect: { [OK]: [] }, close: failClose(1002), run: ws => ws.sendFrame(9, p126) });
  add({ id: '2.6', desc: 'Send a ping with a 125-byte binary payload, written in 1-byte chops.', exp: 'A pong with the same payload.',
    expect: { [OK]: [pong(p125)] }, run: ws => ws.sendFrame(9, p125, { chop: 1 }) });
  add({ id: '2.7', desc: 'Send an unsolicited pong without payload.', exp: 'Nothing (RFC 6455 5.5.3: no response expected).',
    expect: { [OK]: [] }, run: ws => ws.sendFrame(10, '') });
  add({ id: '2.8', desc: 'Send an unsolicited pong with payload.', exp: 'Nothing.',
    expect: { [OK]: [] }, run: ws => ws.sendFrame(10, 'unsolicited pong payload') });
  add({ id: '2.9', desc: 'Send an unsolicited pong with payload, then a ping with payload.', exp: 'A pong for the ping only.',
    expect: { [OK]: [pong('ping payload')] },
    run: async ws => { await ws.sendFrame(10, 'unsolicited pong payload'); await ws.sendFrame(9, 'ping payload'); } });
  for (const [id, chop] of [['2.10', 0], ['2.11', 1]]) {
    const pays = Array.from({ length: 10 }, (_, i) => 'payload-' + i);
    add({ id, desc: `Send 10 pings with payload${chop ? ', each written in 1-byte chops' : ''}.`,
      exp: 'Ten pongs with the payloads in order (RFC 6455 5.5.3 allows answering only the most recent of pings not yet answered).',
      expect: ev => {
        const got = ev.filter(e => e.type === 'pong').map(e => e.data.toString());
        if (ev.some(e => e.type !== 'pong')) return null;
        if (got.join() === pays.join()) return { behavior: OK };
        let k = 0;
        for (const g of got) { while (k < pays.length && pays[k] !== g) k++; if (k === pays.length) return null; k++; }
        if (got.length && got[got.length - 1] === pays[9]) return { behavior: OK, note: `${got.length} pongs (only the latest pings answered, allowed)` };
        return null;
      },
      done: ev => ev.some(e => e.type === 'pong' && e.data.toString() === pays[9]),
      run: async ws => { for (const p of pays) await ws.sendFrame(9, p, { chop }); } });
  }
}

// 3 reserved bits -----------------------------------------------------------
section('3', 'Reserved Bits');
{
  const exp = 'RFC 6455 5.2: RSV bits MUST be 0 without an extension defining them; the connection is failed (1002).';
  add({ id: '3.1', desc: 'Send a small text message with RSV = 1.', exp,
    expect: { [OK]: [] }, close: failClose(), run: ws => ws.sendFrame(1, HELLO, { rsv: 1 }) });
  const three = (id, rsv, o, extra) => add({ id,
    desc: `Send a small text message, then again with RSV = ${rsv}, then a ping${extra}.`,
    exp: 'The first message is echoed, then the connection is failed (1002); no pong.',
    expect: { [OK]: [msg(HELLO)], [NS]: [] }, close: failClose(),
    run: async ws => {
      await ws.sendFrame(1, HELLO, o); if (o.wait) await sleep(o.wait);
      await ws.sendFrame(1, HELLO, Object.assign({ rsv }, o)); if (o.wait) await sleep(o.wait);
      await ws.sendFrame(9, '', o);
    } });
  three('3.2', 2, {}, '');
  three('3.3', 3, { chop: 1 }, ', all frames written in 1-byte chops');
  three('3.4', 4, { chop: 1, delay: 1, wait: 50 }, ', written in 1-byte chops with delays');
  add({ id: '3.5', desc: 'Send a small binary message with RSV = 5.', exp,
    expect: { [OK]: [] }, close: failClose(), run: ws => ws.sendFrame(2, Buffer.from([0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0, 0xff]), { rsv: 5 }) });
  add({ id: '3.6', desc: 'Send a ping with payload and RSV = 6.', exp,
    expect: { [OK]: [] }, close: failClose(), run: ws => ws.sendFrame(9, HELLO, { rsv: 6 }) });
  add({ id: '3.7', desc: 'Send a close frame (1000) with RSV = 7.', exp: exp + ' The close is not echoed as 1000.',
    expect: { [OK]: [] }, close: failClose(), run: ws => ws.sendFrame(8, closePayload(1000), { rsv: 7 }) });
}

// 4 opcodes ---------------------------------------------------------------
section('4', 'Opcodes');
section('4.1', 'Non-control opcodes');
section('4.2', 'Control opcodes');
{
  const exp = 'RFC 6455 5.2: a reserved opcode fails the connection (1002).';
  for (const [sub, base] of [[1, 3], [2, 11]]) {
    const kind = sub === 1 ? 'non-control' : 'control';
    add({ id: `4.${sub}.1`, desc: `Send a frame with reserved ${kind} opcode ${base}.`, exp,
      expect: { [OK]: [] }, close: failClose(), run: ws => ws.sendFrame(base, '') });
    add({ id: `4.${sub}.2`, desc: `Send a frame with reserved ${kind} opcode ${base + 1} and payload.`, exp,
      expect: { [OK]: [] }, close: failClose(), run: ws => ws.sendFrame(base + 1, 'reserved opcode payload') });
    for (let k = 3; k <= 5; k++) {
      const op = base + k - 1;
      add({ id: `4.${sub}.${k}`, desc: `Send a small text message, then a frame with reserved ${kind} opcode ${op}${k > 3 ? ' and payload' : ''}, then a ping.`,
        exp: 'The text message is echoed, then the connection is failed (1002); no pong.',
        expect: { [OK]: [msg(HELLO)], [NS]: [] }, close: failClose(),
        run: async ws => { await ws.sendFrame(1, HELLO); await ws.sendFrame(op, k > 3 ? 'reserved opcode payload' : ''); await ws.sendFrame(9, ''); } });
    }
  }
}

// 5 fragmentation -----------------------------------------------------------
section('5', 'Fragmentation');
{
  const F1 = 'fragment1', F2 = 'fragment2';
  add({ id: '5.1', desc: 'Send a ping in 2 fragments.', exp: 'RFC 6455 5.5: control frames MUST NOT be fragmented; fail (1002).',
    expect: { [OK]: [] }, close: failClose(),
    run: async ws => { await ws.sendFrame(9, F1, { fin: false }); await ws.sendFrame(0, F2); } });
  add({ id: '5.2', desc: 'Send a pong in 2 fragments.', exp: 'RFC 6455 5.5: fail (1002).',
    expect: { [OK]: [] }, close: failClose(),
    run: async ws => { await ws.sendFrame(10, F1, { fin: false }); await ws.sendFrame(0, F2); } });
  const two = (id, o, what) => add({ id, desc: `Send a text message in 2 fragments${what}.`, exp: 'The message is echoed.',
    expect: { [OK]: [msg(F1 + F2)] },
    run: async ws => { await ws.sendFrame(1, F1, Object.assign({ fin: false }, o)); await ws.sendFrame(0, F2, o); } });
  two('5.3', {}, '');
  two('5.4', { chop: 1 }, ', written in 1-byte chops');
  two('5.5', { delay: 30 }, ', frame by frame with a delay');
  const twoPing = (id, o, what) => add({ id, desc: `Send a text message in 2 fragments with a ping in between${what}.`,
    exp: 'The pong, then the echoed message (RFC 6455 5.4: control frames may be injected).',
    expect: { [OK]: [pong('ping payload'), msg(F1 + F2)] },
    run: async ws => {
      await ws.sendFrame(1, F1, Object.assign({ fin: false }, o));
      await ws.sendFrame(9, 'ping payload', o);
      await ws.sendFrame(0, F2, o);
    } });
  twoPing('5.6', {}, '');
  twoPing('5.7', { chop: 1 }, ', written in 1-byte chops');
  twoPing('5.8', { delay: 30 }, ', frame by frame with a delay');
  const noStart = (id, fin, o, what) => add({ id,
    desc: `Send a continuation frame with FIN = ${fin} where there is nothing to continue, then an unfragmented text message${what}.`,
    exp: 'RFC 6455 5.4: fail (1002); the text message is not echoed.',
    expect: { [OK]: [] }, close: failClose(),
    run: async ws => { await ws.sendFrame(0, 'non-continuation payload', Object.assign({}, o, { fin })); await ws.sendFrame(1, HELLO, o); } });
  noStart('5.9', true, {}, '');
  noStart('5.10', true, { chop: 1 }, ', written in 1-byte chops');
  noStart('5.11', true, { delay: 30 }, ', frame by frame with a delay');
  noStart('5.12', false, {}, '');
  noStart('5.13', false, { chop: 1 }, ', written in 1-byte chops');
  noStart('5.14', false, { delay: 30 }, ', frame by frame with a delay');
  add({ id: '5.15', desc: 'Send a text message in 2 fragments, then a continuation frame with FIN = false where there is nothing to continue, then an unfragmented text message.',
    exp: 'The first message is echoed, then the connection is failed (1002).',
    expect: { [OK]: [msg(F1 + F2)], [NS]: [] }, close: failClose(),
    run: async ws => {
      await ws.sendFrame(1, F1, { fin: false }); await ws.sendFrame(0, F2);
      await ws.sendFrame(0, 'fragment3', { fin: false }); await ws.sendFrame(1, 'fragment4');
    } });
  for (const [id, fin] of [['5.16', false], ['5.17', true]]) add({ id,
    desc: `Twice: a continuation frame with FIN = ${fin} where there is nothing to continue, then a text message in 2 fragments.`,
    exp: 'Fail on the first frame (1002); nothing echoed.',
    expect: { [OK]: [] }, close: failClose(),
    run: async ws => {
      for (let i = 0; i < 2; i++) {
        await ws.sendFrame(0, 'fragment1', { fin }); await ws.sendFrame(1, 'fragment2', { fin: false }); await ws.sendFrame(0, 'fragment3');
      }
    } });
  add({ id: '5.18', desc: 'Send a text message in 2 fragments with both frames having opcode text.',
    exp: 'RFC 6455 5.4: a data frame inside a fragmented message; fail (1002).',
    expect: { [OK]: [] }, close: failClose(),
    run: async ws => { await ws.sendFrame(1, F1, { fin: false }); await ws.sendFrame(1, F2); } });
  const frags5 = ['fragment1', 'fragment2', 'fragment3', 'fragment4', 'fragment5'];
  for (const [id, o] of [['5.19', {}], ['5.20', { delay: 20 }]]) add({ id,
    desc: `Send a text message in 5 fragments: 2 fragments, a ping, a pause, 2 more fragments, a ping, the last fragment${o.delay ? ' (frame by frame with delays)' : ''}.`,
    exp: 'The first pong arrives before the message is complete; then the second pong and the echoed message.',
    expect: { [OK]: [pong('pongme 1!'), pong('pongme 2!'), msg(frags5.join(''))] },
    run: async (ws, ctx) => {
      await ws.sendFrame(1, frags5[0], Object.assign({ fin: false }, o));
      await ws.sendFrame(0, frags5[1], Object.assign({ fin: false }, o));
      await ws.sendFrame(9, 'pongme 1!', o);
      await ws.waitFor(() => ws.events.length > 0, ctx.wait);
      if (!ws.events.length) ctx.notes.push('no pong during the pause');
      await ws.sendFrame(0, frags5[2], Object.assign({ fin: false }, o));
      await ws.sendFrame(0, frags5[3], Object.assign({ fin: false }, o));
      await ws.sendFrame(9, 'pongme 2!', o);
      await ws.sendFrame(0, frags5[4], o);
    } });
  // extras
  add({ id: '5.21', desc: '(extra) Send a binary message in 2 fragments.', exp: 'The message is echoed as binary.',
    expect: { [OK]: [msg(Buffer.from([1, 2, 3, 0xff, 0xfe, 0xfd]), true)] },
    run: async ws => { await ws.sendFrame(2, Buffer.from([1, 2, 3]), { fin: false }); await ws.sendFrame(0, Buffer.from([0xff, 0xfe, 0xfd])); } });
  {
    const parts = Array.from({ length: 100 }, (_, i) => i % 7 === 3 ? '' : 'part' + i + ';');
    // Every ping is sent before the final fragment: a pong for a ping that
    // follows the message may come before or after the echo (RFC 6455 sets
    // no order there), so this case leaves no room for either.
    add({ id: '5.22', desc: '(extra) Send a text message in 100 fragments, some empty, with a ping after every tenth and one before the last.',
      exp: 'Ten pongs and the echoed message.',
      expect: { [OK]: Array.from({ length: 10 }, (_, i) => pong('p' + i)).concat([msg(parts.join(''))]) },
      run: async ws => {
        for (let i = 0; i < parts.length; i++) {
          if (i === parts.length - 1) await ws.sendFrame(9, 'p9');
          await ws.sendFrame(i === 0 ? 1 : 0, parts[i], { fin: i === parts.length - 1 });
          if (i % 10 === 9 && i < 99) await ws.sendFrame(9, 'p' + ((i - 9) / 10));
        }
      },
    });
  }
  {
    const big = repeatTo('abcdefghij', 300000), fs = 4093;
    add({ id: '5.23', desc: '(extra) Send a 300000-byte binary message in 4093-byte fragments.', exp: 'The message is echoed.',
      expect: { [OK]: [msg(big, true)] }, run: ws => ws.sendMessage(big, true, { frag: fs }) });
  }
  add({ id: '5.24', desc: '(extra) Send a text fragment, then a binary frame (opcode 2) before the continuation.',
    exp: 'RFC 6455 5.4: fail (1002).', expect: { [OK]: [] }, close: failClose(),
    run: async ws => { await ws.sendFrame(1, F1, { fin: false }); await ws.sendFrame(2, F2); await ws.sendFrame(0, 'fragment3'); } });
  add({ id: '5.25', desc: '(extra) Send a close frame (1000) with FIN = 0, then a continuation.',
    exp: 'RFC 6455 5.5: control frames MUST NOT be fragmented; fail (1002).', expect: { [OK]: [] }, close: failClose(),
    run: async ws => { await ws.sendFrame(8, closePayload(1000), { fin: false }); await ws.sendFrame(0, ''); } });
}

// 6 UTF-8 ---------------------------------------------------------------
section('6', 'UTF-8 Handling');
{
  const invalidExp = 'RFC 6455 8.1: the connection is failed with 1007.';
  section('6.1', 'Valid UTF-8 with zero payload fragments');
  add({ id: '6.1.1', desc: 'Send a text message of length 0.', exp: 'An empty text message is echoed.',
    expect: { [OK]: [msg('')] }, run: ws => ws.sendFrame(1, '') });
  add({ id: '6.1.2', desc: 'Send a fragmented text message: 3 fragments, each of length 0.', exp: 'An empty text message is echoed.',
    expect: { [OK]: [msg('')] },
    run: async ws => { await ws.sendFrame(1, '', { fin: false }); await ws.sendFrame(0, '', { fin: false }); await ws.sendFrame(0, ''); } });
  add({ id: '6.1.3', desc: 'Send a fragmented text message: 3 fragments, first and last of length 0, middle non-empty.', exp: 'The message is echoed.',
    expect: { [OK]: [msg('middle frame payload')] },
    run: async ws => { await ws.sendFrame(1, '', { fin: false }); await ws.sendFrame(0, 'middle frame payload', { fin: false }); await ws.sendFrame(0, ''); } });

  section('6.2', 'Valid UTF-8 unfragmented, fragmented on code points and within code points');
  const HELLO8 = T('Hello-µ@ßöäüàá-UTF-8!!');
  const frames1 = async (ws, bytes, o = {}) => {
    if (bytes.length === 0) return ws.sendFrame(1, '');
    for (let i = 0; i < bytes.length; i++) await ws.sendFrame(i === 0 ? 1 : 0, bytes.subarray(i, i + 1), Object.assign({}, o, { fin: i === bytes.length - 1 }));
  };
  add({ id: '6.2.1', desc: 'Send a valid UTF-8 text message in one fragment.', exp: 'The message is echoed.',
    expect: { [OK]: [msg(HELLO8)] }, run: ws => ws.sendFrame(1, HELLO8) });
  add({ id: '6.2.2', desc: 'Send a valid UTF-8 text message in two fragments, split on a code point boundary.', exp: 'The message is echoed.',
    expect: { [OK]: [msg(HELLO8)] },
    run: async ws => { await ws.sendFrame(1, HELLO8.subarray(0, 12), { fin: false }); await ws.sendFrame(0, HELLO8.subarray(12)); } });
  add({ id: '6.2.3', desc: 'Send a valid UTF-8 text message in fragments of 1 octet (frames end inside code points).', exp: 'The message is echoed.',
    expect: { [OK]: [msg(HELLO8)] }, run: ws => frames1(ws, HELLO8) });
  add({ id: '6.2.4', desc: 'Send the text "κόσμε" in fragments of 1 octet.', exp: 'The message is echoed.',
    expect: { [OK]: [msg(KOSME)] }, run: ws => frames1(ws, KOSME) });

  section('6.3', 'Invalid UTF-8 differently fragmented');
  const BAD = Buffer.concat([KOSME, H('eda080'), T('edited')]);
  add({ id: '6.3.1', desc: 'Send invalid UTF-8 (κόσμε, a surrogate ED A0 80, "edited") in one fragment.', exp: invalidExp,
    expect: { [OK]: [] }, close: failClose(1007), run: ws => ws.sendFrame(1, BAD) });
  add({ id: '6.3.2', desc: 'Send the same invalid UTF-8 in fragments of 1 octet.', exp: invalidExp,
    expect: { [OK]: [] }, close: failClose(1007), run: ws => frames1(ws, BAD) });

  section('6.4', 'Fail-fast on invalid UTF-8');
  const failFast = (id, p1, p2, p3, chops) => add({ id,
    desc: `Send invalid UTF-8 text in 3 ${chops ? 'chops of one frame' : 'fragments (frames)'}: PART1 = ${p1.toString('hex')} (valid), pause, PART2 = ${p2.toString('hex')} (makes it invalid), pause, PART3 = ${p3.toString('hex')}.`,
    exp: 'Not failed during the first pause; failed with 1007 right after PART2 (fail fast). Failing only after PART3 is NON-STRICT.',
    expect: { [OK]: [mark('A')], [NS]: [mark('A'), mark('B')] }, close: failClose(1007),
    run: async (ws, ctx) => {
      // chops: one frame header announcing all three parts, then the parts
      const whole = frame(1, Buffer.concat([p1, p2, p3]));
      const a = whole.length - (p1.length + p2.length + p3.length) + p1.length, b = a + p2.length;
      const chunk = [whole.subarray(0, a), whole.subarray(a, b), whole.subarray(b)];
      const piece = (i, p, fin, op) => chops ? ws.send(chunk[i]) : ws.sendFrame(op, p, { fin });
      await piece(0, p1, false, 1);
      if (await ws.waitFor(() => ws.closing(), ctx.wait)) return;
      ws.mark('A');
      await piece(1, p2, false, 0);
      if (await ws.waitFor(() => ws.closing(), ctx.wait)) return;
      ws.mark('B');
      await piece(2, p3, true, 0);
    } });
  const P1 = KOSME, P3 = T('edited');
  failFast('6.4.1', P1, H('f4908080'), P3, false);
  failFast('6.4.2', Buffer.concat([P1, H('f4')]), H('90'), Buffer.concat([H('8080'), P3]), false);
  failFast('6.4.3', P1, H('f4908080'), P3, true);
  failFast('6.4.4', Buffer.concat([P1, H('f4')]), H('90'), Buffer.concat([H('8080'), P3]), true);

  // 6.5 .. 6.23: Markus Kuhn's UTF-8 decoder capability and stress test,
  // grouped as in Autobahn.
  const groups = [];
  const g = (title, list) => groups.push([title, list]);
  g('Some valid UTF-8 sequences', [[true, T('hello$world')], [true, H('68656c6c6fc2a2776f726c64')], [true, H('68656c6c6fe282ac776f726c64')], [true, H('68656c6c6ff0a4ada2776f726c64')], [true, KOSME]]);
  {
    const l = [];
    for (let i = 1; i <= KOSME.length; i++) l.push([utf8Valid(KOSME.subarray(0, i)), KOSME.subarray(0, i)]);
    g('All prefixes of a valid UTF-8 string that contains multi-byte code points', l);
  }
  g('First possible sequence of a certain length', [[true, H('00')], [true, H('c280')], [true, H('e0a080')], [true, H('f0908080')]]);
  g('First possible sequence length 5/6 (invalid codepoints)', [[false, H('f888808080')], [false, H('fc8480808080')]]);
  g('Last possible sequence of a certain length', [[true, H('7f')], [true, H('dfbf')], [true, H('efbfbf')], [true, H('f48fbfbf')]]);
  g('Last possible sequence length 4/5/6 (invalid codepoints)', [[false, H('f7bfbfbf')], [false, H('fbbfbfbfbf')], [false, H('fdbfbfbfbfbf')]]);
  g('Other boundary conditions', [[true, H('ed9fbf')], [true, H('ee8080')], [true, H('efbfbd')], [true, H('f48fbfbf')], [false, H('f4908080')]]);
  {
    const l = [[false, H('80')], [false, H('bf')], [false, H('80bf')], [false, H('80bf80')], [false, H('80bf80bf')], [false, H('80bf80bf80')], [false, H('80bf80bf80bf')]];
    const s = []; for (let i = 0x80; i < 0xbf; i++) s.push(i);
    l.push([false, Buffer.from(s)]);
    g('Unexpected continuation bytes', l);
  }
  {
    const l = [];
    for (const [a, b] of [[0xc0, 0xdf], [0xe0, 0xef], [0xf0, 0xf7], [0xf8, 0xfb], [0xfc, 0xfd]]) {
      const s = []; for (let i = a; i < b; i++) s.push(i, 0x20);
      l.push([false, Buffer.from(s)]);
    }
    g('Lonely start characters', l);
  }
  const missing = ['c0', 'e080', 'f08080', 'f8808080', 'fc80808080', 'df', 'efbf', 'f7bfbf', 'fbbfbfbf', 'fdbfbfbfbf'].map(H);
  g('Sequences with last continuation byte missing', missing.map(b => [false, b]));
  g('Concatenation of incomplete sequences', [[false, Buffer.concat(missing)]]);
  g('Impossible bytes', [[false, H('fe')], [false, H('ff')], [false, H('fefeffff')]]);
  g('Examples of an overlong ASCII character', ['c0af', 'e080af', 'f08080af', 'f8808080af', 'fc80808080af'].map(x => [false, H(x)]));
  g('Maximum overlong sequences', ['c1bf', 'e09fbf', 'f08fbfbf', 'f887bfbfbf', 'fc83bfbfbfbf'].map(x => [false, H(x)]));
  g('Overlong representation of the NUL character', ['c080', 'e08080', 'f0808080', 'f880808080', 'fc8080808080'].map(x => [false, H(x)]));
  g('Single UTF-16 surrogates', ['eda080', 'edadbf', 'edae80', 'edafbf', 'edb080', 'edbe80', 'edbfbf'].map(x => [false, H(x)]));
  g('Paired UTF-16 surrogates', ['eda080edb080', 'eda080edbfbf', 'edadbfedb080', 'edadbfedbfbf', 'edae80edb080', 'edae80edbfbf', 'edafbfedb080', 'edafbfedbfbf'].map(x => [false, H(x)]));
  {
    const l = [[true, H('efbfbe')], [true, H('efbfbf')]];
    for (const z1 of [0xf0, 0xf1, 0xf2, 0xf3, 0xf4]) for (const z2 of [0x8f, 0x9f, 0xaf, 0xbf]) {
      if (z1 === 0xf4 && z2 !== 0x8f) continue;
      for (const z3 of [0xbe, 0xbf]) {
        if (z1 === 0xf0 && z2 === 0x8f) continue;        // overlong
        l.push([true, Buffer.from([z1, z2, 0xbf, z3])]);
      }
    }
    g('Non-character code points (valid UTF-8)', l);
  }
  g('Unicode specials (i.e. replacement char)', ['efbfb9', 'efbfba', 'efbfbb', 'efbfbc', 'efbfbd', 'efbfbe', 'efbfbf'].map(x => [true, H(x)]));

  const allInvalid = [];
  groups.forEach(([title, list], gi) => {
    const sec = `6.${gi + 5}`;
    section(sec, title);
    list.forEach(([valid, bytes], j) => {
      if (utf8Valid(bytes) !== valid) throw new Error('test vector ' + sec + '.' + (j + 1) + ' misclassified');
      if (!valid) allInvalid.push([`${sec}.${j + 1}`, bytes]);
      add(valid ? {
        id: `${sec}.${j + 1}`, desc: `Send a text message with valid UTF-8 in one fragment. Payload: 0x${bytes.toString('hex')}`,
        exp: 'The message is echoed.', expect: { [OK]: [msg(bytes)] }, run: ws => ws.sendFrame(1, bytes),
      } : {
        id: `${sec}.${j + 1}`, desc: `Send a text message with invalid UTF-8 in one fragment. Payload: 0x${bytes.toString('hex')}`,
        exp: invalidExp, expect: { [OK]: [] }, close: failClose(1007), run: ws => ws.sendFrame(1, bytes),
      });
    });
  });

  // 6.24 (extra): every invalid sequence above, one octet per frame. The
  // connection must fail with 1007 right after the octet that makes the
  // text invalid; failing only at the end of the message is NON-STRICT.
  section('6.24', '(extra) Invalid sequences of 6.5-6.23 one octet per frame, fail-fast');
  allInvalid.forEach(([from, bytes], j) => {
    const scan = utf8Scan(bytes);
    const at = scan.bad >= 0 ? scan.bad : bytes.length - 1;   // the octet after which it is known invalid
    add({ id: `6.24.${j + 1}`,
      desc: `(extra) Send the payload of ${from} (0x${bytes.toString('hex')}) as a text message of 1-octet frames; pause after octet ${at + 1}${scan.bad < 0 ? ' (the last; only truncated)' : ''}.`,
      exp: 'Failed with 1007 right after that octet; failing only after the final frame is NON-STRICT.',
      expect: { [OK]: [], [NS]: [mark('late')] }, close: failClose(1007),
      run: async (ws, ctx) => {
        for (let i = 0; i < bytes.length; i++) {
          await ws.sendFrame(i === 0 ? 1 : 0, bytes.subarray(i, i + 1), { fin: i === bytes.length - 1 });
          if (i === at && i < bytes.length - 1) {
            if (await ws.waitFor(() => ws.closing(), ctx.wait)) return;
            ws.mark('late');
          }
        }
      } });
  });
}

// 7 close handling -----------------------------------------------------------
section('7', 'Close Handling');
{
  section('7.1', 'Basic close behavior (fuzzer initiated)');
  add({ id: '7.1.1', desc: 'Send a text message, then a close frame.',
    exp: 'The message is echoed, then a clean close with 1000. Closing without the echo is NON-STRICT here (Autobahn: FAILED): RFC 6455 5.5.1 only says the close reply SHOULD come as soon as practical and MAY wait for the current message.',
    expect: { [OK]: [msg('Hello World!')], [NS]: [] },
    judge: r => { if (r.behavior === NS) r.note = 'closed without echoing the message received before the close'; },
    run: async ws => { await ws.sendFrame(1, 'Hello World!'); await ws.sendClose(1000); } });
  add({ id: '7.1.2', desc: 'Send two close frames.', exp: 'Clean close with 1000; the second close is ignored.',
    expect: { [OK]: [] },
    run: async ws => { await ws.sendClose(1000); await ws.sendFrame(8, closePayload(1000)); } });
  add({ id: '7.1.3', desc: 'Send a close frame, then a ping.', exp: 'Clean close with 1000; the ping after the close is not answered (RFC 6455 5.5.1).',
    expect: { [OK]: [] },
    run: async ws => { await ws.sendClose(1000); await ws.sendFrame(9, 'Hello World!'); } });
  add({ id: '7.1.4', desc: 'Send a close frame, then a text message.', exp: 'Clean close with 1000; the text message is not echoed.',
    expect: { [OK]: [] },
    run: async ws => { await ws.sendClose(1000); await ws.sendFrame(1, 'Hello World!'); } });
  add({ id: '7.1.5', desc: 'Send the first fragment of a text message, a close frame, then the last fragment.', exp: 'Clean close with 1000; nothing echoed.',
    expect: { [OK]: [] },
    run: async ws => { await ws.sendFrame(1, 'fragment1', { fin: false }); await ws.sendClose(1000); await ws.sendFrame(0, 'fragment2'); } });
  {
    const big = repeatTo('BAsd7&jh23', 256 * KiB);
    add({ id: '7.1.6', desc: 'Send a 256 KiB text message, a small text message, a close frame and a ping back to back.',
      exp: 'Implementation defined whether the messages come back before the close; clean close with 1000.',
      expect: { [OK]: [msg(big), msg('Hello World!')], [NS]: [msg(big)], [INFO]: [] },
      run: async ws => {
        ws.closeSent = { t: now(), code: 1000 };       // the close goes out in this one write
        await ws.send(Buffer.concat([frame(1, big), frame(1, 'Hello World!'), frame(8, closePayload(1000)), frame(9, '')]));
      },
      judge: r => {
        if (r.behavior === FAILED) return;
        r.note = r.behavior === OK ? 'both messages echoed before the close' : `${r.received.length} of 2 messages echoed before the close`;
        r.behavior = INFO;
      } });
  }

  section('7.3', 'Close frame structure: payload length (fuzzer initiated)');
  add({ id: '7.3.1', desc: 'Send a close frame with an empty payload.', exp: 'A close frame with no code or 1000; clean close.',
    expect: { [OK]: [] }, close: { byMe: true, codes: [1000], clean: true }, run: ws => ws.sendClose(null) });
  add({ id: '7.3.2', desc: 'Send a close frame with a 1-byte payload.', exp: 'RFC 6455 5.5.1: a close body is 0 or at least 2 bytes; fail with 1002.',
    expect: { [OK]: [] }, close: { byMe: true, codes: [1002], clean: false }, run: ws => ws.sendClose(null, undefined, { raw: T('a') }) });
  add({ id: '7.3.3', desc: 'Send a close frame with code 1000 and no reason.', exp: 'Close with 1000; clean close.',
    expect: { [OK]: [] }, run: ws => ws.sendClose(1000) });
  add({ id: '7.3.4', desc: 'Send a close frame with code 1000 and a reason.', exp: 'Close with 1000; clean close.',
    expect: { [OK]: [] }, run: ws => ws.sendClose(1000, 'Hello World!') });
  add({ id: '7.3.5', desc: 'Send a close frame with code 1000 and a 123-byte reason (125-byte payload).', exp: 'Close with 1000; clean close.',
    expect: { [OK]: [] }, run: ws => ws.sendClose(1000, '*'.repeat(123)) });
  add({ id: '7.3.6', desc: 'Send a close frame with code 1000 and a 124-byte reason (126-byte payload).', exp: 'RFC 6455 5.5: control frame payload over 125; fail with 1002.',
    expect: { [OK]: [] }, close: { byMe: true, codes: [1002], clean: false }, run: ws => ws.sendClose(1000, '*'.repeat(124)) });

  section('7.5', 'Close frame structure: payload value (fuzzer initiated)');
  add({ id: '7.5.1', desc: 'Send a close frame with code 1000 and a reason that is not valid UTF-8.', exp: 'RFC 6455 5.5.1/8.1: fail with 1007.',
    expect: { [OK]: [] }, close: { byMe: true, codes: [1007], clean: false },
    run: ws => ws.sendClose(1000, Buffer.concat([KOSME, H('eda080'), T('edited')])) });

  section('7.7', 'Close frame structure: valid close codes (fuzzer initiated)');
  [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999].forEach((code, i) => add({
    id: `7.7.${i + 1}`, desc: `Send a close frame with code ${code}.`,
    exp: 'The close is answered echoing the code (RFC 6455 5.5.1 "typically echos"); 1000 instead is NON-STRICT. Clean close.',
    expect: { [OK]: [] }, close: { byMe: true, codes: [code, 1000], clean: true },
    run: ws => ws.sendClose(code),
    judge: r => { if (r.behavior === OK && r.closeCode !== code && code !== 1000) { r.behavior = NS; r.note = `answered ${r.closeCode} rather than echoing ${code}`; } },
  }));
  [1012, 1013, 1014].forEach((code, i) => add({
    id: `7.7.${14 + i}`, desc: `(extra) Send a close frame with code ${code} (registered with IANA after RFC 6455).`,
    exp: 'Echo, 1000 or 1002 are all accepted; reported in the note.',
    expect: { [OK]: [] }, close: { byMe: true, codes: [code, 1000, 1002], clean: false },
    run: ws => ws.sendClose(code),
    judge: r => { if (r.behavior === OK) r.note = r.closeCode === code ? 'echoed' : r.closeCode === 1002 ? 'refused (1002)' : `answered ${r.closeCode}`; },
  }));

  section('7.9', 'Close frame structure: invalid close codes (fuzzer initiated)');
  [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 1015].forEach((code, i) => add({
    id: `7.9.${i + 1}`, desc: `${i === 9 ? '(extra) ' : ''}Send a close frame with invalid close code ${code}.`,
    exp: 'RFC 6455 7.4: not a code an endpoint may send; close with 1002 (or drop TCP).',
    expect: { [OK]: [] }, close: { byMe: true, codes: [1002], clean: false },
    run: ws => ws.sendClose(code),
  }));

  section('7.13', 'Informational close information (fuzzer initiated)');
  [5000, 65535].forEach((code, i) => add({
    id: `7.13.${i + 1}`, desc: `Send a close frame with close code ${code}.`,
    exp: 'RFC 6455 7.4.2 defines no codes above 4999; 1002 is OK, anything else INFORMATIONAL.',
    expect: { [OK]: [] }, close: { byMe: true, codes: null, clean: false },
    run: ws => ws.sendClose(code),
    judge: r => { if (r.behavior === OK && r.closeCode !== 1002 && r.closeCode !== '-') { r.behavior = INFO; r.note = `answered ${r.closeCode}`; } },
  }));
}

// 9 limits and performance -------------------------------------------------
section('9', 'Limits/Performance');
{
  const textOf = n => repeatTo('BAsd7&jh23', n);
  const binOf = n => repeatTo(randomBytes(4096, 9), n);
  const big = [64 * KiB, 256 * KiB, MiB, 4 * MiB, 8 * MiB, 16 * MiB - 1];
  const timed = (ws, ctx, data, binary, o) => async () => {
    const t0 = now();
    await ws.sendMessage(data, binary, o);
    const m = await ws.nextMessage(0, ctx.timeoutFor(data.length));
    const dt = now() - t0;
    if (!m) { ctx.fail('no echo'); return; }
    if (m.ev.binary !== binary || !m.ev.data.equals(data)) { ctx.fail(`echo differs (got ${evText(m.ev)})`); return; }
    ctx.notes.push(`${dt.toFixed(1)} ms`);
  };
  for (const [sub, binary] of [[1, false], [2, true]]) {
    section(`9.${sub}`, `${binary ? 'Binary' : 'Text'} messages of increasing size`);
    big.forEach((n, i) => add({ id: `9.${sub}.${i + 1}`, size: n,
      desc: `Send a ${binary ? 'binary' : 'text'} message of ${n} bytes in one frame.`, exp: 'The message is echoed (time reported).',
      run: (ws, ctx) => timed(ws, ctx, binary ? binOf(n) : textOf(n), binary, {})() }));
  }
  const fsz = [64, 256, KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB, 4 * MiB];
  for (const [sub, binary] of [[3, false], [4, true]]) {
    section(`9.${sub}`, `Fragmented ${binary ? 'binary' : 'text'} message, fragments of increasing size`);
    fsz.forEach((f, i) => add({ id: `9.${sub}.${i + 1}`, size: 4 * MiB,
      desc: `Send a 4 MiB ${binary ? 'binary' : 'text'} message in fragments of ${fmtSize(f)}.`, exp: 'The message is echoed (time reported).',
      run: (ws, ctx) => timed(ws, ctx, binary ? binOf(4 * MiB) : textOf(4 * MiB), binary, { frag: f })() }));
  }
  const csz = [64, 128, 256, 512, 1024, 2048];
  for (const [sub, binary] of [[5, false], [6, true]]) {
    section(`9.${sub}`, `${binary ? 'Binary' : 'Text'} message in one frame, written in chops`);
    csz.forEach((c, i) => add({ id: `9.${sub}.${i + 1}`, size: MiB,
      desc: `Send a 1 MiB ${binary ? 'binary' : 'text'} message in one frame, written in chops of ${c} bytes.`, exp: 'The message is echoed (time reported).',
      run: (ws, ctx) => timed(ws, ctx, binary ? binOf(MiB) : textOf(MiB), binary, { chop: c })() }));
  }
  const rsz = [0, 16, 64, 256, 1024, 4096];
  for (const [sub, binary] of [[7, false], [8, true]]) {
    section(`9.${sub}`, `Round trips of ${binary ? 'binary' : 'text'} messages`);
    rsz.forEach((n, i) => add({ id: `9.${sub}.${i + 1}`,
      desc: `Send 1000 ${binary ? 'binary' : 'text'} messages of ${n} bytes, one at a time, waiting for each echo.`, exp: 'All echoed in order (time reported).',
      run: async (ws, ctx) => {
        const data = binary ? binOf(n) : textOf(n);
        const t0 = now();
        let from = 0;
        for (let k = 0; k < 1000; k++) {
          await ws.sendMessage(data, binary);
          const m = await ws.nextMessage(from, ctx.cfg.timeout * 1000);
          if (!m) { ctx.fail(`no echo for message ${k + 1}`); return; }
          if (m.ev.binary !== binary || !m.ev.data.equals(data)) { ctx.fail(`echo ${k + 1} differs (got ${evText(m.ev)})`); return; }
          from = m.index + 1;
        }
        ctx.notes.push(`${(now() - t0).toFixed(1)} ms`);
      } }));
  }
  // 9.9 (extra): the server's --ws-max-message limit, RFC 6455 7.4.1 (1009)
  section('9.9', '(extra) Message size limit (--max-message) and close 1009');
  add({ id: '9.9.1', limit: 0, desc: '(extra) Send a binary message of exactly --max-message bytes in one frame.', exp: 'The message is echoed.',
    run: (ws, ctx) => timed(ws, ctx, binOf(ctx.cfg.maxMessage), true, {})() });
  add({ id: '9.9.2', limit: 1, desc: '(extra) Send a binary frame of --max-message + 1 bytes.', exp: 'Close 1009 (RFC 6455 7.4.1); nothing echoed. Closing before the payload arrives is allowed.',
    expect: { [OK]: [] }, close: failClose(1009),
    run: async (ws, ctx) => {
      // header and a first chunk, then a pause: a server that fails on the
      // header answers now. (Writing on into a connection the server has
      // closed gets a reset, and Node then drops what it had not read yet.)
      const f = frame(2, binOf(ctx.cfg.maxMessage + 1));
      await ws.send(f.subarray(0, 64 * KiB));
      if (await ws.waitFor(() => ws.closing(), ctx.wait)) { ctx.notes.push('failed on the frame header'); return; }
      await ws.send(f.subarray(64 * KiB), { chop: 256 * KiB, stopOnClose: true });
    } });
  add({ id: '9.9.3', limit: 1, desc: '(extra) Send a text message of --max-message + 1 bytes in fragments of 1 MiB.', exp: 'Close 1009; nothing echoed.',
    expect: { [OK]: [] }, close: failClose(1009),
    run: async (ws, ctx) => {
      const data = textOf(ctx.cfg.maxMessage + 1), f = MiB;
      for (let i = 0; i < data.length && !ws.closing(); i += f)
        await ws.sendFrame(i === 0 ? 1 : 0, data.subarray(i, i + f), { fin: i + f >= data.length });
    } });
  add({ id: '9.9.4', limit: 1, desc: '(extra) Send only the header of a binary frame declaring 2^40 bytes, then some payload.', exp: 'Close 1009 (or 1002) without waiting for the payload.',
    expect: { [OK]: [] }, close: failClose(1009, 1002),
    run: async ws => { const h = Buffer.from([0x82, 0xff, 0, 0, 0x01, 0, 0, 0, 0, 0, 1, 2, 3, 4]); await ws.send(h); await ws.send(Buffer.alloc(4096)); } });
}

// 10 auto-fragmentation ---------------------------------------------------
section('10', 'Misc');
section('10.1', 'Auto-Fragmentation');
{
  const star = repeatTo('*', 65536);
  add({ id: '10.1.1', desc: 'Send a 65536-byte text message auto-fragmented into frames of 1300 bytes.', exp: 'The message is echoed (any framing).',
    expect: { [OK]: [msg(star)] }, run: ws => ws.sendMessage(star, false, { frag: 1300 }),
    judge: r => { if (r.events[0]) r.note = `echoed in ${r.events[0].frames} frame(s)`; } });
  add({ id: '10.1.2', desc: '(extra) Send a 65536-byte text message in one frame, written in 1-byte chops.', exp: 'The message is echoed.',
    expect: { [OK]: [msg(star)] }, run: ws => ws.sendMessage(star, false, { chop: 1 }), timeoutScale: 3 });
  const mixedFinal = T('aé€😀'.repeat(6553));            // 65530 bytes, 1- to 4-byte characters
  add({ id: '10.1.3', desc: `(extra) Send a ${mixedFinal.length}-byte text message of multi-byte characters auto-fragmented into frames of 1300 bytes (frames end inside code points).`,
    exp: 'The message is echoed.', expect: { [OK]: [msg(mixedFinal)] }, run: ws => ws.sendMessage(mixedFinal, false, { frag: 1300 }) });
  const bin = randomBytes(65536, 10);
  add({ id: '10.1.4', desc: '(extra) Send a 65536-byte binary message in 1-byte fragments.', exp: 'The message is echoed.',
    expect: { [OK]: [msg(bin, true)] }, run: ws => ws.sendMessage(bin, true, { frag: 1 }), timeoutScale: 3 });
}

// 12 / 13 permessage-deflate ---------------------------------------------
section('12', 'WebSocket Compression (different payloads)');
section('13', 'WebSocket Compression (different parameters)');
{
  const MSG_SIZES = [
    [16, 0], [64, 0], [256, 0], [1024, 0], [4096, 0], [8192, 0], [16384, 0], [32768, 0], [65536, 0], [131072, 0],
    [8192, 256], [16384, 256], [32768, 256], [65536, 256], [131072, 256], [131072, 1024], [131072, 4096], [131072, 32768],
  ];
  // deterministic corpora (Autobahn uses files; these are generated)
  const corpora = {};
  const corpus = name => {
    if (corpora[name]) return corpora[name];
    const r = rng(name.length * 7919 + name.charCodeAt(0));
    const N = 384 * KiB;
    const pick = a => a[Math.floor(r() * a.length)];
    let b;
    if (name === 'text') {
      const words = ['Habe', 'nun', 'ach', 'Philosophie', 'Juristerei', 'und', 'Medizin', 'leider', 'auch', 'Theologie', 'durchaus',
        'studiert', 'mit', 'heißem', 'Bemühn', 'Da', 'steh', 'ich', 'nun', 'ich', 'armer', 'Tor', 'bin', 'so', 'klug', 'als', 'wie', 'zuvor',
        'Heiße', 'Magister', 'heiße', 'Doktor', 'gar', 'zieh', 'schon', 'an', 'die', 'zehen', 'Jahr', 'herauf', 'herab', 'quer', 'krumm',
        'meine', 'Schüler', 'an', 'der', 'Nase', 'herum', 'the', 'of', 'and', 'that', 'Faust', 'Mephistopheles', 'Gretchen'];
      const parts = []; let len = 0;
      while (len < N) { let s = ''; const n = 4 + Math.floor(r() * 14); for (let i = 0; i < n; i++) s += (i ? ' ' : '') + pick(words); s += pick(['.', ',', '!', '?', ';']) + (r() < 0.2 ? '\n' : ' '); parts.push(s); len += Buffer.byteLength(s); }
      b = T(parts.join(''));
    } else if (name === 'bitmap') {
      b = Buffer.allocUnsafe(N);
      for (let i = 0; i < N; i++) { const x = i % 512, y = (i / 512) | 0; b[i] = ((Math.sin(x / 40) + Math.cos(y / 33)) * 50 + 128 + (r() < 0.1 ? r() * 30 : 0)) & 0xff; }
    } else if (name === 'random') {
      b = randomBytes(N, 1234);
    } else if (name === 'json') {
      const parts = ['[']; let len = 1, id = 0;
      while (len < N) {
        const s = JSON.stringify({ id: id++, name: pick(['alpha', 'beta', 'gamma', 'delta', 'epsilon']) + '-' + Math.floor(r() * 1000),
          active: r() < 0.5, score: Math.round(r() * 100000) / 100, tags: [pick(['red', 'green', 'blue']), pick(['x', 'y', 'z'])],
          address: { street: pick(['Main St', 'Elm St', 'Oak Ave']) + ' ' + Math.floor(r() * 999), zip: String(10000 + Math.floor(r() * 89999)) } }) + ',\n';
        parts.push(s); len += s.length;
      }
      b = T(parts.join(''));
    } else {
      const parts = ['<!DOCTYPE html><html><head><title>data</title></head><body><table>\n']; let len = 0;
      while (len < N) { const s = `<tr class="${pick(['odd', 'even'])}"><td>${Math.floor(r() * 1e6)}</td><td><a href="/item/${Math.floor(r() * 1e4)}">${pick(['Item', 'Entry', 'Record'])} ${Math.floor(r() * 100)}</a></td><td>${pick(['open', 'closed', 'pending'])}</td></tr>\n`; parts.push(s); len += s.length; }
      b = T(parts.join(''));
    }
    return (corpora[name] = b);
  };
  const DATASETS = [
    ['text', true, 'Human readable text, German/English (binary messages)'],
    ['bitmap', true, 'Bitmap-like image data (binary)'],
    ['random', true, 'Random bytes, incompressible (binary)'],
    ['json', false, 'JSON data (text messages)'],
    ['html', false, 'HTML data (text messages)'],
  ];
  const countFor = (cfg, len) => cfg.full ? 1000 : Math.max(5, Math.min(100, Math.floor(512 * KiB / len)));

  // the shared body of 12.x.y and 13.x.y
  const pmdRun = (dataset, binary, len, autofrag) => async (ws, ctx) => {
    if (!ws.pmd) {
      ctx.behavior = ctx.cfg.deflate === 'required' && !ctx.mayDecline ? FAILED : INFO;
      ctx.notes.push('permessage-deflate not negotiated');
      return;
    }
    if (ws.pmd.cmwb < 9) { ctx.notes.push('client_max_window_bits=8: messages sent uncompressed'); }
    const data = corpus(dataset), count = countFor(ctx.cfg, len);
    let ptr = (len * 31) % data.length, from = 0, compressed = 0, wireIn = 0, bytes = 0;
    const t0 = now();
    for (let k = 0; k < count; k++) {
      let m;
      if (ptr + len <= data.length) m = data.subarray(ptr, ptr + len);
      else m = Buffer.concat([data.subarray(ptr), data.subarray(0, len - (data.length - ptr))]);
      ptr = (ptr + len) % data.length;
      await ws.sendMessage(m, binary, { compress: ws.pmd.cmwb >= 9, frag: autofrag || undefined });
      const got = await ws.nextMessage(from, ctx.cfg.timeout * 1000);
      if (!got) { ctx.fail(`no echo for message ${k + 1} of ${count}`); return; }
      const e = got.ev;
      if (e.binary !== binary || !e.data.equals(m)) {
        ctx.fail(`echo ${k + 1} differs: sent ${binary ? 'binary' : 'text'} ${m.length} B sha1 ${crypto.createHash('sha1').update(m).digest('hex').slice(0, 12)}, got ${evText(e)} sha1 ${crypto.createHash('sha1').update(e.data).digest('hex').slice(0, 12)}`);
        return;
      }
      if (e.compressed) compressed++;
      wireIn += e.wire; bytes += e.data.length;
      from = got.index + 1;
    }
    ctx.notes.push(`${count} msgs, ${(now() - t0).toFixed(0)} ms, server compressed ${compressed}/${count}` + (bytes ? `, ratio ${(wireIn / bytes).toFixed(2)}` : ''));
  };

  DATASETS.forEach(([name, binary, title], j) => {
    section(`12.${j + 1}`, title);
    MSG_SIZES.forEach(([len, frag], i) => add({
      id: `12.${j + 1}.${i + 1}`, offer: 'permessage-deflate; client_max_window_bits', deflate: true,
      desc: `Send compressed messages (100 or fewer; --full: 1000) of ${len} bytes, ${frag ? `auto-fragmented to ${frag} bytes` : 'one frame each'}, one at a time. Offer: permessage-deflate; client_max_window_bits.`,
      exp: 'Every message comes back with the same bytes and type; the response parameters fit the offer.',
      run: pmdRun(name, binary, len, frag),
    }));
  });

  const OFFERS = [
    'permessage-deflate',
    'permessage-deflate; client_no_context_takeover',
    'permessage-deflate; server_no_context_takeover',
    'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
    'permessage-deflate; server_max_window_bits=9',
    'permessage-deflate; server_max_window_bits=12',
    'permessage-deflate; server_max_window_bits=15',
    'permessage-deflate; client_max_window_bits',
    'permessage-deflate; client_max_window_bits=9',
    'permessage-deflate; client_max_window_bits=15; server_max_window_bits=10',
    'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9',
    'permessage-deflate; server_max_window_bits=8, permessage-deflate; server_no_context_takeover, permessage-deflate',
    'permessage-deflate; x-unknown-param, permessage-deflate; client_max_window_bits',
  ];
  OFFERS.forEach((offer, j) => {
    section(`13.${j + 1}`, `JSON text messages; offer: ${offer}`);
    MSG_SIZES.forEach(([len, frag], i) => add({
      id: `13.${j + 1}.${i + 1}`, offer, deflate: true,
      desc: `Send compressed JSON text messages of ${len} bytes, ${frag ? `auto-fragmented to ${frag} bytes` : 'one frame each'}. Offer: ${offer}.`,
      exp: 'The response parameters fit the offer (RFC 7692 7.1); the server honours them (window size, context takeover); every message comes back intact.',
      run: pmdRun('json', false, len, frag),
    }));
  });

  // 12.6 (extra): negotiation edge cases and compressed-frame errors
  section('12.6', '(extra) permessage-deflate negotiation and framing edge cases');
  const declineCase = (n, offer, why) => add({
    id: `12.6.${n}`, offer, deflate: true, mayFailHandshake: true,
    desc: `(extra) Offer "${offer}" (${why}), then send a text message.`,
    exp: 'RFC 7692 7: the server MUST decline this offer (no extension in the response); the message is echoed uncompressed.',
    expect: { [OK]: [msg('declined?')] },
    run: async (ws, ctx) => { if (ws.pmd) ctx.fail(`accepted an invalid offer: ${ws.pmd.text}`); await ws.sendMessage('declined?', false); },
  });
  declineCase(1, 'permessage-deflate; server_max_window_bits=16', 'window bits out of range');
  declineCase(2, 'permessage-deflate; client_max_window_bits=7', 'window bits out of range');
  declineCase(3, 'permessage-deflate; server_max_window_bits', 'server_max_window_bits needs a value');
  declineCase(4, 'permessage-deflate; server_no_context_takeover; server_no_context_takeover', 'a parameter twice');
  declineCase(5, 'permessage-deflate; server_no_context_takeover=1', 'a value on a parameter without one');
  const need = (ws, ctx) => { if (!ws.pmd) { ctx.behavior = ctx.cfg.deflate === 'required' ? FAILED : INFO; ctx.notes.push('permessage-deflate not negotiated'); return false; } return true; };
  const PLAIN = 'permessage-deflate; client_max_window_bits';
  add({ id: '12.6.6', offer: PLAIN, deflate: true, desc: '(extra) With permessage-deflate agreed, send an uncompressed text message (RSV1 = 0).',
    exp: 'RFC 7692 6: messages may be sent uncompressed; echoed.', expect: { [OK]: [msg('plain text, not compressed')] },
    run: async (ws, ctx) => { if (need(ws, ctx)) await ws.sendMessage('plain text, not compressed', false); } });
  {
    const ms = [T('compressible compressible compressible one'), T('not compressed in between'), T('compressible compressible compressible two'), T('compressible compressible compressible three')];
    add({ id: '12.6.7', offer: PLAIN, deflate: true, desc: '(extra) Alternate compressed and uncompressed messages with context takeover.',
      exp: 'RFC 7692 7.2.2: uncompressed messages do not enter the LZ77 window; all echoed.', expect: { [OK]: ms.map(m => msg(m)) },
      run: async (ws, ctx) => { if (!need(ws, ctx)) return; for (let i = 0; i < ms.length; i++) await ws.sendMessage(ms[i], false, { compress: i !== 1 }); } });
  }
  add({ id: '12.6.8', offer: PLAIN, deflate: true, desc: '(extra) With permessage-deflate agreed, send a ping with RSV1 set.',
    exp: 'RFC 7692 6: RSV1 only on data frames; fail (1002).', expect: { [OK]: [] }, close: failClose(1002),
    run: async (ws, ctx) => { if (need(ws, ctx)) await ws.sendFrame(9, 'ping', { rsv: 4 }); else ws.mark('skip'); } });
  add({ id: '12.6.9', offer: PLAIN, deflate: true, desc: '(extra) Send a compressed message in 2 fragments with RSV1 set on both.',
    exp: 'RFC 7692 6.1: RSV1 only on the first frame; fail (1002).', expect: { [OK]: [] }, close: failClose(1002),
    run: async (ws, ctx) => {
      if (!need(ws, ctx)) { ws.mark('skip'); return; }
      const c = ws.deflate(T('Hello compressed world, Hello compressed world'));
      const k = c.length >> 1;
      await ws.sendFrame(1, c.subarray(0, k), { fin: false, rsv: 4 }); await ws.sendFrame(0, c.subarray(k), { rsv: 4 });
    } });
  add({ id: '12.6.10', offer: PLAIN, deflate: true, desc: '(extra) Send a "compressed" message whose payload is not valid DEFLATE data.',
    exp: 'RFC 7692 8: fail the connection (1007 or 1002); nothing echoed.', expect: { [OK]: [] }, close: failClose(1007, 1002),
    run: async (ws, ctx) => { if (need(ws, ctx)) await ws.sendFrame(2, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x12, 0x34]), { rsv: 4 }); else ws.mark('skip'); } });
  add({ id: '12.6.11', offer: PLAIN, deflate: true, limit: 1, desc: '(extra) Send a small compressed message that inflates to --max-message + 1 bytes.',
    exp: 'Close 1009 (RFC 6455 7.4.1): the limit applies to the decompressed message; nothing echoed.', expect: { [OK]: [] }, close: failClose(1009),
    run: async (ws, ctx) => { if (need(ws, ctx)) await ws.sendMessage(Buffer.alloc(ctx.cfg.maxMessage + 1), true, { compress: true }); else ws.mark('skip'); } });
  add({ id: '12.6.12', offer: PLAIN, deflate: true, desc: '(extra) Send a compressed text message that inflates to invalid UTF-8.',
    exp: 'RFC 6455 8.1: fail with 1007; nothing echoed.', expect: { [OK]: [] }, close: failClose(1007),
    run: async (ws, ctx) => { if (need(ws, ctx)) await ws.sendMessage(Buffer.concat([KOSME, H('eda080'), T('edited')]), false, { compress: true }); else ws.mark('skip'); } });
  {
    const m = T('fragmented compressed message '.repeat(20));
    add({ id: '12.6.13', offer: PLAIN, deflate: true, desc: '(extra) Send a compressed message in 1-byte fragments (RSV1 on the first only).',
      exp: 'Echoed.', expect: { [OK]: [msg(m)] },
      run: async (ws, ctx) => { if (need(ws, ctx)) await ws.sendMessage(m, false, { compress: true, frag: 1 }); } });
  }
  add({ id: '12.6.14', offer: PLAIN, deflate: true, desc: '(extra) Send an empty compressed text message (payload 0x00, RFC 7692 7.2.3.6) and an empty compressed binary message (payload 0x02 0x00, an empty fixed-Huffman block).',
    exp: 'Both inflate to nothing; two empty messages echoed.', expect: { [OK]: [msg(''), msg(Buffer.alloc(0), true)] },
    run: async (ws, ctx) => { if (!need(ws, ctx)) return; await ws.sendFrame(1, H('00'), { rsv: 4 }); await ws.sendFrame(2, H('0200'), { rsv: 4 }); } });
  // the payload examples of RFC 7692 7.2.3, each of which decodes to "Hello"
  const rfcEx = (n, sec, hex, what) => add({ id: `12.6.${n}`, offer: PLAIN, deflate: true,
    desc: `(extra) Send the example payload of RFC 7692 ${sec} (${what}): ${hex.match(/../g).map(x => '0x' + x).join(' ')}.`,
    exp: 'It decodes to "Hello"; echoed.', expect: { [OK]: [msg('Hello')] },
    run: async (ws, ctx) => { if (need(ws, ctx)) await ws.sendFrame(1, H(hex), { rsv: 4 }); } });
  rfcEx(15, '7.2.3.1', 'f248cdc9c90700', 'a message compressed with a sync flush');
  add({ id: '12.6.16', offer: PLAIN, deflate: true,
    desc: '(extra) Send the two messages of RFC 7692 7.2.3.2 (sharing the LZ77 window): 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00, then 0xf2 0x00 0x11 0x00 0x00.',
    exp: 'Without client_no_context_takeover agreed the server keeps its window; both decode to "Hello"; echoed.', expect: { [OK]: [msg('Hello'), msg('Hello')] },
    run: async (ws, ctx) => {
      if (!need(ws, ctx)) return;
      if (ws.pmd.cnct) { ctx.behavior = INFO; ctx.notes.push('client_no_context_takeover agreed; sending the second message fresh'); }
      await ws.sendFrame(1, H('f248cdc9c90700'), { rsv: 4 });
      await ws.sendFrame(1, ws.pmd.cnct ? H('f248cdc9c90700') : H('f200110000'), { rsv: 4 });
    } });
  rfcEx(17, '7.2.3.3', '000500faff48656c6c6f00', 'a DEFLATE block with no compression');
  rfcEx(18, '7.2.3.4', 'f348cdc9c9070000', 'a DEFLATE block with BFINAL set to 1');
  rfcEx(19, '7.2.3.5', 'f248050000 00ffffcac9c90700'.replace(/ /g, ''), 'two DEFLATE blocks in one message');
  {
    const a = T('ends with a BFINAL block, then an empty stored block. '.repeat(8)), b = T('ends with a BFINAL block, then an empty stored block. '.repeat(4));
    add({ id: '12.6.20', offer: PLAIN, deflate: true,
      desc: '(extra) Send a message whose DEFLATE data ends with a BFINAL = 1 block followed by the empty stored block of RFC 7692 7.2.1 (minus 00 00 ff ff, i.e. one 0x00), then a message made of back-references into the first.',
      exp: 'RFC 7692 7.2.3.4 allows BFINAL blocks; 7.2.2: the next message is decompressed with the same LZ77 window. Both echoed.',
      expect: { [OK]: [msg(a), msg(b)] },
      run: async (ws, ctx) => {
        if (!need(ws, ctx)) return;
        if (ws.pmd.cnct) { ctx.behavior = INFO; ctx.notes.push('client_no_context_takeover agreed; second message sent without context'); }
        await ws.sendFrame(1, Buffer.concat([zlib.deflateRawSync(a), H('00')]), { rsv: 4 });
        ws.txHist = ws.pmd.cnct ? Buffer.alloc(0) : a;
        await ws.sendMessage(b, false, { compress: true });
      } });
    add({ id: '12.6.21', offer: PLAIN, deflate: true,
      desc: '(extra) Send a message compressed by zlib with Z_FINISH and nothing after its BFINAL block (no empty stored block, unlike RFC 7692 7.2.1 step 2).',
      exp: 'Not the RFC\'s wire format, so the outcome is open; echo or failing are both reported.',
      expect: { [INFO]: [msg(a)], [OK]: [] }, close: { byMe: null, codes: [1000, 1002, 1007], clean: false },
      run: async (ws, ctx) => { if (need(ws, ctx)) await ws.sendFrame(1, zlib.deflateRawSync(a), { rsv: 4 }); },
      judge: r => { if (r.behavior !== FAILED) { r.behavior = INFO; r.note = r.received.length ? 'echoed it' : `refused it (close ${r.closeCode})`; } } });
  }
  add({ id: '12.6.22', offer: PLAIN, deflate: true, desc: '(extra) Send a compressed (RSV1) binary message with a zero-length payload.',
    exp: 'Not settled by RFC 7692: 00 00 ff ff alone leaves a stored block open (7.2.3.6 sends 0x00 for empty). Echo or failing are both reported.',
    expect: { [INFO]: [msg(Buffer.alloc(0), true)], [OK]: [] }, close: { byMe: null, codes: [1000, 1002, 1007], clean: false },
    run: async (ws, ctx) => { if (need(ws, ctx)) await ws.sendFrame(2, Buffer.alloc(0), { rsv: 4 }); },
    judge: r => { if (r.behavior !== FAILED) { r.behavior = INFO; r.note = r.received.length ? 'echoed an empty message' : `refused it (close ${r.closeCode})`; } } });
}

// ---------------------------------------------------------------------------
// running one case

function eventsForCompare(ws) { return ws.events.filter(e => e.type !== 'ping'); }

function expectLists(c) { return c.expect && typeof c.expect === 'object' ? Object.entries(c.expect) : []; }

async function runCase(c, cfg) {
  const t0 = now();
  const scale = (c.timeoutScale || 1) * (c.size ? Math.max(1, c.size / (4 * MiB)) : 1);
  const deadline = t0 + cfg.timeout * 1000 * 3 * scale + 5000 * (c.limit !== undefined ? 2 : 0);
  const ws = new Conn(cfg, deadline);
  const r = { id: c.id, desc: c.desc, exp: c.exp, status: null, behavior: null, closeBehavior: null, closeCode: '-', note: '', notes: [] };
  const ctx = {
    cfg, wait: cfg.wait * 1000, notes: r.notes, behavior: null, mayDecline: /^permessage-deflate; (server_max_window_bits=8|x-unknown)/.test(c.offer || ''),
    failed: null,
    fail(n) { if (!this.failed) this.failed = n; },
    timeoutFor: bytes => cfg.timeout * 1000 + bytes / MiB * 500,
  };
  let info;
  try { info = await ws.open(c.offer); }
  catch (e) {
    r.status = FAILED; r.note = 'opening handshake: ' + e.message;
    if (c.mayFailHandshake && e.info && e.info.status >= 400) { r.status = INFO; r.note = `handshake refused with ${e.info.status} (declining the offer is the RFC's way)`; }
    r.ms = now() - t0;
    r.log = { received: [], handshake: e.info ? { status: e.info.status, headers: e.info.headers } : null };
    return r;
  }
  r.extensions = info.extensions;
  r.pmd = ws.pmd ? { snct: ws.pmd.snct, cnct: ws.pmd.cnct, smwb: ws.pmd.smwb, cmwb: ws.pmd.cmwb } : null;
  const lists = expectLists(c);
  const matchAny = () => {
    const ev = eventsForCompare(ws);
    if (typeof c.expect === 'function') return !!c.expect(ev);
    return lists.some(([, l]) => listEqual(ev, l));
  };
  const maxLen = lists.reduce((m, [, l]) => Math.max(m, l.length), 0);
  const onlyEmpty = lists.length > 0 && maxLen === 0;
  let crashed = null, raceTimer = null;
  try {
    await Promise.race([c.run(ws, ctx), new Promise((_, rej) => { raceTimer = setTimeout(() => rej(new Error('case script did not finish in time')), Math.max(1, ws.remaining())); })]);
  } catch (e) { crashed = e; }
  clearTimeout(raceTimer);

  // closing phase
  if (!crashed) {
    if (c.close.byMe !== false) {
      if (!ws.closeSent && !ws.closing()) {
        if (c.done) await ws.waitFor(() => c.done(eventsForCompare(ws)) || ws.closing(), cfg.timeout * 1000);
        else if (lists.length && !onlyEmpty) await ws.waitFor(() => matchAny() || eventsForCompare(ws).length >= maxLen || ws.closing() || ws.violations.length > 0, cfg.timeout * 1000);
        if (onlyEmpty) await ws.waitFor(() => ws.closing() || ws.events.length > 0, cfg.settle * 1000);
        if (!ws.closing()) await ws.sendClose(c.close.codes ? c.close.codes[0] : 1000);
      }
      await ws.waitFor(() => !!ws.closeReceived || !!ws.tcpClosed, cfg.timeout * 1000);
    } else {
      await ws.waitFor(() => ws.closing(), cfg.timeout * 1000);
    }
    await ws.waitFor(() => !!ws.tcpClosed, cfg.timeout * 1000);
  }
  if (!ws.tcpClosed) ws.destroy();
  await ws.waitFor(() => !!ws.tcpClosed, 1000);

  // grading
  const ev = eventsForCompare(ws);
  r.events = ev.filter(e => e.type === 'message');
  r.received = ev.filter(e => e.type !== 'timeout');
  r.closeCode = ws.closeReceived ? (ws.closeReceived.code === null ? 'none' : ws.closeReceived.code) : '-';
  if (crashed) { r.behavior = FAILED; r.notes.unshift('error: ' + crashed.message); }
  else if (ctx.failed) { r.behavior = FAILED; r.notes.unshift(ctx.failed); }
  else if (typeof c.expect === 'function') {
    const res = c.expect(ev);
    if (res) { r.behavior = res.behavior; if (res.note) r.notes.push(res.note); }
    else { r.behavior = FAILED; r.notes.push('got ' + listText(ev)); }
  } else if (lists.length) {
    const hit = lists.find(([, l]) => listEqual(ev, l));
    if (hit) r.behavior = hit[0];
    else {
      r.behavior = FAILED;
      r.notes.push(`got ${listText(ev)}, expected ${lists.map(([k, l]) => (lists.length > 1 ? k + ' ' : '') + listText(l)).join(' or ')}`);
    }
  } else r.behavior = ctx.behavior || OK;
  if (ctx.behavior && r.behavior === OK) r.behavior = ctx.behavior;

  // close behaviour (as in Autobahn's Case.onConnectionLost)
  // who started the closing handshake: us, if our close went out before the
  // server's arrived (a deferred automatic reply never counts)
  const closedByMe = !!ws.closeSent && !ws.closeSent.auto && (!ws.closeReceived || ws.closeSent.t <= ws.closeReceived.t);
  const wasClean = !!(ws.closeSent && ws.closeReceived && ws.tcpClosed && !ws.droppedByMe);
  r.closedByMe = closedByMe; r.wasClean = wasClean; r.droppedByMe = ws.droppedByMe;
  // a close frame without a code is accepted wherever a close is expected
  // (RFC 6455 5.5.1 makes the body optional), as Autobahn does
  const codeOk = !ws.closeReceived || ws.closeReceived.code === null || c.close.codes === null || c.close.codes.includes(ws.closeReceived.code);
  if (crashed) r.closeBehavior = FAILED;
  else if (c.close.byMe === true && !closedByMe) {
    r.closeBehavior = FAILED;
    r.notes.push(ws.closeReceived ? `the server closed first with ${r.closeCode}` : 'the server dropped the connection');
  } else if (c.close.byMe === false && closedByMe) {
    r.closeBehavior = FAILED;
    r.notes.push('the client started the closing handshake; the server was expected to fail the connection');
  } else if (c.close.byMe === false && !ws.closeReceived && ws.droppedByMe) {
    r.closeBehavior = FAILED;
    r.notes.push(`the server did not fail the connection within ${cfg.timeout} s`);
  } else if (c.close.clean && !wasClean) {
    r.closeBehavior = UNCLEAN;
    r.notes.push(ws.droppedByMe ? (ws.closeReceived ? 'the server did not close TCP after the close handshake' : 'no close frame from the server; client dropped TCP')
      : !ws.closeReceived ? `TCP closed (${ws.tcpClosed && ws.tcpClosed.how}) without a close frame from the server` : 'TCP closed before the handshake completed');
  } else if (!codeOk) {
    r.closeBehavior = FAILED;
    r.notes.push(`close code ${r.closeCode}, expected ${c.close.codes.join(' or ')}`);
  } else if (ws.droppedByMe) {
    r.closeBehavior = UNCLEAN;
    r.notes.push('the server did not close the TCP connection');
  } else r.closeBehavior = OK;

  if (ws.violations.length) { r.behavior = FAILED; r.notes.push(...ws.violations.map(v => 'server: ' + v)); }

  if (c.judge && !crashed) c.judge(r, ws, ctx);

  if (r.behavior === FAILED || r.closeBehavior === FAILED) r.status = FAILED;
  else if (r.closeBehavior === UNCLEAN) r.status = UNCLEAN;
  else r.status = r.behavior;
  if (r.note) r.notes.push(r.note);
  r.note = r.notes.join('; ');
  r.ms = now() - t0;
  r.log = {
    received: ev.length > 20 ? ev.slice(0, 20).map(evText).concat([`... ${ev.length - 20} more`]) : ev.map(evText), closeSent: ws.closeSent && ws.closeSent.code, closeReceived: ws.closeReceived && { code: ws.closeReceived.code, reason: ws.closeReceived.reason.toString('utf8') },
    tcp: ws.tcpClosed && ws.tcpClosed.how, serverPings: ws.serverPings.length, stats: ws.stats,
  };
  return r;
}

// ---------------------------------------------------------------------------
// main

async function main() {
  const cfg = parseArgs(process.argv.slice(2));
  let cases = CASES;
  if (cfg.cases) cases = cases.filter(c => cfg.cases.some(p => idMatches(c.id, p)));
  if (cfg.exclude) cases = cases.filter(c => !cfg.exclude.some(p => idMatches(c.id, p)));
  const skipped = [];
  cases = cases.filter(c => {
    const need = c.limit !== undefined ? (cfg.maxMessage ? cfg.maxMessage + c.limit : Infinity) : c.size || 0;
    if (c.limit !== undefined && !cfg.maxMessage) { skipped.push(c.id); return false; }
    if (cfg.maxMessage && c.limit === undefined && need > cfg.maxMessage) { skipped.push(c.id); return false; }
    return true;
  });
  if (cfg.list) {
    for (const c of cases) console.log(`${c.id}  ${c.desc}`);
    console.log(`${cases.length} cases` + (skipped.length ? `, ${skipped.length} skipped` : ''));
    return 0;
  }
  if (cases.length === 0) { console.error('wsfuzz: no case matches'); return 2; }
  const width = Math.max(...cases.map(c => c.id.length));
  const counts = { [OK]: 0, [NS]: 0, [INFO]: 0, [FAILED]: 0, [UNCLEAN]: 0 };
  const results = [];
  const t0 = now();
  for (const c of cases) {
    const r = await runCase(c, cfg);
    counts[r.status]++;
    results.push(r);
    console.log(`${r.id.padEnd(width)}  ${r.status.padEnd(13)}  ${String(r.closeCode).padEnd(4)}  ${r.note}`);
    if (cfg.verbose && r.status !== OK) {
      const pad = ''.padEnd(width);
      console.log(`${pad}    ${c.desc}\n${pad}    expected: ${c.exp}\n${pad}    received: [${r.log.received.join(', ')}]; ` +
        `close sent ${r.log.closeSent}, close received ${JSON.stringify(r.log.closeReceived)}, tcp ${r.log.tcp}`);
    }
  }
  const secs = (now() - t0) / 1000;
  if (skipped.length) console.log(`skipped ${skipped.length} case(s) over --max-message: ${skipped.join(' ')}`);
  const summary = `wsfuzz: ${counts[OK]} OK, ${counts[NS]} NON-STRICT, ${counts[INFO]} INFORMATIONAL, ${counts[FAILED]} FAILED, ${counts[UNCLEAN]} UNCLEAN`;
  console.log(`${summary} (${results.length} cases in ${secs.toFixed(1)} s)`);
  if (cfg.json) {
    const report = {
      agent: 'wsfuzz', server: `ws://${cfg.host}:${cfg.port}${cfg.path}`, date: new Date().toISOString(), seconds: secs,
      options: { timeout: cfg.timeout, wait: cfg.wait, maxMessage: cfg.maxMessage, full: cfg.full, deflate: cfg.deflate },
      summary: counts, skipped, sections: SECTIONS,
      cases: results.map(r => ({
        id: r.id, status: r.status, behavior: r.behavior, closeBehavior: r.closeBehavior, closeCode: r.closeCode, note: r.note,
        description: r.desc, expectation: r.exp, ms: Math.round(r.ms * 10) / 10, extensions: r.extensions || null, pmd: r.pmd || null,
        closedByMe: r.closedByMe, wasClean: r.wasClean, droppedByMe: r.droppedByMe, log: r.log,
      })),
    };
    fs.writeFileSync(cfg.json, JSON.stringify(report, null, 1));
  }
  return counts[FAILED] === 0 && counts[UNCLEAN] === 0 ? 0 : 1;
}

main().then(code => { process.exitCode = code; }, e => { console.error(e.stack); process.exitCode = 2; });
