#!/usr/bin/env node
// apps/echo.html in a real browser: Debian's Chromium, headless, driven by
// playwright-core (which never downloads a browser of its own).
//
//   node spec/browser/echo.js PORT        (owinlua apps/echo.lua serving on PORT)
//   node spec/browser/echo.js PORT https HOME
//                                         (the same over TLS: https://localhost,
//                                          wss; HOME holds .pki/nssdb, an NSS
//                                          database that trusts the server's CA)
//
// Opens http://127.0.0.1:PORT/echo.html, waits for its WebSocket to open,
// sends a text and a binary message through the page's buttons and waits
// for both echoes.  Prints one JSON line, {"ok":true|false,...}, and exits
// 0 only when both came back as sent.  Every wait has a timeout, the whole
// run has a deadline, and the browser and its profile are always removed.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_MS = 10000;                    // each wait
const DEADLINE_MS = 60000;                // the whole run
const TEXT = "hello from Chromium ✓";     // not ASCII: UTF-8 both ways
const BINARY = "binary de ad be ff";      // what the page shows for its Uint8Array

const result = { ok: false, url: null };
const t0 = Date.now();
const ms = () => Date.now() - t0;

function finish(code) {
  result.ms = ms();
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(code);
}

async function run(port, tls, home) {
  const url = tls ? `https://localhost:${port}/echo.html` : `http://127.0.0.1:${port}/echo.html`;
  result.url = url;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "owinlua-chromium-"));
  let context;
  try {
    // A persistent context is how playwright takes a --user-data-dir: the
    // fresh, empty directory above, removed at the end.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: STEP_MS,
      // Chromium on Linux trusts the CAs of $HOME/.pki/nssdb besides the
      // system's: certificate errors are not ignored, the spec's CA is trusted
      env: home ? { ...process.env, HOME: home } : process.env,
      args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
      ],
    });
    result.browser = context.browser() ? context.browser().version() : null;
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

    const res = await page.goto(url);
    result.status = res && res.status();
    if (tls) {
      // a secure context: the certificate was trusted, not clicked through;
      // nextHopProtocol: what ALPN agreed on
      result.tls = await page.evaluate(() => ({
        secure: window.isSecureContext,
        alpn: performance.getEntriesByType("navigation")[0].nextHopProtocol,
      })).catch((e) => String(e));
      result.ws = await page.evaluate(() => ws && ws.url).catch(() => null);
    }
    await page.waitForSelector('body[data-state="open"]');
    result.connected_ms = ms();

    await page.fill("#text", TEXT);
    await page.click("#send");
    await page.waitForSelector("#echoes li.text");
    await page.click("#send-binary");
    await page.waitForSelector("#echoes li.binary");

    result.echoes = await page.$$eval("#echoes li", (lis) =>
      lis.map((li) => ({ kind: li.className, text: li.textContent })));
    result.title = await page.title();
    result.errors = errors;
    result.ok = result.status === 200 &&
      result.echoes.length === 2 &&
      result.echoes[0].kind === "text" && result.echoes[0].text === TEXT &&
      result.echoes[1].kind === "binary" && result.echoes[1].text === BINARY &&
      result.title === "echo: open";
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

const port = Number(process.argv[2]);
const tls = process.argv[3] === "https";
if (!Number.isInteger(port) || port <= 0 || port > 65535 || (tls && !process.argv[4])) {
  result.error = "usage: node echo.js PORT [https HOME]";
  finish(2);
}
setTimeout(() => {
  result.error = `no result within ${DEADLINE_MS} ms`;
  finish(1);                              // exiting ends the browser's pipe too
}, DEADLINE_MS).unref();
run(port, tls, process.argv[4]).then(
  () => finish(result.ok ? 0 : 1),
  (e) => { result.error = String(e && e.message || e).split("\n")[0]; finish(1); });
