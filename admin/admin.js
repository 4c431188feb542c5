// Switchboard cluster dashboard. It listens to the dashboard's feed
// (/admin/feed, one "cluster" event a second), keeps the last two minutes
// of figures and draws them on canvases; its actions are the HTTP API's
// requests under /admin/api/. No library, no build step.
(function () {
  'use strict';

  const WINDOW_MS = 120_000; // the most the charts show
  const MIN_WINDOW_MS = 30_000; // the least, while the page is young
  const ACTION_HEADER = 'X-Switchboard-Admin';
  const PALETTE = ['#5b8cff', '#34c77b', '#f0b429', '#ef5a5a', '#b07cff', '#2ec4d6', '#ff8a4c', '#e46ad6'];
  const TOTAL_COLOR = '#e6ebf5';
  const metrics = {
    connections: { of: (n) => n.connections || 0, rate: false },
    in: { of: (n) => n.messages_in_per_second || 0, rate: true },
    out: { of: (n) => n.messages_out_per_second || 0, rate: true }
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // samples: {t, nodes: Map id -> info}, oldest first, within WINDOW_MS.
  const samples = [];
  const colors = new Map(); // node id -> color, kept while the page lives
  let latest = null;

  function colorOf(id) {
    if (!colors.has(id)) colors.set(id, PALETTE[colors.size % PALETTE.length]);
    return colors.get(id);
  }

  // ---- formatting ----
  const intFmt = new Intl.NumberFormat('en-US');
  function fmtInt(n) {
    return intFmt.format(Math.round(n));
  }
  function fmtRate(n) {
    if (n === 0) return '0';
    if (n < 9.95) return n.toFixed(1); // 9.96 would show as "10.0"
    return intFmt.format(Math.round(n));
  }
  function fmtUptime(s) {
    s = Math.floor(s);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }
  function fmtMs(ms) {
    if (ms < 10) return `${ms.toFixed(1)} ms`;
    return `${Math.round(ms)} ms`;
  }
  function fmtTime(ms) {
    const d = new Date(ms);
    return d.toLocaleTimeString('en-GB', { hour12: false });
  }

  // ---- the feed ----
  function setStatus(state, text) {
    const s = $('status');
    s.className = `status status-${state}`;
    s.dataset.state = state;
    $('status-text').textContent = text;
  }

  function connect() {
    const es = new EventSource('/admin/feed');
    es.addEventListener('open', () => setStatus('live', 'live'));
    es.addEventListener('error', () => setStatus('reconnecting', 'reconnecting…'));
    es.addEventListener('cluster', (ev) => {
      let e;
      try {
        e = JSON.parse(ev.data);
      } catch {
        return;
      }
      setStatus('live', 'live');
      onEvent(e);
    });
  }

  function onEvent(e) {
    latest = e;
    const nodes = new Map();
    for (const n of e.nodes) nodes.set(n.id, n);
    samples.push({ t: e.time, nodes });
    while (samples.length > 0 && samples[0].t < e.time - WINDOW_MS) samples.shift();
    for (const id of nodes.keys()) colorOf(id);

    const banner = $('feed-error');
    if (e.errors && e.errors.length) {
      banner.textContent = `Some figures could not be read: ${e.errors.join('; ')}`;
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
    $('served-by').textContent = e.node ? `served by ${e.node}` : '';
    renderStats(e);
    renderNodes(e);
    renderLegend(e);
    renderChannels(e);
    drawAll();
  }

  function sum(list, f) {
    return list.reduce((a, n) => a + f(n), 0);
  }

  function renderStats(e) {
    const n = e.nodes;
    $('stat-nodes').textContent = fmtInt(n.length);
    $('stat-connections').textContent = fmtInt(sum(n, metrics.connections.of));
    $('stat-subscriptions').textContent = fmtInt(sum(n, (x) => x.subscriptions || 0));
    $('stat-channels').textContent = fmtInt(e.channels_total || 0);
    $('stat-in').textContent = fmtRate(sum(n, metrics.in.of));
    $('stat-out').textContent = fmtRate(sum(n, metrics.out.of));
    $('now-connections').textContent = $('stat-connections').textContent;
    $('now-in').textContent = $('stat-in').textContent;
    $('now-out').textContent = $('stat-out').textContent;
  }

  function td(label, text, cls) {
    const c = el('td', cls, text);
    c.dataset.label = label;
    return c;
  }

  function renderNodes(e) {
    const body = $('nodes').tBodies[0];
    body.replaceChildren();
    if (e.nodes.length === 0) {
      const tr = el('tr');
      const c = el('td', 'empty', 'No node has announced itself.');
      c.colSpan = 11;
      tr.append(c);
      body.append(tr);
      return;
    }
    for (const n of e.nodes) {
      const tr = el('tr');
      tr.dataset.node = n.id;
      const name = td('Node', undefined, 'node-cell');
      const id = el('div', 'node-id');
      const dot = el('span', 'dot');
      dot.style.background = colorOf(n.id);
      id.append(dot, el('span', 'mono-id', n.id));
      if (n.id === e.node) id.append(el('span', 'tag', 'this node'));
      name.append(id, el('div', 'node-addr', n.address || '–'));
      const state = td('State', undefined, 'state-cell');
      const badge = el('span', n.state === 'ready' ? 'state' : 'state bad', n.state || '?');
      badge.title = n.state || '';
      state.append(badge);
      const seenMs = n.announced_at ? Math.max(0, e.time - n.announced_at) : null;
      const seen = td('Seen', seenMs === null ? '–' : `${(seenMs / 1000).toFixed(1)} s ago`, 'num');
      if (n.expires_after_ms) seen.title = `leaves the list ${n.expires_after_ms / 1000} s after its last announcement`;
      tr.append(
        name,
        state,
        td('Connections', fmtInt(n.connections || 0), 'num'),
        td('Subscriptions', fmtInt(n.subscriptions || 0), 'num'),
        td('Channels', fmtInt(n.channels || 0), 'num'),
        td('In / s', fmtRate(metrics.in.of(n)), 'num'),
        td('Out / s', fmtRate(metrics.out.of(n)), 'num'),
        td('Broker', fmtMs(n.broker_latency_ms || 0), 'num'),
        td('Uptime', fmtUptime(n.uptime_seconds || 0), 'num'),
        td('Version', n.version || '–'),
        seen
      );
      body.append(tr);
    }
  }

  function renderLegend(e) {
    const ul = $('legend');
    ul.replaceChildren();
    const item = (color, text, total) => {
      const li = el('li');
      const sw = el('span', total ? 'swatch total' : 'swatch');
      sw.style.background = color;
      li.append(sw, el('span', '', text));
      ul.append(li);
    };
    item(TOTAL_COLOR, 'cluster', true);
    for (const n of e.nodes) item(colorOf(n.id), n.id, false);
  }

  let inspected = '';

  function renderChannels(e) {
    const ol = $('channels');
    ol.replaceChildren();
    $('channels-total').textContent = e.channels_total > e.channels.length ? `top ${e.channels.length} of ${fmtInt(e.channels_total)}` : `${fmtInt(e.channels_total || 0)} with subscribers`;
    if (e.channels.length === 0) {
      ol.append(el('li', 'empty', 'No channel has subscribers.'));
      return;
    }
    const most = e.channels[0].subscribers || 1;
    e.channels.forEach((c, i) => {
      const li = el('li');
      const b = el('button');
      b.type = 'button';
      b.dataset.channel = c.channel;
      if (c.channel === inspected) b.classList.add('active');
      b.title = `Inspect ${c.channel}`;
      const bar = el('span', 'bar');
      bar.style.width = `${(100 * c.subscribers) / most}%`;
      b.append(el('span', 'rank', String(i + 1)), el('span', 'name', c.channel), el('span', 'subs', fmtInt(c.subscribers)), bar);
      b.addEventListener('click', () => {
        $('inspect-channel').value = c.channel;
        inspect(c.channel);
      });
      li.append(b);
      ol.append(li);
    });
  }

  // ---- charts ----
  function niceMax(v, rate) {
    const floor = rate ? 1 : 4;
    if (v <= floor) return floor;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 3, 4, 5, 6, 8, 10]) { // tops whose halves read well
      if (m * p >= v) return m * p;
    }
    return 10 * p;
  }

  function draw(name) {
    const canvas = $(`chart-${name}`);
    const m = metrics[name];
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (w === 0 || h === 0) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);

    const now = samples.length ? samples[samples.length - 1].t : Date.now();
    const span = Math.min(WINDOW_MS, Math.max(MIN_WINDOW_MS, samples.length ? now - samples[0].t : 0));
    const ids = [...colors.keys()];
    const totals = samples.map((s) => ({ t: s.t, v: sum([...s.nodes.values()], m.of) }));
    const top = niceMax(Math.max(0, ...totals.map((p) => p.v)), m.rate);

    g.font = '11px system-ui, sans-serif';
    const labelW = Math.max(...[0, top / 2, top].map((v) => g.measureText(m.rate ? fmtRate(v) : fmtInt(v)).width)) + 8;
    const left = labelW;
    const right = w - 4;
    const topY = 6;
    const bottom = h - 18;
    const x = (t) => left + ((t - (now - span)) / span) * (right - left);
    const y = (v) => bottom - (v / top) * (bottom - topY);

    // grid and labels
    g.strokeStyle = '#27324a';
    g.fillStyle = '#8b97b0';
    g.lineWidth = 1;
    g.textBaseline = 'middle';
    g.textAlign = 'right';
    for (const v of [0, top / 2, top]) {
      const yy = Math.round(y(v)) + 0.5;
      g.beginPath();
      g.moveTo(left, yy);
      g.lineTo(right, yy);
      g.stroke();
      g.fillText(m.rate ? fmtRate(v) : fmtInt(v), left - 6, yy);
    }
    g.textBaseline = 'alphabetic';
    g.textAlign = 'left';
    g.fillText(span >= WINDOW_MS ? '2 min ago' : `${Math.round(span / 1000)} s ago`, left, h - 4);
    g.textAlign = 'right';
    g.fillText('now', right, h - 4);

    // one line per node (a gap where it was missing), then the cluster's
    const line = (points, color, width) => {
      g.strokeStyle = color;
      g.lineWidth = width;
      g.lineJoin = 'round';
      g.beginPath();
      let open = false;
      for (const p of points) {
        if (p === null) {
          open = false;
          continue;
        }
        if (open) g.lineTo(x(p.t), y(p.v));
        else g.moveTo(x(p.t), y(p.v));
        open = true;
      }
      g.stroke();
    };
    if (ids.length > 1) {
      for (const id of ids) {
        line(samples.map((s) => (s.nodes.has(id) ? { t: s.t, v: m.of(s.nodes.get(id)) } : null)), colorOf(id), 1.5);
      }
    }
    if (totals.length > 1) {
      // a faint area under the cluster's line
      g.beginPath();
      g.moveTo(x(totals[0].t), y(0));
      for (const p of totals) g.lineTo(x(p.t), y(p.v));
      g.lineTo(x(totals[totals.length - 1].t), y(0));
      g.closePath();
      g.fillStyle = 'rgba(91, 140, 255, 0.10)';
      g.fill();
    }
    line(totals, TOTAL_COLOR, 2.5);
  }

  function drawAll() {
    for (const name of Object.keys(metrics)) draw(name);
  }

  if (window.ResizeObserver) {
    const ro = new ResizeObserver(() => drawAll());
    for (const name of Object.keys(metrics)) ro.observe($(`chart-${name}`));
  } else {
    window.addEventListener('resize', drawAll);
  }

  // ---- requests ----
  async function request(method, path, body) {
    const init = { method, headers: { Accept: 'application/json' }, cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.headers[ACTION_HEADER] = '1';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let data = null;
    try {
      data = await res.json();
    } catch {
      /* not JSON */
    }
    if (!res.ok) {
      const err = new Error((data && data.error && data.error.message) || `HTTP ${res.status}`);
      err.code = data && data.error && data.error.code;
      throw err;
    }
    return data || {};
  }

  function showResult(id, ok, text) {
    const p = $(id);
    p.className = ok ? 'result ok' : 'result bad';
    p.textContent = text;
  }

  // ---- channel inspector ----
  let inspectTimer = null;
  let inspectSeq = 0;

  async function inspect(channel) {
    inspected = channel;
    for (const b of document.querySelectorAll('#channels button')) b.classList.toggle('active', b.dataset.channel === channel);
    $('inspect').hidden = false;
    $('inspect').dataset.channel = channel;
    if (!$('publish-channel').value) $('publish-channel').value = channel;
    await refreshInspect();
    clearInterval(inspectTimer);
    inspectTimer = setInterval(() => {
      if (!document.hidden) refreshInspect();
    }, 3000);
  }

  async function refreshInspect() {
    const channel = inspected;
    const seq = ++inspectSeq;
    const q = encodeURIComponent(channel);
    const [pres, hist] = await Promise.allSettled([request('GET', `/admin/api/presence?channel=${q}`), request('GET', `/admin/api/history?channel=${q}&limit=20`)]);
    if (seq !== inspectSeq) return; // a newer view is on its way
    renderPresence(channel, pres);
    renderHistory(channel, hist);
  }

  function note(text, kind) {
    const p = el('p', 'note', text);
    if (kind) p.dataset.kind = kind;
    return p;
  }

  function namespaceOf(channel) {
    const i = channel.indexOf(':');
    return i < 0 ? 'the default namespace' : `namespace ${channel.slice(0, i)}`;
  }

  function renderPresence(channel, r) {
    const box = $('presence');
    box.replaceChildren();
    $('presence-count').textContent = '';
    if (r.status === 'rejected') {
      if (r.reason.code === 'forbidden') {
        box.append(note(`Presence is not kept in ${namespaceOf(channel)} (presence: true in the namespace's options, or --presence for the default one).`, 'off'));
      } else {
        box.append(note(`Cannot read the presence: ${r.reason.message}`, 'error'));
      }
      return;
    }
    const clients = r.value.clients || [];
    $('presence-count').textContent = `(${clients.length})`;
    if (clients.length === 0) {
      box.append(note('Nobody is in this channel.', 'empty'));
      return;
    }
    const ul = el('ul', 'list');
    for (const c of clients) {
      const li = el('li');
      li.append(el('span', 'who', c.user || '(anonymous)'), el('span', 'v', c.client), el('span', 'k', `on ${c.node}`));
      ul.append(li);
    }
    box.append(ul);
  }

  function renderHistory(channel, r) {
    const box = $('history');
    box.replaceChildren();
    $('history-count').textContent = '';
    if (r.status === 'rejected') {
      if (r.reason.code === 'forbidden') {
        box.append(note(`No history is kept in ${namespaceOf(channel)} (history_size in the namespace's options, or --history-size for the default one).`, 'off'));
      } else {
        box.append(note(`Cannot read the history: ${r.reason.message}`, 'error'));
      }
      return;
    }
    const msgs = r.value.messages || [];
    $('history-count').textContent = `(${msgs.length}, offset ${r.value.offset})`;
    if (msgs.length === 0) {
      box.append(note('No message yet.', 'empty'));
      return;
    }
    const ul = el('ul', 'list');
    for (const m of msgs.slice().reverse()) {
      const li = el('li');
      const data = m.encoding === 'base64' ? `(binary) ${m.data}` : JSON.stringify(m.data);
      li.append(el('span', 'k', `#${m.offset}`), el('span', 'k', m.ts ? fmtTime(m.ts) : ''), el('span', 'v', data));
      ul.append(li);
    }
    box.append(ul);
  }

  $('inspect-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const ch = $('inspect-channel').value.trim();
    if (ch) inspect(ch);
  });

  // ---- actions ----
  $('publish-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const channel = $('publish-channel').value.trim();
    const text = $('publish-data').value;
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      data = text; // plain text goes as a JSON string
    }
    const button = $('publish');
    button.disabled = true;
    try {
      const r = await request('POST', '/admin/api/publish', { channel, data });
      showResult('publish-result', true, r.offset ? `Published to ${channel} at offset ${r.offset}.` : `Published to ${channel}.`);
      if (channel === inspected) refreshInspect();
    } catch (err) {
      showResult('publish-result', false, `Not published: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  });

  $('disconnect-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const user = $('disconnect-user').value.trim();
    const button = $('disconnect');
    button.disabled = true;
    try {
      await request('POST', '/admin/api/disconnect', { user });
      showResult('disconnect-result', true, `Every connection of ${user} is being closed.`);
    } catch (err) {
      showResult('disconnect-result', false, `Not done: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  });

  window.switchboardAdmin = { samples, latest: () => latest };
  drawAll();
  connect();
})();
