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

  // A token is refreshed at this share of its remaining lifetime.
  var REFRESH_RATIO = 0.8;
  // setTimeout fires at once for delays over 2^31-1 ms (about 24.8 days).
  var MAX_TIMER = 2147483647;

  var DEFAULTS = {
    WebSocket: null, // constructor; default: the global WebSocket
    getToken: null, // function({reason}) returning a JWT (or a Promise of one); null or '' connects without
    token: null, // a JWT string, or a function like getToken (getToken wins when both are given)
    getSubscriptionToken: null, // function(channel) returning a subscription JWT, null for none (or a Promise)
    minRefreshDelay: 1000, // ms; the earliest a token refresh (or its retry) is sent
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

  // jwtClaims returns the claims of a JWT without checking anything (the
  // server checks), or null when token does not look like one. The client
  // reads only exp and iat, to schedule refreshes.
  function jwtClaims(token) {
    var parts = typeof token === 'string' ? token.split('.') : [];
    if (parts.length !== 3) return null;
    try {
      var b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
      while (b64.length % 4) b64 += '=';
      // Latin-1 text of the UTF-8 bytes: still valid JSON, and exp and iat
      // are ASCII.
      var claims = JSON.parse(atob(b64));
      return claims && typeof claims === 'object' ? claims : null;
    } catch (e) {
      return null;
    }
  }

  // callSource calls fn(arg) (or takes the value src) and returns a
  // Promise of its result; a throwing fn becomes a rejection.
  function callSource(src, arg) {
    try {
      return Promise.resolve(typeof src === 'function' ? src(arg) : src);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // tokenOf checks what a token source gave: a non-empty string, or
  // null/undefined/'' for none.
  function tokenOf(v, what) {
    if (v === null || v === undefined || v === '') return null;
    if (typeof v !== 'string') throw new TypeError('switchboard: ' + what + ' must return a string, not ' + typeof v);
    return v;
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
    this._token = null; // subscribe's opts.token: a string or function(channel)
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
   * kept open across failures until close(). With getToken (or token) it
   * authenticates each connection with auth before anything else, refreshes
   * the token before it expires, and after a 4001 close tries once more with
   * a new token. Events: connected, disconnected, state, refreshed,
   * unsubscribed, error.
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
    this.user = null; // the user the server's auth reply names
    this.expiresAt = null; // ms since the epoch: when the connection's token expires (server's clock)

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

    // Tokens (see _open, _authenticate, _refresh).
    this._token = null; // the connection token of the current socket
    this._tokenAt = 0; // Date.now() when it was obtained
    this._tokenReason = 'connect'; // what the next getToken call is told
    this._refusedToken = null; // the last token the server refused or closed 4001 on
    this._strikes = 0; // 4001 closes and refused auths since the last successful one
    this._refreshTimer = null;
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
      this._strikes = 0;
      this._refusedToken = null;
      this._tokenReason = 'connect';
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
    var wasUp = this._shutdown(SwitchboardError('closed', 'client closed'), 'client closed');
    if (wasUp) {
      this._emit('disconnected', { code: 1000, reason: 'client closed', willReconnect: false });
    }
  };

  // _shutdown stops the client for good (state closed, no timer, no
  // socket, which it closes with 1000 and why) and fails what waits with
  // err's code. It reports whether the client was connected.
  Client.prototype._shutdown = function (err, why) {
    this._wantOpen = false;
    this._clearTimers();
    var ws = this._ws;
    var wasUp = this.state === 'connected';
    this._ws = null;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, why);
      } catch (e) {
        /* closing a socket that is still connecting may throw; it is gone either way */
      }
    }
    this._failPending(err.code, err.message);
    this._failQueue(err.code, err.message);
    this._subs.forEach(function (sub) {
      sub._clearRetry();
      if (sub.state === 'subscribed') sub.state = 'subscribing';
    });
    this._rejectConnectWaiters(err);
    this._setState('closed');
    return wasUp;
  };

  // _giveUp stops the client after the server refused its token for good:
  // a 4001 close (closeCode) or a refused auth (closeCode 0). It emits
  // disconnected (for a close) and error, a SwitchboardError with code
  // unauthorized, the server's reason, and closeCode.
  Client.prototype._giveUp = function (closeCode, reason) {
    var err = SwitchboardError('unauthorized', reason || 'unauthorized');
    err.closeCode = closeCode;
    this._shutdown(err, 'unauthorized');
    if (closeCode) this._emit('disconnected', { code: closeCode, reason: reason, willReconnect: false });
    this._emit('error', err);
  };

  /**
   * subscribe joins channel and returns its Subscription at once; the
   * subscription goes live when the server replies (sub.ready resolves,
   * 'subscribed' fires) and is renewed after every reconnect. handlers is
   * a message function or an object {message, join, leave, subscribed,
   * gap, unsubscribed, error}. opts.token is a subscription token for the
   * channel: a string, or a function(channel) returning one (or a Promise
   * of one), called on every (re)subscribe; without it the client's
   * getSubscriptionToken option is asked. Subscribing twice to one channel
   * throws.
   */
  Client.prototype.subscribe = function (channel, handlers, opts) {
    if (typeof channel !== 'string') throw new TypeError('switchboard: channel must be a string');
    if (this._subs.has(channel)) {
      throw SwitchboardError('bad_request', 'switchboard: already subscribed to ' + channel);
    }
    var sub = new Subscription(this, channel);
    if (opts && opts.token !== undefined && opts.token !== null) sub._token = opts.token;
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
    var info = {
      client: this.clientId,
      node: this.nodeId,
      version: this.protocolVersion,
      pingInterval: this.pingInterval
    };
    if (this.user !== null) {
      info.user = this.user;
      info.expiresAt = this.expiresAt;
    }
    return info;
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
    if (this._refreshTimer !== null) clearTimeout(this._refreshTimer);
    this._reconnectTimer = this._connectTimer = this._heartbeatTimer = this._refreshTimer = null;
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

  // tokenSource is getToken, else the token option.
  Client.prototype._tokenSource = function () {
    return this.options.getToken || this.options.token;
  };

  // _canRefetch reports whether a refused token can be replaced: only a
  // function gives a new one.
  Client.prototype._canRefetch = function () {
    return typeof this._tokenSource() === 'function';
  };

  // _open starts one connection attempt: it gets a token (getToken is told
  // why: connect, or unauthorized after a refusal), then opens the socket.
  Client.prototype._open = function () {
    var self = this;
    this._reconnectTimer = null;
    if (!this._wantOpen) return;
    this._setState(this._attempt === 0 && this.state !== 'reconnecting' ? 'connecting' : 'reconnecting');
    var reason = this._tokenReason;
    var gen = ++this._gen;
    callSource(this._tokenSource(), { reason: reason }).then(
      function (v) {
        if (gen !== self._gen || !self._wantOpen) return;
        var tok;
        try {
          tok = tokenOf(v, 'getToken');
        } catch (e) {
          self._emit('error', e);
          self._scheduleReconnect(null);
          return;
        }
        if (tok !== null && tok === self._refusedToken) {
          // The token the server just refused again: no use sending it.
          self._refused(null, 'getToken returned the token the server refused');
          return;
        }
        self._openSocket(gen, tok);
      },
      function (err) {
        if (gen !== self._gen || !self._wantOpen) return;
        self._emit('error', err);
        self._scheduleReconnect(null);
      }
    );
  };

  // _openSocket opens the socket. The token is not put in the URL (where
  // proxies log it): it goes in the first request, auth, after the welcome.
  Client.prototype._openSocket = function (gen, token) {
    var self = this;
    this._token = token;
    this._tokenAt = Date.now();
    this.user = null;
    this.expiresAt = null;
    var ws;
    try {
      ws = new this._WebSocket(this.url);
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
    if (this._refreshTimer !== null) clearTimeout(this._refreshTimer);
    this._connectTimer = this._heartbeatTimer = this._refreshTimer = null;
    this._failPending('disconnected', 'connection closed before the reply (' + code + ')');
    this._subs.forEach(function (sub) {
      sub._clearRetry();
      if (sub.state === 'subscribed') sub.state = 'subscribing';
    });

    if (code === 4001) {
      // Unauthorized: never again with the same token. With getToken the
      // client tries once more with a new one, unless the server ended the
      // user's access on purpose ("disconnected"); a second 4001 (or
      // refused auth) before an auth succeeds ends it.
      this._strikes++;
      if (reason === 'disconnected' || !this._canRefetch() || this._strikes >= 2) {
        this._giveUp(4001, reason);
        return;
      }
      this._refusedToken = this._token;
      this._tokenReason = 'unauthorized';
    }
    var reconnect = this._wantOpen;
    if (wasConnected || code === 4001) {
      this._emit('disconnected', { code: code, reason: reason, willReconnect: reconnect });
    }
    if (reconnect) {
      this._scheduleReconnect(code);
    } else {
      this._setState('closed');
    }
  };

  // _refused handles a token the server refused without closing (an auth
  // reply unauthorized or forbidden; ws is then still open) or that
  // getToken gave again after a refusal (ws null): like a 4001, the client
  // tries once more with a new token, then gives up.
  Client.prototype._refused = function (ws, reason) {
    this._strikes++;
    if (!this._canRefetch() || this._strikes >= 2) {
      this._giveUp(0, reason);
      return;
    }
    this._refusedToken = this._token;
    this._tokenReason = 'unauthorized';
    if (ws) {
      this._ws = null;
      detach(ws);
      try {
        ws.close(1000, 'token refused');
      } catch (e) {
        /* see close() */
      }
      if (this._heartbeatTimer !== null) clearInterval(this._heartbeatTimer);
      this._heartbeatTimer = null;
      this._failPending('disconnected', 'token refused');
    }
    this._scheduleReconnect(null);
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
        // The server ended the subscription (its access was revoked): it
        // is not renewed on reconnect.
        if (sub && sub.state === 'subscribed') {
          this._subs.delete(sub.channel);
          sub.state = 'unsubscribed';
          sub._clearRetry();
          var ev = { channel: sub.channel, reason: msg.reason || '' };
          sub._emit('unsubscribed', ev);
          this._emit('unsubscribed', ev);
        }
        break;
      default:
      // Unknown events are ignored: newer servers may send more.
    }
  };

  Client.prototype._onWelcome = function (msg) {
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
    if (this._token !== null) this._authenticate(ws);
    else this._ready(ws);
  };

  // _authenticate sends auth, the connection's first request, so that the
  // subscriptions renewed after it are authorized; the connection is
  // ready once the server accepts the token.
  Client.prototype._authenticate = function (ws) {
    var self = this;
    var token = this._token;
    this._requestCb('auth', { token: token }, { handshake: true }, function (err, reply) {
      if (self._ws !== ws) return;
      if (!err) {
        self._authenticated(ws, reply, token, self._tokenAt);
        self.user = typeof reply.user === 'string' ? reply.user : null;
        self._ready(ws);
        return;
      }
      if (err.code === 'unauthorized' || err.code === 'forbidden' || err.code === 'bad_request') {
        self._refused(ws, err.message);
        return;
      }
      // timeout, rate_limited, internal...: try again on a new connection.
      self._emit('error', err);
      self._drop(ws, 4000, 'auth failed');
    });
  };

  // _authenticated takes the expiry of an accepted auth or refresh and
  // schedules the next refresh.
  Client.prototype._authenticated = function (ws, reply, token, tokenAt) {
    this._token = token;
    this._tokenAt = tokenAt;
    this.expiresAt = typeof reply.expires_at === 'number' && reply.expires_at > 0 ? reply.expires_at * 1000 : null;
    // A token the server accepted but that has already expired (within the
    // server's leeway) will be closed at once: that is no success.
    if (this.expiresAt === null || this.expiresAt > Date.now()) {
      this._strikes = 0;
      this._refusedToken = null;
      this._tokenReason = 'connect';
    }
    this._scheduleRefresh(ws, this._refreshDelay());
  };

  // _refreshDelay is when to refresh the token: at REFRESH_RATIO of its
  // remaining lifetime, never sooner than minRefreshDelay. The remaining
  // lifetime is expires_at on this machine's clock; the auth reply carries
  // no server time, so a clock that is behind the server's would make it
  // look longer than it is: it is capped by the token's own exp - iat
  // (counted from when the client got it), and where the clock is so far
  // ahead that the token looks expired already, that is used instead.
  Client.prototype._refreshDelay = function () {
    var now = Date.now();
    var remaining = this.expiresAt - now;
    var c = jwtClaims(this._token);
    if (c && typeof c.exp === 'number' && typeof c.iat === 'number' && c.exp > c.iat) {
      var lifetime = (c.exp - c.iat) * 1000 - (now - this._tokenAt);
      remaining = remaining > 0 ? Math.min(remaining, lifetime) : lifetime;
    }
    return Math.max(this.options.minRefreshDelay, remaining * REFRESH_RATIO);
  };

  Client.prototype._scheduleRefresh = function (ws, delay) {
    var self = this;
    if (this._refreshTimer !== null) clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    // A static token cannot be renewed: the server closes at its expiry.
    if (this.expiresAt === null || !this._canRefetch()) return;
    this._refreshTimer = setTimeout(function () {
      self._refreshTimer = null;
      self._refresh(ws);
    }, Math.min(MAX_TIMER, delay));
  };

  // _refresh sends refresh with a new token from getToken({reason:
  // 'refresh'}). A failure emits error and is retried at half the time
  // left (not sooner than minRefreshDelay) while the token has time left;
  // after that the server closes with 4001 and the client reconnects with
  // a new token.
  Client.prototype._refresh = function (ws) {
    var self = this;
    var live = function () {
      return self._ws === ws && self.state === 'connected';
    };
    var failed = function (err) {
      if (!live()) return;
      self._emit('error', err);
      var left = self.expiresAt - Date.now();
      if (left > 2 * self.options.minRefreshDelay) self._scheduleRefresh(ws, left / 2);
    };
    callSource(this._tokenSource(), { reason: 'refresh' }).then(function (v) {
      if (!live()) return;
      var tok = tokenOf(v, 'getToken');
      if (tok === null || tok === self._token) {
        throw SwitchboardError('unauthorized', 'getToken gave no new token to refresh with');
      }
      var tokenAt = Date.now();
      self._requestCb('refresh', { token: tok }, { direct: true }, function (err, reply) {
        if (err) {
          failed(err);
          return;
        }
        if (!live()) return;
        self._authenticated(ws, reply, tok, tokenAt);
        self._emit('refreshed', { user: self.user, expiresAt: self.expiresAt });
      });
    }).catch(failed);
  };

  // _ready makes the connection usable: state connected, subscriptions
  // renewed, then the requests that waited sent.
  Client.prototype._ready = function (ws) {
    var self = this;
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

  // _requestCb sends op now when connected (or, with opt.handshake, on the
  // socket that is being set up); otherwise (unless opt.direct) queues it
  // until the connection is ready. The timeout runs from now. cb(err,
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
    if (this.state === 'connected' || (opt.handshake && this._ws && this._ws.readyState === WS_OPEN)) {
      this._send(req);
    } else if (opt.direct || opt.handshake) {
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
  // recovery when a position is known, with the subscription token of
  // opts.token or getSubscriptionToken when there is one (a function is
  // called every time: a renewal gets a new token).
  Client.prototype._sendSubscribe = function (sub) {
    var self = this;
    var gen = this._gen;
    sub._clearRetry();
    sub._sentOn = gen;
    var src = sub._token !== null ? sub._token : this.options.getSubscriptionToken;
    if (src === null || src === undefined) {
      this._subscribeWith(sub, null, gen);
      return;
    }
    var v;
    try {
      v = typeof src === 'function' ? src(sub.channel) : src;
    } catch (e) {
      this._subscribeFailed(sub, tokenSourceError(e), gen);
      return;
    }
    var send = function (tok) {
      if (self._subs.get(sub.channel) !== sub || gen !== self._gen || self.state !== 'connected') return;
      try {
        tok = tokenOf(tok, 'the subscription token source');
      } catch (e) {
        self._subscribeFailed(sub, tokenSourceError(e), gen);
        return;
      }
      self._subscribeWith(sub, tok, gen);
    };
    if (v && typeof v.then === 'function') {
      v.then(send, function (e) {
        if (self._subs.get(sub.channel) !== sub || gen !== self._gen) return;
        self._subscribeFailed(sub, tokenSourceError(e), gen);
      });
    } else {
      send(v); // at once: renewals stay ahead of the queued requests
    }
  };

  // tokenSourceError is the error of a token source that threw or
  // rejected: retried like an unavailable server.
  function tokenSourceError(e) {
    var err = SwitchboardError('unavailable', 'switchboard: no subscription token: ' + (e && e.message ? e.message : String(e)));
    err.cause = e;
    return err;
  }

  Client.prototype._subscribeWith = function (sub, token, gen) {
    var self = this;
    var fields = { channel: sub.channel };
    var since = sub.position ? { epoch: sub.position.epoch, offset: sub.position.offset } : null;
    if (since) fields.since = since;
    if (token !== null) fields.token = token;
    this._requestCb('subscribe', fields, { direct: true }, function (err, reply) {
      if (self._subs.get(sub.channel) !== sub || gen !== self._gen) return;
      if (!err) {
        self._onSubscribed(sub, reply, since, gen);
        return;
      }
      self._subscribeFailed(sub, err, gen);
    });
  };

  // _subscribeFailed retries sub with backoff after a failure a retry may
  // cure (RETRYABLE); any other refusal ends the subscription.
  Client.prototype._subscribeFailed = function (sub, err, gen) {
    var self = this;
    if (err.code === 'disconnected') return; // the next connection resubscribes
    if (RETRYABLE[err.code]) {
      var cap = Math.min(this.options.maxReconnectDelay, this.options.minReconnectDelay * Math.pow(2, sub._retries++));
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
    this._subs.delete(sub.channel);
    sub.state = 'unsubscribed';
    sub._settleReady(err);
    sub._emit('error', err);
    this._emit('error', err);
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
    if (typeof msg.ts === 'number') meta.ts = msg.ts;
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
