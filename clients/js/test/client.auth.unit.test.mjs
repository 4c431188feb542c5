// Unit tests of switchboard.js's token handling against a scripted
// native-dialect server: auth first, refresh before expiry (and with a
// skewed clock), what a 4001 or a refused token leads to, subscription
// tokens and the unsubscribed event.
import test from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import Switchboard from '../switchboard.js';
import { waitFor, sleep } from '../testing/harness.mjs';
import { FakeServer, fakeJWT } from '../testing/fakeserver.mjs';

const { Client } = Switchboard;

const nowSec = () => Math.floor(Date.now() / 1000);

// tokens returns a getToken that hands out fakeJWT tokens for user with a
// lifetime of ttl seconds, and records every call's reason.
function tokens(user = 'ann', ttl = 3600) {
  const calls = [];
  const getToken = (info) => {
    calls.push(info.reason);
    const iat = nowSec();
    return fakeJWT({ sub: user, iat, exp: iat + ttl, n: calls.length });
  };
  return { getToken, calls };
}

// authServer answers auth and refresh with the token's own user and exp
// (expiresAt(token) to change that), everything else with ok.
function answerTokens(srv, { expiresAt } = {}) {
  srv.onRequest = (conn, req) => {
    if (req.op === 'auth' || req.op === 'refresh') {
      const c = JSON.parse(Buffer.from(req.token.split('.')[1], 'base64url'));
      const exp = expiresAt ? expiresAt(c) : c.exp;
      conn.reply(req, req.op === 'auth' ? { user: c.sub, expires_at: exp } : { expires_at: exp });
      return;
    }
    conn.reply(req, {});
  };
}

async function setup(t, opts) {
  const srv = await new FakeServer().start();
  const client = new Client(srv.url, { WebSocket, minReconnectDelay: 20, maxReconnectDelay: 100, requestTimeout: 2000, ...opts });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  t.after(async () => {
    client.close();
    await srv.stop();
  });
  return { srv, client, errors };
}

// ops lists the ops connection n received, in order.
const ops = (srv, n) => srv.requests.filter((r) => r.conn === n).map((r) => r.op);

test('getToken: auth is the first request, before renewals and waiting requests', async (t) => {
  const tk = tokens('ann');
  const { srv, client } = await setup(t, { getToken: tk.getToken });
  answerTokens(srv);
  client.subscribe('room');
  const states = [];
  client.on('state', (s) => states.push(s));
  const published = client.publish('room', 'queued');
  const info = await client.connect();
  await published;
  assert.equal(info.user, 'ann');
  assert.equal(client.user, 'ann');
  assert.equal(typeof info.expiresAt, 'number');
  assert.equal(client.expiresAt, info.expiresAt);
  assert.ok(client.expiresAt > Date.now() + 3500_000);
  assert.deepEqual(states, ['connecting', 'connected']);
  assert.equal(srv.last.url, '/ws', 'the token is not in the URL');
  assert.deepEqual(ops(srv, 1), ['auth', 'subscribe', 'publish']);
  assert.deepEqual(tk.calls, ['connect']);

  // A reconnect authenticates again, with a new token, before renewing.
  srv.last.ws.terminate();
  await waitFor('a second connection, ready', () => srv.conns.length === 2 && client.state === 'connected');
  await waitFor('the renewal', () => ops(srv, 2).length === 2);
  assert.deepEqual(ops(srv, 2), ['auth', 'subscribe']);
  assert.deepEqual(tk.calls, ['connect', 'connect']);
  assert.notEqual(srv.requestsOf('auth')[0].token, srv.requestsOf('auth')[1].token);
});

test('without a token the client sends no auth', async (t) => {
  const { srv, client } = await setup(t, { getToken: () => null });
  const info = await client.connect();
  await client.ping();
  assert.deepEqual(ops(srv, 1), ['ping']);
  assert.equal(info.user, undefined);
  assert.equal(client.user, null);
});

