// Tests of switchboard.js against the real switchboard binary: built from
// this repository (or $SWITCHBOARD_BIN), started on free loopback ports,
// killed and restarted on purpose.
import test from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import Switchboard from '../switchboard.js';
import { startServer, ServerProcess, waitFor, sleep } from '../testing/harness.mjs';

const { Client, SwitchboardError } = Switchboard;

let server;
const clients = [];

test.before(async () => {
  server = await startServer();
});

// Every test's clients are closed after it, whatever its outcome.
test.afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

test.after(async () => {
  if (server) await server.stop();
});

function newClient(url = server.wsURL, opts = {}) {
  const c = new Client(url, { WebSocket, minReconnectDelay: 50, maxReconnectDelay: 500, requestTimeout: 5000, ...opts });
  clients.push(c);
  return c;
}

function collect(sub) {
  const got = [];
  sub.on('message', (data, meta) => got.push({ data, ...meta }));
  return got;
}

let seq = 0;
const channel = (prefix = 'test') => `${prefix}:ch${++seq}-${process.pid}`;

test('connect and welcome', async () => {
  const c = newClient();
  const connected = [];
  c.on('connected', (info) => connected.push(info));
  const info = await c.connect();
  assert.equal(c.state, 'connected');
  assert.equal(info.version, 1);
  assert.equal(typeof info.client, 'string');
  assert.ok(info.client.length > 0, 'client id is not empty');
  assert.equal(typeof info.node, 'string');
  assert.ok(info.node.length > 0, 'node id is not empty');
  assert.ok(Number.isInteger(info.pingInterval) && info.pingInterval > 0, `ping_interval_ms ${info.pingInterval}`);
  assert.deepEqual(connected, [info]);
  assert.equal(typeof (await c.ping()), 'number');
  c.close();
});

test('subscribe, publish and receive between two clients', async () => {
  const a = newClient();
  const b = newClient();
  await Promise.all([a.connect(), b.connect()]);
  const ch = channel('chat');
  const subA = a.subscribe(ch);
  const subB = b.subscribe(ch);
  const gotA = collect(subA);
  const gotB = collect(subB);
  const infoA = await subA.ready;
  await subB.ready;
  assert.equal(infoA.channel, ch);
  assert.equal(infoA.resubscribed, false);

  const reply = await a.publish(ch, { nick: 'ann', text: 'hello' });
  assert.equal(typeof reply, 'object');
  await b.publish(ch, 'plain string');
  await b.publish(ch, [1, 2, { deep: null }]);
  const want = [{ nick: 'ann', text: 'hello' }, 'plain string', [1, 2, { deep: null }]];
  await waitFor('B receives three messages', () => gotB.length === 3);
  await waitFor('A receives three messages (its own too)', () => gotA.length === 3);
  assert.deepEqual(gotB.map((m) => m.data), want);
  assert.deepEqual(gotA.map((m) => m.data), want);
  assert.equal(gotB[0].channel, ch);
  if (reply.offset !== undefined) {
    // History is on: positions count up and messages carry them.
    assert.equal(typeof reply.epoch, 'string');
    assert.equal(gotB[0].offset, reply.offset);
  }
  a.close();
  b.close();
});

test('error replies carry the protocol code', async () => {
  const c = newClient();
  await c.connect();
  await assert.rejects(c.publish('bad channel!', 1), (err) => {
    assert.ok(err instanceof SwitchboardError, `${err}`);
    assert.equal(err.code, 'bad_request');
    assert.equal(typeof err.message, 'string');
    return true;
  });
  await assert.rejects(c.publish('x'.repeat(201), 1), { code: 'bad_request' });
  await assert.rejects(c.publish('', 1), { code: 'bad_request' });

  const sub = c.subscribe('no/slash');
  await assert.rejects(sub.ready, { code: 'bad_request' });
  assert.equal(c.getSubscription('no/slash'), null);

  // The connection survives refused requests.
  assert.equal(c.state, 'connected');
  assert.equal(typeof (await c.ping()), 'number');

  // Unsubscribing from a channel the server never had is not_found on the
  // wire; the client's unsubscribe of an unknown channel is a no-op.
  await c.unsubscribe('never-subscribed');
  c.close();
});

test('unsubscribe stops delivery', async () => {
  const a = newClient();
  const b = newClient();
  await Promise.all([a.connect(), b.connect()]);
  const ch = channel();
  const subA = a.subscribe(ch);
  const subB = b.subscribe(ch);
  const gotA = collect(subA);
  const gotB = collect(subB);
  await Promise.all([subA.ready, subB.ready]);
  await b.publish(ch, 'one');
  await waitFor('A gets one', () => gotA.length === 1);
  await subA.unsubscribe();
  assert.equal(subA.state, 'unsubscribed');
  await b.publish(ch, 'two');
  await waitFor('B gets two', () => gotB.length === 2);
  await a.ping();
  await sleep(100);
  assert.deepEqual(gotA.map((m) => m.data), ['one']);
  // Subscribing again works and delivers new messages only.
  const again = a.subscribe(ch);
  const gotAgain = collect(again);
  await again.ready;
  await b.publish(ch, 'three');
  await waitFor('A gets three', () => gotAgain.length === 1);
  assert.deepEqual(gotAgain.map((m) => m.data), ['three']);
  a.close();
  b.close();
});

