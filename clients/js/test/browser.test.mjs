// Browser tests: headless Chromium (playwright-core, /usr/bin/chromium)
// runs the demo chat page and seed-style raw pages against the real
// switchboard binary. A missing Chromium is a failure with an install hint.
// Set SWITCHBOARD_SCREENSHOT=/tmp/demo.png to save a screenshot of the page.
import test from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startServer, ServerProcess, chromiumPath, chromiumArgs } from '../testing/harness.mjs';

let server;
let browser;
const pageErrors = [];

test.before(async () => {
  const executablePath = chromiumPath(); // throws with "apt-get install -y chromium"
  server = await startServer();
  browser = await chromium.launch({ executablePath, args: chromiumArgs });
});

test.after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

// newPage opens a page in its own context (own localStorage) and records
// its uncaught errors.
async function newPage(t) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.message}`));
  page.on('console', (msg) => {
    // Connection errors while the server is down on purpose are expected;
    // the raw test pages (on /healthz) have no favicon.
    if (msg.type() === 'error' && !page.url().endsWith('/healthz') && !/WebSocket connection to .* failed|ERR_CONNECTION_REFUSED/.test(msg.text())) {
      pageErrors.push(`${page.url()}: console: ${msg.text()}`);
    }
  });
  return page;
}

const room = (name) => `${name}-${process.pid}`;

let demoChecked = false;

// requireDemoPage fails clearly when the server does not serve the page.
async function requireDemoPage() {
  if (demoChecked) return;
  const res = await fetch(`${server.httpURL}/`);
  const html = await res.text();
  if (res.status !== 200 || !html.includes('<title>Switchboard chat</title>')) {
    throw new Error(`GET / answered ${res.status} without the demo page: the server must serve web.Handler() (server.Config.Page) at /`);
  }
  demoChecked = true;
}

async function openDemo(t, roomName, nick) {
  await requireDemoPage();
  const page = await newPage(t);
  await page.goto(`${server.httpURL}/#${roomName}`);
  await page.waitForSelector('#status[data-state="connected"]');
  await page.fill('#nick', nick);
  await page.locator('#nick').dispatchEvent('change');
  // The room is live once its (possibly empty) history has been shown.
  await page.waitForSelector('#messages .empty, #messages .msg');
  return page;
}

async function sendFromDemo(page, text, { click = false } = {}) {
  await page.fill('#text', text);
  if (click) await page.click('#send');
  else await page.press('#text', 'Enter');
}

// messageLocator finds a rendered message by nick and text.
function messageLocator(page, nick, text) {
  return page.locator('#messages .msg').filter({ has: page.locator('.who', { hasText: nick }) }).filter({ has: page.locator('.text', { hasText: text }) });
}

// A seed-style page: new WebSocket(url), send text frames, list every
// text frame received.
const rawPage = (wsURL) => `<!DOCTYPE html>
<html><head><title>raw</title></head><body>
<ul id="messages"></ul>
<script>
  window.received = [];
  window.opened = new Promise((resolve, reject) => {
    const ws = new WebSocket(${JSON.stringify(wsURL)});
    ws.onopen = () => resolve(true);
    ws.onerror = () => reject(new Error('websocket error'));
    ws.onmessage = (event) => {
      window.received.push(event.data);
      const li = document.createElement('li');
      li.textContent = event.data;
      document.getElementById('messages').appendChild(li);
    };
    window.sendMessage = (text) => ws.send(text);
  });
</script></body></html>`;

async function openRaw(t, wsPath) {
  const page = await newPage(t);
  // Any page of the server's origin will do: the server allows same-origin
  // WebSocket connections.
  await page.goto(`${server.httpURL}/healthz`);
  await page.setContent(rawPage(`ws://127.0.0.1:${server.port}${wsPath}`));
  await page.evaluate(() => window.opened);
  return page;
}

