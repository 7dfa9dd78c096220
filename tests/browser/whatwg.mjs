// The parts of the HTML standard's EventSource processing model where the browser decides,
// checked against the test's server (tests/browser_whatwg.rs). Each check opens its own
// EventSource from a blank page and reports what the page saw; the Rust side checks what
// the server saw (which Last-Event-ID each reconnect carried, how often a route was hit).
//
// Argument: the CORS server's base URL (another origin: http://localhost:<port>).
import { args, control, scenario, sleep } from './lib.mjs';

const [corsBase] = args;

/**
 * Opens `new EventSource(url, init)` in the page as window.__watch[name], recording its
 * messages, checkpoints, opens and whether it closed for good (readyState 2 in `error`).
 */
function watch(page, name, url, init) {
  return page.evaluate(([name, url, init]) => {
    window.__watch ??= {};
    const seen = { messages: [], ids: [], checkpoints: 0, opens: 0, errors: 0, closed: false };
    const source = new EventSource(url, init ?? undefined);
    seen.source = source;
    window.__watch[name] = seen;
    source.onopen = () => { seen.opens += 1; };
    source.onmessage = (e) => { seen.messages.push(e.data); seen.ids.push(e.lastEventId); };
    source.addEventListener('checkpoint', () => { seen.checkpoints += 1; });
    source.onerror = () => {
      seen.errors += 1;
      if (source.readyState === 2) seen.closed = true;
    };
  }, [name, url, init ?? null]);
}

/** What window.__watch[name] recorded, without the EventSource itself. */
function report(page, name) {
  return page.evaluate((name) => {
    const { source, ...seen } = window.__watch[name];
    return { ...seen, readyState: source.readyState };
  }, name);
}

async function until(page, name, condition, what) {
  await page.waitForFunction(
    ([name, condition]) => new Function('seen', `return ${condition}`)(window.__watch[name]),
    [name, condition],
  ).catch((error) => { throw new Error(`${name}: ${what}: ${error.message}`); });
}

function stop(page, name) {
  return page.evaluate((name) => window.__watch[name].source.close(), name);
}

await scenario(async ({ open }) => {
  const page = await open('/blank');
  const result = {};

  // A block that only sets an id, and a checkpoint; each stream ends after it, and the
  // server answers the reconnect with 204 (so the EventSource closes for good).
  for (const name of ['idonly', 'checkpoint']) {
    await watch(page, name, `/raw/${name}`);
    await until(page, name, 'seen.closed', 'closed by the 204 after one reconnect');
    result[name] = await report(page, name);
  }

  // `text/event-stream; charset=utf-8` is the event-stream type.
  await watch(page, 'charset', '/raw/charset');
  await until(page, 'charset', 'seen.closed', 'closed by the 204 after one reconnect');
  result.charset = await report(page, 'charset');

  // 204 stops the browser: no reconnect.
  await watch(page, 'stop', '/raw/stop');
  await until(page, 'stop', 'seen.closed', 'closed by the 204');
  await sleep(1500);
  result.stop = await report(page, 'stop');

  // A redirect in front of the endpoint, followed again on every reconnect (the endpoint
  // ends each stream after a short maximum age).
  for (const status of ['301', '307']) {
    const name = `redirect${status}`;
    await watch(page, name, `/moved/${status}`);
    await until(page, name, 'seen.opens >= 1', 'opened');
    const first = await control(`publish 2 ${name}-a`);
    await until(page, name, 'seen.messages.length >= 2', 'two messages');
    await until(page, name, 'seen.opens >= 2', 'reconnected through the redirect');
    const second = await control(`publish 2 ${name}-b`);
    await until(page, name, 'seen.messages.length >= 4', 'four messages');
    await stop(page, name);
    result[name] = { ...(await report(page, name)), published: [...first, ...second] };
  }

  // Another origin, with credentials: the CORS answer allows this page's origin.
  await watch(page, 'cors', `${corsBase}/events`, { withCredentials: true });
  await until(page, 'cors', 'seen.opens >= 1', 'opened across origins');
  const corsFirst = await control('publish-cors 2 cors-a');
  await until(page, 'cors', 'seen.messages.length >= 2', 'two messages across origins');
  const corsSecond = await control('cut-cors-publish 2 cors-b');
  await until(page, 'cors', 'seen.messages.length >= 4', 'four messages after the reconnect');
  await stop(page, 'cors');
  result.cors = { ...(await report(page, 'cors')), published: [...corsFirst, ...corsSecond] };

  // The same origin without a CORS answer: the browser refuses the stream for good.
  await watch(page, 'nocors', `${corsBase}/no-cors`, { withCredentials: true });
  await until(page, 'nocors', 'seen.closed', 'closed: no CORS answer');
  result.nocors = await report(page, 'nocors');

  return result;
});
