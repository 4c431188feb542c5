#!/usr/bin/env node
// chaos-subscribers runs many Switchboard.Client subscribers of one channel
// in one Node process, for the chaos test (e2e/chaos_test.go). Each client
// records what its application would see: every message's data.seq (with
// its position) in arrival order, every gap event, every connection and
// every (re)subscription with a wall-clock timestamp.
//
//   node clients/js/testing/chaos-subscribers.mjs --url ws://127.0.0.1:8080/ws \
//       --channel chaos --count 500
//
// --url may list several endpoints separated by commas; client i uses the
// (i mod n)th. Options --min-reconnect-delay and --max-reconnect-delay (ms)
// are passed to the clients (defaults: the client's own).
//
// Protocol on stdin/stdout, one JSON object per line on stdout:
//   (start)            -> {"type":"ready","clients":N} once every client is subscribed
//   "status [seq]"     -> {"type":"status","clients":N,"subscribed":S,"nodes":{node:count},
//                          "atLeast":K (clients whose newest seq >= seq),"minLast":M}
//   "report"           -> closes every client, then one {"type":"client",...} per client
//                         and {"type":"end"}, and exits
// End of stdin or SIGTERM closes the clients and exits without a report.
// Errors go to stderr; a missing dependency exits with status 2.
//
// A client's report: {"type":"client","i":i,"runs":[[seq,offset,length,epochIndex],...],
// "epochs":[...],"received":n,"gaps":[{"at":n,"from":pos,"to":pos,"t":ms}],
// "conns":[{"t":ms,"node":id}],"disconnects":[{"t":ms,"code":c}],
// "subs":[{"t":ms,"resubscribed":b,"recovered":b,"epoch":e,"offset":o,"node":id}],
// "errors":["..."]}. runs compress the arrival order: a run is length messages
// whose seq and offset both rise by one, in epochs[epochIndex]; "at" counts the
// messages received before the gap event.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const jsDir = path.resolve(here, '..');
if (!existsSync(path.join(jsDir, 'node_modules', 'ws'))) {
  process.stderr.write(`chaos-subscribers: ${path.join(jsDir, 'node_modules', 'ws')} is missing: run \`cd clients/js && npm ci\`\n`);
  process.exit(2);
}
const require = createRequire(import.meta.url);
const WebSocket = require('ws');
const Switchboard = require('../switchboard.js');

function parseArgs(argv) {
  const opts = { url: '', channel: '', count: 0, minReconnectDelay: undefined, maxReconnectDelay: undefined };
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i].split(/=(.*)/s, 2);
    const v = inline !== undefined ? inline : argv[++i];
    switch (k) {
      case '--url':
        opts.url = v;
        break;
      case '--channel':
        opts.channel = v;
        break;
      case '--count':
        opts.count = Number(v);
        break;
      case '--min-reconnect-delay':
        opts.minReconnectDelay = Number(v);
        break;
      case '--max-reconnect-delay':
        opts.maxReconnectDelay = Number(v);
        break;
      default:
        throw new Error(`unknown argument ${k}`);
    }
  }
  if (!opts.url || !opts.channel || !(opts.count > 0)) {
    throw new Error('usage: chaos-subscribers.mjs --url ws://host/ws[,ws://...] --channel NAME --count N');
  }
  return opts;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`chaos-subscribers: ${e.message}\n`);
  process.exit(2);
}

const MAX_ERRORS = 20; // kept per client, to keep memory bounded