test('refresh: before expiry, with a new token from getToken', async (t) => {
  const tk = tokens('ann', 2);
  const { srv, client, errors } = await setup(t, { getToken: tk.getToken, minRefreshDelay: 100 });
  answerTokens(srv);
  const refreshed = [];
  client.on('refreshed', (e) => refreshed.push(e));
  await client.connect();
  const first = client.expiresAt;
  await waitFor('a refresh', () => refreshed.length === 1, { total: 5000 });
  assert.ok(Date.now() < first, 'refreshed before the token expired');
  const r = srv.requestsOf('refresh')[0];
  assert.notEqual(r.token, srv.requestsOf('auth')[0].token);
  assert.equal(refreshed[0].user, 'ann');
  assert.equal(refreshed[0].expiresAt, client.expiresAt);
  assert.ok(client.expiresAt >= first);
  assert.deepEqual(tk.calls, ['connect', 'refresh']);
  assert.deepEqual(errors, []);
  assert.equal(srv.conns.length, 1);
});

test('refresh: a refused refresh is retried while the token lasts', async (t) => {
  const tk = tokens('ann', 4);
  const { srv, client, errors } = await setup(t, { getToken: tk.getToken, minRefreshDelay: 100 });
  answerTokens(srv);
  const plain = srv.onRequest;
  let refusals = 0;
  srv.onRequest = (conn, req) => {
    if (req.op === 'refresh' && refusals++ === 0) {
      conn.fail(req, 'bad_request', 'a refresh token must expire later than the token it replaces');
      return;
    }
    plain(conn, req);
  };
  const refreshed = new Promise((r) => client.once('refreshed', r));
  await client.connect();
  const first = client.expiresAt;
  await refreshed;
  assert.ok(Date.now() < first, 'refreshed before the token expired');
  assert.equal(srv.requestsOf('refresh').length, 2);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'bad_request');
});

test('refresh: the token lifetime bounds the delay when the clocks disagree', async (t) => {
  // The server's expires_at is an hour away by this machine's clock (as if
  // it were an hour behind the server's), or an hour ago (ahead of it);
  // the token says it lives 2 s: the client refreshes within those 2 s,
  // and not in a loop.
  for (const skew of [3600, -3600]) {
    await t.test(`expires_at ${skew > 0 ? 'far ahead' : 'in the past'}`, async (t) => {
      const tk = tokens('ann', 2);
      const { srv, client } = await setup(t, { getToken: tk.getToken, minRefreshDelay: 100 });
      answerTokens(srv, { expiresAt: (c) => c.exp + skew });
      const start = Date.now();
      const refreshed = new Promise((r) => client.once('refreshed', r));
      await client.connect();
      await refreshed;
      const took = Date.now() - start;
      assert.ok(took >= 1000 && took < 2000, `refreshed after ${took} ms, want 80% of 1-2 s`);
      assert.equal(srv.requestsOf('refresh').length, 1);
    });
  }
});

test('a static token is never refreshed and a refusal ends the client', async (t) => {
  const tok = fakeJWT({ sub: 'ann', iat: nowSec(), exp: nowSec() + 1 });
  const { srv, client, errors } = await setup(t, { token: tok, minRefreshDelay: 100 });
  srv.onRequest = (conn, req) => conn.fail(req, 'unauthorized', 'invalid signature');
  await assert.rejects(client.connect(), { code: 'unauthorized', message: 'invalid signature' });
  assert.equal(client.state, 'closed');
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'unauthorized');
  assert.equal(errors[0].closeCode, 0);
  assert.equal(srv.conns.length, 1, 'a static token is not sent twice');
});

test('auth refused: one more try with a new token, then the client gives up', async (t) => {
  const tk = tokens('ann');
  const { srv, client, errors } = await setup(t, { getToken: tk.getToken });
  srv.onRequest = (conn, req) => conn.fail(req, 'unauthorized', 'invalid signature');
  const queued = client.publish('a', 1);
  await assert.rejects(client.connect(), { code: 'unauthorized', message: 'invalid signature' });
  await assert.rejects(queued, { code: 'unauthorized' });
  assert.equal(client.state, 'closed');
  assert.deepEqual(tk.calls, ['connect', 'unauthorized']);
  assert.equal(srv.conns.length, 2);
  assert.equal(errors.length, 1);
  await sleep(300); // three times maxReconnectDelay: no further attempt
  assert.equal(srv.conns.length, 2);

  // connect() starts afresh.
  answerTokens(srv);
  const info = await client.connect();
  assert.equal(info.user, 'ann');
});

