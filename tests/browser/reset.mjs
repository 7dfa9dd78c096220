// The `reset` event reaches the page after a history gap: (1) while the page is away, more
// messages are published than the log's history holds; (2) the server "restarts" with a new
// log (a new epoch). Each time window.resets goes up and the page shows exactly the messages
// the server still holds.
import { check, control, post, renderedList, sameJson, scenario, waitLog, waitState } from './lib.mjs';

await scenario(async ({ open }) => {
  const page = await open('/');
  await waitState(page, 'open');
  await post('first');
  await post('second');
  await waitLog(page, 2);

  // History is 4: ten messages while away leave a gap after "second".
  const away = await control('cut-publish 10 away');
  await page.waitForFunction(() => window.resets === 1);
  const held = away.slice(-4);
  const afterGap = await waitLog(page, 4);
  sameJson(afterGap, held.map((e) => ({ id: e.id, data: e.data })), 'after the reset: the four held messages');
  const notice = await page.$eval('#notice', (el) => el.textContent);
  check(/gap/.test(notice), `the page says so: ${notice}`);

  // A restart: a new log with a new epoch; the old cursor is from another instance.
  const restarted = await control('restart 2 new');
  await page.waitForFunction(() => window.resets === 2);
  const afterRestart = await waitLog(page, 2);
  sameJson(afterRestart, restarted.map((e) => ({ id: e.id, data: e.data })), 'after the restart: the new log');
  const live = await post('live after restart');
  const log = await waitLog(page, 3);
  sameJson(log[2], { id: live, data: 'live after restart' }, 'live messages continue');
  sameJson(await renderedList(page), log, 'the rendered list was rebuilt');
  const es = await page.es();
  check(es.instances === 1 && es.closed === 0, `one EventSource, never CLOSED, through both resets: ${JSON.stringify(es)}`);
  return { resets: await page.evaluate(() => window.resets), epochs: [away[0].id.split('-')[0], live.split('-')[0]] };
});
