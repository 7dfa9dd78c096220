// Measures how long the browser waits before reconnecting after the server ends the stream
// (maximum connection age): the delay between an EventSource `error` and the next `open`.
// The Rust side runs this against a server with a small and one with a large `retry:`.
import { args, check, scenario, waitState } from './lib.mjs';

const wanted = Number(args[0] ?? '2');

await scenario(async ({ open }) => {
  const page = await open('/');
  await waitState(page, 'open');
  await page.waitForFunction((n) => window.__es.opens.length >= n + 1, wanted, { timeout: 30_000 });
  const es = await page.evaluate(() => window.__es);
  const delays = [];
  for (let i = 0; i < wanted; i += 1) {
    const error = es.errors[i];
    const next = es.opens.find((t) => t > error);
    check(next !== undefined, 'an open after each error');
    delays.push(Math.round(next - error));
  }
  return { delays };
});