test('getToken giving the refused token again is not sent again', async (t) => {
  const tok = fakeJWT({ sub: 'ann', iat: nowSec(), exp: nowSec() + 3600 });
  const calls = [];
  const { srv, client, errors } = await setup(t, { getToken: (i) => (calls.push(i.reason), tok) });
  srv.onRequest = (conn, req) => conn.fail(req, 'unauthorized', 'token expired');
  await assert.rejects(client.connect(), { code: 'unauthorized' });
  assert.deepEqual(calls, ['connect', 'unauthorized']);
  assert.equal(srv.conns.length, 1);
  assert.equal(errors.length, 1);
});

test('close 4001: reconnect once with a new token; a second 4001 without a good auth ends it', async (t) => {
  const tk = tokens('ann');
  const { srv, client, errors } = await setup(t, { getToken: tk.getToken });
  answerTokens(srv);
  const disc = [];
  client.on('disconnected', (e) => disc.push(e));
  client.subscribe('room');
  await client.connect();

  // The token expired: a new one, and the subscription is renewed.
  srv.last.ws.close(4001, 'token expired');
  await waitFor('back, renewed', () => srv.conns.length === 2 && ops(srv, 2).join() === 'auth,subscribe');
  assert.deepEqual(disc, [{ code: 4001, reason: 'token expired', willReconnect: true }]);
  assert.deepEqual(tk.calls, ['connect', 'unauthorized']);

  // That auth succeeded: a later 4001 is again worth one try.
  srv.last.ws.close(4001, 'token expired');
  await waitFor('back again', () => srv.conns.length === 3 && client.state === 'connected');
  assert.deepEqual(tk.calls, ['connect', 'unauthorized', 'unauthorized']);

  // Now the server refuses the new token: no loop.
  srv.onRequest = (conn, req) => conn.fail(req, 'unauthorized', 'invalid signature');
  srv.last.ws.close(4001, 'token expired');
  await waitFor('closed', () => client.state === 'closed');
  assert.equal(srv.conns.length, 4);
  assert.deepEqual(errors.map((e) => [e.code, e.message]), [['unauthorized', 'invalid signature']]);

  // And two 4001 closes in a row end it as well.
  answerTokens(srv);
  await client.connect();
  srv.onRequest = (conn, req) => {
    if (req.op === 'auth') conn.ws.close(4001, 'token expired');
  };
  srv.last.ws.close(4001, 'token expired');
  await waitFor('closed again', () => client.state === 'closed');
  assert.equal(srv.conns.length, 6);
  assert.deepEqual(disc.slice(-2), [
    { code: 4001, reason: 'token expired', willReconnect: true },
    { code: 4001, reason: 'token expired', willReconnect: false }
  ]);
  assert.equal(errors.at(-1).closeCode, 4001);
  await sleep(300);
  assert.equal(srv.conns.length, 6);
});

test('close 4001 "disconnected" (access ended by the server): no reconnect, no new token', async (t) => {
  const tk = tokens('ann');
  const { srv, client, errors } = await setup(t, { getToken: tk.getToken });
  answerTokens(srv);
  await client.connect();
  const disc = [];
  client.on('disconnected', (e) => disc.push(e));
  srv.last.ws.close(4001, 'disconnected');
  await waitFor('closed', () => client.state === 'closed');
  assert.deepEqual(disc, [{ code: 4001, reason: 'disconnected', willReconnect: false }]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'unauthorized');
  assert.equal(errors[0].message, 'disconnected');
  assert.deepEqual(tk.calls, ['connect']);
  await assert.rejects(client.publish('a', 1), { code: 'closed' });
});

test('getToken failing: error, then a retry with backoff', async (t) => {
  let n = 0;
  const { srv, client, errors } = await setup(t, {
    getToken: () => {
      if (++n === 1) throw new Error('login service down');
      return Promise.resolve(fakeJWT({ sub: 'ann', iat: nowSec(), exp: nowSec() + 3600 }));
    }
  });
  answerTokens(srv);
  const info = await client.connect();
  assert.equal(info.user, 'ann');
  assert.equal(errors.length, 1);
  assert.equal(errors[0].message, 'login service down');
  assert.equal(srv.conns.length, 1);
});

