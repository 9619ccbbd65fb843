// gatehouse's browser journeys: headless Chromium (Debian's /usr/bin/chromium, never a
// downloaded browser) driven by playwright-core, against a stack that tests/api/browser.rs
// starts: a real nginx with the shipped snippet in front of gatehouse and an echo app, and the
// development OpenID provider (any login, any password). Run by that test; alone:
//
//   cargo test --test api browser:: -- --nocapture
//
// Every journey runs in a fresh browser (its own empty --user-data-dir). A failing journey saves
// a screenshot of each of its tabs in $GATEHOUSE_BROWSER_SCREENSHOTS; the sign-in journey always
// saves gatehouse's signed-in page to $GATEHOUSE_BROWSER_README_SCREENSHOT (a temporary file in
// tests; scripts/update-screenshot copies it over docs/endpoints.md's).
// No sleeps: only Playwright's waits for URLs, selectors and events, each bounded.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (tests/api/browser.rs sets it)`);
  return value;
};
const APP = env('GATEHOUSE_BROWSER_APP'); // nginx: the protected app and gatehouse's endpoints
const GATEHOUSE = env('GATEHOUSE_BROWSER_GATEHOUSE'); // gatehouse's own origin (home page)
const IDP = env('GATEHOUSE_BROWSER_IDP'); // the development provider
const TITLE = env('GATEHOUSE_BROWSER_TITLE'); // the product name gatehouse is configured with
const SCREENSHOTS = env('GATEHOUSE_BROWSER_SCREENSHOTS');
const README_SCREENSHOT = env('GATEHOUSE_BROWSER_README_SCREENSHOT');
const EXECUTABLE = process.env.GATEHOUSE_BROWSER_CHROMIUM || '/usr/bin/chromium';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];
const STEP_TIMEOUT_MS = 10_000;
const OURS = [APP, GATEHOUSE];

/// A fresh browser: its own new profile folder, removed afterwards. Records what a journey
/// asserts on afterwards: CSP violations reported on gatehouse's pages, and every request.
async function freshBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'gatehouse-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: EXECUTABLE,
    headless: true,
    args: FLAGS,
    viewport: { width: 800, height: 560 },
    deviceScaleFactor: 1,
    timeout: 30_000,
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  let violated;
  const browser = {
    context,
    profile,
    violations: [],
    requests: [],
    // Rejects at the first CSP violation on a gatehouse page (see `unlessBlocked`).
    violation: new Promise((_, reject) => {
      violated = reject;
    }),
  };
  browser.violation.catch(() => {});
  const watch = (page) => {
    page.on('console', (msg) => {
      const where = msg.location()?.url || page.url();
      if (/Content.Security.Policy/i.test(msg.text()) && OURS.some((o) => where.startsWith(o))) {
        browser.violations.push(`${where}: ${msg.text()}`);
        violated(new Error(`CSP violation on ${where}: ${msg.text()}`));
      }
    });
  };
  context.pages().forEach(watch);
  context.on('page', watch);
  context.on('request', (request) => browser.requests.push(request));
  return browser;
}

/// `waiting`, unless the page's Content-Security-Policy blocks something first (say, a form's
/// redirect), which fails at once instead of at the timeout.
const unlessBlocked = (browser, waiting) => Promise.race([waiting, browser.violation]);

async function closeBrowser(browser) {
  await browser.context.close().catch(() => {});
  rmSync(browser.profile, { recursive: true, force: true });
}

const page0 = (browser) => browser.context.pages()[0] ?? browser.context.newPage();

/// The provider's login form is on screen.
async function atLoginForm(page) {
  await page.waitForURL((url) => url.href.startsWith(`${IDP}/interaction/`));
  await page.locator('input[name="login"]').waitFor();
}

/// Types `login` (any password) into the provider's login form and approves the consent page
/// when it comes; returns once the browser is back on `expected` (an exact URL).
async function signInAtProvider(page, login, expected) {
  await atLoginForm(page);
  const loginPage = page.url();
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', 'any password');
  await page.click('button[type="submit"]');
  // Next: the consent page (another interaction), or straight back when consent was given.
  const consent = page.locator('input[name="prompt"][value="consent"]');
  await page.waitForURL(
    (url) =>
      url.href === expected ||
      (url.href.startsWith(`${IDP}/interaction/`) && url.href !== loginPage),
  );
  if (page.url() !== expected) {
    await consent.waitFor({ state: 'attached' });
    await page.click('button[type="submit"]');
    await page.waitForURL(expected);
  }
}

