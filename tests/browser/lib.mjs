// Shared by the browser scenarios: launching a system browser, talking to the Rust test that
// started the server, and failing loudly. The scenarios use only what this module exports, so
// each of them runs unchanged on every engine.
//
// Engine: the environment variable BROWSER, `chromium` (the default: /usr/bin/chromium driven
// by playwright-core) or `firefox` (/usr/bin/firefox-esr driven by puppeteer-core over WebDriver
// BiDi). Neither package downloads a browser; each is imported only when its engine is used.
//
// Protocol with the Rust side (tests/harness/browser.rs): a line `@@ <command> [args]` on stdout
// asks it to act on the server (cut connections, publish, restart with a new log...); it
// answers with one line on stdin, `ok <json>` or `err <message>`. The scenario ends with one
// line `RESULT <json>` and exit status 0; any failure exits non-zero with the reason on stderr.
// Argument 1 is the server's base URL; further arguments are the scenario's own (`args`).
//
// API for the scenarios:
//   base, args, engine, WAIT
//   scenario(async (browser) => result)    launch, run, print RESULT, close, exit
//     browser.open(pathOrUrl) -> Page       a fresh window with the EventSource instrumentation
//     browser.engine, browser.version
//     browser.pageErrors     uncaught exceptions in the pages' scripts; the scenario fails if any
//     browser.consoleErrors  console errors: failed loads, refused CORS, EventSource failures
//   Page: goto(pathOrUrl), url(), evaluate(fn, arg), waitForFunction(fn, arg, { timeout }),
//         $eval(selector, fn, arg), $$eval(selector, fn, arg), fill(selector, text),
//         click(selector), es(), close(), raw (the engine's own page object; avoid)
//   control(command), check(condition, message), sameJson(actual, expected, message),
//   seqOf(id), post(text), sleep(ms), waitState(page, state), waitLog(page, n), renderedList(page)
//
// In every page, window.__es records what the page's EventSources did (see instrument()).

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** The engines: their binary and the npm package that drives them. */
export const ENGINES = {
  chromium: { executable: '/usr/bin/chromium', package: 'playwright-core' },
  firefox: { executable: '/usr/bin/firefox-esr', package: 'puppeteer-core' },
};

export const engine = process.env.BROWSER || 'chromium';
if (!Object.hasOwn(ENGINES, engine)) {
  console.error(`BROWSER=${engine}: unknown engine (known: ${Object.keys(ENGINES).join(', ')})`);
  process.exit(2);
}

/** Chromium's command line (playwright-core adds its own automation switches). */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Firefox preferences on top of puppeteer's own (which already point update, telemetry,
 * blocklist and add-on services at an unresolvable host): nothing may try to reach the
 * internet, which this machine does not have, nor wait for it.
 */
const FIREFOX_PREFS = {
  'app.update.auto': false,
  'app.update.enabled': false,
  'app.update.staging.enabled': false,
  'app.shield.optoutstudies.enabled': false,
  'browser.aboutwelcome.enabled': false,
  'browser.discovery.enabled': false,
  'browser.newtabpage.activity-stream.feeds.snippets': false,
  'browser.newtabpage.activity-stream.feeds.telemetry': false,
  'browser.newtabpage.activity-stream.telemetry': false,
  'browser.ping-centre.telemetry': false,
  'browser.region.network.url': '',
  'browser.region.update.enabled': false,
  'browser.safebrowsing.provider.google4.updateURL': '',
  'browser.safebrowsing.provider.mozilla.updateURL': '',
  'browser.search.geoip.url': '',
  'browser.topsites.contile.enabled': false,
  'captivedetect.canonicalURL': '',
  'datareporting.policy.dataSubmissionEnabled': false,
  'dom.push.connection.enabled': false,
  'dom.push.serverURL': '',
  'extensions.blocklist.enabled': false,
  'extensions.systemAddon.update.enabled': false,
  'extensions.update.autoUpdateDefault': false,
  'geo.enabled': false,
  'media.gmp-gmpopenh264.autoupdate': false,
  'media.gmp-manager.url': '',
  'messaging-system.rsexperimentloader.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'network.dns.disablePrefetch': true,
  'network.http.speculative-parallel-limit': 0,
  'network.predictor.enabled': false,
  'network.prefetch-next': false,
  // No proxy (not even one from the environment) and no DNS over HTTPS: straight to 127.0.0.1.
  'network.proxy.type': 0,
  'network.trr.mode': 5,
  'services.settings.server': '',
  'services.sync.engine.addons': false,
  'toolkit.telemetry.archive.enabled': false,
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.server': '',
  'toolkit.telemetry.unified': false,
};