test('demo page: two users chat', async (t) => {
  const r = room('demo');
  const alice = await openDemo(t, r, 'alice');
  const bob = await openDemo(t, r, 'bob');
  assert.equal(await alice.textContent('#room-channel'), `chat:${r}`);
  assert.equal(await alice.textContent('#status-text'), 'connected');

  await sendFromDemo(alice, 'Hi Bob! <b>not bold</b>');
  await messageLocator(bob, 'alice', 'Hi Bob! <b>not bold</b>').waitFor();
  await messageLocator(alice, 'alice', 'Hi Bob!').waitFor(); // the sender sees it too
  assert.equal(await bob.locator('#messages b').count(), 0, 'text is rendered as text, not HTML');

  await sendFromDemo(bob, 'Hello Alice, how is the switchboard?', { click: true });
  await messageLocator(alice, 'bob', 'Hello Alice').waitFor();
  assert.match(await alice.locator('#messages .msg time').first().textContent(), /^\d\d:\d\d$/);
  assert.equal(await alice.locator('#messages .msg.mine').count(), 1);
  assert.equal(await bob.inputValue('#text'), '', 'the input is cleared after sending');

  if (process.env.SWITCHBOARD_SCREENSHOT) {
    await alice.screenshot({ path: process.env.SWITCHBOARD_SCREENSHOT });
  }

  // The nickname is remembered across reloads.
  await alice.reload();
  await alice.waitForSelector('#status[data-state="connected"]');
  assert.equal(await alice.inputValue('#nick'), 'alice');
});

test('demo page: join a room by name and switch rooms', async (t) => {
  const a = await openDemo(t, room('first'), 'ann');
  const b = await openDemo(t, room('second'), 'ben');
  const second = room('second');

  await a.fill('#join-name', 'bad room!');
  await a.press('#join-name', 'Enter');
  await a.waitForSelector('#join-error:not([hidden])');

  await a.fill('#join-name', second);
  await a.click('#join-form button');
  await a.waitForFunction((ch) => document.getElementById('room-channel').textContent === ch, `chat:${second}`);
  await a.locator('.room.active', { hasText: second }).waitFor();
  await a.waitForSelector('#messages .empty, #messages .msg');
  await sendFromDemo(b, 'welcome to the second room');
  await messageLocator(a, 'ben', 'welcome to the second room').waitFor();

  // Back to the default room: messages of the other room no longer show.
  await a.click('.room[data-room="lobby"]');
  await a.waitForFunction(() => document.getElementById('room-channel').textContent === 'chat:lobby');
  await sendFromDemo(b, 'only in the second room');
  await sendFromDemo(a, 'hello lobby');
  await messageLocator(a, 'ann', 'hello lobby').waitFor();
  assert.equal(await messageLocator(a, 'ben', 'only in the second room').count(), 0);
});

test('raw pages on / see each other', async (t) => {
  const p1 = await openRaw(t, '/');
  const p2 = await openRaw(t, '/');
  const text = `seed says hi ${process.pid}`;
  await p1.evaluate((s) => window.sendMessage(s), text);
  await p2.waitForFunction((s) => window.received.includes(s), text);
  await p1.waitForFunction((s) => window.received.includes(s), text); // the sender gets its own back
  await p2.evaluate(() => window.sendMessage('{"looks":"like json"}'));
  await p1.waitForFunction(() => window.received.includes('{"looks":"like json"}'));
  assert.equal(await p1.locator('#messages li', { hasText: text }).count(), 1);
});

test('a raw page and the demo page share a room', async (t) => {
  const r = room('mixed');
  const demo = await openDemo(t, r, 'carol');
  const raw = await openRaw(t, `/raw/chat:${r}`);
  await raw.evaluate(() => window.sendMessage('plain text from a raw client'));
  await messageLocator(demo, 'raw', 'plain text from a raw client').waitFor();

  await sendFromDemo(demo, 'hello raw');
  const frame = await raw.waitForFunction(() => window.received.find((s) => s.includes('hello raw')));
  const data = JSON.parse(await frame.jsonValue());
  assert.equal(data.nick, 'carol');
  assert.equal(data.text, 'hello raw');
});

test('demo page: shows reconnecting and recovers when the server restarts', async (t) => {
  const r = room('restart');
  const a = await openDemo(t, r, 'dora');
  const b = await openDemo(t, r, 'eli');
  const port = server.port;
  await server.stop('SIGKILL');
  try {
    await a.waitForSelector('#status[data-state="reconnecting"]');
    assert.equal(await a.textContent('#status-text'), 'reconnecting…');
  } finally {
    server = await new ServerProcess(server.bin, port).start();
  }
  await a.waitForSelector('#status[data-state="connected"]', { timeout: 30_000 });
  await b.waitForSelector('#status[data-state="connected"]', { timeout: 30_000 });
  await a.locator('#messages .note', { hasText: 'Reconnected.' }).waitFor();
  // The room was resubscribed: messages flow again.
  await b.waitForFunction(() => window.switchboardChat.client.getSubscription(`chat:${window.switchboardChat.room()}`).state === 'subscribed');
  await sendFromDemo(a, 'back again');
  await messageLocator(b, 'dora', 'back again').waitFor();
});

test('no page threw an uncaught error or logged one', () => {
  assert.deepEqual(pageErrors, []);
});
