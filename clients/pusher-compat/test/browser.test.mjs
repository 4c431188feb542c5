// pusher-js (its browser build with encryption) and Laravel Echo, in
// headless Chromium, against a switchboard binary: a page served by a
// small app server that signs channel authorizations with the `pusher`
// server SDK, as a Laravel or Express back end does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { serverBinary, freePort, ServerProcess, waitFor, chromiumPath, chromiumArgs } from '../../js/testing/harness.mjs';

const require = createRequire(import.meta.url);
const PusherServer = require('pusher');

const app = { id: 'app1', key: 'key1', secret: 'a-secret-for-the-pusher-tests' };
const masterKey = randomBytes(32).toString('base64');
let server;
let appServer;
let appURL;
let sdk;
let browser;

const scripts = {
  '/pusher.js': require.resolve('pusher-js/dist/web/pusher-with-encryption.js'),
  '/echo.js': require.resolve('laravel-echo').replace(/echo\.common\.js$/, 'echo.iife.js'),
};

before(async () => {
  const bin = await serverBinary();
  server = new ServerProcess(bin, await freePort(), [
    '--pusher-app-id', app.id, '--pusher-key', app.key, '--pusher-secret', app.secret, '--pusher-client-events',
  ]);
  await server.start();
  sdk = new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1', port: String(server.port), useTLS: false, encryptionMasterKeyBase64: masterKey });

  // The application: its page, the client libraries, and its channel
  // authorization endpoint (pusher-js and Echo POST socket_id and
  // channel_name; the user is named by the page in a header).
  appServer = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (scripts[url.pathname]) {
      res.setHeader('Content-Type', 'text/javascript');
      res.end(readFileSync(scripts[url.pathname]));
      return;
    }
    if (req.method === 'POST') {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        const form = new URLSearchParams(body);
        const channel = form.get('channel_name');
        const user = req.headers['x-user'] || 'guest';
        const presence = channel.startsWith('presence-') ? { user_id: user, user_info: { name: user } } : undefined;
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify(sdk.authorizeChannel(form.get('socket_id'), channel, presence)));
      });
      return;
    }
    res.setHeader('Content-Type', 'text/html');
    res.end('<!doctype html><title>app</title><script src="/pusher.js"></script><script src="/echo.js"></script><body>app</body>');
  });
  const port = await freePort();
  await new Promise((resolve) => appServer.listen(port, '127.0.0.1', resolve));
  appURL = `http://127.0.0.1:${port}/`;
  browser = await chromium.launch({ executablePath: chromiumPath(), args: chromiumArgs });
});

after(async () => {
  await browser?.close();
  appServer?.close();
  await server?.stop();
});

async function openPage(t) {
  const ctx = await browser.newContext();
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  t.after(() => assert.deepEqual(errors, [], 'the page threw'));
  await page.goto(appURL);
  await page.evaluate(() => (window.got = []));
  return page;
}

const got = (page) => page.evaluate(() => window.got);

test('pusher-js in Chromium: public, private, presence and encrypted channels', async (t) => {
  const page = await openPage(t);
  await page.evaluate(({ key, port }) => {
    window.pusher = new Pusher(key, {
      cluster: 'mt1', wsHost: '127.0.0.1', wsPort: port, forceTLS: false, enabledTransports: ['ws'], disableStats: true,
      channelAuthorization: { endpoint: '/pusher/auth', transport: 'ajax', headers: { 'X-User': 'ann' } },
    });
    for (const name of ['my-channel', 'private-orders', 'presence-room', 'private-encrypted-vault']) {
      const ch = window.pusher.subscribe(name);
      ch.bind('pusher:subscription_succeeded', () => window.got.push(['subscribed', name]));
      ch.bind('pusher:subscription_error', (e) => window.got.push(['error', name, e]));
      ch.bind('news', (data) => window.got.push([name, data]));
    }
  }, { key: app.key, port: server.port });
  await waitFor('four subscriptions', async () => (await got(page)).filter((g) => g[0] === 'subscribed').length === 4);
  for (const name of ['my-channel', 'private-orders', 'presence-room', 'private-encrypted-vault']) {
    await sdk.trigger(name, 'news', { on: name });
  }
  await waitFor('the four events', async () => (await got(page)).filter((g) => g[0] !== 'subscribed').length === 4);
  const events = (await got(page)).filter((g) => g[0] !== 'subscribed');
  for (const [name, data] of events) {
    assert.deepEqual(data, { on: name }, `${name} (the encrypted one decrypted by the page with the shared secret)`);
  }
});

test('Laravel Echo with the pusher broadcaster: listen, presence here/joining, whisper', async (t) => {
  const ann = await openPage(t);
  const bob = await openPage(t);
  const echo = (page, user) =>
    page.evaluate(({ key, port, user }) => {
      const EchoClass = Echo.default || Echo.Echo || Echo;
      window.echo = new EchoClass({
        broadcaster: 'pusher', key, cluster: 'mt1', wsHost: '127.0.0.1', wsPort: port, forceTLS: false,
        enabledTransports: ['ws'], disableStats: true, authEndpoint: '/broadcasting/auth', auth: { headers: { 'X-User': user } },
      });
      window.echo.channel('orders').listen('.OrderShipped', (e) => window.got.push(['shipped', e]));
      window.echo.join('lobby')
        .here((users) => window.got.push(['here', users.map((u) => u.name).sort()]))
        .joining((u) => window.got.push(['joining', u.name]))
        .leaving((u) => window.got.push(['leaving', u.name]))
        .listenForWhisper('typing', (e) => window.got.push(['whisper', e]));
    }, { key: app.key, port: server.port, user });
  await echo(ann, 'ann');
  await waitFor('ann to be here', async () => (await got(ann)).some((g) => g[0] === 'here'));
  await echo(bob, 'bob');
  await waitFor('bob to see both', async () => (await got(bob)).some((g) => g[0] === 'here' && g[1].join() === 'ann,bob'));
  await waitFor('ann to see bob join', async () => (await got(ann)).some((g) => g[0] === 'joining' && g[1] === 'bob'));
  await bob.evaluate(() => window.echo.join('lobby').whisper('typing', { who: 'bob' }));
  await waitFor('ann to get the whisper', async () => (await got(ann)).some((g) => g[0] === 'whisper' && g[1].who === 'bob'));
  await sdk.trigger('orders', 'OrderShipped', { id: 42 });
  for (const page of [ann, bob]) {
    await waitFor('the broadcast event', async () => (await got(page)).some((g) => g[0] === 'shipped' && g[1].id === 42));
  }
  await bob.evaluate(() => window.echo.disconnect());
  await waitFor('ann to see bob leave', async () => (await got(ann)).some((g) => g[0] === 'leaving' && g[1] === 'bob'));
});
