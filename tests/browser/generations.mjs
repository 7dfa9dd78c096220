// The generations page (`tests/browser_generations.rs`): a stream with an end, in a real
// browser. Arguments: the mode, then the prompt.
//
// cut:  the page posts the prompt through its form and shows the tokens as they come; after
//       ten, the Rust side cuts every connection of the server; the EventSource comes back by
//       itself with its Last-Event-ID. After the last token the stream ends, the browser
//       comes back once more, gets `204` and stops for good (readyState CLOSED): the page
//       says "done". Then two seconds of quiet, to show that nothing more is asked for.
// late: the Rust side starts a generation; a second later a page opens on it (`/#<id>`) and
//       shows the whole text, from the first token, then "done".
//
// RESULT: { id, text, tokens: [{id, data}], opens, states, held? } for the Rust side to check
// against the prompt and the requests its server saw.
//
// Commands to the Rust side:
//   @@ cut              cut every connection of the server: how many were cut
//   @@ start            POST the prompt: {"id": …}
//   @@ held <id>        how many tokens the generation holds now, and whether it has ended
import { args, check, control, scenario, sleep } from './lib.mjs';

const [mode, prompt] = args;
check(['cut', 'late'].includes(mode) && typeof prompt === 'string', `usage: generations.mjs <base> cut|late <prompt>: ${args}`);

/** How long the page may take to show a whole generation (2.5 s of tokens, a reconnect). */
const WHOLE = 15_000;
/** How long to watch for requests that should not come, after the end (~6 retry delays). */
const QUIET = 2_000;

/** What the page shows and received. */
function pageState(page) {
  return page.evaluate(() => ({
    id: window.generation.id,
    tokens: window.generation.tokens.map(({ id, data }) => ({ id, data })),
    text: document.getElementById('output').textContent,
    shown: Number(document.getElementById('output').dataset.tokens),
    state: document.getElementById('state').dataset.state,
    stateText: document.getElementById('state').textContent,
    link: document.getElementById('link').dataset.id,
  }));
}

/** Waits until the page says "done"; fails with what it shows otherwise. */
async function done(page) {
  await page.waitForFunction(() => document.getElementById('state').dataset.state === 'done', null, { timeout: WHOLE })
    .catch(async (error) => {
      throw new Error(`not done: ${error.message}; the page has ${JSON.stringify(await pageState(page))}`);
    });
}

/** The EventSource's own record: one instance, closed once by the browser, never by the page. */
async function closedForGood(page) {
  const es = await page.es();
  check(es.instances === 1, `one EventSource: ${es.instances}`);
  check(es.closed === 1 && es.closeCalls === 0, `closed once, by the browser: ${JSON.stringify(es)}`);
  const last = es.states[es.states.length - 1];
  check(last.event === 'error' && last.readyState === 2, `readyState CLOSED at the end: ${JSON.stringify(es.states)}`);
  return es;
}

await scenario(async (browser) => {
  if (mode === 'cut') {
    const page = await browser.open('/');
    check(await page.$eval('#state', (el) => el.dataset.state) === 'idle', 'idle before a prompt');
    await page.fill('#prompt', prompt);
    await page.click('#generate');
    await page.waitForFunction(() => window.generation.tokens.length >= 10, null, { timeout: WHOLE });
    const cut = await control('cut');
    check(cut >= 1, `a connection was cut: ${cut}`);
    await done(page);
    const atDone = await page.es();
    await sleep(QUIET);
    const es = await closedForGood(page);
    check(es.errors.length === atDone.errors.length, `no error after the end: ${JSON.stringify(es.states)}`);
    check(es.opens.length === 2, `opened, then once more after the cut: ${es.opens.length}`);
    const state = await pageState(page);
    check(state.link === state.id && page.url().endsWith(`#${state.id}`), `the page links its generation: ${page.url()}`);
    return { ...state, opens: es.opens.length, states: es.states };
  }

  const { id } = await control('start');
  // Lateness is the point: a fixed second after the generation started.
  await sleep(1_000);
  const page = await browser.open(`/#${encodeURIComponent(id)}`);
  const held = await control(`held ${id}`);
  await done(page);
  const es = await closedForGood(page);
  check(es.opens.length === 1, `opened once: ${es.opens.length}`);
  const state = await pageState(page);
  check(state.id === id, `the page follows ${id}: ${state.id}`);
  return { ...state, opens: es.opens.length, states: es.states, held };
});
