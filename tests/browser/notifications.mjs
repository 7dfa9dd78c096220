// The notifications page (`tests/browser_notifications.rs`): two people, each in a browser of
// their own (a cookie belongs to a browser, and to a host whatever its port, so two pages of
// one browser would share the sign-in):
//
// 1. Each page opens with no cookie: the server answers 401 and the EventSource stops for
//    good (readyState CLOSED, no retry); the page says the stream stopped, and why.
// 2. Each signs in through the page's form: `ada`, and `admin-bo`, an admin.
// 3. The Rust side publishes a notification to each user and to a third one, an announcement
//    and an audit event; then cuts every connection of the server several times, publishing
//    while the pages are away. Each page's EventSource comes back by itself with its
//    Last-Event-ID; the RESULT gives what each page showed, for the Rust side to compare.
// 4. Ada's topic is started anew (a new log) while she is away: her page shows a reset line
//    for her topic, then her next notification.
//
// Commands to the Rust side:
//   @@ wait-subscribers <n>      the server has at least n subscribers (of all topics)
//   @@ publish <prefix>          one round of events: {"ada": n, "admin-bo": n}, the number
//                                each page should get of it
//   @@ cut-publish <prefix>      cut every connection, then publish a round as above
//   @@ renew-ada <prefix>        a new log for ada's topic, every connection cut, then a round
import { check, control, launch, sameJson, scenario, sleep, waitState } from './lib.mjs';

const USERS = ['ada', 'admin-bo'];
const CUTS = 3;
const SETTLE = 45_000;

/** The page's state: what the log, the list and the notice show. */
function pageState(page) {
  return page.evaluate(() => ({
    log: window.notificationLog.map((e) => ({ name: e.name, data: e.data, id: e.id })),
    resets: [...window.resets],
    shown: [...document.querySelectorAll('#events li')].map((li) => ({
      name: li.dataset.name,
      data: li.querySelector('.data').textContent,
      topic: li.dataset.topic ?? null,
    })),
    notice: document.getElementById('notice').textContent,
    state: document.getElementById('state').dataset.state,
  }));
}

/** Waits until `page` shows `n` events, then a little longer for any late duplicate. */
async function settled(page, n) {
  await page.waitForFunction((count) => window.notificationLog.length >= count, n, { timeout: SETTLE })
    .catch(async (error) => {
      throw new Error(`${n} events expected: ${error.message}; the page has ${JSON.stringify(await pageState(page))}`);
    });
  await sleep(500);
  return pageState(page);
}

/** A page with no cookie: refused (401), its EventSource closed for good. */
async function refusedPage(browser) {
  const page = await browser.open('/');
  await waitState(page, 'closed');
  await page.waitForFunction(() => document.getElementById('notice').textContent.includes('401'));
  const es = await page.es();
  check(es.instances === 1 && es.closed === 1, `one EventSource, closed after the 401: ${JSON.stringify(es)}`);
  check(es.opens.length === 0, 'it never opened');
  check(
    es.states.some((s) => s.event === 'error' && s.readyState === 2),
    `readyState CLOSED at its error: ${JSON.stringify(es.states)}`,
  );
  check(await page.$eval('#notice', (el) => el.dataset.stopped) === 'true', 'the notice says it stopped');
  return { page, notice: await page.$eval('#notice', (el) => el.textContent) };
}

async function signIn(page, name) {
  await page.fill('#name', name);
  await page.click('#signin-button');
  await waitState(page, 'open');
  check(await page.$eval('#who', (el) => el.dataset.user) === name, `signed in as ${name}`);
}

await scenario(async (first) => {
  const second = await launch();
  try {
    // (That neither is retried, the Rust side checks from the requests the server saw.)
    const refused = [await refusedPage(first), await refusedPage(second)];
    const pages = { ada: refused[0].page, 'admin-bo': refused[1].page };
    for (const user of USERS) await signIn(pages[user], user);
    await control('wait-subscribers 5');

    const expected = { ada: 0, 'admin-bo': 0 };
    const add = (counts) => { for (const user of USERS) expected[user] += counts[user]; };
    add(await control('publish live'));
    for (let cut = 0; cut < CUTS; cut += 1) {
      // Each page connected again (the open after the previous cut), then cut while away.
      for (const user of USERS) {
        await pages[user].waitForFunction((n) => window.__es.opens.length >= n, cut + 1, { timeout: SETTLE });
      }
      add(await control(`cut-publish cut${cut}`));
    }
    const states = {};
    for (const user of USERS) states[user] = await settled(pages[user], expected[user]);

    // Ada's topic started anew while she is away: a reset for it, then what it holds.
    add(await control('renew-ada renewed'));
    const renewed = {};
    for (const user of USERS) renewed[user] = await settled(pages[user], expected[user]);
    const reset = renewed.ada.shown.filter((line) => line.name === 'reset');
    sameJson(reset.map((line) => line.topic), ['user-ada'], 'one reset line, for ada\'s topic');
    sameJson(renewed['admin-bo'].resets, [], 'no reset for bo');

    const result = { notices: refused.map((r) => r.notice) };
    for (const user of USERS) {
      const { log, shown, resets } = renewed[user];
      sameJson(
        shown.filter((line) => line.name !== 'reset').map(({ name, data }) => ({ name, data })),
        log.map(({ name, data }) => ({ name, data })),
        `${user}: the list shows what the EventSource received`,
      );
      const es = await pages[user].es();
      check(es.instances === 2, `${user}: the refused EventSource, then one that came back by itself`);
      check(es.closed === 1 && es.closeCalls === 1, `${user}: only the refused one closed: ${JSON.stringify(es)}`);
      check(es.opens.length >= CUTS + 2, `${user}: it opened again after each cut: ${es.opens.length}`);
      result[user] = { log, resets, opens: es.opens.length };
    }
    check(second.pageErrors.length === 0, `errors in the second browser's pages: ${second.pageErrors.join('; ')}`);
    return result;
  } finally {
    await second.close();
  }
});
