// The cluster dashboard (/admin/) in headless Chromium against three real
// switchboard instances on one real Redis: it lists the three nodes, its
// figures move when clients connect and publish, a node killed with
// SIGKILL leaves it within its announced expiry, and its publish action
// reaches a subscriber on another node. With UPDATE_SCREENSHOTS=1 it
// writes docs/admin-1280x800.png and docs/admin-390x844.png.
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import WebSocket from 'ws';
import { chromium } from 'playwright-core';
import Switchboard from '../switchboard.js';
import { serverBinary, freePort, ServerProcess, startRedis, waitFor, chromiumPath, chromiumArgs, repoRoot } from '../testing/harness.mjs';

const PASSWORD = 'a dashboard password';
const DEV_SECRET = 'a development secret of at least thirty-two bytes';
const CHANNEL = 'lobby';

let redis;
let browser;
const nodes = []; // ServerProcess, node-1 .. node-3
const clients = [];
const pageErrors = [];

test.before(async () => {
  const executablePath = chromiumPath(); // throws with "apt-get install -y chromium"
  redis = await startRedis();
  const bin = await serverBinary();
  // The default namespace keeps presence and history; "quiet" keeps neither.
  const config = path.join(mkdtempSync(path.join(tmpdir(), 'switchboard-admin-')), 'switchboard.yaml');
  writeFileSync(config, 'namespaces:\n  quiet: {history_size: 0}\n');
  for (let i = 1; i <= 3; i++) {
    const s = new ServerProcess(bin, await freePort(), [
      '--redis', redis.url, '--node-id', `node-${i}`, '--admin-password', PASSWORD,
      '--dev-token-secret', DEV_SECRET, '--presence', '--history-size', '20', '--config', config
    ]);
    nodes.push(await s.start());
  }
  browser = await chromium.launch({ executablePath, args: chromiumArgs });
});

test.after(async () => {
  for (const c of clients) c.close();
  if (browser) await browser.close();
  for (const s of nodes) await s.stop();
  await redis?.stop();
});

// openDashboard opens node's dashboard with the admin's credentials.
async function openDashboard(t, node, viewport) {
  const ctx = await browser.newContext({ viewport, httpCredentials: { username: 'admin', password: PASSWORD } });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.message}`));
  page.on('console', (msg) => {
    // The presence and history of a namespace that keeps neither answer
    // 403 on purpose; Chromium logs every failed request.
    const expected = /\/admin\/api\/(presence|history)\?channel=quiet%3A/.test(msg.location().url || '');
    if (msg.type() === 'error' && !expected) pageErrors.push(`${page.url()}: console: ${msg.text()} (${msg.location().url})`);
  });
  await page.goto(`${node.httpURL}/admin/`);
  await page.waitForSelector('#status[data-state="live"]');
  return page;
}

async function tokenOf(node, user) {
  const res = await fetch(`${node.httpURL}/dev/token?user=${encodeURIComponent(user)}`);
  return (await res.json()).token;
}

// connect opens a switchboard.js client of user on node.
async function connect(node, user) {
  const c = new Switchboard.Client(node.wsURL, { WebSocket, getToken: () => tokenOf(node, user), requestTimeout: 5000 });
  clients.push(c);
  await c.connect();
  return c;
}

const number = async (page, sel) => Number((await page.textContent(sel)).replace(/,/g, ''));
const nodeRows = (page) => page.locator('#nodes tbody tr[data-node]');
const cell = (page, node, label) => page.locator(`#nodes tr[data-node="${node}"] td[data-label="${label}"]`);

test('the dashboard asks for the password, on every node', async () => {
  for (const n of nodes) {
    const res = await fetch(`${n.httpURL}/admin/`);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Basic realm="switchboard admin"');
    const wrong = await fetch(`${n.httpURL}/admin/feed`, { headers: { Authorization: `Basic ${Buffer.from('admin:wrong').toString('base64')}` } });
    assert.equal(wrong.status, 401);
  }
});

