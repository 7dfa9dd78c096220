// The chat page's rooms (`tests/rooms.rs`). Argument 1 picks the scenario:
//
// - `refusal`: the lobby has one place and a Rust client holds it. The page's EventSource is
//   answered `retry:` and a clean end, again and again, and comes back by itself each time;
//   once the Rust side lets go (`@@ release`), the page gets in and receives what is posted.
// - `switch`: `#kitchen` opens the kitchen, the room input moves the page to the garden, an
//   invalid name connects nowhere, and a long-poll page reads its room only.
import { args, base, check, control, post, sameJson, scenario, sleep, waitLog, waitState } from './lib.mjs';

/** Posts `text` to `room` the way the page does; returns the stored event's id. */
async function postTo(room, text) {
  const path = `/api/rooms/${room}/messages`;
  const response = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain; charset=utf-8' },
    body: text,
  });
  const body = await response.text();
  if (response.status !== 201) throw new Error(`POST ${path}: ${response.status} ${body}`);
  return JSON.parse(body).id;
}

/** The data of every message the page shows, once any late duplicate had time to come. */
async function settledLog(page, n) {
  await waitLog(page, n);
  await sleep(400);
  return page.evaluate(() => window.chatLog.map((e) => e.data));
}

async function refusal({ open }) {
  const page = await open('/');
  check(await page.evaluate(() => window.chatRoom) === 'lobby', 'the page without #room is in the lobby');
  // Refused twice at least: each time told to retry, each time back by itself.
  await page.waitForFunction(() => window.__es.errors.length >= 2);
  await control('release');
  await control('wait-subscribed');
  await post('after the refusal');
  const received = await settledLog(page, 1);
  const es = await page.es();
  check(es.instances === 1, `the one EventSource came back by itself (instances: ${es.instances})`);
  check(es.closed === 0, `the EventSource never gave up (CLOSED after ${es.closed} errors)`);
  check(es.urls[0].endsWith('/api/rooms/lobby/events'), `the lobby's route: ${es.urls[0]}`);
  return { received, refusals: es.errors.length, opens: es.opens.length };
}

async function switchRooms({ open }) {
  const page = await open('/#kitchen');
  await waitState(page, 'open');
  check(await page.evaluate(() => window.chatRoom) === 'kitchen', 'the page is in the kitchen');
  check(await page.$eval('#room', (el) => el.value) === 'kitchen', 'the input shows the room');
  await post('for the lobby');
  await postTo('kitchen', 'for the kitchen');
  const kitchen = await settledLog(page, 1);

  // The room input: the fragment changes, the page reads the garden from its start.
  await page.fill('#room', 'garden');
  await page.evaluate(() => document.getElementById('room').dispatchEvent(new Event('change')));
  await page.waitForFunction(
    () => location.hash === '#garden' && window.chatRoom === 'garden' &&
      document.getElementById('state').dataset.state === 'open',
  );
  sameJson(await page.evaluate(() => window.chatLog), [], 'a new room starts with an empty list');
  await postTo('kitchen', 'for the kitchen again');
  await postTo('garden', 'for the garden');
  const garden = await settledLog(page, 1);
  sameJson(
    await page.$$eval('#messages li', (items) => items.map((li) => li.textContent)),
    garden,
    'the list shows the garden only',
  );
  const es = await page.es();
  check(es.instances === 2 && es.closeCalls >= 1, `the kitchen's EventSource was closed: ${JSON.stringify(es)}`);
  check(es.urls[1].endsWith('/api/rooms/garden/events'), `the garden's route: ${es.urls[1]}`);

  // An invalid name: a clear notice, no connection.
  await page.evaluate(() => { location.hash = '#a%20b'; });
  await page.waitForFunction(
    () => window.chatRoom === null && document.getElementById('state').dataset.state === 'closed',
  );
  const notice = await page.$eval('#notice', (el) => el.textContent);
  check(notice.includes('not a room name'), `the notice says why: ${notice}`);
  check((await page.es()).instances === 2, 'no EventSource for an invalid room');

  // Long polling reads its room only, from its recent messages on.
  const poll = await open('/?mode=longpoll#kitchen');
  check(await poll.$eval('#mode', (el) => el.value) === 'longpoll', 'the page is in long-poll mode');
  await control('wait-readers kitchen 1');
  await postTo('garden', 'not for the kitchen');
  await post('not for the kitchen either');
  await postTo('kitchen', 'polled in the kitchen');
  const polled = await settledLog(poll, 3);
  check(await poll.evaluate(() => window.__es.instances) === 0, 'the long-poll page opened no EventSource');
  await waitState(poll, 'open');
  return { kitchen, garden, polled };
}

const scenarios = { refusal, switch: switchRooms };
const chosen = scenarios[args[0]];
if (!chosen) {
  console.error(`rooms.mjs: unknown scenario ${JSON.stringify(args[0])} (known: ${Object.keys(scenarios).join(', ')})`);
  process.exit(2);
}
await scenario(chosen);
