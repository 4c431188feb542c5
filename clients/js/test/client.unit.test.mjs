// Unit tests of switchboard.js against a scripted native-dialect server
// (the ws package in this process), for behaviour a real server cannot be
// made to show on demand: recovery and duplicates, gaps, close codes 4001
// and 1012, timeouts.
import test from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import Switchboard from '../switchboard.js';
import { waitFor, sleep, freePort } from '../testing/harness.mjs';
import { FakeServer } from '../testing/fakeserver.mjs';

const { Client, SwitchboardError } = Switchboard;

function newClient(url, opts = {}) {
  return new Client(url, { WebSocket, minReconnectDelay: 20, maxReconnectDelay: 100, requestTimeout: 2000, ...opts });
}

// collect returns an array that fills with the subscription's messages.
function collect(sub) {
  const got = [];
  sub.on('message', (data, meta) => got.push({ data, ...meta }));
  return got;
}

async function setup(t, opts) {
  const srv = await new FakeServer().start();
  const client = newClient(srv.url, opts);
  t.after(async () => {
    client.close();
    await srv.stop();
  });
  return { srv, client };
}

test('welcome, increasing request ids, ping and publish replies', async (t) => {
  const { srv, client } = await setup(t);
  const states = [];
  client.on('state', (s) => states.push(s));
  const welcome = await client.connect();
  assert.deepEqual(welcome, { client: 'c1', node: 'n1', version: 1, pingInterval: 25000 });
  assert.equal(client.clientId, 'c1');
  assert.equal(client.state, 'connected');
  assert.deepEqual(states, ['connecting', 'connected']);

  srv.onRequest = (conn, req) => conn.reply(req, req.op === 'publish' ? { epoch: 'e', offset: 7 } : {});
  assert.equal(typeof (await client.ping()), 'number');
  assert.deepEqual(await client.publish('a', { x: 1 }), { epoch: 'e', offset: 7 });
  await client.publish('a', 'text');
  const ids = srv.requests.map((r) => r.id);
  assert.deepEqual(ids, [1, 2, 3]);
  assert.deepEqual(srv.requests[1], { id: 2, op: 'publish', channel: 'a', data: { x: 1 }, conn: 1 });
});

test('a refused request rejects with a SwitchboardError carrying the code', async (t) => {
  const { srv, client } = await setup(t);
  srv.onRequest = (conn, req) => conn.fail(req, 'forbidden', 'publish to a is not allowed');
  await client.connect();
  await assert.rejects(client.publish('a', 1), (err) => {
    assert.ok(err instanceof SwitchboardError);
    assert.ok(err instanceof Error);
    assert.equal(err.code, 'forbidden');
    assert.equal(err.message, 'publish to a is not allowed');
    return true;
  });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  const sub = client.subscribe('a', { error: (e) => errors.push(e) });
  await assert.rejects(sub.ready, { code: 'forbidden' });
  assert.equal(sub.state, 'unsubscribed');
  assert.equal(client.getSubscription('a'), null);
  assert.equal(errors.length, 2);
});

test('request timeout and requests waiting for a connection', async (t) => {
  const { srv, client } = await setup(t, { requestTimeout: 150 });
  srv.onRequest = () => {}; // never answers
  await client.connect();
  await assert.rejects(client.ping(), { code: 'timeout' });

  // Nothing listens on this port: requests wait, then give up as unavailable.
  const port = await freePort();
  const offline = newClient(`ws://127.0.0.1:${port}/ws`, { requestTimeout: 150 });
  t.after(() => offline.close());
  offline.connect().catch(() => {});
  await assert.rejects(offline.publish('a', 1), { code: 'unavailable' });
  assert.equal(offline.state, 'reconnecting');
});

test('a request issued while disconnected is sent once connected', async (t) => {
  const srv = new FakeServer();
  const port = await freePort();
  const client = newClient(`ws://127.0.0.1:${port}/ws`, { requestTimeout: 5000 });
  t.after(async () => {
    client.close();
    await srv.stop();
  });
  client.connect().catch(() => {});
  const p = client.publish('later', 'x');
  await sleep(100);
  await srv.start(port);
  assert.deepEqual(await p, {});
  assert.equal(srv.requestsOf('publish').length, 1);
});