test('history and presence answer or fail with a protocol code', async () => {
  const c = newClient();
  await c.connect();
  const ch = channel('chat');
  const sub = c.subscribe(ch);
  await sub.ready;
  await c.publish(ch, { text: 'kept?' });
  const codes = new Set(['bad_request', 'forbidden', 'not_found', 'unavailable']);
  try {
    const h = await c.history(ch, { limit: 10 });
    assert.ok(Array.isArray(h.messages));
  } catch (err) {
    assert.ok(err instanceof SwitchboardError, `${err}`);
    assert.ok(codes.has(err.code), `history failed with ${err.code}: ${err.message}`);
  }
  try {
    const p = await c.presence(ch);
    assert.ok(Array.isArray(p));
  } catch (err) {
    assert.ok(err instanceof SwitchboardError, `${err}`);
    assert.ok(codes.has(err.code), `presence failed with ${err.code}: ${err.message}`);
  }
  c.close();
});

test('reconnect and resubscribe after the server is killed and restarted', async () => {
  const srv = await startServer();
  try {
    const a = newClient(srv.wsURL);
    const b = newClient(srv.wsURL);
    await Promise.all([a.connect(), b.connect()]);
    const ch = channel('chat');
    const subA = a.subscribe(ch);
    const subB = b.subscribe(ch);
    const gotB = collect(subB);
    await Promise.all([subA.ready, subB.ready]);
    await a.publish(ch, 'before');
    await waitFor('before', () => gotB.length === 1);

    const disc = [];
    const states = [];
    a.on('disconnected', (e) => disc.push(e));
    a.on('state', (s) => states.push(s));
    const resubscribed = new Promise((r) => subB.on('subscribed', (info) => info.resubscribed && r(info)));
    const firstClient = a.clientId;

    await srv.stop('SIGKILL');
    await waitFor('A notices', () => disc.length === 1);
    assert.equal(disc[0].willReconnect, true);
    assert.equal(disc[0].code, 1006);
    assert.equal(a.state, 'reconnecting');

    // A publish while the server is down waits for the connection.
    const pending = a.publish(ch, 'during');
    await sleep(300);
    await new ServerProcess(srv.bin, srv.port).start().then((p) => {
      srv.proc = p.proc;
    });
    await waitFor('both reconnect', () => a.state === 'connected' && b.state === 'connected');
    await resubscribed;
    await pending;
    assert.notEqual(a.clientId, null);
    assert.notEqual(a.clientId, firstClient, 'a new connection has a new client id');
    assert.ok(states.includes('reconnecting') && states.at(-1) === 'connected', states.join(','));

    await a.publish(ch, 'after');
    await waitFor('after', () => gotB.some((m) => m.data === 'after'));
    // 'during' was queued until A's resubscription was sent; B gets it if
    // B was already resubscribed then: both orders are allowed, not a loss of 'after'.
    assert.deepEqual(gotB.map((m) => m.data).filter((d) => d !== 'during'), ['before', 'after']);
  } finally {
    await srv.stop();
  }
});

test('graceful shutdown closes with 1012 or 1001 and the client comes back', async () => {
  const srv = await startServer(['--shutdown-timeout', '2s']);
  try {
    const a = newClient(srv.wsURL, { restartReconnectDelay: 200 });
    await a.connect();
    const sub = a.subscribe(channel());
    await sub.ready;
    const disc = [];
    a.on('disconnected', (e) => disc.push(e));
    await srv.stop('SIGTERM');
    await waitFor('disconnected', () => disc.length === 1);
    assert.ok([1001, 1012].includes(disc[0].code), `close code ${disc[0].code} (${disc[0].reason}), want 1012 or 1001`);
    assert.equal(disc[0].willReconnect, true);
    const restarted = await new ServerProcess(srv.bin, srv.port).start();
    srv.proc = restarted.proc;
    await waitFor('reconnected', () => a.state === 'connected');
    await waitFor('resubscribed', () => sub.state === 'subscribed');
  } finally {
    await srv.stop();
  }
});

test('recovery against a server with history', async () => {
  const srv = await startServer(['--history-size', '100']);
  try {
    const a = newClient(srv.wsURL);
    const b = newClient(srv.wsURL);
    await Promise.all([a.connect(), b.connect()]);
    const ch = channel('chat');
    const subA = a.subscribe(ch);
    const gotA = collect(subA);
    const infoA = await subA.ready;
    assert.equal(typeof infoA.epoch, 'string');
    await b.publish(ch, 1);
    await waitFor('1', () => gotA.length === 1);
    const h = await b.history(ch, { limit: 50 });
    assert.deepEqual(h.messages.map((m) => m.data), [1]);
    // A drops its connection; B publishes meanwhile; A recovers both.
    a._ws.terminate();
    await b.publish(ch, 2);
    await b.publish(ch, 3);
    await waitFor('recovered', () => gotA.length === 3);
    assert.deepEqual(gotA.map((m) => m.data), [1, 2, 3]);
    const offs = gotA.map((m) => m.offset);
    assert.deepEqual(offs, [offs[0], offs[0] + 1, offs[0] + 2]);
    // A publish retried with the same idempotency key is published once.
    const p1 = await b.publish(ch, 4, { idempotencyKey: 'order-4' });
    const p2 = await b.publish(ch, 4, { idempotencyKey: 'order-4' });
    assert.deepEqual(p2, p1);
    await b.publish(ch, 5);
    await waitFor('5', () => gotA.length === 5);
    assert.deepEqual(gotA.map((m) => m.data), [1, 2, 3, 4, 5]);
  } finally {
    await srv.stop();
  }
});

test('close() leaves nothing running', async () => {
  const c = newClient();
  await c.connect();
  const sub = c.subscribe(channel());
  await sub.ready;
  await c.publish(sub.channel, 'x');
  c.close();
  assert.equal(c.state, 'closed');
  await assert.rejects(c.publish('a', 1), { code: 'closed' });
  await waitFor('no timers and no client sockets', () => {
    const r = process.getActiveResourcesInfo();
    // Left: the server child process and its pipes (killed in after()).
    return !r.includes('Timeout') && !r.includes('TCPSocketWrap') && !r.includes('TCPWrap');
  });
});