/// The echo app's answer on screen: what the upstream received.
async function echoed(page) {
  const text = await page.locator('body').innerText();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`expected the echo app's JSON at ${page.url()}, got: ${text.slice(0, 500)}`);
  }
}

/// Asserts the upstream saw `login` signed in, at `path`.
async function assertUpstreamSaw(page, login, path) {
  const seen = await echoed(page);
  assert.equal(seen.path, path, 'the upstream got the page asked for');
  assert.equal(seen.headers['x-auth-request-user'], login, 'the identity reached the upstream');
  assert.equal(seen.headers['x-auth-request-email'], `${login}@example.com`);
}

/// The document requests sent so far to `prefix`.
const requestsTo = (browser, prefix) =>
  browser.requests.filter((r) => r.isNavigationRequest() && r.url().startsWith(prefix));

/// Asserts the style of gatehouse's page applied (its inline style is allowed by the CSP nonce)
/// and it shows the configured product name.
async function assertStyledPage(page) {
  await page.locator('header.brand').waitFor();
  assert.equal((await page.locator('.product').innerText()).trim(), TITLE);
  assert.ok((await page.title()).endsWith(`— ${TITLE}`), `title: ${await page.title()}`);
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(background, 'rgb(243, 244, 246)', 'the inline style applied (CSP nonce)');
}

/// At a phone's width the page needs no sideways scrolling; keyboard focus is visible.
async function assertPhoneWidthAndFocus(page, focusable) {
  const size = page.viewportSize();
  await page.setViewportSize({ width: 360, height: 640 });
  const [scroll, width] = await page.evaluate(() => [
    document.documentElement.scrollWidth,
    window.innerWidth,
  ]);
  assert.ok(scroll <= width, `no sideways scrolling at 360 px: ${scroll} > ${width}`);
  await page.setViewportSize(size);
  await page.keyboard.press('Tab');
  const target = page.getByRole(focusable.role, { name: focusable.name });
  await target.waitFor();
  assert.ok(await target.evaluate((e) => e === document.activeElement), 'Tab reaches it first');
  const outline = await target.evaluate((e) => getComputedStyle(e).outlineStyle);
  assert.equal(outline, 'solid', 'a visible focus ring');
}

// ---- the journeys ----

/// Signed out, a protected page → the provider's login form → consent → back on the page asked
/// for, showing the identity the upstream received; the URL bar keeps no code; then gatehouse's
/// own signed-in page (the screenshot in docs/endpoints.md, see scripts/update-screenshot).
async function signInLandsOnThePageAskedFor(browser) {
  const page = await page0(browser);
  const asked = `${APP}/app/reports?id=7`;
  const first = await page.goto(asked);
  assert.ok(first.url().startsWith(`${IDP}/`), `sent to the provider, got ${first.url()}`);
  await atLoginForm(page);
  await signInAtProvider(page, 'alice', asked);

  assert.equal(page.url(), asked, 'back on the page asked for');
  assert.ok(!page.url().includes('code='), `no code in the URL bar: ${page.url()}`);
  await assertUpstreamSaw(page, 'alice', '/app/reports?id=7');

  // The callback's code never reaches the app in a Referer: the 303 says no-referrer.
  const callbacks = requestsTo(browser, `${APP}/redirect?`);
  assert.equal(callbacks.length, 1, 'one callback');
  assert.ok(callbacks[0].url().includes('code='), 'the callback carried a code');
  const landed = requestsTo(browser, asked).at(-1);
  assert.equal(landed.redirectedFrom()?.url(), callbacks[0].url(), 'the 303 led here');
  assert.equal(await landed.headerValue('referer'), null, 'no Referer after the callback');
  const callbackAnswer = await callbacks[0].response();
  assert.equal(callbackAnswer.status(), 303);
  assert.equal(await callbackAnswer.headerValue('referrer-policy'), 'no-referrer');
  assert.equal(await callbackAnswer.headerValue('cache-control'), 'no-store');

  // gatehouse's own home page, signed in: the screenshot in docs/endpoints.md.
  const home = await page.goto(`${GATEHOUSE}/`);
  assert.equal(home.status(), 200);
  await assertStyledPage(page);
  assert.equal((await page.locator('h1').innerText()).trim(), 'Signed in as Alice');
  await page.getByText('alice@example.com').waitFor();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  mkdirSync(dirname(README_SCREENSHOT), { recursive: true });
  await page.setViewportSize({ width: 720, height: 360 });
  await page.screenshot({ path: README_SCREENSHOT });
  await assertPhoneWidthAndFocus(page, { role: 'button', name: 'Sign out' });
}