/** Every wait in a scenario is bounded by this (ms). */
export const WAIT = 15_000;

export const base = process.argv[2];
if (!base || !/^http:\/\/127\.0\.0\.1:\d+$/.test(base)) {
  console.error(`usage: [BROWSER=chromium|firefox] node ${process.argv[1]} http://127.0.0.1:<port> [args...]`);
  process.exit(2);
}
/** The scenario's own arguments, after the base URL. */
export const args = process.argv.slice(3);

// The whole scenario may not take longer than this, whatever happens. (process.exit also
// ends the browser: both driver packages kill it from their exit handlers.)
const watchdog = setTimeout(() => {
  console.error('browser scenario: watchdog expired after 120 s');
  process.exit(3);
}, 120_000);
watchdog.unref();

// Profile directories to remove however the process ends. On SIGTERM (what the Rust side
// sends a scenario it gives up on) the driver packages end their browser; this ends the rest.
const profiles = new Set();
process.on('exit', () => {
  for (const profile of profiles) rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
});
process.on('SIGTERM', () => {
  console.error('browser scenario: terminated (SIGTERM)');
  process.exit(143);
});

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

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
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
 * Runs in every page before its own scripts: wraps window.EventSource so that window.__es
 * records, for all the page's EventSources together:
 *   instances   how many were constructed
 *   urls        the URL each was constructed with
 *   opens       performance.now() of each `open` event
 *   errors      performance.now() of each `error` event (a reconnect, or the end)
 *   closed      how many `error` events found readyState CLOSED (2): the browser gave up
 *               and will not reconnect (e.g. a 204, a non-200 status, a wrong content type)
 *   closeCalls  how many times the page itself called close()
 *   states      the readyState history: { instance, event, readyState, t } for each
 *               open, error and close(), readyState as seen right then
 */
function instrument() {
  const Native = window.EventSource;
  if (!Native) return;
  const es = { instances: 0, urls: [], opens: [], errors: [], closed: 0, closeCalls: 0, states: [] };
  window.__es = es;
  const notes = new WeakMap();
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init);
      const instance = es.instances;
      es.instances += 1;
      es.urls.push(String(url));
      const note = (event) => {
        const t = performance.now();
        es.states.push({ instance, event, readyState: this.readyState, t });
        return t;
      };
      notes.set(this, note);
      this.addEventListener('open', () => es.opens.push(note('open')));
      this.addEventListener('error', () => {
        es.errors.push(note('error'));
        if (this.readyState === Native.CLOSED) es.closed += 1;
      });
    }

    close() {
      super.close();
      es.closeCalls += 1;
      notes.get(this)?.('close');
    }
  };
}

/** A page of either engine, behind one API (playwright's calling conventions). */
class Page {
  constructor(kind, raw) {
    this.kind = kind;
    /** The engine's own page object: playwright's or puppeteer's. Scenarios should not need it. */
    this.raw = raw;
  }

  async goto(pathOrUrl) {
    await this.raw.goto(absolute(pathOrUrl));
  }

  url() {
    return this.raw.url();
  }

  /** Runs `fn(arg)` in the page; resolves with its (JSON-serializable) result. */
  evaluate(fn, arg) {
    return this.raw.evaluate(fn, arg);
  }

  /**
   * Waits until `fn(arg)` is truthy in the page (at most `timeout` ms); resolves with that
   * value, or with `true` when it cannot be serialized (a DOM node...).
   */
  async waitForFunction(fn, arg, { timeout = WAIT } = {}) {
    const handle = this.kind === 'playwright'
      ? await this.raw.waitForFunction(fn, arg, { timeout })
      : await this.raw.waitForFunction(fn, { timeout }, arg);
    try {
      return await handle.jsonValue().catch(() => true);
    } finally {
      await handle.dispose().catch(() => {});
    }
  }

  /** `fn(element, arg)` on the first element matching `selector`. */
  $eval(selector, fn, arg) {
    return this.raw.$eval(selector, fn, arg);
  }

  /** `fn(elements, arg)` on every element matching `selector`. */
  $$eval(selector, fn, arg) {
    return this.raw.$$eval(selector, fn, arg);
  }

  /** Replaces the value of the input `selector` with `text`, as typed. */
  async fill(selector, text) {
    if (this.kind === 'playwright') {
      await this.raw.fill(selector, text);
    } else {
      await this.raw.locator(selector).fill(text);
    }
  }

  async click(selector) {
    await this.raw.click(selector);
  }

  /** A copy of the page's window.__es (see instrument()). */
  es() {
    return this.raw.evaluate(() => window.__es);
  }