test('subscription tokens: opts.token and getSubscriptionToken, asked again on renewal', async (t) => {
  const asked = [];
  const { srv, client } = await setup(t, {
    getSubscriptionToken: (channel) => {
      asked.push(channel);
      return channel.startsWith('private:') ? Promise.resolve(`grant-${channel}-${asked.length}`) : null;
    }
  });
  await client.connect();
  const a = client.subscribe('private:a');
  const b = client.subscribe('public:b');
  const c = client.subscribe('private:c', null, { token: 'static-c' });
  let fn = 0;
  const d = client.subscribe('private:d', null, { token: (ch) => `fn-${ch}-${++fn}` });
  await Promise.all([a.ready, b.ready, c.ready, d.ready]);
  const tokenOf = () => Object.fromEntries(srv.requestsOf('subscribe').filter((r) => r.conn === srv.conns.length).map((r) => [r.channel, r.token]));
  assert.deepEqual(tokenOf(), { 'private:a': 'grant-private:a-1', 'public:b': undefined, 'private:c': 'static-c', 'private:d': 'fn-private:d-1' });
  assert.deepEqual(asked, ['private:a', 'public:b']);

  srv.last.ws.terminate();
  await waitFor('renewed', () => srv.conns.length === 2 && srv.requestsOf('subscribe').filter((r) => r.conn === 2).length === 4);
  assert.deepEqual(tokenOf(), { 'private:a': 'grant-private:a-3', 'public:b': undefined, 'private:c': 'static-c', 'private:d': 'fn-private:d-2' });
});

test('subscribe and publish refused: rejected with unauthorized or forbidden', async (t) => {
  const { srv, client, errors } = await setup(t);
  srv.onRequest = (conn, req) => {
    if (req.op === 'subscribe') conn.fail(req, req.token ? 'forbidden' : 'unauthorized', 'no');
    else if (req.op === 'publish') conn.fail(req, 'forbidden', 'the token does not grant publish on x');
    else conn.reply(req, {});
  };
  await client.connect();
  await assert.rejects(client.subscribe('x').ready, { code: 'unauthorized' });
  await assert.rejects(client.subscribe('y', null, { token: 'bad' }).ready, { code: 'forbidden' });
  await assert.rejects(client.publish('x', 1), { code: 'forbidden', message: 'the token does not grant publish on x' });
  assert.deepEqual(client.subscriptions(), []);
  assert.equal(errors.length, 2, 'each refused subscription is an error event');
  assert.equal(client.state, 'connected');
});

test('unsubscribed: reaches the subscription and the client, and is not renewed', async (t) => {
  const { srv, client } = await setup(t);
  await client.connect();
  const got = [];
  client.on('unsubscribed', (e) => got.push(['client', e]));
  const gone = client.subscribe('gone', { unsubscribed: (e) => got.push(['sub', e]) });
  const kept = client.subscribe('kept');
  await Promise.all([gone.ready, kept.ready]);
  srv.last.send({ op: 'unsubscribed', channel: 'gone', reason: 'permission revoked' });
  await waitFor('the event', () => got.length === 2);
  assert.deepEqual(got, [
    ['sub', { channel: 'gone', reason: 'permission revoked' }],
    ['client', { channel: 'gone', reason: 'permission revoked' }]
  ]);
  assert.equal(gone.state, 'unsubscribed');
  assert.deepEqual(client.subscriptions(), [kept]);
  await gone.unsubscribe(); // a no-op now
  srv.last.ws.terminate();
  await waitFor('renewed', () => srv.conns.length === 2 && client.state === 'connected' && kept.state === 'subscribed');
  assert.deepEqual(srv.requestsOf('subscribe').filter((r) => r.conn === 2).map((r) => r.channel), ['kept']);
  assert.deepEqual(srv.requestsOf('unsubscribe'), []);
});

test('close() stops the refresh timer', async (t) => {
  const tk = tokens('ann', 3600);
  const { srv, client } = await setup(t, { getToken: tk.getToken });
  answerTokens(srv);
  await client.connect();
  client.close();
  await waitFor('no client timers', () => !process.getActiveResourcesInfo().includes('Timeout'));
});
