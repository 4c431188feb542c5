// The Switchboard demo chat. It speaks the native dialect through
// switchboard.js: one channel per room, "chat:<room>", message data
// {"nick": ..., "text": ..., "client": <the sender's client id>}, except the
// lobby, which is the raw dialect's default channel "chat_messages": the
// channel of the seed's chat page (ws://host/). There the page sends plain
// text, "nick: text", so that raw pages show it as a chat line, and shows
// each text it receives as a line ("nick: text" with its nick, anything
// else with the nick "raw").
//
// Every message shows the time the server published it (the event's "ts").
// A message is "mine" when this tab sent it: objects by the client ids
// this tab has had, plain text by matching the echo of what it sent. The
// nickname is per tab (sessionStorage), so two windows are two people.
//
// On a server that checks tokens the page needs one: ?token=JWT in its own
// URL, else a development token from GET /dev/token?user=NICK, which only a
// server started with --dev-token-secret serves. The page first connects
// without a token (so that a server without keys sees no extra request);
// when the server answers unauthorized it asks /dev/token and starts over
// with its tokens, or says that the page needs ?token=.
(function () {
  'use strict';

  var DEFAULT_ROOMS = ['lobby', 'random', 'help'];
  var HISTORY_LIMIT = 50;
  var NICK_KEY = 'switchboard.nick';
  var IDS_KEY = 'switchboard.ids';
  var ROOMS_KEY = 'switchboard.rooms';
  // SEED_CHANNEL is the channel of raw connections to ws://host/ (the
  // server's --raw-channel, which it writes in the page's meta tag): the
  // lobby.
  var lobbyMeta = document.querySelector('meta[name="switchboard-lobby"]');
  var SEED_CHANNEL = (lobbyMeta && lobbyMeta.content) || 'chat_messages';
  var LOBBY = 'lobby';

  var $ = function (id) { return document.getElementById(id); };
  var els = {
    nick: $('nick'),
    status: $('status'),
    statusText: $('status-text'),
    rooms: $('rooms'),
    joinForm: $('join-form'),
    joinName: $('join-name'),
    joinError: $('join-error'),
    roomTitle: $('room-title'),
    roomChannel: $('room-channel'),
    messages: $('messages'),
    sendForm: $('send-form'),
    text: $('text'),
    authBanner: $('auth-banner')
  };

  // --- storage (localStorage may be unavailable, e.g. in private modes) ---

  function load(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }
  function save(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { /* not remembered */ }
  }
  // The tab's own: kept across reloads, not shared with other tabs.
  function loadTab(key) {
    try { return window.sessionStorage.getItem(key); } catch (e) { return null; }
  }
  function saveTab(key, value) {
    try { window.sessionStorage.setItem(key, value); } catch (e) { /* not remembered */ }
  }

  // --- nickname and identity (per tab) ---

  var nick = (loadTab(NICK_KEY) || '').trim();
  if (!nick) {
    nick = 'guest-' + Math.floor(1000 + Math.random() * 9000);
    saveTab(NICK_KEY, nick);
  }
  // myIds are the client ids this tab's connections had (one per
  // connection, the newest last): messages sent under them are "mine".
  var myIds = [];
  try { myIds = JSON.parse(loadTab(IDS_KEY) || '[]'); } catch (e) { myIds = []; }
  if (!Array.isArray(myIds)) myIds = [];
  function rememberId(id) {
    if (!id || myIds.indexOf(id) >= 0) return;
    myIds.push(id);
    myIds = myIds.slice(-50);
    saveTab(IDS_KEY, JSON.stringify(myIds));
  }
  // sentTexts are the plain-text lines this tab sent to the lobby whose
  // echo has not come back yet.
  var sentTexts = [];
  els.nick.value = nick;
  function updateNick() {
    var v = els.nick.value.trim();
    if (v) {
      nick = v;
      saveTab(NICK_KEY, nick);
    }
  }
  els.nick.addEventListener('input', updateNick);
  els.nick.addEventListener('change', function () {
    updateNick();
    els.nick.value = nick;
  });

  // --- rooms ---

  function channelOf(room) { return room === LOBBY ? SEED_CHANNEL : 'chat:' + room; }
  function isSeedRoom(room) { return room === LOBBY; }

  function validRoom(room) {
    return room.length > 0 && Switchboard.validChannel(channelOf(room));
  }

  var rooms = DEFAULT_ROOMS.slice();
  try {
    var saved = JSON.parse(load(ROOMS_KEY) || '[]');
    if (Array.isArray(saved)) {
      saved.forEach(function (r) {
        if (typeof r === 'string' && validRoom(r) && rooms.indexOf(r) < 0) rooms.push(r);
      });
    }
  } catch (e) { /* ignore a broken list */ }

  function roomFromHash() {
    var r = decodeURIComponent((location.hash || '').replace(/^#/, ''));
    return validRoom(r) ? r : null;
  }

  function renderRooms() {
    els.rooms.textContent = '';
    rooms.forEach(function (r) {
      var li = document.createElement('li');
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'room' + (r === current ? ' active' : '');
      b.textContent = '# ' + r;
      b.dataset.room = r;
      b.addEventListener('click', function () { switchRoom(r); });
      li.appendChild(b);
      els.rooms.appendChild(li);
    });
  }

  els.joinForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var r = els.joinName.value.trim().replace(/^#/, '');
    // A channel's full name joins its room: chat:x is x, the seed's is the lobby.
    if (r === SEED_CHANNEL) r = LOBBY;
    else if (r.indexOf('chat:') === 0 && r.length > 5) r = r.slice(5);
    if (!validRoom(r)) {
      els.joinError.textContent = 'A room name is letters, digits and _ - = @ , . ; : only.';
      els.joinError.hidden = false;
      return;
    }
    els.joinError.hidden = true;
    els.joinName.value = '';
    if (rooms.indexOf(r) < 0) {
      rooms.push(r);
      save(ROOMS_KEY, JSON.stringify(rooms.filter(function (x) { return DEFAULT_ROOMS.indexOf(x) < 0; })));
    }
    switchRoom(r);
  });

  // --- messages ---

  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function clock(d) { return pad(d.getHours()) + ':' + pad(d.getMinutes()); }

  // lineRE reads a plain-text line "nick: text" (as this page sends them).
  var lineRE = /^([^\s:]{1,32}): ([\s\S]+)$/;

  // normalize turns any message data into {nick, text, ts, raw, mine}; ts
  // is the server's publish time (ms), else the sender's, else null.
  function normalize(data, ts) {
    var own = typeof ts === 'number' ? ts : null;
    if (typeof data === 'string') {
      var mine = false;
      var i = sentTexts.indexOf(data);
      if (i >= 0) {
        sentTexts.splice(i, 1);
        mine = true;
      }
      var m = lineRE.exec(data);
      if (m) return { nick: m[1], text: m[2], ts: own, raw: false, mine: mine };
      return { nick: 'raw', text: data, ts: own, raw: true, mine: mine };
    }
    if (data && typeof data === 'object' && !Array.isArray(data)) {
      var text = typeof data.text === 'string' ? data.text : JSON.stringify(data);
      var n = typeof data.nick === 'string' && data.nick ? data.nick : 'anonymous';
      if (own === null && typeof data.ts === 'number') own = data.ts; // older pages stamped their own
      var byMe = typeof data.client === 'string' && myIds.indexOf(data.client) >= 0;
      return { nick: n, text: text, ts: own, raw: false, mine: byMe };
    }
    return { nick: 'raw', text: JSON.stringify(data), ts: own, raw: true, mine: false };
  }

  function nearBottom() {
    var m = els.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  function scrollDown() { els.messages.scrollTop = els.messages.scrollHeight; }

  function clearEmpty() {
    var e = els.messages.querySelector('.empty');
    if (e) e.remove();
  }

  // showEmpty says why the room shows no messages: none yet, or none kept.
  function showEmpty(kept) {
    if (els.messages.children.length) return;
    var li = document.createElement('li');
    li.className = 'empty';
    if (kept) {
      li.textContent = 'No messages yet. Say hi!';
    } else {
      li.appendChild(document.createTextNode('This server keeps no history, so messages sent before you came are not shown. Start it with '));
      var code = document.createElement('code');
      code.textContent = '--history-size 100';
      li.appendChild(code);
      li.appendChild(document.createTextNode(' to see the recent ones.'));
      li.dataset.history = 'none';
    }
    els.messages.appendChild(li);
  }

  function addMessage(data, ts) {
    var m = normalize(data, ts);
    var stick = nearBottom();
    clearEmpty();
    var li = document.createElement('li');
    li.className = 'msg' + (m.raw ? ' raw' : '') + (m.mine ? ' mine' : '');
    var head = document.createElement('div');
    head.className = 'meta';
    var who = document.createElement('span');
    who.className = 'who';
    who.textContent = m.nick;
    var when = document.createElement('time');
    var d = m.ts ? new Date(m.ts) : new Date();
    when.dateTime = d.toISOString();
    when.textContent = clock(d);
    when.title = d.toLocaleString();
    head.appendChild(who);
    head.appendChild(when);
    var body = document.createElement('div');
    body.className = 'text';
    body.textContent = m.text;
    li.appendChild(head);
    li.appendChild(body);
    els.messages.appendChild(li);
    if (stick) scrollDown();
  }

  function addNote(text, kind) {
    var stick = nearBottom();
    clearEmpty();
    var li = document.createElement('li');
    li.className = 'note' + (kind ? ' ' + kind : '');
    li.textContent = text;
    els.messages.appendChild(li);
    if (stick) scrollDown();
  }

  // --- tokens ---

  var urlToken = new URLSearchParams(location.search).get('token') || null;
  // authMode: 'url' (?token=), 'none' (no token needed so far), 'dev'
  // (tokens from /dev/token), 'missing' (needed, and none to be had).
  var authMode = urlToken ? 'url' : 'none';
  var spareToken = null; // the dev token fetched to see whether there are any
  var probing = false;

  function devToken() {
    return fetch('/dev/token?user=' + encodeURIComponent(nick), { cache: 'no-store' }).then(function (res) {
      if (!res.ok) {
        var err = new Error('GET /dev/token answered ' + res.status);
        err.status = res.status;
        throw err;
      }
      return res.json();
    }).then(function (body) { return body.token; });
  }

  // getToken is the client's token source: nothing until the server asks
  // for a token, then development tokens.
  function getToken() {
    if (authMode !== 'dev') return null;
    if (spareToken) {
      var t = spareToken;
      spareToken = null;
      return t;
    }
    return devToken();
  }

  // showAuthProblem shows text, and how to pass a token, above the messages.
  function showAuthProblem(text) {
    els.authBanner.textContent = text + ' ';
    var hint = document.createElement('span');
    hint.appendChild(document.createTextNode('Pass a token in the page\'s URL: '));
    var code = document.createElement('code');
    code.textContent = location.pathname + '?token=...' + location.hash;
    hint.appendChild(code);
    hint.appendChild(document.createTextNode(' (for local development, start the server with --dev-token-secret).'));
    els.authBanner.appendChild(hint);
    els.authBanner.hidden = false;
  }

  // needAuth runs when the server first refuses the page for want of a
  // token: it takes development tokens if the server has them, else says
  // that the page needs one.
  function needAuth() {
    if (authMode !== 'none' || probing) return;
    probing = true;
    devToken().then(function (tok) {
      probing = false;
      authMode = 'dev';
      spareToken = tok;
      restart();
    }, function (err) {
      probing = false;
      authMode = 'missing';
      // Without a token the server would close the connection anyway.
      restarting = true;
      client.close();
      restarting = false;
      setStatus('unauthorized');
      showAuthProblem(err.status === 404
        ? 'This server requires a token, and gives no development tokens.'
        : 'This server requires a token, and ' + err.message + '.');
    });
  }

  // --- connection ---

  var proto = location.protocol === 'https:' ? 'wss://' : 'ws://';
  var client = new Switchboard.Client(proto + location.host + '/ws', urlToken ? { token: urlToken } : { getToken: getToken });
  var everConnected = false;
  var restarting = false;

  // restart connects again (with a token now) and rejoins the room.
  function restart() {
    restarting = true;
    client.close();
    restarting = false;
    everConnected = false;
    var room = current;
    current = null;
    switchRoom(room);
    client.connect().catch(function () {});
  }

  function setStatus(state) {
    var label = {
      connecting: 'connecting…',
      connected: 'connected',
      reconnecting: 'reconnecting…',
      disconnected: 'offline',
      closed: 'offline',
      unauthorized: 'not authorized'
    }[state] || state;
    if (state === 'connected' && client.user) label = 'connected as ' + client.user;
    els.status.className = 'status status-' + state;
    els.statusText.textContent = label;
    els.status.dataset.state = state;
  }

  client.on('state', function (state) { setStatus(state); });
  client.on('connected', function (info) {
    rememberId(client.clientId);
    if (everConnected) addNote('Reconnected.');
    everConnected = true;
    if (info.user) els.authBanner.hidden = true;
  });
  client.on('disconnected', function (ev) {
    if (restarting) return;
    if (ev.code === 4001 && authMode === 'none') needAuth();
    if (ev.willReconnect) addNote('Connection lost. Reconnecting…');
    else addNote('Disconnected (' + ev.code + (ev.reason ? ': ' + ev.reason : '') + ').');
  });
  client.on('error', function (err) {
    if (window.console) console.warn('switchboard:', err);
    if (err.code === 'unauthorized' && client.state === 'closed' && authMode !== 'missing') {
      // The client gave up: its token was refused, or the server ended
      // this user's access.
      setStatus('unauthorized');
      showAuthProblem('Not authorized: ' + err.message + '.');
    }
  });

  // --- the current room ---

  var current = null;
  var sub = null;
  var roomSeq = 0; // bumped on every switch, so late answers for an old room are ignored

  // loadRoom shows the room's history, then the live messages that arrived
  // meanwhile (skipping those the history already holds).
  function loadRoom(s, seq) {
    var buffer = [];
    var loading = true;
    s.off('message');
    s.on('message', function (data, meta) {
      if (seq !== roomSeq) return;
      if (loading) buffer.push({ data: data, meta: meta });
      else addMessage(data, meta && meta.ts);
    });
    s.history({ limit: HISTORY_LIMIT }).then(function (h) {
      if (seq !== roomSeq) return;
      els.messages.textContent = '';
      h.messages.forEach(function (m) { addMessage(m.data, m.ts); });
      var upTo = typeof h.offset === 'number' ? h.offset : -1;
      flush(true, function (b) { return !(b.meta.epoch === h.epoch && typeof b.meta.offset === 'number' && b.meta.offset <= upTo); });
    }, function () {
      // No history on this server or channel: start empty, and say why.
      if (seq !== roomSeq) return;
      flush(false, function () { return true; });
    });
    function flush(kept, keep) {
      loading = false;
      buffer.filter(keep).forEach(function (b) { addMessage(b.data, b.meta && b.meta.ts); });
      buffer = [];
      showEmpty(kept);
      scrollDown();
    }
  }

  function switchRoom(room) {
    if (room === current) return;
    if (sub) sub.unsubscribe().catch(function () {});
    current = room;
    var seq = ++roomSeq;
    if (location.hash !== '#' + room) history.replaceState(null, '', '#' + encodeURIComponent(room));
    els.roomTitle.textContent = '# ' + room;
    els.roomChannel.textContent = channelOf(room);
    els.messages.textContent = '';
    renderRooms();
    sub = client.subscribe(channelOf(room), {
      subscribed: function (info) {
        if (seq !== roomSeq) return;
        if (!info.resubscribed) loadRoom(sub, seq);
      },
      gap: function () {
        // Messages were lost while offline: reload what history still has.
        if (seq !== roomSeq) return;
        addNote('Some messages were missed while offline; reloading.');
        loadRoom(sub, seq);
      },
      error: function (err) {
        if (seq !== roomSeq) return;
        if (err.code === 'unauthorized' && authMode === 'none') {
          needAuth();
        } else if (err.code === 'unauthorized' || err.code === 'forbidden') {
          addNote('Not authorized to join ' + channelOf(room) + ': ' + err.message, 'refused');
        } else {
          addNote('Could not join ' + channelOf(room) + ': ' + err.message);
        }
      }
    });
    // Until the subscription is live, keep early messages out of the list.
    sub.on('message', function () {});
    els.text.focus();
  }

  // --- sending ---

  els.sendForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var text = els.text.value;
    if (!text.trim() || !current) return;
    updateNick();
    els.text.value = '';
    var channel = channelOf(current);
    var data;
    if (isSeedRoom(current)) {
      // Raw pages show each text frame as it is: send them a chat line.
      data = nick.replace(/[\s:]+/g, '_') + ': ' + text;
      sentTexts.push(data);
      sentTexts = sentTexts.slice(-50);
    } else {
      data = { nick: nick, text: text, client: client.clientId };
    }
    client.publish(channel, data).catch(function (err) {
      if (err.code === 'unauthorized' || err.code === 'forbidden') {
        addNote('Not authorized to send to ' + channel + ' (' + err.message + '). Not sent: ' + text, 'refused');
        if (err.code === 'unauthorized' && authMode === 'none') needAuth();
        return;
      }
      addNote('Not sent (' + (err.code || 'error') + '): ' + text);
    });
  });

  window.addEventListener('hashchange', function () {
    var r = roomFromHash();
    if (r && r !== current) {
      if (rooms.indexOf(r) < 0) rooms.push(r);
      switchRoom(r);
    }
  });

  // Expose the client for debugging and tests.
  window.switchboardChat = {
    client: client,
    room: function () { return current; },
    auth: function () { return authMode; },
    nick: function () { return nick; }
  };

  var start = roomFromHash() || DEFAULT_ROOMS[0];
  if (rooms.indexOf(start) < 0) rooms.push(start);
  switchRoom(start);
  client.connect().catch(function () {});
})();
