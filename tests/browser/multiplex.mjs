// The chat page following several rooms on one connection (`tests/rooms.rs`): `/#kitchen,garden,attic`
// opens ONE EventSource, `/api/events?room=kitchen&room=garden&room=attic`, whose events are
// typed `<room>:message` and carry a composite cursor. The Rust side cuts every connection of
// the server several times while it publishes to all three rooms; the page's EventSource
// comes back by itself each time with its `Last-Event-ID`, and every message arrives exactly
// once, in each room's order, the EventSource never CLOSED. (Long polling over several rooms
// is tested over TCP in tests/rooms.rs and tests/multiplex.rs: a long-poll page here stalled in
// Chromium in two full-suite runs, with nothing rendered, which is still to be explained.) Ten rooms of 20-character names are refused (the cursor limit),
// and the page says why.
//
// Commands to the Rust side:
//   @@ wait-readers <n>            every room has at least n readers
//   @@ publish <n> <prefix>        n messages to each room, interleaved: [{room, data}]
//   @@ cut-publish <n> <prefix>    cut every connection, then publish as above
import { check, control, sameJson, scenario, sleep, waitState } from './lib.mjs';

const ROOMS = ['kitchen', 'garden', 'attic'];
const CUTS = 5;

/** Each room's messages, in the order `log` holds them. */
function byRoom(log) {
  const out = Object.fromEntries(ROOMS.map((room) => [room, []]));
  for (const entry of log) {
    check(Object.hasOwn(out, entry.room), `a message of a room not followed: ${JSON.stringify(entry)}`);
    out[entry.room].push(entry.data);
  }
  return out;
}

/** Waits until the page shows `n` messages, then once more for any late duplicate. */
const SETTLE = 45_000;

async function settled(page, n) {
  await page.waitForFunction((count) => window.chatLog.length >= count, n, { timeout: SETTLE }).catch(async (error) => {
    // Say what arrived, so that a failure shows which messages are missing.
    const state = await page.evaluate(() => ({
      log: window.chatLog.map((e) => `${e.room}:${e.data}`),
      resets: window.resets,
      opens: window.__es ? window.__es.opens.length : null,
      lastEventIds: window.__es ? window.__es.opens : null,
    }));
    throw new Error(`${n} messages expected: ${error.message}; the page has ${JSON.stringify(state)}`);
  });
  await sleep(500);
  return page.evaluate(() => window.chatLog.map((e) => ({ room: e.room, data: e.data, id: e.id })));
}

await scenario(async ({ open }) => {
  const fragment = '#' + ROOMS.join(',');
  const page = await open('/' + fragment);
  await waitState(page, 'open');
  sameJson(await page.evaluate(() => window.chatRooms), ROOMS, 'the page follows the three rooms');
  check(await page.evaluate(() => window.chatRoom) === 'kitchen', 'the first room is the one posted to');
  check(await page.$eval('#room', (el) => el.value) === ROOMS.join(','), 'the input shows the rooms');
  check(
    await page.$eval('#post-room', (el) => !el.hidden && el.options.length === 3 && el.value === 'kitchen'),
    'a choice of the room to send to, the first by default',
  );
  await control('wait-readers 1');

  const published = [];
  published.push(...await control('publish 4 live'));
  for (let cut = 0; cut < CUTS; cut += 1) {
    // Connected (the open after the previous cut), then cut while the rooms get messages.
    await page.waitForFunction((n) => window.__es.opens.length >= n, cut + 1);
    published.push(...await control(`cut-publish 3 cut${cut}`));
    published.push(...await control(`publish 2 after${cut}`));
  }
  await page.waitForFunction((n) => window.__es.opens.length >= n, CUTS + 1);
  published.push(...await control('publish 3 end'));

  const total = published.length;
  const sse = await settled(page, total);
  const expected = byRoom(published);
  sameJson(byRoom(sse), expected, 'SSE: every message once, in each room\'s order');
  check(sse.every((e) => e.id.includes('~')), 'the ids are composite cursors');

  // The list shows each message with its room.
  const shown = await page.$$eval('#messages li', (items) => items.map((li) => ({ room: li.dataset.room, data: li.textContent })));
  sameJson(shown, sse.map(({ room, data }) => ({ room, data })), 'the list shows what the log holds, tagged by room');

  const es = await page.es();
  check(es.instances === 1, `one EventSource, back by itself after each cut (instances: ${es.instances})`);
  check(es.opens.length >= CUTS + 1, `it reopened after each cut: ${es.opens.length} opens`);
  check(es.closed === 0 && es.closeCalls === 0, `it never closed: ${JSON.stringify(es)}`);
  check(es.states.every((s) => s.readyState !== 2), `readyState never 2: ${JSON.stringify(es.states)}`);
  check(
    es.urls[0].endsWith('/api/events?room=kitchen&room=garden&room=attic'),
    `one connection for the three rooms: ${es.urls[0]}`,
  );
  check(await page.evaluate(() => window.resets) === 0, 'no reset');

  // More rooms than one cursor can hold: the server's 400, its reason shown, no retry.
  const many = Array.from({ length: 10 }, (_, n) => `room-${String(n).padStart(15, '0')}`);
  const refused = await open('/#' + many.join(','));
  await waitState(refused, 'closed');
  await refused.waitForFunction(() => document.getElementById('notice').textContent.includes('limit'));
  const reason = await refused.$eval('#notice', (el) => el.textContent);
  check(reason.includes('400'), `the notice gives the server's answer: ${reason}`);
  return { sse: byRoom(sse), opens: es.opens.length, errors: es.errors.length };
});
