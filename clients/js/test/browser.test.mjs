// Browser tests: headless Chromium (playwright-core, /usr/bin/chromium)
// runs the demo chat page and seed-style raw pages against the real
// switchboard binary. A missing Chromium is a failure with an install hint.
// Set SWITCHBOARD_SCREENSHOT=/tmp/demo.png to save a screenshot of the page.
import test from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import path from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { startServer, ServerProcess, chromiumPath, chromiumArgs, repoRoot } from '../testing/harness.mjs';

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
async function newPage(t, viewport = { width: 1000, height: 640 }) {
  const ctx = await browser.newContext({ viewport });
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

  // Back to the default room (the seed's channel): messages of the other
  // room no longer show.
  await a.click('.room[data-room="lobby"]');
  await a.waitForFunction(() => document.getElementById('room-channel').textContent === 'chat_messages');
  await sendFromDemo(b, 'only in the second room');
  await sendFromDemo(a, 'hello lobby');
  await messageLocator(a, 'ann', 'hello lobby').waitFor();
  assert.equal(await messageLocator(a, 'ben', 'only in the second room').count(), 0);

  // A channel's full name joins its room: chat:x is the room x, and the
  // seed's channel is the lobby (not chat:chat_messages).
  await a.fill('#join-name', `chat:${second}`);
  await a.press('#join-name', 'Enter');
  await a.waitForFunction((ch) => document.getElementById('room-channel').textContent === ch, `chat:${second}`);
  await a.fill('#join-name', 'chat_messages');
  await a.press('#join-name', 'Enter');
  await a.waitForFunction(() => document.getElementById('room-channel').textContent === 'chat_messages');
  assert.equal(await a.textContent('#room-title'), '# lobby');
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

// The seed's chat page, as a file: test/pages/seed.html is the seed page
// with ?ws= to name the server.
const seedFile = pathToFileURL(path.join(repoRoot, 'clients', 'js', 'test', 'pages', 'seed.html')).href;

test('the seed page from file:// and the demo lobby chat both ways, as chat lines', async (t) => {
  // A server at its defaults (only its address differs).
  const plain = await startServer();
  t.after(() => plain.stop());
  const demo = await newPage(t);
  await demo.goto(`${plain.httpURL.replace('127.0.0.1', 'localhost')}/`);
  await demo.waitForSelector('#status[data-state="connected"]');
  assert.equal(await demo.textContent('#room-title'), '# lobby');
  assert.equal(await demo.textContent('#room-channel'), 'chat_messages', "the lobby is the seed's channel");
  // Without history the page says so, and how to keep some.
  await demo.waitForSelector('#messages .empty[data-history="none"]');
  assert.match(await demo.textContent('#messages .empty'), /keeps no history.*--history-size/);
  const nick = await demo.evaluate(() => window.switchboardChat.nick());

  const seed = await newPage(t);
  await seed.goto(`${seedFile}?ws=${encodeURIComponent(`ws://localhost:${plain.port}`)}`);
  await seed.waitForFunction(() => ws.readyState === WebSocket.OPEN);

  const before = Date.now();
  await seed.fill('#messageInput', 'hello from the seed page');
  await seed.click('button');
  const line = messageLocator(demo, 'raw', 'hello from the seed page');
  await line.waitFor();
  assert.equal(await line.evaluate((el) => el.classList.contains('mine')), false);
  // The time shown is the server's publish time.
  const shown = Date.parse(await line.locator('time').getAttribute('datetime'));
  assert.ok(shown >= before - 1000 && shown <= Date.now() + 1000, `time ${shown} is the publish time`);

  await sendFromDemo(demo, 'hello seed, from the demo');
  await seed.locator('#messages li', { hasText: `${nick}: hello seed, from the demo` }).waitFor();
  const mine = messageLocator(demo, nick, 'hello seed, from the demo');
  await mine.waitFor();
  assert.equal(await mine.evaluate((el) => el.classList.contains('mine')), true, "the demo's own line is its own");
  const seedLines = await seed.locator('#messages li').allTextContents();
  assert.ok(!seedLines.some((l) => l.startsWith('{')), `the seed page shows chat lines, not JSON: ${JSON.stringify(seedLines)}`);
});

test('demo page: the lobby follows --raw-channel', async (t) => {
  const other = await startServer(['--raw-channel', 'seed:room']);
  t.after(() => other.stop());
  const demo = await newPage(t);
  await demo.goto(`${other.httpURL}/`);
  await demo.waitForSelector('#status[data-state="connected"]');
  assert.equal(await demo.textContent('#room-channel'), 'seed:room');
  const raw = await newPage(t);
  await raw.goto(`${seedFile}?ws=${encodeURIComponent(`ws://localhost:${other.port}`)}`);
  await raw.waitForFunction(() => ws.readyState === WebSocket.OPEN);
  await raw.fill('#messageInput', 'on the raw channel');
  await raw.click('button');
  await messageLocator(demo, 'raw', 'on the raw channel').waitFor();
});

test('demo page: two tabs of one browser are two people', async (t) => {
  const r = room('tabs');
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  t.after(() => ctx.close());
  const open = async () => {
    const page = await ctx.newPage();
    page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.message}`));
    await page.goto(`${server.httpURL}/#${r}`);
    await page.waitForSelector('#status[data-state="connected"]');
    await page.waitForSelector('#messages .empty, #messages .msg');
    return page;
  };
  const one = await open();
  const two = await open();
  const n1 = await one.inputValue('#nick');
  const n2 = await two.inputValue('#nick');
  assert.notEqual(n1, n2, 'each tab has its own nickname');

  // Even under one nickname, "mine" is the sender's only.
  await two.fill('#nick', n1);
  await two.locator('#nick').dispatchEvent('change');
  await sendFromDemo(one, 'from the first tab');
  await messageLocator(two, n1, 'from the first tab').waitFor();
  await messageLocator(one, n1, 'from the first tab').waitFor();
  assert.equal(await one.locator('#messages .msg.mine').count(), 1);
  assert.equal(await two.locator('#messages .msg.mine').count(), 0);

  // A reload keeps the tab's nickname and what it sent is still its own.
  await one.reload();
  await one.waitForSelector('#status[data-state="connected"]');
  assert.equal(await one.inputValue('#nick'), n1);
});

test('demo page: screenshots at 1280x800 and 390x844, join errors shown on a phone', async (t) => {
  const hist = await startServer(['--history-size', '50']);
  t.after(() => hist.stop());
  const r = 'lobby';
  const open = async (viewport, who) => {
    const page = await newPage(t, viewport);
    await page.goto(`${hist.httpURL}/#${r}`);
    await page.waitForSelector('#status[data-state="connected"]');
    await page.fill('#nick', who);
    await page.locator('#nick').dispatchEvent('change');
    await page.waitForSelector('#messages .empty, #messages .msg');
    return page;
  };
  const wide = await open({ width: 1280, height: 800 }, 'alice');
  // With history the empty room invites a first message.
  assert.equal(await wide.textContent('#messages .empty'), 'No messages yet. Say hi!');
  const seed = await newPage(t);
  await seed.goto(`${seedFile}?ws=${encodeURIComponent(`ws://localhost:${hist.port}`)}`);
  await seed.waitForFunction(() => ws.readyState === WebSocket.OPEN);

  await sendFromDemo(wide, 'Hi all! The lobby is the seed page\'s channel.');
  await messageLocator(wide, 'alice', 'Hi all!').waitFor();
  await seed.fill('#messageInput', 'hello from the seed page');
  await seed.click('button');
  await messageLocator(wide, 'raw', 'hello from the seed page').waitFor();

  const phone = await open({ width: 390, height: 844 }, 'bob');
  // History shows what was said, with the server's times.
  await messageLocator(phone, 'alice', 'Hi all!').waitFor();
  await messageLocator(phone, 'raw', 'hello from the seed page').waitFor();
  await sendFromDemo(phone, 'Hello from a phone.');
  await messageLocator(wide, 'bob', 'Hello from a phone').waitFor();
  await messageLocator(phone, 'bob', 'Hello from a phone').waitFor();

  // The join box is on screen at a phone's width, and so is its error.
  const vw = 390;
  const box = await phone.locator('#join-name').boundingBox();
  assert.ok(box && box.x >= 0 && box.x + box.width <= vw, `join box at ${JSON.stringify(box)} within 390 px`);
  await phone.fill('#join-name', 'bad room!');
  await phone.press('#join-name', 'Enter');
  const err = phone.locator('#join-error');
  await err.waitFor({ state: 'visible' });
  const eb = await err.boundingBox();
  assert.ok(eb && eb.width > 0 && eb.x >= 0 && eb.x + eb.width <= vw, `join error at ${JSON.stringify(eb)} visible within 390 px`);

  // The screenshots in docs/ are made here: with UPDATE_SCREENSHOTS=1 the
  // test writes them there; otherwise into a temporary directory, so that
  // a test run leaves the tree as it was.
  const shots = process.env.UPDATE_SCREENSHOTS === '1' ? path.join(repoRoot, 'docs') : mkdtempSync(path.join(tmpdir(), 'switchboard-shots-'));
  await wide.screenshot({ path: path.join(shots, 'demo-1280x800.png') });
  await phone.screenshot({ path: path.join(shots, 'demo-390x844.png') });
});

test('no page threw an uncaught error or logged one', () => {
  assert.deepEqual(pageErrors, []);
});
