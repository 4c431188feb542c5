// FakeServer: a scripted native-dialect server (the ws package, in the
// test's process) for the unit tests of switchboard.js.
import { WebSocketServer } from 'ws';

// FakeServer speaks just enough of the native dialect: a welcome on every
// connection, then every request goes to onRequest(conn, req), which by
// default answers {id, ok:true}.
export class FakeServer {
  constructor() {
    this.conns = [];
    this.requests = [];
    this.onRequest = (conn, req) => conn.reply(req, {});
    this.welcome = true;
  }

  async start(port = 0) {
    this.wss = new WebSocketServer({ host: '127.0.0.1', port });
    await new Promise((r) => this.wss.once('listening', r));
    this.port = this.wss.address().port;
    this.wss.on('connection', (ws, httpReq) => {
      const conn = {
        ws,
        url: httpReq.url,
        n: this.conns.length + 1,
        send: (obj) => ws.send(JSON.stringify(obj)),
        reply: (req, fields) => ws.send(JSON.stringify({ id: req.id, ok: true, ...fields })),
        fail: (req, code, message) => ws.send(JSON.stringify({ id: req.id, ok: false, error: { code, message } }))
      };
      this.conns.push(conn);
      ws.on('message', (data) => {
        const req = JSON.parse(data.toString());
        req.conn = conn.n;
        this.requests.push(req);
        this.onRequest(conn, req);
      });
      if (this.welcome) {
        conn.send({ op: 'welcome', version: 1, client: 'c' + conn.n, node: 'n1', ping_interval_ms: 25000 });
      }
    });
    return this;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get last() {
    return this.conns[this.conns.length - 1];
  }

  requestsOf(op) {
    return this.requests.filter((r) => r.op === op);
  }

  async stop() {
    for (const c of this.conns) c.ws.terminate();
    await new Promise((r) => this.wss.close(r));
  }
}

/**
 * fakeJWT returns a token shaped like a JWT carrying claims, with no valid
 * signature: the client reads a token's claims but never checks them.
 */
export function fakeJWT(claims) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.c2lnbmF0dXJl`;
}