/// After one visit (the browser has gatehouse's binding cookie), two tabs start signing in at
/// once and both complete, each on its own page.
async function twoTabsSignInAtOnce(browser) {
  const first = await page0(browser);
  await first.goto(`${APP}/app/first`);
  await atLoginForm(first);

  const [a, b] = [await browser.context.newPage(), await browser.context.newPage()];
  const [pageA, pageB] = [`${APP}/app/tab-a`, `${APP}/app/tab-b?x=1`];
  await Promise.all([a.goto(pageA), b.goto(pageB)]);
  await Promise.all([atLoginForm(a), atLoginForm(b)]);
  const states = requestsTo(browser, `${IDP}/auth?`).map((r) =>
    new URL(r.url()).searchParams.get('state'),
  );
  assert.equal(new Set(states).size, 3, 'three sign-ins pending at once, each its own state');
  // Both sign-ins are pending at gatehouse at once. At the provider, one login at a time: the
  // development provider (oidc-provider) loses one of two logins that race in one browser
  // before it has a session of its own ("interaction session and authentication session
  // mismatch"), which is its limitation, not gatehouse's.
  await signInAtProvider(a, 'alice', pageA);
  await signInAtProvider(b, 'alice', pageB);
  await assertUpstreamSaw(a, 'alice', '/app/tab-a');
  await assertUpstreamSaw(b, 'alice', '/app/tab-b?x=1');
}

/// A first visit with several tabs at once (a browser restoring its tabs after the session
/// ended, the common real case): no gatehouse cookie yet, so the tabs' sign-ins start at the
/// same instant, and every one completes, whatever order they finish in. Each sign-in is bound
/// to a binding cookie of its own (before, the tabs shared one name and the last answer's
/// cookie won: the others ended on "This sign-in link is no longer valid").
const TABS_ON_A_FIRST_VISIT = 4;
const tabsOnAFirstVisit = (round) => async (browser) => {
  const pages = [await page0(browser)];
  while (pages.length < TABS_ON_A_FIRST_VISIT) pages.push(await browser.context.newPage());
  const asked = pages.map((_, i) => `${APP}/app/round-${round}/tab-${i}?n=${i}`);
  await Promise.all(pages.map((page, i) => page.goto(asked[i])));
  await Promise.all(pages.map((page) => atLoginForm(page)));
  // Each tab's protected page started its sign-in (nginx hands the 401 to gatehouse's /signin).
  const starts = asked.map((url) => requestsTo(browser, url)[0]);
  assert.ok(starts.every(Boolean), 'every tab asked for its page');
  const bare = await Promise.all(
    starts.map(async (r) => !/_signin_/.test((await r.headerValue('cookie')) ?? '')),
  );
  const count = bare.filter(Boolean).length;
  console.log(`    (round ${round}: ${count} of ${starts.length} sign-ins started with no binding cookie)`);

  // One login at a time at the provider (its limitation, see twoTabsSignInAtOnce); each round
  // finishes the tabs in another order.
  const order = [...pages.keys()];
  if (round % 3 === 1) order.reverse();
  if (round % 3 === 2) order.push(order.shift());
  for (const i of order) {
    await signInAtProvider(pages[i], 'alice', asked[i]);
  }
  for (const [i, page] of pages.entries()) {
    const url = new URL(asked[i]);
    await assertUpstreamSaw(page, 'alice', `${url.pathname}${url.search}`);
  }
  // Each callback deleted its own binding cookie: nothing is left to grow the Cookie header.
  const left = (await browser.context.cookies(APP)).filter((c) => c.name.includes('_signin_'));
  assert.deepEqual(left.map((c) => c.name), [], 'no binding cookie left');
};

