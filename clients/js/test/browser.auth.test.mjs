// Browser tests of the demo page on servers that check tokens: headless
// Chromium (playwright-core, /usr/bin/chromium) against the real binary,
// once with --dev-token-secret (the page takes tokens from /dev/token by
// itself) and once with --jwt-hmac-secret (the page takes ?token= from its
// URL, and says so when there is none).
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';
import { startServer, chromiumPath, chromiumArgs } from '../testing/harness.mjs';

const DEV_SECRET = 'a development secret of at least thirty-two bytes';
const SECRET = 'a production-like secret of at least thirty-two bytes';

let devServer; // --dev-token-secret: the secret is the key, /dev/token serves tokens
let keyServer; // --jwt-hmac-secret, publishing only where the token grants it
let browser;
const pageErrors = [];

test.before(async () => {
  const executablePath = chromiumPath(); // throws with "apt-get install -y chromium"
  [devServer, keyServer] = await Promise.all([
    startServer(['--dev-token-secret', DEV_SECRET]),
    startServer(['--jwt-hmac-secret', SECRET, '--publish', 'granted'])
  ]);
  browser = await chromium.launch({ executablePath, args: chromiumArgs });
});

test.after(async () => {
  if (browser) await browser.close();
  await Promise.all([devServer?.stop(), keyServer?.stop()]);
});

/** sign returns an HS256 JWT of claims. */
function sign(claims, secret = SECRET) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const data = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${data}.${createHmac('sha256', secret).update(data).digest('base64url')}`;
}

const token = (user, claims = {}) => sign({ sub: user, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 3600, ...claims });

const room = (name) => `${name}-${process.pid}`;

// openDemo opens the demo page of server (with the query string search)
// in its own context, with the nickname nick already remembered, and
// records its uncaught errors and console errors (but those matching
// allowed).
async function openDemo(t, server, { search = '', roomName, nick, allowed = null }) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !(allowed && allowed.test(msg.text()))) pageErrors.push(`${page.url()}: console: ${msg.text()}`);
  });
  // The nickname is the tab's own (sessionStorage).
  await page.addInitScript((n) => window.sessionStorage.setItem('switchboard.nick', n), nick);
  await page.goto(`${server.httpURL}/${search}#${roomName}`);
  return page;
}

// joined waits until the page is connected as user and shows the room.
async function joined(page, user) {
  await page.waitForFunction((u) => window.switchboardChat.client.user === u, user);
  await page.waitForSelector('#status[data-state="connected"]');
  await page.waitForSelector('#messages .empty, #messages .msg');
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

function messageLocator(page, nick, text) {
  return page.locator('#messages .msg').filter({ has: page.locator('.who', { hasText: nick }) }).filter({ has: page.locator('.text', { hasText: text }) });
}

test('dev tokens: the page gets its tokens from /dev/token and two users chat', async (t) => {
  const r = room('dev');
  const alice = await openDemo(t, devServer, { roomName: r, nick: 'alice' });
  const bob = await openDemo(t, devServer, { roomName: r, nick: 'bob' });
  await joined(alice, 'alice');
  await joined(bob, 'bob');
  assert.equal(await alice.evaluate(() => window.switchboardChat.auth()), 'dev');
  assert.equal(await alice.textContent('#status-text'), 'connected as alice');
  assert.equal(await alice.isHidden('#auth-banner'), true);

  await send(alice, 'hi bob, with a token');
  await messageLocator(bob, 'alice', 'hi bob, with a token').waitFor();
  await send(bob, 'hi alice');
  await messageLocator(alice, 'bob', 'hi alice').waitFor();
  // The token is refreshed from /dev/token too: the client's getToken is the page's.
  const ok = await alice.evaluate(async () => {
    const c = window.switchboardChat.client;
    const before = c.expiresAt;
    return c.options.getToken({ reason: 'refresh' }).then((tok) => typeof tok === 'string' && tok.split('.').length === 3 && before > Date.now());
  });
  assert.equal(ok, true);
});

test('?token=: the page uses the token in its URL; a refused publish shows "not authorized"', async (t) => {
  const r = room('url');
  const channel = `chat:${r}`;
  const tess = await openDemo(t, keyServer, { search: `?token=${token('tess', { publish: [channel] })}`, roomName: r, nick: 'tess' });
  const uma = await openDemo(t, keyServer, { search: `?token=${token('uma', { publish: [] })}`, roomName: r, nick: 'uma' });
  await joined(tess, 'tess');
  await joined(uma, 'uma');
  assert.equal(await tess.evaluate(() => window.switchboardChat.auth()), 'url');
  assert.match(tess.url(), /\?token=.*#/, 'the room is kept in the hash, the token in the query');

  await send(tess, 'tess may publish here');
  await messageLocator(uma, 'tess', 'tess may publish here').waitFor();

  await send(uma, 'uma may not');
  const refused = uma.locator('#messages .note.refused', { hasText: 'Not authorized to send to ' + channel });
  await refused.waitFor();
  assert.match(await refused.textContent(), /Not sent: uma may not/);
  assert.equal(await messageLocator(tess, 'uma', 'uma may not').count(), 0);
});

test('no token where one is required: the page says to pass ?token=', async (t) => {
  // The page asks /dev/token, which this server does not serve: Chromium
  // logs that 404.
  const page = await openDemo(t, keyServer, { roomName: room('none'), nick: 'nobody', allowed: /status of 404/ });
  const banner = page.locator('#auth-banner');
  await banner.waitFor();
  assert.match(await banner.textContent(), /^This server requires a token, and gives no development tokens\. Pass a token in the page's URL: \/\?token=\.\.\.#none-/);
  assert.equal(await page.evaluate(() => window.switchboardChat.auth()), 'missing');
  assert.equal(await page.textContent('#status-text'), 'not authorized');
});

test('a refused ?token=: the page says it is not authorized, and does not retry', async (t) => {
  const bad = token('mallory').replace(/\.[^.]+$/, '.' + 'A'.repeat(43));
  const page = await openDemo(t, keyServer, { search: `?token=${bad}`, roomName: room('bad'), nick: 'mallory' });
  await page.waitForSelector('#status[data-state="unauthorized"]');
  assert.match(await page.textContent('#auth-banner'), /^Not authorized: invalid signature\./);
  assert.equal(await page.evaluate(() => window.switchboardChat.client.state), 'closed');
});

test('no page threw an uncaught error or logged one', () => {
  assert.deepEqual(pageErrors, []);
});