test('the dashboard follows the cluster live', async (t) => {
  const page = await openDashboard(t, nodes[0], { width: 1280, height: 800 });
  // Three nodes, each ready, with its address; this one is marked.
  await waitFor('three nodes listed', async () => (await nodeRows(page).count()) === 3);
  assert.deepEqual(await nodeRows(page).evaluateAll((rows) => rows.map((r) => r.dataset.node)), ['node-1', 'node-2', 'node-3']);
  for (const n of [1, 2, 3]) {
    assert.equal(await cell(page, `node-${n}`, 'State').textContent(), 'ready');
    assert.match(await page.locator(`#nodes tr[data-node="node-${n}"] .node-addr`).textContent(), /^127\.0\.0\.1:\d+$/);
  }
  assert.equal(await page.locator('#nodes tr[data-node="node-1"] .tag').textContent(), 'this node');
  assert.equal(await number(page, '#stat-nodes'), 3);
  const before = await number(page, '#stat-connections');

  // Six clients in one channel, three on node-2, two on node-3, one on
  // node-1; the figures follow.
  const names = ['ann', 'bob', 'carol', 'dave', 'erin', 'frank'];
  const on = [1, 2, 1, 0, 1, 2]; // index in nodes
  const subs = [];
  for (const [i, user] of names.entries()) {
    const c = await connect(nodes[on[i]], user);
    const got = [];
    await new Promise((resolve, reject) => c.subscribe(CHANNEL, { message: (data) => got.push(data), subscribed: resolve, error: reject }));
    subs.push({ user, client: c, got });
  }
  await waitFor('six more connections on the dashboard', async () => (await number(page, '#stat-connections')) === before + 6, { total: 15_000 });
  await waitFor("node-2's three connections", async () => (await cell(page, 'node-2', 'Connections').textContent()) === '3');
  await waitFor("node-3's two connections", async () => (await cell(page, 'node-3', 'Connections').textContent()) === '2');
  await waitFor('the busiest channel', async () => (await page.locator('#channels button[data-channel="lobby"] .subs').textContent().catch(() => '')) === '6');

  // Messages published every 100 ms: published and delivered per second
  // rise above zero, for the cluster and for the nodes that carry them.
  let published = 0;
  const ticker = setInterval(() => {
    subs[published % subs.length].client.publish(CHANNEL, { n: published, text: `message ${published}` }).catch(() => {});
    published++;
  }, 100);
  t.after(() => clearInterval(ticker));
  await waitFor('published / s above zero', async () => (await number(page, '#stat-in')) > 0, { total: 15_000 });
  await waitFor('delivered / s above zero', async () => (await number(page, '#stat-out')) > 0, { total: 15_000 });
  await waitFor("node-3's deliveries above zero", async () => Number(await cell(page, 'node-3', 'Out / s').textContent()) > 0);

  // The publish action reaches a subscriber on another node.
  await page.fill('#publish-channel', CHANNEL);
  await page.fill('#publish-data', '{"text":"hello from the dashboard"}');
  await page.click('#publish');
  await page.waitForSelector('#publish-result.ok');
  assert.match(await page.textContent('#publish-result'), /^Published to lobby at offset \d+\.$/);
  const reached = subs.find((s) => s.user === 'bob'); // on node-3
  await waitFor('the test message at bob, on node-3', () => reached.got.some((d) => d && d.text === 'hello from the dashboard'));

  // The channel's presence and history, from the busiest channels.
  await page.click('#channels button[data-channel="lobby"]');
  await waitFor('six people present', async () => (await page.locator('#presence .list li').count()) === 6);
  assert.deepEqual((await page.locator('#presence .who').allTextContents()).sort(), [...names].sort());
  await page.locator('#history .list li', { hasText: 'hello from the dashboard' }).waitFor();
  // A channel whose namespace keeps neither says so.
  await page.fill('#inspect-channel', 'quiet:room');
  await page.press('#inspect-channel', 'Enter');
  await page.waitForSelector('#presence .note[data-kind="off"]');
  await page.waitForSelector('#history .note[data-kind="off"]');
  assert.match(await page.textContent('#presence .note'), /Presence is not kept in namespace quiet/);
  await page.click('#channels button[data-channel="lobby"]');
  await page.locator('#history .list li', { hasText: 'hello from the dashboard' }).waitFor();

  // Disconnecting a user closes her connection (4001), wherever it is.
  const frank = new WebSocket(`${nodes[2].wsURL}?token=${encodeURIComponent(await tokenOf(nodes[2], 'grace'))}`);
  const closed = new Promise((resolve) => frank.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => {
    frank.on('open', resolve);
    frank.on('error', reject);
  });
  await page.fill('#disconnect-user', 'grace');
  await page.click('#disconnect');
  await page.waitForSelector('#disconnect-result.ok');
  assert.equal(await closed, 4001);

  // Two minutes of charts need a few seconds of figures to show a line.
  await waitFor('fifteen seconds of figures', () => page.evaluate(() => window.switchboardAdmin.samples.length >= 15), { total: 30_000, step: 250 });
  const phone = await openDashboard(t, nodes[0], { width: 390, height: 844 });
  await waitFor('three nodes on the phone', async () => (await nodeRows(phone).count()) === 3);
  await waitFor('a few seconds of figures on the phone', () => phone.evaluate(() => window.switchboardAdmin.samples.length >= 6), { total: 20_000, step: 250 });
  // Nothing is wider than the phone's screen.
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(overflow <= 390, `the page is ${overflow} px wide at 390`);

  // The screenshots in docs/ are made here: with UPDATE_SCREENSHOTS=1 the
  // test writes them there; otherwise into a temporary directory.
  const shots = process.env.UPDATE_SCREENSHOTS === '1' ? path.join(repoRoot, 'docs') : mkdtempSync(path.join(tmpdir(), 'switchboard-shots-'));
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(shots, 'admin-1280x800.png') });
  await phone.screenshot({ path: path.join(shots, 'admin-390x844.png') });

  // A node killed with SIGKILL leaves the list within its announced
  // expiry (3 s) and one event of the feed (1 s).
  const expiry = Number(await page.evaluate(() => window.switchboardAdmin.latest().nodes.find((n) => n.id === 'node-3').expires_after_ms));
  assert.equal(expiry, 3000);
  await nodes[2].stop('SIGKILL');
  const killed = Date.now();
  await waitFor('node-3 to leave the dashboard', async () => (await nodeRows(page).count()) === 2, { total: expiry + 10_000, step: 50 });
  const took = Date.now() - killed;
  t.diagnostic(`node-3 left the dashboard ${took} ms after SIGKILL (expiry ${expiry} ms)`);
  assert.ok(took <= expiry + 1000 + 500, `node-3 left after ${took} ms, more than its expiry (${expiry} ms) and a feed interval`);
  assert.deepEqual(await nodeRows(page).evaluateAll((rows) => rows.map((r) => r.dataset.node)), ['node-1', 'node-2']);
  assert.equal(await number(page, '#stat-nodes'), 2);
  // Its clients went with it: node-1's and node-2's four remain.
  await waitFor('only the connections of node-1 and node-2', async () => (await number(page, '#stat-connections')) === before + 4, { total: 15_000 });
});

test('no page threw an uncaught error or logged one', () => {
  assert.deepEqual(pageErrors, []);
});