/// After sign-in, the back button and the used callback URL again: a clear page with
/// "Sign in again" (never a raw error), which works.
async function backButtonAndUsedCallback(browser) {
  const page = await page0(browser);
  const asked = `${APP}/app/back`;
  await page.goto(asked);
  await signInAtProvider(page, 'alice', asked);
  const callback = requestsTo(browser, `${APP}/redirect?`).at(-1).url();

  // The callback answered with a 303, so it is no history entry: the back button cannot lead
  // to it (nor to its code). Back goes to the provider's last page, which the provider answers
  // itself; forward comes back to the page, still signed in.
  const cdp = await browser.context.newCDPSession(page);
  const history = await cdp.send('Page.getNavigationHistory');
  const urls = history.entries.map((e) => e.url);
  assert.equal(urls[history.currentIndex], asked, 'the page asked for is the current entry');
  assert.ok(
    urls.every((u) => !u.startsWith(`${APP}/redirect`) && !u.includes('code=')),
    `no history entry is the callback: ${urls.join(' ')}`,
  );
  const previous = urls[history.currentIndex - 1];
  assert.ok(previous.startsWith(`${IDP}/interaction/`), `before the page: ${previous}`);
  await page.goBack();
  await page.waitForLoadState();
  assert.equal(page.url(), previous, 'back on the provider\'s last page');
  console.log(`    (back button after sign-in showed ${page.url().replace(/[?].*/, '?…')})`);
  await page.goForward();
  await page.waitForLoadState();
  assert.equal(page.url(), asked, 'forward: the page again');
  await assertUpstreamSaw(page, 'alice', '/app/back');

  // The used callback URL again (a reload of it, or from history).
  const again = await page.goto(callback);
  assert.equal(again.status(), 400);
  assert.equal(await again.headerValue('cache-control'), 'no-store');
  await assertSignInAgainPage(page);
  assert.equal(
    (await page.locator('h1').innerText()).trim(),
    'This sign-in link is no longer valid',
  );

  // "Sign in again" works, and this page's URL (it holds a code) is not sent as a Referer.
  await page.getByRole('link', { name: 'Sign in again' }).click();
  await page.waitForURL(`${APP}/`);
  await assertUpstreamSaw(page, 'alice', '/');
  const signin = requestsTo(browser, `${APP}/signin`).at(-1);
  assert.equal(await signin.headerValue('referer'), null, 'no Referer from the error page');
}

/// A clear gatehouse page offering "Sign in again": styled, a heading, no raw error.
async function assertSignInAgainPage(page) {
  await assertStyledPage(page);
  const link = page.getByRole('link', { name: 'Sign in again' });
  await link.waitFor();
  assert.equal(await link.getAttribute('href'), '/signin');
  assert.equal(await page.locator('h1').count(), 1);
}

/// Sign out with gatehouse's button: the provider's logout too (PROVIDER_LOGOUT), then the
/// protected page asks for sign-in again, and the back button shows no protected content.
async function signOutAndBack(browser) {
  const page = await page0(browser);
  const asked = `${APP}/app/private`;
  await page.goto(asked);
  await signInAtProvider(page, 'alice', asked);
  await assertUpstreamSaw(page, 'alice', '/app/private');

  await page.goto(`${GATEHOUSE}/`);
  assert.equal((await page.locator('h1').innerText()).trim(), 'Signed in as Alice');
  await page.getByRole('button', { name: 'Sign out' }).click();
  // gatehouse → the provider's end-session page (allowed by the page's form-action).
  await unlessBlocked(
    browser,
    page.waitForURL((url) => url.href.startsWith(`${IDP}/session/end`)),
  );
  await page.getByRole('button', { name: /yes/i }).click();
  // The provider sends the browser back to PUBLIC_URL/ (the app): it asks for sign-in again.
  await atLoginForm(page);

  // The protected page again: sign-in, not the page.
  const res = await page.goto(asked);
  assert.ok(res.url().startsWith(`${IDP}/`), `sent to sign in, got ${res.url()}`);
  await atLoginForm(page);

  // Back through the whole history: no entry shows who was signed in any more — neither
  // gatehouse's home page nor the protected page come from the browser's caches.
  const cdp = await browser.context.newCDPSession(page);
  const history = async () => cdp.send('Page.getNavigationHistory');
  const before = await history();
  const entry = (url) => before.entries.findIndex((e) => e.url === url);
  const [protectedAt, homeAt] = [entry(asked), entry(`${GATEHOUSE}/`)];
  assert.ok(protectedAt >= 0 && homeAt > protectedAt, 'both pages are in the history');
  const seen = [];
  for (let at = before.currentIndex; at > protectedAt; at -= 1) {
    await page.goBack();
    await page.waitForLoadState();
    assert.equal((await history()).currentIndex, at - 1, 'one step back');
    const body = await page.locator('body').innerText();
    seen.push(`${page.url().replace(/[?].*/, '?…')}`);
    assert.ok(!body.includes('Signed in as'), `signed-in page after sign-out: ${body}`);
    assert.ok(!body.includes('x-auth-request-user'), `protected content after sign-out: ${body}`);
    if (at - 1 === homeAt) {
      assert.equal(page.url(), `${GATEHOUSE}/`);
      assert.equal((await page.locator('h1').innerText()).trim(), 'You are not signed in');
    }
  }
  // The protected page's entry was asked of the server again, which sent it to sign in.
  assert.ok(page.url().startsWith(`${IDP}/`), `back on the protected page: ${page.url()}`);
  console.log(`    (back button after sign-out: ${seen.join(' → ')})`);
  const session = await browser.context.request.get(`${APP}/session`, {
    headers: { accept: 'application/json' },
  });
  assert.equal(session.status(), 401, 'no session after sign-out');
}