  async close() {
    await this.raw.close();
  }
}

function absolute(pathOrUrl) {
  return /^[a-z]+:/i.test(pathOrUrl) ? pathOrUrl : `${base}${pathOrUrl}`;
}

function packageVersion(name) {
  try {
    return JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url))).version;
  } catch {
    return '?';
  }
}

/**
 * Firefox reports failed and interrupted EventSource connections and CORS refusals as script
 * errors of the page (WebDriver BiDi `javascript` log entries, which puppeteer turns into
 * `pageerror`); Chromium logs the same to the console. These are console errors here too, so
 * that a page error means an exception in the page's own script on either engine.
 */
const FIREFOX_NETWORK_REPORTS = [
  // EventSource, failed (a non-200 status, a wrong content type, no connection): `connectionFailure`.
  /^Firefox can[’']t establish a connection to the server at /,
  // EventSource, interrupted while open: `netInterrupt`.
  /^The connection to .* was interrupted while the page was loading\.$/,
  /^Cross-Origin Request (Blocked|Warning): /,
];

function watchPage(raw, { pageErrors, consoleErrors }) {
  const consoleError = (text) => {
    consoleErrors.push(text);
    console.error(`[page console] ${text}`);
  };
  raw.on('pageerror', (error) => {
    const text = String(error?.message ?? error);
    if (engine === 'firefox' && FIREFOX_NETWORK_REPORTS.some((pattern) => pattern.test(text))) {
      consoleError(text);
    } else {
      pageErrors.push(text);
    }
  });
  raw.on('console', (message) => {
    if (message.type() === 'error') consoleError(message.text());
  });
}

async function launchChromium(profile) {
  const { chromium } = await import('playwright-core');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: ENGINES.chromium.executable,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: WAIT,
  });
  context.setDefaultTimeout(WAIT);
  await context.addInitScript(instrument);
  let version = context.browser()?.version();
  if (!version) {
    const blank = context.pages()[0] ?? (await context.newPage());
    const cdp = await context.newCDPSession(blank);
    version = (await cdp.send('Browser.getVersion')).product.replace(/^[A-Za-z]+\//, '');
    await cdp.detach().catch(() => {});
  }
  return {
    version,
    newPage: async () => context.newPage(),
    close: () => context.close(),
  };
}

async function launchFirefox(profile) {
  const { default: puppeteer } = await import('puppeteer-core');
  const browser = await puppeteer.launch({
    browser: 'firefox',
    protocol: 'webDriverBiDi',
    executablePath: ENGINES.firefox.executable,
    headless: true,
    userDataDir: profile,
    extraPrefsFirefox: FIREFOX_PREFS,
    timeout: WAIT,
  });
  return {
    version: (await browser.version()).replace(/^[A-Za-z]+\//, ''),
    // A window, not a tab: a background tab is hidden, and Firefox throttles hidden pages.
    newPage: async () => {
      const page = await browser.newPage({ type: 'window' });
      page.setDefaultTimeout(WAIT);
      await page.evaluateOnNewDocument(instrument);
      return page;
    },
    close: () => browser.close(),
  };
}

/**
 * Launches the engine with a fresh profile directory. open(pathOrUrl) opens a new window with
 * the EventSource instrumentation and loads `base + path` (or a full URL) in it.
 */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), `tower-eventstream-${engine}-`));
  profiles.add(profile);
  let driver;
  try {
    driver = engine === 'firefox' ? await launchFirefox(profile) : await launchChromium(profile);
  } catch (error) {
    rmSync(profile, { recursive: true, force: true });
    profiles.delete(profile);
    throw error;
  }
  const driverPackage = ENGINES[engine].package;
  console.error(
    `browser engine: ${engine} ${driver.version} (${ENGINES[engine].executable}, ` +
      `${driverPackage} ${packageVersion(driverPackage)})`,
  );
  const kind = engine === 'firefox' ? 'puppeteer' : 'playwright';
  const pageErrors = [];
  const consoleErrors = [];
  const open = async (pathOrUrl) => {
    const raw = await driver.newPage();
    watchPage(raw, { pageErrors, consoleErrors });
    const page = new Page(kind, raw);
    await page.goto(pathOrUrl);
    return page;
  };
  const close = async () => {
    await driver.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
    profiles.delete(profile);
  };
  return { engine, version: driver.version, open, close, pageErrors, consoleErrors };
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
    console.error(`browser scenario failed (${engine}): ${error?.stack ?? error}`);
    if (browser) await browser.close();
    process.exit(1);
  }
}
