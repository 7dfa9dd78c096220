// The page's long-poll mode (?mode=longpoll) delivers the same sequence as SSE mode: two
// pages side by side, one per transport, the same messages, including those published
// while every connection was cut.
import { check, control, post, sameJson, scenario, seqOf, waitLog, waitState } from './lib.mjs';

await scenario(async ({ open }) => {
  const sse = await open('/');
  const poll = await open('/?mode=longpoll');
  check(await poll.$eval('#mode', (el) => el.value) === 'longpoll', 'the page is in long-poll mode');
  await waitState(sse, 'open');
  // The long-poll page is "open" only after its first answer: wait until its first poll
  // is held by the server instead.
  await control('wait-subscribers 2');

  const expected = [];
  for (let n = 0; n < 15; n += 1) {
    const text = n === 3 ? 'quote " and backslash \\ and\nnewline' : `message ${n}`;
    expected.push(text);
    await post(text);
    if (n % 5 === 4) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await waitLog(poll, 15);
  await waitLog(sse, 15);

  const away = await control('cut-publish 3 away');
  for (const item of away) expected.push(item.data);
  const viaPoll = await waitLog(poll, expected.length);
  const viaSse = await waitLog(sse, expected.length);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const finalPoll = await poll.evaluate(() => window.chatLog.map((e) => ({ id: e.id, data: e.data })));
  const finalSse = await sse.evaluate(() => window.chatLog.map((e) => ({ id: e.id, data: e.data })));
  sameJson(finalPoll.map((e) => e.data), expected, 'long poll: every message once, in order');
  sameJson(finalPoll, finalSse, 'long poll and SSE delivered the same sequence');
  const seqs = finalPoll.map((e) => seqOf(e.id));
  check(seqs.every((s, i) => i === 0 || s === seqs[i - 1] + 1), `consecutive ids: ${seqs}`);
  check(await poll.evaluate(() => window.__es.instances) === 0, 'the long-poll page opened no EventSource');
  check(await poll.evaluate(() => window.resets) === 0, 'no reset');
  return { received: viaPoll.length, sameAsSse: viaSse.length };
});
