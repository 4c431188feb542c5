// Test harness: builds the real switchboard binary, runs it on free
// loopback ports and kills every process it started, also when a test
// fails or the runner is interrupted.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..', '..');

const children = new Set();
function killAll() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

let built = null;
let buildDir = null;
process.on('exit', () => {
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
});

/**
 * serverBinary returns the path of the switchboard binary: $SWITCHBOARD_BIN
 * when set, else one built now with `go build ./cmd/switchboard` from the
 * repository root (once per test process).
 */
export function serverBinary() {
  if (process.env.SWITCHBOARD_BIN) return Promise.resolve(process.env.SWITCHBOARD_BIN);
  if (built) return built;
  buildDir = mkdtempSync(path.join(tmpdir(), 'switchboard-js-test-'));
  const out = path.join(buildDir, 'switchboard');
  built = new Promise((resolve, reject) => {
    execFile('go', ['build', '-o', out, './cmd/switchboard'], { cwd: repoRoot, timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`go build ./cmd/switchboard failed: ${err.message}\n${stderr}`));
      else resolve(out);
    });
  });
  return built;
}

/** freePort returns a TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * waitFor polls fn (sync or async) every step ms until it returns a truthy
 * value, which it returns; it throws after total ms with what.
 */
export async function waitFor(what, fn, { total = 10_000, step = 25 } = {}) {
  const deadline = Date.now() + total;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${total} ms waiting for ${what}${lastErr ? ': ' + lastErr.message : ''}`);
    }
    await sleep(step);
  }
}

async function healthy(port) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/**
 * ServerProcess is one running switchboard binary on 127.0.0.1:port.
 * start() waits until GET /healthz answers 200.
 */
export class ServerProcess {
  constructor(bin, port, args = []) {
    this.bin = bin;
    this.port = port;
    this.args = args;
    this.proc = null;
    this.output = '';
  }

  get httpURL() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsURL() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start() {
    const proc = spawn(this.bin, ['--addr', `127.0.0.1:${this.port}`, ...this.args], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SWITCHBOARD_LOG_LEVEL: process.env.SWITCHBOARD_LOG_LEVEL || 'warn' }
    });
    this.proc = proc;
    children.add(proc);
    const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    proc.exitPromise = exited;
    exited.then(() => children.delete(proc));
    const keep = (chunk) => {
      this.output = (this.output + chunk).slice(-20_000);
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    let gone = null;
    exited.then((e) => {
      gone = e;
    });
    await waitFor(`switchboard on port ${this.port} to answer /healthz`, async () => {
      if (gone) throw new Error(`server exited (${gone.code ?? gone.signal}):\n${this.output}`);
      return healthy(this.port);
    }, { total: 20_000, step: 50 });
    return this;
  }

  /** stop ends the process with signal (SIGKILL: a crash) and waits for it. */
  async stop(signal = 'SIGKILL') {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await proc.exitPromise;
      clearTimeout(t);
    }
  }
}

/** startServer builds (once) and starts a server on a free port. */
export async function startServer(args = []) {
  const bin = await serverBinary();
  const port = await freePort();
  return new ServerProcess(bin, port, args).start();
}

/**
 * startRedis starts a redis-server on a free loopback port (no persistence,
 * in a temporary directory), waits until it answers PING and returns
 * {port, url, stop}. It is killed with the other processes when the test
 * process exits. A missing redis-server is a failure with the install hint.
 */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'switchboard-js-redis-'));
  const bin = process.env.REDIS_SERVER || 'redis-server';
  const proc = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore'
  });
  children.add(proc);
  let failed = null;
  proc.on('error', (err) => {
    failed = new Error(`${bin}: ${err.message}; the tests need Redis: apt-get install -y redis-server`);
  });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  exited.then(() => children.delete(proc));
  const pong = () =>
    new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      let got = '';
      sock.setTimeout(1000, () => sock.destroy());
      sock.on('error', () => resolve(false));
      sock.on('close', () => resolve(got.startsWith('+PONG')));
      sock.on('connect', () => sock.write('PING\r\n'));
      sock.on('data', (d) => {
        got += d;
        if (got.includes('\r\n')) sock.end();
      });
    });
  await waitFor(`redis-server on port ${port} to answer PING`, async () => {
    if (failed) throw failed;
    return pong();
  }, { total: 10_000, step: 50 });
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** helpText returns the output of `switchboard --help`. */
export async function helpText() {
  const bin = await serverBinary();
  return new Promise((resolve) => {
    execFile(bin, ['--help'], { timeout: 10_000 }, (err, stdout, stderr) => resolve(stdout + stderr));
  });
}

/** chromiumPath returns /usr/bin/chromium or throws with the install hint. */
export function chromiumPath() {
  const p = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(p)) {
    throw new Error(`${p} not found: the browser tests need Chromium; install it with: apt-get install -y chromium`);
  }
  return p;
}

export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic'
];
