// Switchboard's Pusher dialect, judged by the real clients: pusher-js (the
// Node build) for the WebSocket side and the `pusher` server SDK for the
// HTTP API, both unchanged, pointed at a switchboard binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { serverBinary, freePort, ServerProcess, waitFor } from '../../js/testing/harness.mjs';

const require = createRequire(import.meta.url);
const PusherClient = require('pusher-js');
const PusherServer = require('pusher');

const app = { id: 'app1', key: 'key1', secret: 'a-secret-for-the-pusher-tests' };
let server;
let sdk;

before(async () => {
  const bin = await serverBinary();
  server = new ServerProcess(bin, await freePort(), [
    '--pusher-app-id', app.id, '--pusher-key', app.key, '--pusher-secret', app.secret, '--pusher-client-events',
  ]);
  await server.start();
  sdk = new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1', port: String(server.port), useTLS: false });
});

after(async () => {
  await server?.stop();
});

const clients = [];
after(() => clients.forEach((c) => c.disconnect()));

// connect returns a pusher-js client of the app, connected; userId, when
// given, is who it is in presence channels and sign-in.
async function connect({ key = app.key, userId, userInfo } = {}) {
  const c = new PusherClient(key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, cb) => {
        const data = channelName.startsWith('presence-') ? { user_id: userId, user_info: userInfo } : undefined;
        cb(null, sdk.authorizeChannel(socketId, channelName, data));
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, cb) => cb(null, sdk.authenticateUser(socketId, { id: userId, name: userInfo?.name })),
    },
  });
  clients.push(c);
  await waitFor('pusher-js to connect', () => c.connection.state === 'connected' || (c.connection.state === 'failed' && Promise.reject(new Error('failed'))));
  return c;
}

// subscribed subscribes and waits for pusher:subscription_succeeded (its
// data is returned) or throws on pusher:subscription_error.
function subscribed(c, name) {
  return new Promise((resolve, reject) => {
    const ch = c.subscribe(name);
    ch.bind('pusher:subscription_succeeded', (data) => resolve({ ch, data }));
    ch.bind('pusher:subscription_error', (err) => reject(Object.assign(new Error(`subscription_error on ${name}`), { data: err })));
  });
}

// collect gathers the events of one name on a channel.
function collect(ch, event) {
  const got = [];
  ch.bind(event, (data, meta) => got.push({ data, meta }));
  return got;
}

test('public channel: a server SDK trigger reaches pusher-js', async () => {
  const c = await connect();
  const { ch } = await subscribed(c, 'my-channel');
  const got = collect(ch, 'my-event');
  await sdk.trigger('my-channel', 'my-event', { message: 'hello world' });
  await waitFor('the event', () => got.length === 1);
  assert.deepEqual(got[0].data, { message: 'hello world' });
});

test('private channel: authorized by the SDK signature; a bad one is refused', async () => {
  const c = await connect();
  const { ch } = await subscribed(c, 'private-orders');
  const got = collect(ch, 'paid');
  await sdk.trigger('private-orders', 'paid', { id: 7 });
  await waitFor('the event', () => got.length === 1);
  assert.deepEqual(got[0].data, { id: 7 });

  const forger = new PusherClient(app.key, {
    cluster: 'mt1', wsHost: '127.0.0.1', wsPort: server.port, forceTLS: false, enabledTransports: ['ws'], disableStats: true,
    channelAuthorization: { customHandler: (_, cb) => cb(null, { auth: `${app.key}:${'0'.repeat(64)}` }) },
  });
  clients.push(forger);
  await assert.rejects(subscribed(forger, 'private-orders'), (err) => err.data?.status === 401 && err.data?.type === 'AuthError');
});

test('socket_id excludes the sender of a trigger', async () => {
  const a = await connect();
  const b = await connect();
  const ga = collect((await subscribed(a, 'news')).ch, 'flash');
  const gb = collect((await subscribed(b, 'news')).ch, 'flash');
  await sdk.trigger('news', 'flash', 'first', { socket_id: a.connection.socket_id });
  await sdk.trigger('news', 'flash', 'second');
  await waitFor('b to get both', () => gb.length === 2);
  await waitFor('a to get the second', () => ga.length === 1);
  assert.deepEqual(ga.map((e) => e.data), ['second'], 'the excluded socket got the first event');
});

test('batch triggers and channel queries', async () => {
  const c = await connect({ userId: 'u1', userInfo: { name: 'Ann' } });
  const { ch } = await subscribed(c, 'presence-lobby');
  const got = collect(ch, 'tick');
  await sdk.triggerBatch([
    { channel: 'presence-lobby', name: 'tick', data: '1' },
    { channel: 'presence-lobby', name: 'tick', data: '2' },
  ]);
  await waitFor('both batched events', () => got.length === 2);
  assert.deepEqual(got.map((e) => e.data), [1, 2]);

  const list = await (await sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })).json();
  assert.deepEqual(list.channels['presence-lobby'], { user_count: 1 });
  const one = await (await sdk.get({ path: '/channels/presence-lobby', params: { info: 'user_count,subscription_count' } })).json();
  assert.deepEqual(one, { occupied: true, user_count: 1, subscription_count: 1 });
  const users = await (await sdk.get({ path: '/channels/presence-lobby/users' })).json();
  assert.deepEqual(users, { users: [{ id: 'u1' }] });
  const empty = await (await sdk.get({ path: '/channels/nobody-here' })).json();
  assert.deepEqual(empty, { occupied: false });
});