/// The provider's Cancel on its consent page → a clear gatehouse page, and no session.
async function providerDeniesConsent(browser) {
  const page = await page0(browser);
  await page.goto(`${APP}/app/cancelled`);
  await atLoginForm(page);
  await page.fill('input[name="login"]', 'carol');
  await page.fill('input[name="password"]', 'any password');
  await page.click('button[type="submit"]');
  await page.locator('input[name="prompt"][value="consent"]').waitFor({ state: 'attached' });
  const answer = page.waitForResponse((r) => r.url().startsWith(`${APP}/redirect?`));
  await page.getByRole('link', { name: /cancel/i }).click();
  const res = await answer;
  assert.equal(res.status(), 400);
  await page.waitForURL((url) => url.href.startsWith(`${APP}/redirect?`));
  await assertSignInAgainPage(page);
  assert.equal(
    (await page.locator('h1').innerText()).trim(),
    'The identity provider refused the sign-in',
  );
  await page.getByText('access_denied').waitFor();
  await assertPhoneWidthAndFocus(page, { role: 'link', name: 'Sign in again' });
  const session = await browser.context.request.get(`${APP}/session`, {
    headers: { accept: 'application/json' },
  });
  assert.equal(session.status(), 401, 'no session');
}

const JOURNEYS = [
  ['sign-in lands on the page asked for', signInLandsOnThePageAskedFor],
  ['two tabs sign in at once', twoTabsSignInAtOnce],
  ...[1, 2, 3].map((round) => [
    `${TABS_ON_A_FIRST_VISIT} tabs at once on a first visit, round ${round}`,
    tabsOnAFirstVisit(round),
  ]),
  ['back button and the used callback URL', backButtonAndUsedCallback],
  ['sign-out, then the back button', signOutAndBack],
  ['the provider denies consent', providerDeniesConsent],
];

const slug = (name) => name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();

let failed = 0;
const started = Date.now();
for (const [name, journey] of JOURNEYS) {
  const t0 = Date.now();
  const browser = await freshBrowser();
  try {
    await journey(browser);
    assert.deepEqual(browser.violations, [], 'no CSP violation on gatehouse pages');
    console.log(`ok    ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL  ${name}: ${err.stack || err}`);
    mkdirSync(SCREENSHOTS, { recursive: true });
    for (const [i, page] of browser.context.pages().entries()) {
      const file = join(SCREENSHOTS, `${slug(name)}-${i}.png`);
      const saved = await page.screenshot({ path: file, fullPage: true }).then(
        () => true,
        () => false,
      );
      console.log(`      tab ${i} at ${page.url()}${saved ? `: screenshot ${file}` : ''}`);
    }
  } finally {
    await closeBrowser(browser);
  }
}
const total = JOURNEYS.length;
console.log(
  `${total - failed} passed, ${failed} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`,
);
process.exit(failed ? 1 : 0);
