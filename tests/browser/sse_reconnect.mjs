// The server drops the connection mid-stream, twice over: once cut abruptly (the Rust side
// aborts every connection and publishes while the page is away), then repeatedly by the
// maximum connection age while messages keep coming. The browser reconnects by itself with
// Last-Event-ID and receives every message exactly once, in order.
import { check, control, post, sameJson, scenario, seqOf, waitLog, waitState } from './lib.mjs';

await scenario(async ({ open }) => {
  const page = await open('/');
  await waitState(page, 'open');
  const expected = [];
  for (let n = 0; n < 5; n += 1) {
    expected.push(`before ${n}`);
    await post(`before ${n}`);
  }
  const before = await waitLog(page, 5);
  const lastBeforeCut = before[4].id;

  // Abrupt cut; the Rust side publishes 5 more before the browser can come back.
  const away = await control('cut-publish 5 away');
  for (const item of away) expected.push(item.data);
  await waitLog(page, expected.length);

  // Then the server ends each stream after its maximum age while messages keep coming.
  const errorsBefore = await page.evaluate(() => window.__es.errors.length);
  const deadline = Date.now() + 4000;
  let n = 0;
  while (Date.now() < deadline) {
    expected.push(`during ${n}`);
    await post(`during ${n}`);
    n += 1;
    await new Promise((resolve) => setTimeout(resolve, 40));
  }
  const log = await waitLog(page, expected.length);
  // Give a duplicate, if one were coming, the time to arrive.
  await new Promise((resolve) => setTimeout(resolve, 800));
  const final = await page.evaluate(() => window.chatLog.map((e) => ({ id: e.id, data: e.data })));
  sameJson(final.map((e) => e.data), expected, 'every message exactly once, in order');
  const seqs = final.map((e) => seqOf(e.id));
  check(seqs.every((s, i) => i === 0 || s === seqs[i - 1] + 1), `consecutive ids: ${seqs}`);
  check(new Set(final.map((e) => e.id)).size === final.length, 'no id twice');
  const es = await page.evaluate(() => window.__es);
  const reconnects = es.errors.length;
  check(reconnects >= 3, `the stream was dropped and reopened several times (errors: ${reconnects})`);
  check(es.errors.length - errorsBefore >= 2, 'the maximum age ended streams while messages kept coming');
  check(es.instances === 1, 'the EventSource reconnected by itself (no new EventSource)');
  check(es.closed === 0, `the EventSource never gave up (readyState CLOSED after ${es.closed} errors)`);
  check(await page.evaluate(() => window.resets) === 0, 'no reset: nothing was lost');
  return { received: log.length, lastBeforeCut, reconnects, opens: es.opens.length, closed: es.closed };
});