test('recovery: since on resubscribe, duplicates dropped, gap reported', async (t) => {
  const { srv, client } = await setup(t);
  // Scripted replies per connection.
  srv.onRequest = (conn, req) => {
    if (req.op !== 'subscribe') return conn.reply(req, {});
    if (conn.n === 1) {
      conn.reply(req, { epoch: 'e1', offset: 5 });
      for (const o of [6, 7, 6, 7, 8]) conn.send({ op: 'message', channel: 'room', data: { o }, epoch: 'e1', offset: o });
    } else if (conn.n === 2) {
      conn.reply(req, { epoch: 'e1', offset: 10, recovered: true });
      for (const o of [7, 9, 10, 11]) conn.send({ op: 'message', channel: 'room', data: { o }, epoch: 'e1', offset: o });
    } else {
      conn.reply(req, { epoch: 'e2', offset: 3, recovered: false });
      conn.send({ op: 'message', channel: 'room', data: { o: 4 }, epoch: 'e2', offset: 4 });
    }
  };
  await client.connect();
  const sub = client.subscribe('room');
  const got = collect(sub);
  const gaps = [];
  const subscribed = [];
  sub.on('gap', (g) => gaps.push(g));
  sub.on('subscribed', (info) => subscribed.push(info));
  const info = await sub.ready;
  assert.deepEqual(info, { channel: 'room', resubscribed: false, recovered: false, epoch: 'e1', offset: 5 });
  await waitFor('messages 6..8', () => got.length === 3);
  assert.deepEqual(got.map((m) => m.offset), [6, 7, 8]);
  assert.deepEqual(got[0], { data: { o: 6 }, channel: 'room', epoch: 'e1', offset: 6 });
  assert.deepEqual(sub.position, { epoch: 'e1', offset: 8 });

  // The connection breaks: the client resubscribes from offset 8.
  srv.last.ws.terminate();
  await waitFor('recovered messages', () => got.length === 6);
  assert.deepEqual(srv.requestsOf('subscribe')[1].since, { epoch: 'e1', offset: 8 });
  assert.deepEqual(got.map((m) => m.offset), [6, 7, 8, 9, 10, 11]);
  assert.equal(subscribed[1].recovered, true);
  assert.equal(subscribed[1].resubscribed, true);
  assert.equal(gaps.length, 0);

  // Again, but now the stream's epoch changed: the client reports a gap.
  srv.last.ws.terminate();
  await waitFor('the gap', () => gaps.length === 1 && got.length === 7);
  assert.deepEqual(srv.requestsOf('subscribe')[2].since, { epoch: 'e1', offset: 11 });
  assert.deepEqual(gaps[0], { channel: 'room', from: { epoch: 'e1', offset: 11 }, to: { epoch: 'e2', offset: 3 } });
  assert.deepEqual(got[6], { data: { o: 4 }, channel: 'room', epoch: 'e2', offset: 4 });
  assert.equal(subscribed[2].recovered, false);
});

test('channels without positions: no since, no dedup', async (t) => {
  const { srv, client } = await setup(t);
  srv.onRequest = (conn, req) => {
    conn.reply(req, {});
    if (req.op === 'subscribe') {
      conn.send({ op: 'message', channel: 'plain', data: 'same' });
      conn.send({ op: 'message', channel: 'plain', data: 'same' });
    }
  };
  await client.connect();
  const sub = client.subscribe('plain');
  const got = collect(sub);
  await waitFor('two messages', () => got.length === 2);
  assert.deepEqual(got[1], { data: 'same', channel: 'plain' });
  assert.equal(sub.position, null);
  srv.last.ws.terminate();
  await waitFor('resubscribed', () => got.length === 4);
  const subs = srv.requestsOf('subscribe');
  assert.equal(subs.length, 2);
  assert.equal(subs[1].since, undefined);
});

test('messages before the subscribe reply and after unsubscribe are not delivered', async (t) => {
  const { srv, client } = await setup(t);
  srv.onRequest = (conn, req) => {
    if (req.op === 'subscribe') conn.send({ op: 'message', channel: 'c', data: 'early' });
    conn.reply(req, {});
    if (req.op === 'subscribe') conn.send({ op: 'message', channel: 'c', data: 'live' });
    if (req.op === 'unsubscribe') conn.send({ op: 'message', channel: 'c', data: 'late' });
  };
  await client.connect();
  const sub = client.subscribe('c');
  const got = collect(sub);
  await sub.ready;
  await waitFor('live message', () => got.length === 1);
  await sub.unsubscribe();
  await client.ping();
  assert.deepEqual(got.map((m) => m.data), ['live']);
  assert.deepEqual(srv.requestsOf('unsubscribe').map((r) => r.channel), ['c']);
  assert.throws(() => {
    client.subscribe('x');
    client.subscribe('x');
  }, { code: 'bad_request' });
});

