// Three switchboard instances on one Redis, pusher-js clients spread over
// them: one presence channel has one member list everywhere, also after an
// instance is killed; client events and socket_id exclusion cross
// instances; pusher-js reconnects by itself when its instance goes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { serverBinary, freePort, ServerProcess, waitFor } from '../../js/testing/harness.mjs';

const require = createRequire(import.meta.url);
const PusherClient = require('pusher-js');
const PusherServer = require('pusher');

const app = { id: 'app1', key: 'key1', secret: 'a-secret-for-the-pusher-tests' };
let redis;
const instances = [];
const clients = [];
// hooks are the webhook requests received: {valid, events}.
const hooks = [];
let hookServer;

before(async () => {
  // The application's webhook endpoint, checking each request with the SDK.
  const hookPort = await freePort();
  const verifier = new PusherServer({ appId: app.id, key: app.key, secret: app.secret });
  hookServer = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const wh = verifier.webhook({ headers: req.headers, rawBody: body });
      hooks.push({ valid: wh.isValid(), events: wh.isValid() ? wh.getEvents() : [] });
      res.end('ok');
    });
  });
  await new Promise((resolve) => hookServer.listen(hookPort, '127.0.0.1', resolve));
  const dir = mkdtempSync(path.join(tmpdir(), 'pusher-cluster-'));
  const config = path.join(dir, 'switchboard.yaml');
  writeFileSync(config, `pusher:
  apps:
    - id: ${app.id}
      key: ${app.key}
      secret: ${app.secret}
      client_events: true
      webhooks:
        - url: http://127.0.0.1:${hookPort}/hook
`);
  const port = await freePort();
  redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  redis.on('error', (err) => {
    throw new Error(`redis-server: ${err.message}; install it with: apt-get install -y redis-server`);
  });
  const bin = await serverBinary();
  for (let i = 0; i < 3; i++) {
    const s = new ServerProcess(bin, await freePort(), [
      '--redis', `redis://127.0.0.1:${port}/0`, '--presence-ttl', '1500ms', '--config', config,
    ]);
    await waitFor('the instance to start (Redis may still be starting)', async () => {
      try {
        await s.start();
        return true;
      } catch {
        return false;
      }
    }, { total: 20_000, step: 200 });
    instances.push(s);
  }
});

after(async () => {
  hookServer?.close();
  clients.forEach((c) => c.disconnect());
  for (const s of instances) await s.stop();
  redis?.kill('SIGKILL');
});

function sdkOf(inst) {
  return new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1', port: String(inst.port), useTLS: false });
}

// connect opens a pusher-js client on instance inst as user userId. The
// ports of the other instances are its fallbacks: pusher-js reconnects to
// wsHost:wsPort, so each test picks which instance a client goes back to.
async function connect(inst, userId) {
  const sdk = sdkOf(inst);
  const c = new PusherClient(app.key, {
    cluster: 'mt1', wsHost: '127.0.0.1', wsPort: inst.port, forceTLS: false, enabledTransports: ['ws'], disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, cb) =>
        cb(null, sdk.authorizeChannel(socketId, channelName, channelName.startsWith('presence-') ? { user_id: userId, user_info: { name: userId } } : undefined)),
    },
  });
  clients.push(c);
  await waitFor('pusher-js to connect', () => c.connection.state === 'connected');
  return c;
}

function subscribed(c, name) {
  return new Promise((resolve, reject) => {
    const ch = c.subscribe(name);
    ch.bind('pusher:subscription_succeeded', (members) => resolve({ ch, members }));
    ch.bind('pusher:subscription_error', reject);
  });
}

const ids = (members) => Object.keys(members.members).sort();

test('one member list across instances, also after an instance dies', async () => {
  const users = ['ann', 'bob', 'cy'];
  const subs = [];
  for (let i = 0; i < 3; i++) {
    const c = await connect(instances[i], users[i]);
    subs.push({ c, ...(await subscribed(c, 'presence-team')) });
  }
  for (const s of subs) {
    await waitFor(`every member at ${s.members.me.id}`, () => ids(s.ch.members).join() === 'ann,bob,cy');
  }
  // Instance 2 dies with cy on it: her entry expires (--presence-ttl
  // 1.5 s) and every instance that remains tells its clients.
  await instances[2].stop('SIGKILL');
  for (const s of subs.slice(0, 2)) {
    await waitFor(`cy to leave at ${s.members.me.id}`, () => ids(s.ch.members).join() === 'ann,bob', { total: 15_000 });
  }
});

test('client events and socket_id exclusion cross instances', async () => {
  const a = await connect(instances[0], 'a');
  const b = await connect(instances[1], 'b');
  const { ch: cha } = await subscribed(a, 'private-room');
  const { ch: chb } = await subscribed(b, 'private-room');
  const atA = [];
  const atB = [];
  cha.bind_global((event, data) => event.startsWith('pusher') || atA.push([event, data]));
  chb.bind_global((event, data) => event.startsWith('pusher') || atB.push([event, data]));
  cha.trigger('client-hi', { from: 'a' });
  await waitFor('b to get a\'s client event', () => atB.length === 1);
  await sdkOf(instances[1]).trigger('private-room', 'server', 'not for b', { socket_id: b.connection.socket_id });
  await sdkOf(instances[1]).trigger('private-room', 'server', 'for both');
  await waitFor('a to get both server events', () => atA.length === 2);
  await waitFor('b to get the second', () => atB.length === 2);
  assert.deepEqual(atA.map(([e, d]) => [e, d]), [['server', 'not for b'], ['server', 'for both']], 'a got its own client event');
  assert.deepEqual(atB, [['client-hi', { from: 'a' }], ['server', 'for both']]);
});

