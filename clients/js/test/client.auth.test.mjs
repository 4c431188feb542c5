// Tests of switchboard.js's token handling against the real switchboard
// binary with a token key: tokens are minted here (HS256 with node:crypto),
// with lifetimes of a few seconds so that expiry and refresh happen while
// the tests run. The tests wait for events, never for a fixed time, except
// to see that nothing more happens after the client gave up.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import Switchboard from '../switchboard.js';
import { startServer, waitFor, sleep } from '../testing/harness.mjs';

const { Client } = Switchboard;

const SECRET = 'a test secret that is at least thirty-two bytes long';
const API_KEY = 'test-api-key';

let server;
const clients = [];

test.before(async () => {
  // Subscribing needs a grant (the token's channels claim or a
  // subscription token); publishing needs any valid token.
  server = await startServer(['--jwt-hmac-secret', SECRET, '--jwt-leeway', '0', '--api-key', API_KEY, '--subscribe', 'granted', '--publish', 'authenticated']);
});

test.afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

test.after(async () => {
  if (server) await server.stop();
});

const nowSec = () => Math.floor(Date.now() / 1000);

/** sign returns an HS256 JWT of claims. */
function sign(claims, secret = SECRET) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const data = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${data}.${createHmac('sha256', secret).update(data).digest('base64url')}`;
}

/** userToken is a connection token for user, valid for ttl seconds, granting test:*. */
function userToken(user, ttl = 3600, extra = {}) {
  const iat = nowSec();
  return sign({ sub: user, iat, exp: iat + ttl, channels: ['test:*'], ...extra });
}

// tokenSource returns a getToken that mints userToken(user, ttl) (or what
// mint(reason, n) returns) and records each call's reason.
function tokenSource(user, ttl, mint) {
  const calls = [];
  const getToken = async ({ reason }) => {
    calls.push(reason);
    return mint ? mint(reason, calls.length) : userToken(user, ttl);
  };
  return { getToken, calls };
}

// newClient makes a client that records its events in c.events.
function newClient(opts = {}) {
  const c = new Client(server.wsURL, { WebSocket, minReconnectDelay: 50, maxReconnectDelay: 200, requestTimeout: 5000, ...opts });
  c.events = { errors: [], disconnected: [], refreshed: [], unsubscribed: [] };
  c.on('error', (e) => c.events.errors.push(e));
  c.on('disconnected', (e) => c.events.disconnected.push(e));
  c.on('refreshed', (e) => c.events.refreshed.push(e));
  c.on('unsubscribed', (e) => c.events.unsubscribed.push(e));
  clients.push(c);
  return c;
}

function collect(sub) {
  const got = [];
  sub.on('message', (data) => got.push(data));
  return got;
}

let seq = 0;
const channel = (prefix = 'test') => `${prefix}:auth${++seq}-${process.pid}`;

async function api(path, body) {
  const res = await fetch(server.httpURL + path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  });
  const json = await res.json();
  assert.equal(res.status, 200, `${path}: ${JSON.stringify(json)}`);
  return json;
}

async function subscribers(ch) {
  const { channels } = await api('/api/channels');
  const row = channels.find((c) => c.channel === ch);
  return row ? row.subscribers : 0;
}

test('getToken: auth comes first, so subscriptions made before connect are authorized', async () => {
  const ch = channel();
  const tk = tokenSource('ann', 3600);
  const ann = newClient({ getToken: tk.getToken });
  const sub = ann.subscribe(ch);
  const got = collect(sub);
  const info = await ann.connect();
  assert.equal(info.user, 'ann');
  assert.equal(ann.user, 'ann');
  assert.ok(ann.expiresAt > Date.now() + 3500_000, `expiresAt ${ann.expiresAt}`);
  await sub.ready;
  await ann.publish(ch, 'hello');
  await waitFor('the message', () => got.length === 1);
  assert.deepEqual(tk.calls, ['connect']);

  // Without a token the same subscription is refused.
  const anon = newClient();
  await anon.connect();
  await assert.rejects(anon.subscribe(ch).ready, { code: 'unauthorized' });
  await assert.rejects(anon.publish(ch, 'x'), { code: 'unauthorized' });
  // A token that does not grant the channel: forbidden.
  const other = newClient({ getToken: () => userToken('bob', 3600, { channels: ['elsewhere:*'] }) });
  await other.connect();
  await assert.rejects(other.subscribe(ch).ready, { code: 'forbidden' });
});

test('refresh keeps the connection open past the first token\'s expiry', async () => {
  const ch = channel();
  const tk = tokenSource('ann', 3);
  const ann = newClient({ getToken: tk.getToken });
  const got = collect(ann.subscribe(ch));
  await ann.connect();
  const firstExpiry = ann.expiresAt;
  // Two refreshes take the connection past the first token's exp (the
  // server checks expiries once a second).
  await waitFor('two refreshes', () => ann.events.refreshed.length >= 2, { total: 15_000 });
  await waitFor('the first token long expired', () => Date.now() > firstExpiry + 1200, { total: 5000 });
  assert.deepEqual(ann.events.disconnected, []);
  assert.deepEqual(ann.events.errors, []);
  assert.ok(ann.expiresAt > firstExpiry);
  assert.deepEqual(tk.calls.slice(0, 3), ['connect', 'refresh', 'refresh']);
  await ann.publish(ch, 'still here');
  await waitFor('the message', () => got.includes('still here'));
});

test('a token that expires unrefreshed: 4001, a new token, subscriptions renewed', async () => {
  const ch = channel();
  const tk = tokenSource('ann', 3, (reason) => {
    if (reason === 'refresh') throw new Error('no refresh today');
    return userToken('ann', reason === 'connect' ? 3 : 3600);
  });
  const ann = newClient({ getToken: tk.getToken });
  const got = collect(ann.subscribe(ch));
  await ann.connect();
  await waitFor('4001 token expired', () => ann.events.disconnected.length === 1, { total: 10_000 });
  assert.deepEqual(ann.events.disconnected, [{ code: 4001, reason: 'token expired', willReconnect: true }]);
  await waitFor('connected again', () => ann.state === 'connected' && ann.getSubscription(ch).state === 'subscribed');
  assert.deepEqual(tk.calls, ['connect', 'refresh', 'unauthorized']);
  assert.equal(ann.events.errors[0].message, 'no refresh today');
  await ann.publish(ch, 'renewed');
  await waitFor('the message', () => got.includes('renewed'));
});

test('4001 and a new token refused too: the client stops instead of looping', async () => {
  const tk = tokenSource('ann', 3, (reason) => (reason === 'connect' ? userToken('ann', 3) : userToken('ann', 3600, { bad: true }).replace(/\.[^.]+$/, '.' + 'A'.repeat(43))));
  const ann = newClient({ getToken: tk.getToken });
  await ann.connect();
  await waitFor('closed', () => ann.state === 'closed', { total: 10_000 });
  // The refresh was refused (invalid signature), then the server closed
  // at expiry, then refused the new token: that is the end.
  assert.deepEqual(tk.calls, ['connect', 'refresh', 'unauthorized']);
  assert.deepEqual(ann.events.disconnected, [{ code: 4001, reason: 'token expired', willReconnect: true }]);
  const last = ann.events.errors.at(-1);
  assert.equal(last.code, 'unauthorized');
  assert.equal(last.message, 'invalid signature');
  await assert.rejects(ann.publish(channel(), 1), { code: 'closed' });
  await sleep(600); // three times maxReconnectDelay: nothing more happens
  assert.equal(tk.calls.length, 3);
  assert.equal(ann.state, 'closed');
});

test('a subscription token grants one channel', async () => {
  const ch = channel('vip');
  const grant = (user, channelName) => sign({ sub: user, channel: channelName, exp: nowSec() + 3600 });
  const ann = newClient({ getToken: () => userToken('ann') });
  await ann.connect();
  await assert.rejects(ann.subscribe(ch).ready, { code: 'forbidden' });
  await assert.rejects(ann.subscribe(ch, null, { token: grant('bob', ch) }).ready, { code: 'forbidden' });
  await assert.rejects(ann.subscribe(ch, null, { token: grant('ann', ch + 'x') }).ready, { code: 'forbidden' });
  await assert.rejects(ann.subscribe(ch, null, { token: sign({ sub: 'ann', channel: ch, exp: nowSec() + 60 }, 'wrong'.repeat(8)) }).ready, {
    code: 'unauthorized'
  });
  const sub = ann.subscribe(ch, null, { token: (name) => grant('ann', name) });
  const got = collect(sub);
  await sub.ready;

  // getSubscriptionToken does the same for every channel it answers.
  const bob = newClient({ getToken: () => userToken('bob'), getSubscriptionToken: (name) => (name.startsWith('vip:') ? grant('bob', name) : null) });
  await bob.connect();
  const bobGot = collect(bob.subscribe(ch));
  await bob.getSubscription(ch).ready;
  await bob.publish(ch, 'for vips'); // publishing needs only a token
  await waitFor('both receive', () => got.length === 1 && bobGot.length === 1);
});

test('POST /api/disconnect closes with 4001 "disconnected"; the client does not come back', async () => {
  const tk = tokenSource('dave', 3600);
  const dave = newClient({ getToken: tk.getToken });
  await dave.connect();
  await api('/api/disconnect', { user: 'dave' });
  await waitFor('closed', () => dave.state === 'closed');
  assert.deepEqual(dave.events.disconnected, [{ code: 4001, reason: 'disconnected', willReconnect: false }]);
  assert.equal(dave.events.errors.length, 1);
  assert.equal(dave.events.errors[0].code, 'unauthorized');
  assert.equal(dave.events.errors[0].closeCode, 4001);
  await sleep(600);
  assert.deepEqual(tk.calls, ['connect']);
  // The application may connect again (with a token its back end still gives).
  await dave.connect();
  assert.equal(dave.state, 'connected');
});

test('POST /api/unsubscribe ends one subscription with the unsubscribed event', async () => {
  const revoked = channel();
  const kept = channel();
  const erin = newClient({ getToken: () => userToken('erin') });
  await erin.connect();
  const subEvents = [];
  const r = erin.subscribe(revoked, { unsubscribed: (e) => subEvents.push(e) });
  const k = erin.subscribe(kept);
  const keptGot = collect(k);
  await Promise.all([r.ready, k.ready]);
  assert.equal(await subscribers(revoked), 1);

  await api('/api/unsubscribe', { user: 'erin', channel: revoked });
  await waitFor('the unsubscribed event', () => erin.events.unsubscribed.length === 1);
  assert.deepEqual(erin.events.unsubscribed, [{ channel: revoked, reason: 'permission revoked' }]);
  assert.deepEqual(subEvents, [{ channel: revoked, reason: 'permission revoked' }]);
  assert.equal(r.state, 'unsubscribed');
  assert.equal(erin.getSubscription(revoked), null);
  await waitFor('no subscriber left on the server', async () => (await subscribers(revoked)) === 0);
  // The connection and the other subscription carry on.
  assert.equal(erin.state, 'connected');
  await erin.publish(kept, 'still subscribed');
  await waitFor('the kept channel delivers', () => keptGot.includes('still subscribed'));
});
