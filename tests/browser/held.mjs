// A passing fault while the page is away never closes its EventSource for good, and the page
// ends up with every message exactly once, in order.
//
// Arguments: <command> <before>. The page opens the chat, sees <before> messages (0: it has
// seen no event at all, so its only cursor is the stream's opening checkpoint), then asks the
// Rust side to run <command> (which cuts the page off, publishes while it is away, and makes
// some fault happen meanwhile: a Redis outage, an inner service failing, or nothing) and
// answers with the published messages. The page must reconnect by itself and receive them.
import { args, check, control, post, sameJson, scenario, sleep, waitLog, waitState } from './lib.mjs';

const [command, beforeArg] = args;
const before = Number(beforeArg ?? '0');

await scenario(async ({ open }) => {
  const page = await open('/');
  await waitState(page, 'open');
  const expected = [];
  for (let n = 0; n < before; n += 1) {
    expected.push(`before ${n}`);
    await post(`before ${n}`);
  }
  if (before > 0) await waitLog(page, before);

  const away = await control(command);
  for (const item of away) expected.push(item.data);
  await waitLog(page, expected.length);
  // Give a duplicate, if one were coming, the time to arrive.
  await sleep(800);
  const final = await page.evaluate(() => window.chatLog.map((e) => ({ id: e.id, data: e.data })));
  sameJson(final.map((e) => e.data), expected, 'every message exactly once, in order');
  sameJson(final.slice(before).map((e) => e.id), away.map((e) => e.id), 'with the ids the server gave them');
  const es = await page.es();
  check(es.closed === 0, `the EventSource never closed for good: ${JSON.stringify(es.states)}`);
  check(es.states.every((s) => s.readyState !== 2), `readyState never 2: ${JSON.stringify(es.states)}`);
  check(es.instances === 1, 'the EventSource reconnected by itself (no new EventSource)');
  check(await page.evaluate(() => window.resets) === 0, 'no reset: nothing was lost');
  return { received: final.length, reconnects: es.errors.length, opens: es.opens.length };
});