// hookEvents returns the events of every valid webhook request so far, of
// one channel, as "name[:user_id]".
function hookEvents(channel) {
  return hooks.flatMap((h) => h.events).filter((e) => e.channel === channel).map((e) => (e.user_id ? `${e.name}:${e.user_id}` : e.name));
}

test('webhooks: signed, and each event once for the whole cluster', async () => {
  const a = await connect(instances[0], 'wa');
  const b = await connect(instances[1], 'wb');
  const { ch: cha } = await subscribed(a, 'presence-hooks');
  const { ch: chb } = await subscribed(b, 'presence-hooks');
  await waitFor('occupied and both members', () => hookEvents('presence-hooks').length >= 3);
  chb.trigger('client-ping', { n: 1 });
  await waitFor('the client_event', () => hookEvents('presence-hooks').includes('client_event:wb'));
  a.unsubscribe('presence-hooks');
  b.unsubscribe('presence-hooks');
  await waitFor('vacated', () => hookEvents('presence-hooks').includes('channel_vacated'));
  assert.ok(hooks.every((h) => h.valid), 'a webhook request failed the SDK\'s signature check');
  assert.deepEqual(hookEvents('presence-hooks').sort(), [
    'channel_occupied', 'channel_vacated', 'client_event:wb', 'member_added:wa', 'member_added:wb', 'member_removed:wa', 'member_removed:wb',
  ]);
  const ce = hooks.flatMap((h) => h.events).find((e) => e.name === 'client_event' && e.channel === 'presence-hooks');
  assert.equal(ce.event, 'client-ping');
  assert.deepEqual(JSON.parse(ce.data), { n: 1 });
  assert.equal(ce.socket_id, b.connection.socket_id);
  void cha;
});

// balancer listens on a free port and hands each new connection to the
// first of the live instances, in preference order, that accepts it, as a
// load balancer with health checks would: an instance that was stopped
// gets no new connection.
async function balancer(order) {
  const server = net.createServer((client) => {
    client.pause();
    const targets = order.filter((i) => instances[i].proc).map((i) => instances[i].port);
    const attempt = (k) => {
      if (k >= targets.length) return client.destroy();
      const up = net.connect(targets[k], '127.0.0.1');
      up.once('error', () => attempt(k + 1));
      up.once('connect', () => {
        up.removeAllListeners('error');
        const end = () => {
          client.destroy();
          up.destroy();
        };
        up.on('error', end);
        client.on('error', end);
        up.on('close', end);
        client.on('close', end);
        client.pipe(up);
        up.pipe(client);
        client.resume();
      });
    };
    attempt(0);
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { port, close: () => server.close() };
}

test('pusher-js moves to another instance by itself: a graceful shutdown (4200), then a crash', async (t) => {
  await instances[2].start(); // the first test killed it
  const lb = await balancer([2, 1, 0]);
  t.after(() => lb.close());
  const c = new PusherClient(app.key, {
    cluster: 'mt1', wsHost: '127.0.0.1', wsPort: lb.port, forceTLS: false, enabledTransports: ['ws'], disableStats: true,
  });
  clients.push(c);
  const states = [];
  c.connection.bind('state_change', ({ current }) => states.push(current));
  await waitFor('pusher-js to connect through the balancer', () => c.connection.state === 'connected');
  const got = [];
  const { ch } = await subscribed(c, 'news');
  ch.bind('update', (data) => got.push(data));
  const sdk = sdkOf(instances[0]);
  await sdk.trigger('news', 'update', 'on the first instance');
  await waitFor('the first update', () => got.length === 1);

  for (const [victim, signal, n] of [[2, 'SIGTERM', 2], [1, 'SIGKILL', 3]]) {
    const before = c.connection.socket_id;
    states.length = 0;
    await instances[victim].stop(signal);
    await waitFor(`pusher-js to come back after ${signal}`, () => c.connection.state === 'connected' && c.connection.socket_id !== before, { total: 20_000 });
    if (signal === 'SIGTERM') {
      // 4200: reconnect at once, never "unavailable" nor a given-up state.
      assert.deepEqual(states, ['connecting', 'connected'], 'pusher-js went through other states than an immediate reconnect');
    }
    // pusher-js subscribes again by itself on the new connection; a
    // trigger may race that subscription, so retry until one lands.
    await waitFor(`an update after ${signal}`, async () => {
      if (got.length < n) await sdk.trigger('news', 'update', `after ${signal}`);
      return got.length >= n;
    }, { total: 20_000, step: 300 });
    assert.equal(got.at(-1), `after ${signal}`);
  }
});
