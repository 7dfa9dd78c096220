// The page's EventSource receives every event, in order, with its id; what the page
// renders (#messages li[data-id]) matches. Messages are posted over HTTP and one through
// the page's own form.
import { check, post, renderedList, sameJson, scenario, seqOf, waitLog, waitState } from './lib.mjs';

await scenario(async ({ open }) => {
  const page = await open('/');
  await waitState(page, 'open');
  check(await page.$eval('#mode', (el) => el.value) === 'sse', 'the page starts in SSE mode');

  const texts = [];
  const ids = [];
  for (let n = 0; n < 20; n += 1) {
    const text = n === 7 ? 'two\nlines' : n === 11 ? 'unicode ✓ <b>not html</b>' : `message ${n}`;
    texts.push(text);
    ids.push(await post(text));
  }
  // And one through the form, as a user sends it.
  await page.fill('#text', 'typed in the page');
  await page.click('#send');
  texts.push('typed in the page');

  const log = await waitLog(page, texts.length);
  sameJson(log.map((e) => e.data), texts, 'data in publishing order');
  sameJson(log.slice(0, ids.length).map((e) => e.id), ids, 'ids as the server assigned them');
  const seqs = log.map((e) => seqOf(e.id));
  check(seqs.every((s, i) => i === 0 || s === seqs[i - 1] + 1), `consecutive ids: ${seqs}`);
  sameJson(await renderedList(page), log, 'the rendered list matches window.chatLog');
  check(await page.$eval('#text', (el) => el.value) === '', 'the form was cleared after sending');
  check(await page.evaluate(() => window.resets) === 0, 'no reset');
  const instances = await page.evaluate(() => window.__es.instances);
  return { received: log.length, first: log[0].id, last: log[log.length - 1].id, instances };
});