test('join, leave and unsubscribed events', async (t) => {
  const { srv, client } = await setup(t);
  await client.connect();
  const events = [];
  const sub = client.subscribe('p', {
    join: (e) => events.push(['join', e]),
    leave: (e) => events.push(['leave', e]),
    unsubscribed: (e) => events.push(['unsubscribed', e])
  });
  await sub.ready;
  srv.last.send({ op: 'join', channel: 'p', client: 'c2', user: 'bob' });
  srv.last.send({ op: 'leave', channel: 'p', client: 'c2', user: 'bob' });
  srv.last.send({ op: 'unsubscribed', channel: 'p', reason: 'permission revoked' });
  await waitFor('three events', () => events.length === 3);
  assert.deepEqual(events, [
    ['join', { channel: 'p', client: 'c2', user: 'bob' }],
    ['leave', { channel: 'p', client: 'c2', user: 'bob' }],
    ['unsubscribed', { channel: 'p', reason: 'permission revoked' }]
  ]);
  assert.equal(client.getSubscription('p'), null);
});

test('close 4001 stops reconnecting', async (t) => {
  const { srv, client } = await setup(t);
  await client.connect();
  const disc = [];
  client.on('disconnected', (e) => disc.push(e));
  srv.last.ws.close(4001, 'token expired');
  await waitFor('closed state', () => client.state === 'closed');
  assert.deepEqual(disc, [{ code: 4001, reason: 'token expired', willReconnect: false }]);
  await sleep(200);
  assert.equal(srv.conns.length, 1, 'no reconnect after 4001');
  await assert.rejects(client.publish('a', 1), { code: 'closed' });
});

test('close 1012 reconnects after a short random delay; tokens are sent in auth, not the URL', async (t) => {
  let n = 0;
  const { srv, client } = await setup(t, {
    minReconnectDelay: 60_000, // backoff would be far too slow: 1012 must not use it
    maxReconnectDelay: 60_000,
    restartReconnectDelay: 100,
    token: () => 'tok' + ++n
  });
  srv.onRequest = (conn, req) => conn.reply(req, req.op === 'auth' ? { user: 'ann', expires_at: Math.floor(Date.now() / 1000) + 3600 } : {});
  await client.connect();
  const disc = [];
  client.on('disconnected', (e) => disc.push(e));
  const back = new Promise((r) => client.once('connected', r));
  srv.last.ws.close(1012, 'restarting');
  await back;
  assert.deepEqual(disc, [{ code: 1012, reason: 'restarting', willReconnect: true }]);
  assert.deepEqual(srv.conns.map((c) => c.url), ['/ws', '/ws']);
  assert.deepEqual(srv.requestsOf('auth').map((r) => r.token), ['tok1', 'tok2']);
});

test('a connection without a welcome is abandoned and retried', async (t) => {
  const { srv, client } = await setup(t, { requestTimeout: 150 });
  srv.welcome = false;
  client.connect().catch(() => {});
  await waitFor('a second attempt', () => srv.conns.length >= 2);
  srv.welcome = true;
  await waitFor('connected', () => client.state === 'connected');
});

test('heartbeat: a silent connection whose ping gets no reply is replaced', async (t) => {
  const { srv, client } = await setup(t, { requestTimeout: 150 });
  srv.welcome = false;
  srv.wss.on('connection', (ws) => ws.send(JSON.stringify({ op: 'welcome', version: 1, client: 'c', node: 'n', ping_interval_ms: 100 })));
  srv.onRequest = (conn, req) => {
    if (conn.n > 1) conn.reply(req, {}); // the first connection is dead
  };
  await client.connect();
  await waitFor('a new connection', () => srv.conns.length === 2 && client.state === 'connected');
  assert.equal(srv.requestsOf('ping')[0].conn, 1);
  await sleep(350);
  assert.equal(srv.conns.length, 2, 'an answered heartbeat keeps the connection');
});

test('close() leaves no timer or socket behind', async (t) => {
  const { srv, client } = await setup(t, { requestTimeout: 60_000 });
  srv.onRequest = (conn, req) => {
    if (req.op !== 'ping') conn.reply(req, {});
  };
  await client.connect();
  client.subscribe('a');
  const ping = client.ping(); // left without a reply
  const port = await freePort();
  const offline = newClient(`ws://127.0.0.1:${port}/ws`, { requestTimeout: 60_000 });
  offline.connect().catch(() => {});
  const queued = offline.publish('a', 1);
  await sleep(50);
  client.close();
  offline.close();
  await assert.rejects(ping, { code: 'closed' });
  await assert.rejects(queued, { code: 'closed' });
  assert.equal(client.state, 'closed');
  await waitFor('no client sockets or timers', () => {
    const r = process.getActiveResourcesInfo();
    // The fake server's listening socket and accepted sockets remain until
    // after(); the client's own socket and timers must be gone.
    return !r.includes('Timeout') && srv.conns.every((c) => c.ws.readyState === WebSocket.CLOSED);
  });
});