// Recorder is one client and what its application saw.
class Recorder {
  constructor(i, url) {
    this.i = i;
    this.client = new Switchboard.Client(url, {
      WebSocket,
      minReconnectDelay: opts.minReconnectDelay,
      maxReconnectDelay: opts.maxReconnectDelay
    });
    this.runs = []; // [seq, offset, length, epochIndex]
    this.epochs = [];
    this.received = 0;
    this.last = -1; // newest seq
    this.gaps = [];
    this.conns = [];
    this.disconnects = [];
    this.subs = [];
    this.errors = [];
    this.subscribed = false;

    const c = this.client;
    c.on('connected', (info) => this.conns.push({ t: Date.now(), node: info.node }));
    c.on('disconnected', (ev) => {
      this.subscribed = false;
      this.disconnects.push({ t: Date.now(), code: ev.code });
    });
    c.on('error', (err) => this.error(err));
    this.sub = c.subscribe(opts.channel, {
      message: (data, meta) => this.message(data, meta),
      subscribed: (info) => {
        this.subscribed = true;
        this.subs.push({
          t: Date.now(),
          resubscribed: info.resubscribed,
          recovered: info.recovered,
          epoch: info.epoch,
          offset: info.offset,
          node: c.nodeId
        });
      },
      gap: (ev) => this.gaps.push({ at: this.received, from: ev.from, to: ev.to, t: Date.now() }),
      unsubscribed: (ev) => this.error(new Error(`unsubscribed by the server: ${ev.reason}`)),
      error: (err) => this.error(err)
    });
    c.connect().catch((err) => this.error(err));
  }

  error(err) {
    if (this.errors.length < MAX_ERRORS) this.errors.push(String((err && err.code) || '') + ' ' + String((err && err.message) || err));
  }

  message(data, meta) {
    const seq = data && typeof data.seq === 'number' ? data.seq : -1;
    const offset = typeof meta.offset === 'number' ? meta.offset : -1;
    let e = this.epochs.length - 1;
    if (e < 0 || this.epochs[e] !== meta.epoch) {
      this.epochs.push(meta.epoch);
      e++;
    }
    const run = this.runs[this.runs.length - 1];
    if (run && run[3] === e && run[0] + run[2] === seq && run[1] + run[2] === offset) {
      run[2]++;
    } else {
      this.runs.push([seq, offset, 1, e]);
    }
    this.received++;
    this.last = seq;
  }

  report() {
    return {
      type: 'client',
      i: this.i,
      runs: this.runs,
      epochs: this.epochs,
      received: this.received,
      gaps: this.gaps,
      conns: this.conns,
      disconnects: this.disconnects,
      subs: this.subs,
      errors: this.errors
    };
  }
}

const urls = opts.url.split(',');
const recorders = [];
for (let i = 0; i < opts.count; i++) recorders.push(new Recorder(i, urls[i % urls.length]));

function write(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function closeAll() {
  for (const r of recorders) r.client.close();
}

Promise.all(recorders.map((r) => r.sub.ready)).then(
  () => write({ type: 'ready', clients: recorders.length }),
  (err) => {
    process.stderr.write(`chaos-subscribers: a subscription was refused: ${err.message}\n`);
    closeAll();
    process.exit(1);
  }
);

function status(target) {
  let subscribed = 0;
  let atLeast = 0;
  let minLast = Infinity;
  const nodes = {};
  for (const r of recorders) {
    const c = r.client;
    if (r.subscribed && c.state === 'connected' && r.sub.state === 'subscribed') subscribed++;
    if (c.state === 'connected') nodes[c.nodeId] = (nodes[c.nodeId] || 0) + 1;
    if (r.last >= target) atLeast++;
    minLast = Math.min(minLast, r.last);
  }
  return { type: 'status', clients: recorders.length, subscribed, nodes, atLeast, minLast };
}

let reporting = false;
const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on('line', (line) => {
  if (reporting) return;
  const [cmd, arg] = line.trim().split(/\s+/);
  switch (cmd) {
    case 'status':
      write(status(arg === undefined ? Infinity : Number(arg)));
      break;
    case 'report':
      reporting = true;
      closeAll();
      for (const r of recorders) write(r.report());
      process.stdout.write(JSON.stringify({ type: 'end' }) + '\n', () => process.exit(0));
      break;
    case '':
      break;
    default:
      process.stderr.write(`chaos-subscribers: unknown command ${JSON.stringify(line)}\n`);
  }
});
rl.on('close', () => {
  if (reporting) return; // exits once the report is written
  closeAll();
  process.exit(0);
});
process.on('SIGTERM', () => {
  closeAll();
  process.exit(0);
});
