// Shared by the browser scenarios: launching the system Chromium through playwright-core,
// talking to the Rust test that started the server, and failing loudly.
//
// Protocol with tests/browser.rs: a line `@@ <command> [args]` on stdout asks the Rust side
// to act on the server (cut connections, publish, restart with a new log...); it answers
// with one line on stdin, `ok <json>` or `err <message>`. The scenario ends with one line
// `RESULT <json>` and exit status 0; any failure exits non-zero with the reason on stderr.

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export const CHROMIUM = '/usr/bin/chromium';
export const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Every wait in a scenario is bounded by this (ms). */
export const WAIT = 15_000;

export const base = process.argv[2];
if (!base || !/^http:\/\/127\.0\.0\.1:\d+$/.test(base)) {
  console.error(`usage: node ${process.argv[1]} http://127.0.0.1:<port>`);
  process.exit(2);
}

// The whole scenario may not take longer than this, whatever happens.
const watchdog = setTimeout(() => {
  console.error('browser scenario: watchdog expired after 120 s');
  process.exit(3);
}, 120_000);
watchdog.unref();

const replies = [];
const waiting = [];
const stdin = createInterface({ input: process.stdin });
stdin.on('line', (line) => {
  const next = waiting.shift();
  if (next) next(line); else replies.push(line);
});

/** Asks the Rust test to do something to the server; resolves with its JSON answer. */
export async function control(command) {
  process.stdout.write(`@@ ${command}\n`);
  const line = replies.length > 0
    ? replies.shift()
    : await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to @@ ${command}`)), WAIT);
      waiting.push((l) => { clearTimeout(timer); resolve(l); });
    });
  if (!line.startsWith('ok')) throw new Error(`@@ ${command}: ${line}`);
  const rest = line.slice(2).trim();
  return rest === '' ? null : JSON.parse(rest);
}

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

export function sameJson(actual, expected, message) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`check failed: ${message}\n  actual:   ${a}\n  expected: ${e}`);
}

/** The sequence number of a MemoryLog id (`<epoch>-<seq>`). */
export function seqOf(id) {
  const m = /^([0-9a-f]{8})-(\d+)$/.exec(id ?? '');
  if (!m) throw new Error(`not a MemoryLog id: ${JSON.stringify(id)}`);
  return Number(m[2]);
}

/** Posts a chat message the way the page does; returns the stored event's id. */
export async function post(text) {
  const response = await fetch(`${base}/api/messages`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain; charset=utf-8' },
    body: text,
  });
  const body = await response.text();
  if (response.status !== 201) throw new Error(`POST /api/messages: ${response.status} ${body}`);
  return JSON.parse(body).id;
}

/**
 * Launches Chromium with a fresh profile. Every page gets instrumentation: window.__es
 * records the times of each EventSource's `open` and `error` events.
 */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'tower-eventstream-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    timeout: WAIT,
  });
  context.setDefaultTimeout(WAIT);
  await context.addInitScript(() => {
    const Native = window.EventSource;
    window.__es = { opens: [], errors: [], instances: 0 };
    window.EventSource = class extends Native {
      constructor(url, init) {
        super(url, init);
        window.__es.instances += 1;
        this.addEventListener('open', () => window.__es.opens.push(performance.now()));
        this.addEventListener('error', () => window.__es.errors.push(performance.now()));
      }
    };
  });
  const pageErrors = [];
  const open = async (path) => {
    const page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    page.on('console', (message) => {
      if (message.type() === 'error') console.error(`[page console] ${message.text()}`);
    });
    await page.goto(`${base}${path}`);
    return page;
  };
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, open, close, pageErrors };
}

/** Waits until the page's connection state is `state` (#state's data-state). */
export async function waitState(page, state) {
  await page.waitForFunction((s) => document.getElementById('state').dataset.state === s, state);
}

/** Waits until window.chatLog holds `n` entries, then returns it. */
export async function waitLog(page, n) {
  await page.waitForFunction((count) => window.chatLog.length >= count, n);
  return page.evaluate(() => window.chatLog.map((e) => ({ id: e.id, data: e.data })));
}

/** The rendered list: each li's data-id and text. */
export async function renderedList(page) {
  return page.$$eval('#messages li', (items) => items.map((li) => ({ id: li.dataset.id, data: li.textContent })));
}

/** Runs a scenario: launches the browser, prints RESULT, exits 0; or prints why and exits 1. */
export async function scenario(body) {
  let browser;
  try {
    browser = await launch();
    const result = await body(browser);
    if (browser.pageErrors.length > 0) throw new Error(`errors in the page: ${browser.pageErrors.join('; ')}`);
    process.stdout.write(`RESULT ${JSON.stringify(result ?? {})}\n`);
    await browser.close();
    process.exit(0);
  } catch (error) {
    console.error(`browser scenario failed: ${error?.stack ?? error}`);
    if (browser) await browser.close();
    process.exit(1);
  }
}
