/*!
 * switchboard.js: the JavaScript client of Switchboard's native WebSocket
 * dialect (PROTOCOL.md, version 1). One file, no dependencies.
 *
 * Browser:  <script src="/switchboard.js"></script>  ->  window.Switchboard
 * Node 20:  const Switchboard = require('./switchboard.js');
 *           new Switchboard.Client(url, { WebSocket: require('ws') });
 *
 * See README.md for the API.
 */
(function (root, factory) {
  'use strict';
  if (typeof module === 'object' && module && module.exports) {
    module.exports = factory();
  } else {
    root.Switchboard = factory();
  }
})(typeof globalThis !== 'undefined' ? globalThis : typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  var VERSION = '0.1.0';
  var PROTOCOL_VERSION = 1;

  // WebSocket readyState values (the same in browsers and in ws).
  var WS_OPEN = 1;

  // Request failures worth retrying for a subscription (after a delay).
  var RETRYABLE = { unavailable: true, internal: true, rate_limited: true, timeout: true };

  var CHANNEL_RE = /^[A-Za-z0-9_\-=@,.;:]{1,200}$/;

  var DEFAULTS = {
    WebSocket: null, // constructor; default: the global WebSocket
    token: null, // string, or function returning a string (or a Promise of one)
    minReconnectDelay: 500, // ms; base of the exponential backoff
    maxReconnectDelay: 20000, // ms; cap of the exponential backoff
    restartReconnectDelay: 1000, // ms; upper bound of the random delay after close 1012
    requestTimeout: 10000, // ms; also bounds connecting and waiting for the welcome
    heartbeat: true // send a ping when the connection was silent for one ping interval
  };

  // ---------------------------------------------------------------------
  // Errors

  /**
   * SwitchboardError is the error of a failed request. code is one of the
   * protocol's error codes (bad_request, unauthorized, forbidden, not_found,
   * too_large, rate_limited, limit_exceeded, unavailable, internal) or one of
   * the client's own: timeout, disconnected, closed.
   */
  function SwitchboardError(code, message, reply) {
    var err = new Error(message || code);
    Object.setPrototypeOf(err, SwitchboardError.prototype);
    err.name = 'SwitchboardError';
    err.code = code;
    if (reply !== undefined) err.reply = reply;
    return err;
  }
  SwitchboardError.prototype = Object.create(Error.prototype, {
    constructor: { value: SwitchboardError, writable: true, configurable: true }
  });

  // ---------------------------------------------------------------------
  // Emitter: a minimal event emitter shared by Client and Subscription.

  function Emitter() {
    this._listeners = Object.create(null);
  }

  /** on registers fn for event name and returns this. */
  Emitter.prototype.on = function (name, fn) {
    if (typeof fn !== 'function') throw new TypeError('switchboard: listener must be a function');
    (this._listeners[name] || (this._listeners[name] = [])).push(fn);
    return this;
  };

  /** off removes fn from event name (all listeners of name when fn is omitted). */
  Emitter.prototype.off = function (name, fn) {
    var list = this._listeners[name];
    if (!list) return this;
    if (!fn) {
      delete this._listeners[name];
      return this;
    }
    var i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
    return this;
  };

  /** once registers fn for the next event name only. */
  Emitter.prototype.once = function (name, fn) {
    var self = this;
    function wrapper() {
      self.off(name, wrapper);
      return fn.apply(this, arguments);
    }
    return this.on(name, wrapper);
  };

  Emitter.prototype._emit = function (name) {
    var list = this._listeners[name];
    if (!list || list.length === 0) return false;
    var args = Array.prototype.slice.call(arguments, 1);
    list = list.slice();
    for (var i = 0; i < list.length; i++) {
      try {
        list[i].apply(this, args);
      } catch (e) {
        // A listener's exception must not break the client's state machine.
        reportListenerError(e);
      }
    }
    return true;
  };

  function reportListenerError(e) {
    setTimeout(function () {
      throw e;
    }, 0);
  }

  function inherit(Child, Parent) {
    Child.prototype = Object.create(Parent.prototype, {
      constructor: { value: Child, writable: true, configurable: true }
    });
  }

  function samePosition(a, b) {
    return !!a && !!b && a.epoch === b.epoch && a.offset === b.offset;
  }

  function hasPosition(obj) {
    return obj && typeof obj.epoch === 'string' && typeof obj.offset === 'number';
  }

  // ---------------------------------------------------------------------
  // Subscription

  /**
   * Subscription is one channel the client is subscribed to. Made by
   * client.subscribe; it stays subscribed across reconnects until
   * unsubscribe(). Events: subscribed, message, join, leave, gap,
   * unsubscribed, error.
   */
  function Subscription(client, channel) {
    Emitter.call(this);
    this.client = client;
    this.channel = channel;
    // state: 'subscribing' | 'subscribed' | 'unsubscribed'
    this.state = 'subscribing';
    // position is the last seen {epoch, offset} on channels with history, else null.
    this.position = null;
    this._conn = null; // connection generation the subscribe reply came on
    this._sentOn = 0; // connection generation a subscribe request was sent on
    this._retryTimer = null;
    this._retries = 0;
    this._readyDone = false;
    var self = this;
    this.ready = new Promise(function (resolve, reject) {
      self._resolveReady = resolve;
      self._rejectReady = reject;
    });
    // Nobody has to await ready; an unhandled rejection must not crash Node.
    this.ready.catch(function () {});
  }
  inherit(Subscription, Emitter);

  /**
   * unsubscribe leaves the channel. It returns a Promise that resolves once
   * the server confirmed (at once when not connected). No message event
   * fires after it is called.
   */
  Subscription.prototype.unsubscribe = function () {
    return this.client._unsubscribe(this);
  };

  /** publish is client.publish(this.channel, data). */
  Subscription.prototype.publish = function (data) {
    return this.client.publish(this.channel, data);
  };

  /** history is client.history(this.channel, opts). */
  Subscription.prototype.history = function (opts) {
    return this.client.history(this.channel, opts);
  };

  /** presence is client.presence(this.channel). */
  Subscription.prototype.presence = function () {
    return this.client.presence(this.channel);
  };

  Subscription.prototype._settleReady = function (err, value) {
    if (this._readyDone) return;
    this._readyDone = true;
    if (err) this._rejectReady(err);
    else this._resolveReady(value);
  };

  Subscription.prototype._clearRetry = function () {
    if (this._retryTimer !== null) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
  };

  // ---------------------------------------------------------------------
  // Client

  /**
   * Client is one connection to a switchboard node's native endpoint (/ws),
   * kept open across failures until close(). Events: connected,
   * disconnected, state, error.
   *
   * url: 'ws://host:port/ws' (an http(s) URL is turned into ws(s)).
   * opts: see DEFAULTS above and README.md.
   */
  function Client(url, opts) {
    Emitter.call(this);
    if (typeof url !== 'string' || !url) throw new TypeError('switchboard: url is required');
    this.url = url.replace(/^http(s?):\/\//i, 'ws$1://');
    this.options = {};
    opts = opts || {};
    for (var k in DEFAULTS) {
      this.options[k] = opts[k] !== undefined ? opts[k] : DEFAULTS[k];
    }
    this._WebSocket = this.options.WebSocket || (typeof WebSocket !== 'undefined' ? WebSocket : null);
    if (!this._WebSocket) {
      throw new TypeError('switchboard: no WebSocket implementation: pass { WebSocket: require("ws") }');
    }

    // state: 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'closed'
    this.state = 'disconnected';
    this.clientId = null; // from the welcome frame
    this.nodeId = null;
    this.pingInterval = 0;
    this.protocolVersion = 0;

    this._ws = null;
    this._gen = 0; // connection generation, +1 per socket
    this._nextId = 1;
    this._pending = new Map(); // id -> request, sent and awaiting a reply
    this._queue = []; // requests waiting for a connection
    this._subs = new Map(); // channel -> Subscription
    this._attempt = 0;
    this._reconnectTimer = null;
    this._connectTimer = null;
    this._heartbeatTimer = null;
    this._lastSeen = 0;
    this._connectWaiters = [];
    this._wantOpen = false;
  }
  inherit(Client, Emitter);

  /**
   * connect opens the connection (and keeps reopening it after failures).
   * It returns a Promise of the welcome {client, node, version,
   * pingInterval} of the first successful connection; it rejects when
   * close() is called first or the server refuses the token (4001).
   */
  Client.prototype.connect = function () {
    var self = this;
    var p = new Promise(function (resolve, reject) {
      if (self.state === 'connected') {
        resolve(self._welcomeInfo());
        return;
      }
      self._connectWaiters.push({ resolve: resolve, reject: reject });
    });
    if (!this._wantOpen) {
      this._wantOpen = true;
      this._attempt = 0;
      this._open();
    }
    return p;
  };

  /**
   * close closes the connection for good (no reconnect) and stops every
   * timer. Requests not answered yet reject with code 'closed'.
   * Subscriptions are kept: a later connect() subscribes them again.
   */
  Client.prototype.close = function () {
    this._wantOpen = false;
    this._clearTimers();
    var ws = this._ws;
    var wasUp = this.state === 'connected';
    this._ws = null;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, 'client closed');
      } catch (e) {
        /* closing a socket that is still connecting may throw; it is gone either way */
      }
    }
    this._failPending('closed', 'client closed');
    this._failQueue('closed', 'client closed');
    this._subs.forEach(function (sub) {
      sub._clearRetry();
      if (sub.state === 'subscribed') sub.state = 'subscribing';
    });
    this._rejectConnectWaiters(SwitchboardError('closed', 'client closed'));
    this._setState('closed');
    if (wasUp) {
      this._emit('disconnected', { code: 1000, reason: 'client closed', willReconnect: false });
    }
  };

  /**
   * subscribe joins channel and returns its Subscription at once; the
   * subscription goes live when the server replies (sub.ready resolves,
   * 'subscribed' fires) and is renewed after every reconnect. handlers is
   * a message function or an object {message, join, leave, subscribed,
   * gap, unsubscribed, error}. Subscribing twice to one channel throws.
   */
  Client.prototype.subscribe = function (channel, handlers) {
    if (typeof channel !== 'string') throw new TypeError('switchboard: channel must be a string');
    if (this._subs.has(channel)) {
      throw SwitchboardError('bad_request', 'switchboard: already subscribed to ' + channel);
    }
    var sub = new Subscription(this, channel);
    if (typeof handlers === 'function') {
      sub.on('message', handlers);
    } else if (handlers) {
      for (var name in handlers) {
        if (typeof handlers[name] === 'function') sub.on(name, handlers[name]);
      }
    }
    this._subs.set(channel, sub);
    if (this.state === 'connected') this._sendSubscribe(sub);
    return sub;
  };

  /** getSubscription returns the Subscription of channel, or null. */
  Client.prototype.getSubscription = function (channel) {
    return this._subs.get(channel) || null;
  };

  /** subscriptions returns every current Subscription. */
  Client.prototype.subscriptions = function () {
    return Array.from(this._subs.values());
  };

  /** unsubscribe is getSubscription(channel).unsubscribe(); it resolves at once when not subscribed. */
  Client.prototype.unsubscribe = function (channel) {
    var sub = typeof channel === 'string' ? this._subs.get(channel) : channel;
    if (!sub) return Promise.resolve();
    return this._unsubscribe(sub);
  };

  /**
   * publish sends data (any JSON value) to channel. It resolves with the
   * reply's position {epoch, offset} ({} on channels without history).
   * While disconnected the request waits for the connection up to
   * requestTimeout, then rejects with code 'unavailable'; if the connection
   * drops after it was sent it rejects with 'disconnected' (it may or may
   * not have been published). opts.idempotencyKey makes a retry safe: the
   * server publishes a message at most once per key and channel (for five
   * minutes), and answers a repeat with the first publish's position.
   */
  Client.prototype.publish = function (channel, data, opts) {
    if (data === undefined) data = null;
    var fields = { channel: channel, data: data };
    if (opts && opts.idempotencyKey !== undefined) fields.idempotency_key = String(opts.idempotencyKey);
    return this._call('publish', fields).then(positionOf);
  };

  /**
   * history resolves with {epoch, offset, messages: [{offset, data}]}, the
   * newest opts.limit messages oldest first. It rejects (e.g. with
   * bad_request or forbidden) where the channel keeps no history.
   */
  Client.prototype.history = function (channel, opts) {
    var fields = { channel: channel };
    if (opts && opts.limit !== undefined) fields.limit = opts.limit;
    return this._call('history', fields).then(function (reply) {
      var out = positionOf(reply);
      out.messages = Array.isArray(reply.messages) ? reply.messages : [];
      return out;
    });
  };

  /** presence resolves with the channel's clients: [{client, user}]. */
  Client.prototype.presence = function (channel) {
    return this._call('presence', { channel: channel }).then(function (reply) {
      return Array.isArray(reply.clients) ? reply.clients : [];
    });
  };

  /** ping resolves with the round-trip time in milliseconds. */
  Client.prototype.ping = function () {
    var start = Date.now();
    return this._call('ping', {}).then(function () {
      return Date.now() - start;
    });
  };

  function positionOf(reply) {
    var out = {};
    if (reply && reply.epoch !== undefined) out.epoch = reply.epoch;
    if (reply && reply.offset !== undefined) out.offset = reply.offset;
    return out;
  }

  Client.prototype._welcomeInfo = function () {
    return {
      client: this.clientId,
      node: this.nodeId,
      version: this.protocolVersion,
      pingInterval: this.pingInterval
    };
  };

  Client.prototype._setState = function (state) {
    if (this.state === state) return;
    var old = this.state;
    this.state = state;
    this._emit('state', state, old);
  };

  Client.prototype._clearTimers = function () {
    if (this._reconnectTimer !== null) clearTimeout(this._reconnectTimer);
    if (this._connectTimer !== null) clearTimeout(this._connectTimer);
    if (this._heartbeatTimer !== null) clearInterval(this._heartbeatTimer);
    this._reconnectTimer = this._connectTimer = this._heartbeatTimer = null;
  };

  Client.prototype._rejectConnectWaiters = function (err) {
    var waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (var i = 0; i < waiters.length; i++) waiters[i].reject(err);
  };

  function detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    // Keep an error handler: ws (Node) emits 'error' when a connecting
    // socket is closed, and an unhandled 'error' would crash the process.
    ws.onerror = function () {};
  }

  // _open starts one connection attempt.
  Client.prototype._open = function () {
    var self = this;
    this._reconnectTimer = null;
    if (!this._wantOpen) return;
    this._setState(this._attempt === 0 && this.state !== 'reconnecting' ? 'connecting' : 'reconnecting');
    var token = this.options.token;
    var gen = ++this._gen;
    Promise.resolve(typeof token === 'function' ? token() : token).then(
      function (tok) {
        if (gen !== self._gen || !self._wantOpen) return;
        self._openSocket(gen, tok);
      },
      function (err) {
        if (gen !== self._gen || !self._wantOpen) return;
        self._emit('error', err);
        self._scheduleReconnect(null);
      }
    );
  };

  Client.prototype._openSocket = function (gen, token) {
    var self = this;
    var url = this.url;
    if (token) url += (url.indexOf('?') >= 0 ? '&' : '?') + 'token=' + encodeURIComponent(token);
    var ws;
    try {
      ws = new this._WebSocket(url);
    } catch (e) {
      this._emit('error', e);
      this._scheduleReconnect(null);
      return;
    }
    this._ws = ws;
    // Bound connecting + waiting for the welcome.
    this._connectTimer = setTimeout(function () {
      self._connectTimer = null;
      if (self._ws === ws) self._drop(ws, 4000, 'connect timeout');
    }, this.options.requestTimeout);

    ws.onopen = function () {
      if (self._ws !== ws) return;
      self._lastSeen = Date.now();
    };
    ws.onmessage = function (ev) {
      if (self._ws !== ws) return;
      self._lastSeen = Date.now();
      self._onFrame(ev.data);
    };
    ws.onerror = function (ev) {
      if (self._ws !== ws) return;
      var err = ev && ev.error instanceof Error ? ev.error : new Error('switchboard: WebSocket error');
      self._emit('error', err);
    };
    ws.onclose = function (ev) {
      if (self._ws !== ws) return;
      self._onClose(ws, ev && typeof ev.code === 'number' ? ev.code : 1006, (ev && ev.reason) || '');
    };
    void gen;
  };

  // _drop abandons socket ws as if it had closed with code and reason.
  Client.prototype._drop = function (ws, code, reason) {
    detach(ws);
    try {
      ws.close(4000, reason);
    } catch (e) {
      /* see close() */
    }
    this._onClose(ws, code, reason);
  };

  Client.prototype._onClose = function (ws, code, reason) {
    if (this._ws !== ws) return;
    detach(ws);
    this._ws = null;
    var wasConnected = this.state === 'connected';
    if (this._connectTimer !== null) clearTimeout(this._connectTimer);
    if (this._heartbeatTimer !== null) clearInterval(this._heartbeatTimer);
    this._connectTimer = this._heartbeatTimer = null;
    this._failPending('disconnected', 'connection closed before the reply (' + code + ')');
    this._subs.forEach(function (sub) {
      sub._clearRetry();
      if (sub.state === 'subscribed') sub.state = 'subscribing';
    });

    var reconnect = this._wantOpen && code !== 4001;
    if (code === 4001) {
      this._wantOpen = false;
      var err = SwitchboardError('unauthorized', reason || 'unauthorized');
      this._failQueue('unauthorized', reason || 'unauthorized');
      this._rejectConnectWaiters(err);
    }
    if (wasConnected || code === 4001) {
      this._emit('disconnected', { code: code, reason: reason, willReconnect: reconnect });
    }
    if (reconnect) {
      this._scheduleReconnect(code);
    } else {
      this._setState('closed');
    }
  };

  Client.prototype._scheduleReconnect = function (code) {
    var self = this;
    if (!this._wantOpen) return;
    var delay;
    if (code === 1012) {
      // Server restarting: come back soon, spread out.
      delay = Math.random() * this.options.restartReconnectDelay;
    } else {
      // Exponential backoff with full jitter.
      var cap = Math.min(this.options.maxReconnectDelay, this.options.minReconnectDelay * Math.pow(2, this._attempt));
      delay = Math.random() * cap;
      this._attempt++;
    }
    this._setState('reconnecting');
    this._reconnectTimer = setTimeout(function () {
      self._open();
    }, delay);
  };

  Client.prototype._onFrame = function (text) {
    var msg;
    try {
      msg = JSON.parse(typeof text === 'string' ? text : String(text));
    } catch (e) {
      this._emit('error', new Error('switchboard: frame is not JSON'));
      return;
    }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) {
      this._emit('error', new Error('switchboard: frame is not a JSON object'));
      return;
    }
    if (msg.op === 'welcome') {
      this._onWelcome(msg);
      return;
    }
    if (msg.op === undefined && typeof msg.id === 'number') {
      this._onReply(msg);
      return;
    }
    var sub = typeof msg.channel === 'string' ? this._subs.get(msg.channel) : null;
    switch (msg.op) {
      case 'message':
        if (sub && sub.state === 'subscribed') this._onMessage(sub, msg);
        break;
      case 'join':
      case 'leave':
        if (sub && sub.state === 'subscribed') {
          sub._emit(msg.op, { channel: msg.channel, client: msg.client, user: msg.user });
        }
        break;
      case 'unsubscribed':
        if (sub && sub.state === 'subscribed') {
          this._subs.delete(sub.channel);
          sub.state = 'unsubscribed';
          sub._clearRetry();
          sub._emit('unsubscribed', { channel: sub.channel, reason: msg.reason || '' });
        }
        break;
      default:
      // Unknown events are ignored: newer servers may send more.
    }
  };

  Client.prototype._onWelcome = function (msg) {
    var self = this;
    var ws = this._ws;
    if (this._connectTimer !== null) clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this.clientId = msg.client || null;
    this.nodeId = msg.node || null;
    this.protocolVersion = msg.version || 0;
    this.pingInterval = typeof msg.ping_interval_ms === 'number' ? msg.ping_interval_ms : 0;
    if (this.protocolVersion && this.protocolVersion !== PROTOCOL_VERSION) {
      this._emit('error', new Error('switchboard: server speaks protocol version ' + this.protocolVersion));
    }
    this._attempt = 0;
    this._setState('connected');

    if (this.options.heartbeat && this.pingInterval > 0) {
      this._heartbeatTimer = setInterval(function () {
        self._heartbeat(ws);
      }, this.pingInterval);
    }

    var info = this._welcomeInfo();
    var waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (var i = 0; i < waiters.length; i++) waiters[i].resolve(info);
    this._emit('connected', info);
    if (this._ws !== ws) return; // a listener closed the client

    // Resubscribe first, so that queued publishes come after the subscriptions.
    this._subs.forEach(function (sub) {
      self._sendSubscribe(sub);
    });
    var queue = this._queue;
    this._queue = [];
    for (var j = 0; j < queue.length; j++) this._send(queue[j]);
  };

  // _heartbeat checks a silent connection with a ping; a ping without a
  // reply drops the connection (and reconnects).
  Client.prototype._heartbeat = function (ws) {
    var self = this;
    if (this._ws !== ws || this.state !== 'connected') return;
    if (Date.now() - this._lastSeen < this.pingInterval) return;
    this._request('ping', {}, { direct: true }).catch(function (err) {
      if (err.code === 'timeout' && self._ws === ws) self._drop(ws, 4000, 'ping timeout');
    });
  };

  Client.prototype._onReply = function (msg) {
    var req = this._pending.get(msg.id);
    if (!req) {
      if (msg.id === 0 && msg.ok === false) {
        this._emit('error', errorFromReply(msg));
      }
      return;
    }
    this._pending.delete(msg.id);
    clearTimeout(req.timer);
    if (msg.ok === true) req.resolve(msg);
    else req.reject(errorFromReply(msg));
  };

  function errorFromReply(msg) {
    var e = (msg && msg.error) || {};
    return SwitchboardError(e.code || 'internal', e.message || e.code || 'request failed', msg);
  }

  // _call is a public request: it waits for a connection when needed.
  Client.prototype._call = function (op, fields) {
    if (!this._wantOpen && this.state === 'closed') {
      return Promise.reject(SwitchboardError('closed', 'client closed'));
    }
    return this._request(op, fields, { direct: false });
  };

  // _request is _requestCb as a Promise.
  Client.prototype._request = function (op, fields, opt) {
    var self = this;
    return new Promise(function (resolve, reject) {
      self._requestCb(op, fields, opt, function (err, reply) {
        if (err) reject(err);
        else resolve(reply);
      });
    });
  };

  // _requestCb sends op now when connected; otherwise (unless opt.direct)
  // queues it until the next welcome. The timeout runs from now. cb(err,
  // reply) is called synchronously when the reply is read, so that a
  // subscription is live before the frames that follow its reply.
  Client.prototype._requestCb = function (op, fields, opt, cb) {
    var self = this;
    var req = { op: op, fields: fields, id: 0, timer: null };
    req.resolve = function (reply) {
      cb(null, reply);
    };
    req.reject = function (err) {
      cb(err);
    };
    req.timer = setTimeout(function () {
      if (req.id) {
        self._pending.delete(req.id);
        req.reject(SwitchboardError('timeout', op + ': no reply within ' + self.options.requestTimeout + ' ms'));
      } else {
        var i = self._queue.indexOf(req);
        if (i >= 0) self._queue.splice(i, 1);
        req.reject(SwitchboardError('unavailable', op + ': not connected within ' + self.options.requestTimeout + ' ms'));
      }
    }, this.options.requestTimeout);
    if (this.state === 'connected') {
      this._send(req);
    } else if (opt.direct) {
      clearTimeout(req.timer);
      req.reject(SwitchboardError('disconnected', op + ': not connected'));
    } else {
      this._queue.push(req);
    }
  };

  Client.prototype._send = function (req) {
    var ws = this._ws;
    if (!ws || ws.readyState !== WS_OPEN) {
      this._queue.push(req);
      return;
    }
    req.id = this._nextId++;
    var frame = { id: req.id, op: req.op };
    for (var k in req.fields) frame[k] = req.fields[k];
    var text;
    try {
      text = JSON.stringify(frame);
    } catch (e) {
      clearTimeout(req.timer);
      req.reject(SwitchboardError('bad_request', 'switchboard: data is not JSON-serializable: ' + e.message));
      return;
    }
    this._pending.set(req.id, req);
    try {
      ws.send(text);
    } catch (e) {
      this._pending.delete(req.id);
      clearTimeout(req.timer);
      req.reject(SwitchboardError('disconnected', 'send failed: ' + e.message));
    }
  };

  Client.prototype._failPending = function (code, message) {
    var pending = this._pending;
    this._pending = new Map();
    pending.forEach(function (req) {
      clearTimeout(req.timer);
      req.reject(SwitchboardError(code, req.op + ': ' + message));
    });
  };

  Client.prototype._failQueue = function (code, message) {
    var queue = this._queue;
    this._queue = [];
    for (var i = 0; i < queue.length; i++) {
      clearTimeout(queue[i].timer);
      queue[i].reject(SwitchboardError(code, queue[i].op + ': ' + message));
    }
  };

  // _sendSubscribe subscribes sub on the current connection, asking for
  // recovery when a position is known.
  Client.prototype._sendSubscribe = function (sub) {
    var self = this;
    var gen = this._gen;
    var fields = { channel: sub.channel };
    var since = sub.position ? { epoch: sub.position.epoch, offset: sub.position.offset } : null;
    if (since) fields.since = since;
    sub._clearRetry();
    sub._sentOn = gen;
    this._requestCb('subscribe', fields, { direct: true }, function (err, reply) {
      if (self._subs.get(sub.channel) !== sub || gen !== self._gen) return;
      if (!err) {
        self._onSubscribed(sub, reply, since, gen);
        return;
      }
      if (err.code === 'disconnected') return; // the next welcome resubscribes
      if (RETRYABLE[err.code]) {
        var cap = Math.min(self.options.maxReconnectDelay, self.options.minReconnectDelay * Math.pow(2, sub._retries++));
        sub._emit('error', err);
        sub._retryTimer = setTimeout(function () {
          sub._retryTimer = null;
          if (self._subs.get(sub.channel) === sub && self.state === 'connected' && gen === self._gen) {
            self._sendSubscribe(sub);
          }
        }, Math.random() * cap);
        return;
      }
      // A refusal that a retry will not change: the subscription ends.
      self._subs.delete(sub.channel);
      sub.state = 'unsubscribed';
      sub._settleReady(err);
      sub._emit('error', err);
      self._emit('error', err);
    });
  };

  Client.prototype._onSubscribed = function (sub, reply, since, gen) {
    sub.state = 'subscribed';
    sub._conn = gen;
    sub._retries = 0;
    var now = hasPosition(reply) ? { epoch: reply.epoch, offset: reply.offset } : null;
    var recovered = false;
    var gap = null;
    if (since && now) {
      if (reply.recovered === true) {
        // Keep the old position: the missed messages follow as events.
        recovered = true;
      } else if (reply.recovered === false || !samePosition(since, now)) {
        gap = { channel: sub.channel, from: since, to: now };
        sub.position = now;
      } else {
        recovered = true; // nothing was published meanwhile
      }
    } else if (since && !now) {
      // The channel no longer reports positions (history turned off).
      gap = { channel: sub.channel, from: since, to: null };
      sub.position = null;
    } else {
      sub.position = now;
    }
    var info = {
      channel: sub.channel,
      resubscribed: sub._readyDone,
      recovered: recovered,
      epoch: now ? now.epoch : undefined,
      offset: now ? now.offset : undefined
    };
    sub._settleReady(null, info);
    sub._emit('subscribed', info);
    if (gap) sub._emit('gap', gap);
  };

  Client.prototype._onMessage = function (sub, msg) {
    var meta = { channel: sub.channel };
    if (hasPosition(msg)) {
      var pos = sub.position;
      if (pos && pos.epoch === msg.epoch && msg.offset <= pos.offset) return; // duplicate
      if (pos && pos.epoch !== msg.epoch) {
        // The channel's stream started a new life while we were subscribed.
        sub._emit('gap', { channel: sub.channel, from: pos, to: { epoch: msg.epoch, offset: msg.offset } });
      }
      sub.position = { epoch: msg.epoch, offset: msg.offset };
      meta.epoch = msg.epoch;
      meta.offset = msg.offset;
    }
    // Binary data a raw client published arrives as a base64 string.
    if (msg.encoding) meta.encoding = msg.encoding;
    sub._emit('message', msg.data, meta);
  };

  Client.prototype._unsubscribe = function (sub) {
    var self = this;
    if (this._subs.get(sub.channel) !== sub) return Promise.resolve();
    this._subs.delete(sub.channel);
    sub._clearRetry();
    var wasSent = sub._sentOn === this._gen && this.state === 'connected';
    sub.state = 'unsubscribed';
    sub._settleReady(SwitchboardError('closed', 'unsubscribed before the subscription went live'));
    if (!wasSent) return Promise.resolve();
    return this._request('unsubscribe', { channel: sub.channel }, { direct: true }).then(
      function () {},
      function (err) {
        // not_found: the server had already dropped it; disconnected: the
        // connection is gone and the next one will not resubscribe.
        if (err.code === 'not_found' || err.code === 'disconnected' || err.code === 'closed') return;
        self._emit('error', err);
        throw err;
      }
    );
  };

  /** validChannel reports whether name is a valid channel name (PROTOCOL.md). */
  function validChannel(name) {
    return typeof name === 'string' && CHANNEL_RE.test(name);
  }

  return {
    Client: Client,
    Subscription: Subscription,
    SwitchboardError: SwitchboardError,
    validChannel: validChannel,
    version: VERSION,
    protocolVersion: PROTOCOL_VERSION
  };
});