test('presence: members counted once per user, added and removed', async () => {
  const ann = await connect({ userId: 'ann', userInfo: { name: 'Ann' } });
  const { ch: annCh, data: members } = await subscribed(ann, 'presence-room');
  assert.equal(members.count, 1);
  assert.equal(members.me.id, 'ann');
  const added = collect(annCh, 'pusher:member_added');
  const removed = collect(annCh, 'pusher:member_removed');

  const bob1 = await connect({ userId: 'bob', userInfo: { name: 'Bob' } });
  const { data: seen } = await subscribed(bob1, 'presence-room');
  assert.equal(seen.count, 2);
  assert.deepEqual(seen.get('ann').info, { name: 'Ann' });
  await waitFor('member_added for bob', () => added.length === 1);
  assert.deepEqual(added[0].data, { id: 'bob', info: { name: 'Bob' } });

  // Bob in a second tab: no second member.
  const bob2 = await connect({ userId: 'bob', userInfo: { name: 'Bob' } });
  const { data: seen2 } = await subscribed(bob2, 'presence-room');
  assert.equal(seen2.count, 2);
  bob1.disconnect();
  // The barrier: a trigger after bob1 left arrives after any event its
  // leaving could have caused.
  const ticks = collect(annCh, 'barrier');
  await sdk.trigger('presence-room', 'barrier', '1');
  await waitFor('the barrier', () => ticks.length === 1);
  assert.equal(removed.length, 0, 'bob left while a tab of his stayed');
  bob2.disconnect();
  await waitFor('member_removed for bob', () => removed.length === 1);
  assert.deepEqual(removed[0].data, { id: 'bob', info: { name: 'Bob' } });
  assert.equal(added.length, 1);
});

test('client events go to the others on the channel, never back', async () => {
  const a = await connect({ userId: 'a' });
  const b = await connect({ userId: 'b' });
  const { ch: cha } = await subscribed(a, 'private-chat');
  const { ch: chb } = await subscribed(b, 'private-chat');
  const ga = collect(cha, 'client-typing');
  const gb = collect(chb, 'client-typing');
  assert.equal(cha.trigger('client-typing', { who: 'a' }), true);
  await waitFor('b to get the client event', () => gb.length === 1);
  assert.deepEqual(gb[0].data, { who: 'a' });
  const barrier = collect(cha, 'barrier');
  await sdk.trigger('private-chat', 'barrier', '1');
  await waitFor('the barrier at a', () => barrier.length === 1);
  assert.equal(ga.length, 0, 'the sender got its own client event');

  // On a presence channel the event carries the sender's user id.
  const { ch: pa } = await subscribed(a, 'presence-chat');
  const { ch: pb } = await subscribed(b, 'presence-chat');
  const pg = collect(pb, 'client-wave');
  pa.trigger('client-wave', {});
  await waitFor('the presence client event', () => pg.length === 1);
  assert.equal(pg[0].meta.user_id, 'a');
});

test('cache channels: a miss, then the last event on subscribe', async () => {
  const a = await connect();
  const miss = new Promise((resolve) => a.subscribe('cache-prices').bind('pusher:cache_miss', resolve));
  await miss;
  await sdk.trigger('cache-prices', 'price', { eur: 1 });
  await sdk.trigger('cache-prices', 'price', { eur: 2 });
  const b = await connect();
  const ch = b.subscribe('cache-prices');
  const got = collect(ch, 'price');
  await waitFor('the cached event', () => got.length === 1);
  assert.deepEqual(got[0].data, { eur: 2 });
});

test('sign-in, server-to-user events and terminating a user', async () => {
  const c = await connect({ userId: 'user-9', userInfo: { name: 'Nine' } });
  c.signin();
  await c.user.signinDonePromise;
  assert.equal(c.user.user_data?.id, 'user-9', 'signed in');
  const got = [];
  c.user.bind('notice', (data) => got.push(data));
  await waitFor('the user channel', async () => {
    await sdk.sendToUser('user-9', 'notice', { text: 'for you' });
    return got.length > 0;
  });
  assert.deepEqual(got[0], { text: 'for you' });
  const errors = [];
  c.connection.bind('error', (e) => errors.push(e));
  await sdk.terminateUserConnections('user-9');
  await waitFor('the connection to end', () => c.connection.state !== 'connected');
  assert.ok(errors.some((e) => e.data?.code >= 4000 && e.data?.code < 4100), `pusher-js was told not to reconnect: ${JSON.stringify(errors)}`);
});

test('an unknown app key is refused with 4001 and pusher-js gives up', async () => {
  const c = new PusherClient('no-such-key', { cluster: 'mt1', wsHost: '127.0.0.1', wsPort: server.port, forceTLS: false, enabledTransports: ['ws'], disableStats: true });
  clients.push(c);
  const errors = [];
  const states = [];
  c.connection.bind('error', (e) => errors.push(e));
  c.connection.bind('state_change', (s) => states.push(s.current));
  // 4000-4099 is "refused": pusher-js disconnects and does not retry.
  await waitFor('pusher-js to give up', () => c.connection.state === 'disconnected' && errors.length > 0);
  assert.ok(errors.some((e) => e.error?.data?.code === 4001), JSON.stringify(errors));
  assert.deepEqual(states, ['disconnected']);
});

test('a request signed with the wrong secret is refused with 401', async () => {
  const wrong = new PusherServer({ appId: app.id, key: app.key, secret: 'not-the-secret', host: '127.0.0.1', port: String(server.port), useTLS: false });
  await assert.rejects(wrong.trigger('my-channel', 'x', {}), (err) => err.status === 401);
});
