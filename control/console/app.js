// riptide console: a client of Iggy's REST API (and /ui/api) on the same origin. Plain
// JavaScript, no build step, no external resources. Every value from the server is escaped
// before it reaches the page.
'use strict';

(function () {
  const app = document.getElementById('app');
  const TOKEN = 'riptide.token';
  const EXPIRY = 'riptide.expiry';
  const USER = 'riptide.user';
  const NAME = 'riptide.username';
  // u64::MAX: "never expires" in Iggy's JSON; JavaScript numbers cannot carry it exactly.
  const NEVER = '18446744073709551615';
  const POLL_FORMATS = ['text', 'json', 'hex'];
  let timer = null;
  let refreshTimer = null;

  // ---------------------------------------------------------------- helpers

  function esc(value) {
    return String(value === undefined || value === null ? '' : value).replace(/[&<>"']/g,
      (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }

  function seg(value) {
    return encodeURIComponent(String(value));
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function on(id, event, handler) {
    const element = byId(id);
    if (element) element.addEventListener(event, handler);
  }

  function onEach(selector, event, handler) {
    app.querySelectorAll(selector).forEach((element) => {
      element.addEventListener(event, (e) => handler(element, e));
    });
  }

  function onSubmit(id, handler) {
    on(id, 'submit', (event) => {
      event.preventDefault();
      Promise.resolve(handler()).catch(showError);
    });
  }

  function fmtNumber(n) {
    if (n === null || n === undefined) return '-';
    return Number(n).toLocaleString('en-US');
  }

  function fmtRate(n, digits) {
    if (n === null || n === undefined || Number.isNaN(n)) return '-';
    return Number(n).toFixed(digits === undefined ? 2 : digits);
  }

  function fmtTime(us) {
    if (!us) return '-';
    const d = new Date(Number(us) / 1000);
    return d.toISOString().replace('T', ' ').replace('Z', '');
  }

  function fmtExpiry(value) {
    if (value === 0) return 'server default';
    if (value >= 1.8e19) return 'never';
    const s = value / 1e6;
    if (s % 86400 === 0) return (s / 86400) + ' d';
    if (s % 3600 === 0) return (s / 3600) + ' h';
    return s + ' s';
  }

  function b64ToBytes(b64) {
    const binary = atob(b64 || '');
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function bytesToB64(bytes) {
    let binary = '';
    bytes.forEach((b) => { binary += String.fromCharCode(b); });
    return btoa(binary);
  }

  function textToB64(text) {
    return bytesToB64(new TextEncoder().encode(text));
  }

  function u32ToB64(n) {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, n, true);
    return bytesToB64(bytes);
  }

  function hexDump(bytes) {
    const lines = [];
    for (let i = 0; i < bytes.length; i += 16) {
      const chunk = Array.from(bytes.slice(i, i + 16));
      const hex = chunk.map((b) => b.toString(16).padStart(2, '0')).join(' ');
      const ascii = chunk.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
      lines.push(i.toString(16).padStart(6, '0') + '  ' + hex.padEnd(48, ' ') + ' ' + ascii);
    }
    return lines.join('\n');
  }

  function renderPayload(b64, format) {
    const bytes = b64ToBytes(b64);
    if (format === 'hex') return hexDump(bytes);
    const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
    if (format === 'json') {
      try {
        return JSON.stringify(JSON.parse(text), null, 2);
      } catch (e) {
        return '(not JSON) ' + text;
      }
    }
    return text;
  }

  // A header value by its kind (Iggy's user header kinds; numbers are little-endian).
  function headerValue(field) {
    const bytes = b64ToBytes(field.value);
    const view = new DataView(bytes.buffer);
    const kind = field.kind;
    try {
      switch (kind) {
        case 'string': return new TextDecoder().decode(bytes);
        case 'bool': return bytes[0] ? 'true' : 'false';
        case 'int8': return String(view.getInt8(0));
        case 'int16': return String(view.getInt16(0, true));
        case 'int32': return String(view.getInt32(0, true));
        case 'int64': return String(view.getBigInt64(0, true));
        case 'uint8': return String(view.getUint8(0));
        case 'uint16': return String(view.getUint16(0, true));
        case 'uint32': return String(view.getUint32(0, true));
        case 'uint64': return String(view.getBigUint64(0, true));
        case 'float32': return String(view.getFloat32(0, true));
        case 'float64': return String(view.getFloat64(0, true));
        default: return '0x' + Array.from(bytes).map((b) => b.toString(16).padStart(2, '0')).join('');
      }
    } catch (e) {
      return '(' + kind + ', ' + bytes.length + ' bytes)';
    }
  }

  function table(headers, rows, empty) {
    if (!rows.length) return '<p class="empty">' + esc(empty || 'Nothing here yet.') + '</p>';
    const head = headers.map((h) => {
      const numeric = h.startsWith('#');
      return '<th' + (numeric ? ' class="num"' : '') + '>' + esc(numeric ? h.slice(1) : h) + '</th>';
    }).join('');
    const body = rows.map((row) => '<tr>' + row.map((cell, i) => {
      const numeric = headers[i] && headers[i].startsWith('#');
      const actions = i === row.length - 1 && headers[i] === '';
      const cls = numeric ? ' class="num"' : (actions ? ' class="actions"' : '');
      return '<td' + cls + '>' + cell + '</td>';
    }).join('') + '</tr>').join('');
    return '<table><thead><tr>' + head + '</tr></thead><tbody>' + body + '</tbody></table>';
  }

  function button(action, value, label, kind) {
    return '<button class="small ' + (kind || 'secondary') + '" data-action="' + esc(action) +
      '" data-value="' + esc(value) + '">' + esc(label) + '</button>';
  }

  function crumbs(parts) {
    return '<div class="crumbs">' + parts.map(([href, label]) =>
      (href ? '<a href="' + esc(href) + '">' + esc(label) + '</a>' : esc(label))).join(' / ') + '</div>';
  }

  // ---------------------------------------------------------------- notices, confirmation

  function notice(text, kind) {
    const box = byId('notice');
    box.textContent = text;
    box.className = kind || 'error';
    box.hidden = false;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { box.hidden = true; }, kind === 'info' ? 4000 : 10000);
  }

  function showError(error) {
    notice(error && error.message ? error.message : String(error), 'error');
  }

  function confirmAction(text) {
    return new Promise((resolve) => {
      const modal = byId('confirm');
      byId('confirm-text').textContent = text;
      modal.hidden = false;
      const done = (answer) => {
        modal.hidden = true;
        byId('confirm-yes').onclick = null;
        byId('confirm-no').onclick = null;
        resolve(answer);
      };
      byId('confirm-yes').onclick = () => done(true);
      byId('confirm-no').onclick = () => done(false);
    });
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, body) {
      let reason = 'HTTP ' + status;
      if (body && typeof body === 'object') {
        if (body.reason) reason = body.reason + ' (' + body.code + ', HTTP ' + status + ')';
        else if (body.error) reason = body.error + ' (HTTP ' + status + ')';
      }
      super(reason);
      this.status = status;
      this.body = body;
    }
  }

  // Message ids (u128) and checksums (u64) lose precision as JavaScript numbers: quote them.
  function parseExact(text) {
    return JSON.parse(text.replace(/"(id|checksum)":(\d{16,})/g, '"$1":"$2"'));
  }

  async function api(method, path, body) {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN);
    if (token) headers.Authorization = 'Bearer ' + token;
    let payload;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const response = await fetch(path, { method, headers, body: payload });
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = parseExact(text); } catch (e) { data = text; }
    }
    if (response.status === 401 && !path.startsWith('/users/login')) {
      forget();
      location.hash = '#/login';
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // ---------------------------------------------------------------- session

  function remember(identity, username) {
    sessionStorage.setItem(TOKEN, identity.access_token.token);
    sessionStorage.setItem(EXPIRY, String(identity.access_token.expiry));
    sessionStorage.setItem(USER, String(identity.user_id));
    if (username) sessionStorage.setItem(NAME, username);
    scheduleRefresh();
  }

  function forget() {
    [TOKEN, EXPIRY, USER, NAME].forEach((key) => sessionStorage.removeItem(key));
    clearTimeout(refreshTimer);
  }

  // A token is refreshed a minute before it expires, while the console is open.
  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    const expiry = Number(sessionStorage.getItem(EXPIRY) || 0);
    if (!expiry) return;
    const wait = Math.max(5000, (expiry - Date.now() / 1000 - 60) * 1000);
    refreshTimer = setTimeout(() => {
      api('POST', '/users/refresh-token', { token: sessionStorage.getItem(TOKEN) })
        .then((identity) => remember(identity))
        .catch(showError);
    }, wait);
  }

  function header() {
    const signedIn = !!sessionStorage.getItem(TOKEN);
    byId('nav').hidden = !signedIn;
    byId('logout').hidden = !signedIn;
    byId('whoami').textContent = signedIn ? 'signed in as ' + (sessionStorage.getItem(NAME) || 'user ' + sessionStorage.getItem(USER)) : '';
    const area = location.hash.split('/')[1] || '';
    document.querySelectorAll('#nav a').forEach((a) => {
      a.classList.toggle('active', a.getAttribute('href') === '#/' + area);
    });
  }

  byId('logout').addEventListener('click', () => {
    api('DELETE', '/users/logout').catch(() => {}).finally(() => {
      forget();
      location.hash = '#/login';
    });
  });

  // ---------------------------------------------------------------- login

  function viewLogin() {
    app.innerHTML = '<div class="login panel"><h1>Sign in</h1>' +
      '<form class="stack" id="login-form">' +
      '<label>Username<input id="login-username" autocomplete="username" required></label>' +
      '<label>Password<input id="login-password" type="password" autocomplete="current-password" required></label>' +
      '<button id="login-submit">Sign in</button></form>' +
      '<p class="muted">riptide\'s users; the same credentials as over the Iggy protocol.</p></div>';
    onSubmit('login-form', async () => {
      const username = byId('login-username').value;
      const identity = await api('POST', '/users/login', { username, password: byId('login-password').value });
      remember(identity, username);
      location.hash = '#/overview';
    });
    byId('login-username').focus();
  }

  // ---------------------------------------------------------------- overview

  const COLORS = ['#0b6bcb', '#e07a1f', '#2e7d32', '#8e24aa'];

  function chartBox(id, title) {
    return '<div class="chart"><div class="title"><span>' + esc(title) + '</span>' +
      '<span class="now" id="now-' + id + '"></span></div><canvas id="chart-' + id + '"></canvas></div>';
  }

  // A line chart of several series over the sample times; the canvas carries its point count, the
  // number of points with a value above zero and its last values as data attributes (for tests
  // and for anyone reading the page's DOM).
  function drawChart(id, series, unit) {
    const canvas = byId('chart-' + id);
    if (!canvas) return;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext('2d');
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, width, height);
    const points = series.length ? series[0].values.length : 0;
    let max = 0;
    series.forEach((s) => s.values.forEach((v) => { if (v !== null && v > max) max = v; }));
    const top = max > 0 ? max * 1.15 : 1;
    const left = 56;
    const plotW = width - left - 8;
    const plotH = height - 22;
    ctx.strokeStyle = '#e3e7ec';
    ctx.fillStyle = '#5d6b7c';
    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i += 1) {
      const y = 6 + plotH - (plotH * i) / 4;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + plotW, y);
      ctx.stroke();
      ctx.fillText(axisLabel((top * i) / 4), 4, y + 4);
    }
    series.forEach((s, index) => {
      ctx.strokeStyle = COLORS[index % COLORS.length];
      ctx.lineWidth = 2;
      ctx.beginPath();
      let drawing = false;
      s.values.forEach((v, i) => {
        if (v === null) { drawing = false; return; }
        const x = left + (points > 1 ? (plotW * i) / (points - 1) : plotW);
        const y = 6 + plotH - (plotH * v) / top;
        if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        drawing = true;
      });
      ctx.stroke();
      ctx.fillStyle = COLORS[index % COLORS.length];
      ctx.fillText(s.label, left + 6 + index * 90, height - 4);
    });
    const last = series.map((s) => (s.values.length ? s.values[s.values.length - 1] : null));
    let active = 0;
    for (let i = 0; i < points; i += 1) {
      if (series.some((s) => s.values[i] !== null && s.values[i] > 0)) active += 1;
    }
    canvas.dataset.points = String(points);
    canvas.dataset.active = String(active);
    canvas.dataset.last = JSON.stringify(last);
    const now = byId('now-' + id);
    if (now) {
      now.textContent = series.map((s, i) => s.label + ' ' + (last[i] === null ? '-' : fmtRate(last[i])) + (unit ? ' ' + unit : '')).join('  ');
    }
  }

  function axisLabel(value) {
    if (value === 0) return '0';
    if (value >= 100) return value.toFixed(0);
    if (value >= 1) return value.toFixed(1);
    return value.toPrecision(2);
  }

  function card(label, value) {
    return '<div class="card"><div class="label">' + esc(label) + '</div><div class="value">' + esc(value) + '</div></div>';
  }

  function renderOverview(data) {
    const status = data.status || {};
    const stats = status.stats || {};
    const supervisor = status.supervisor || {};
    const configured = status.configured || {};
    const workers = stats.workers ? stats.workers.length : configured.network_workers;
    const shards = stats.shards ? stats.shards.length : configured.storage_shards;
    const cards = [
      card('Appliance mode', status.mode || '-'),
      card('Dataplane', (supervisor.state || '-') + (supervisor.pid ? ' (pid ' + supervisor.pid + ')' : '')),
      card('Version', stats.version || '-'),
      card('Network workers', fmtNumber(workers)),
      card('Storage shards', fmtNumber(shards)),
      card('Lcores', data.lcores ? data.lcores.join(', ') : 'kernel mode'),
      card('Connections', fmtNumber(stats.connections)),
      card('Streams / topics / partitions', [stats.streams, stats.topics, stats.partitions].map(fmtNumber).join(' / ')),
      card('Steering', stats.steering || '-'),
      card('HTTP sessions / pooled connections', fmtNumber(data.http.sessions) + ' / ' + fmtNumber(data.http.pool.idle + data.http.pool.in_use)),
      card('Listening', stats.tcp_address || '-'),
      card('Restarts', fmtNumber(supervisor.restarts)),
    ];
    byId('cards').innerHTML = cards.join('');
    const samples = data.samples || [];
    const pick = (f) => samples.map(f);
    drawChart('throughput', [
      { label: 'in', values: pick((s) => s.in_bytes_per_s / 1e6) },
      { label: 'out', values: pick((s) => s.out_bytes_per_s / 1e6) },
    ], 'MB/s');
    drawChart('messages', [
      { label: 'in', values: pick((s) => s.in_messages_per_s) },
      { label: 'out', values: pick((s) => s.out_messages_per_s) },
    ], '/s');
    drawChart('p99', [
      { label: 'append p99', values: pick((s) => (s.append_p99_us === null ? null : s.append_p99_us / 1000)) },
    ], 'ms');
    drawChart('connections', [
      { label: 'open', values: pick((s) => s.connections) },
      { label: 'requests/s', values: pick((s) => s.requests_per_s) },
    ], '');
  }

  async function viewOverview() {
    app.innerHTML = '<h1>Overview</h1><div class="cards" id="cards"></div><div class="charts">' +
      chartBox('throughput', 'Throughput, MB/s') + chartBox('messages', 'Messages per second') +
      chartBox('p99', 'Append latency p99, ms (storage, durable acknowledgement)') +
      chartBox('connections', 'Connections and requests') + '</div>' +
      '<p class="muted">Sampled once a second from the dataplane\'s statistics; the last five minutes.</p>';
    const tick = async () => renderOverview(await api('GET', '/ui/api/overview'));
    await tick();
    timer = setInterval(() => tick().catch(showError), 1000);
  }

  // ---------------------------------------------------------------- streams and topics

  async function viewStreams() {
    const streams = await api('GET', '/streams');
    streams.sort((a, b) => a.id - b.id);
    app.innerHTML = '<h1>Streams</h1>' +
      '<form class="inline" id="stream-form"><label>New stream<input id="stream-name" required maxlength="255" placeholder="name"></label>' +
      '<button id="stream-create">Create stream</button></form>' +
      table(['#ID', 'Name', '#Topics', '#Messages', 'Size', 'Created', ''], streams.map((s) => [
        esc(s.id), '<a href="#/streams/' + seg(s.id) + '">' + esc(s.name) + '</a>', fmtNumber(s.topics_count),
        fmtNumber(s.messages_count), esc(s.size), esc(fmtTime(s.created_at)),
        button('purge-stream', s.id, 'Purge') + ' ' + button('delete-stream', s.id, 'Delete', 'danger'),
      ]), 'No streams yet: create one above.');
    onSubmit('stream-form', async () => {
      const created = await api('POST', '/streams', { name: byId('stream-name').value });
      notice('Created stream ' + created.name + ' (id ' + created.id + ')', 'info');
      await viewStreams();
    });
    onEach('[data-action=purge-stream]', 'click', async (el) => {
      if (!(await confirmAction('Purge every message of stream ' + el.dataset.value + '?'))) return;
      await api('DELETE', '/streams/' + seg(el.dataset.value) + '/purge').catch(showError);
      await viewStreams();
    });
    onEach('[data-action=delete-stream]', 'click', async (el) => {
      if (!(await confirmAction('Delete stream ' + el.dataset.value + ' with all its topics and messages?'))) return;
      await api('DELETE', '/streams/' + seg(el.dataset.value)).catch(showError);
      await viewStreams();
    });
  }

  async function viewStream(streamId) {
    const stream = await api('GET', '/streams/' + seg(streamId));
    const topics = (stream.topics || []).sort((a, b) => a.id - b.id);
    const base = '#/streams/' + seg(stream.id);
    app.innerHTML = crumbs([['#/streams', 'Streams'], [null, stream.name]]) +
      '<h1>Stream ' + esc(stream.name) + ' <span class="muted">#' + esc(stream.id) + '</span></h1>' +
      '<form class="inline" id="topic-form"><label>New topic<input id="topic-name" required maxlength="255" placeholder="name"></label>' +
      '<label>Partitions<input id="topic-partitions" type="number" min="1" max="1000" value="1" required></label>' +
      '<label>Message expiry<select id="topic-expiry"><option value="0">server default</option><option value="' + NEVER + '">never</option>' +
      '<option value="3600000000">1 hour</option><option value="86400000000">1 day</option><option value="604800000000">7 days</option></select></label>' +
      '<button id="topic-create">Create topic</button></form>' +
      table(['#ID', 'Name', '#Partitions', '#Messages', 'Size', 'Expiry', ''], topics.map((t) => [
        esc(t.id), '<a href="' + base + '/topics/' + seg(t.id) + '">' + esc(t.name) + '</a>', fmtNumber(t.partitions_count),
        fmtNumber(t.messages_count), esc(t.size), esc(fmtExpiry(t.message_expiry)),
        button('purge-topic', t.id, 'Purge') + ' ' + button('delete-topic', t.id, 'Delete', 'danger'),
      ]), 'No topics yet.');
    onSubmit('topic-form', async () => {
      const name = byId('topic-name').value;
      const partitions = Number(byId('topic-partitions').value);
      const body = '{"name":' + JSON.stringify(name) + ',"partitions_count":' + partitions +
        ',"compression_algorithm":"none","message_expiry":' + byId('topic-expiry').value + ',"max_topic_size":0}';
      const topic = await api('POST', '/streams/' + seg(stream.id) + '/topics', body);
      notice('Created topic ' + topic.name + ' with ' + topic.partitions_count + ' partition(s)', 'info');
      await viewStream(streamId);
    });
    onEach('[data-action=purge-topic]', 'click', async (el) => {
      if (!(await confirmAction('Purge every message of topic ' + el.dataset.value + '?'))) return;
      await api('DELETE', '/streams/' + seg(stream.id) + '/topics/' + seg(el.dataset.value) + '/purge').catch(showError);
      await viewStream(streamId);
    });
    onEach('[data-action=delete-topic]', 'click', async (el) => {
      if (!(await confirmAction('Delete topic ' + el.dataset.value + ' and its messages?'))) return;
      await api('DELETE', '/streams/' + seg(stream.id) + '/topics/' + seg(el.dataset.value)).catch(showError);
      await viewStream(streamId);
    });
  }

  function topicPath(streamId, topicId) {
    return '/streams/' + seg(streamId) + '/topics/' + seg(topicId);
  }

  function topicTabs(stream, topic, active) {
    const base = '#/streams/' + seg(stream) + '/topics/' + seg(topic);
    const tab = (href, label, key) => '<a href="' + href + '"' + (key === active ? ' class="active"><b>' + esc(label) + '</b>' : '>' + esc(label)) + '</a>';
    return '<div class="tabs">' + tab(base, 'Partitions', 'partitions') + tab(base + '/messages', 'Messages', 'messages') +
      tab(base + '/groups', 'Consumer groups', 'groups') + '</div>';
  }

  async function viewTopic(streamId, topicId) {
    const topic = await api('GET', topicPath(streamId, topicId));
    const path = topicPath(streamId, topic.id);
    app.innerHTML = crumbs([['#/streams', 'Streams'], ['#/streams/' + seg(streamId), 'stream ' + streamId], [null, topic.name]]) +
      '<h1>Topic ' + esc(topic.name) + ' <span class="muted">#' + esc(topic.id) + '</span></h1>' +
      topicTabs(streamId, topic.id, 'partitions') +
      '<div class="cards">' + card('Messages', fmtNumber(topic.messages_count)) + card('Size', topic.size) +
      card('Partitions', fmtNumber(topic.partitions_count)) + card('Message expiry', fmtExpiry(topic.message_expiry)) +
      card('Durability', (topic.options && topic.options.durability && topic.options.durability.value) || '-') + '</div>' +
      table(['#Partition', '#Messages', '#Current offset', 'Size', '#Segments', 'Created', ''], (topic.partitions || []).map((p) => [
        esc(p.id), fmtNumber(p.messages_count), fmtNumber(p.current_offset), esc(p.size), fmtNumber(p.segments_count),
        esc(fmtTime(p.created_at)), button('delete-segments', p.id + ':' + p.segments_count, 'Delete segments', 'danger'),
      ]), 'No partitions.') +
      '<form class="inline" id="partitions-form"><label>Partitions<input id="partitions-count" type="number" min="1" max="1000" value="1"></label>' +
      '<button id="partitions-add">Add partitions</button><button type="button" class="danger" id="partitions-remove">Remove last partitions</button></form>';
    onSubmit('partitions-form', async () => {
      await api('POST', path + '/partitions', { partitions_count: Number(byId('partitions-count').value) });
      await viewTopic(streamId, topicId);
    });
    on('partitions-remove', 'click', async () => {
      const count = Number(byId('partitions-count').value);
      if (!(await confirmAction('Remove the last ' + count + ' partition(s) and their messages?'))) return;
      await api('DELETE', path + '/partitions?partitions_count=' + count).catch(showError);
      await viewTopic(streamId, topicId);
    });
    onEach('[data-action=delete-segments]', 'click', async (el) => {
      const [partition, segments] = el.dataset.value.split(':');
      if (!(await confirmAction('Delete the ' + segments + ' segment(s) of partition ' + partition + '?'))) return;
      await api('DELETE', path + '/partitions/' + partition + '?segments_count=' + segments).catch(showError);
      await viewTopic(streamId, topicId);
    });
  }

  // ---------------------------------------------------------------- message browser

  async function viewMessages(streamId, topicId) {
    const topic = await api('GET', topicPath(streamId, topicId));
    const path = topicPath(streamId, topic.id);
    const partitions = (topic.partitions || []).map((p) => '<option value="' + esc(p.id) + '">' + esc(p.id) + '</option>').join('');
    app.innerHTML = crumbs([['#/streams', 'Streams'], ['#/streams/' + seg(streamId), 'stream ' + streamId],
      ['#/streams/' + seg(streamId) + '/topics/' + seg(topic.id), topic.name], [null, 'messages']]) +
      '<h1>Messages of ' + esc(topic.name) + '</h1>' + topicTabs(streamId, topic.id, 'messages') +
      '<form class="inline" id="poll-form"><label>Partition<select id="poll-partition">' + partitions + '</select></label>' +
      '<label>From<select id="poll-kind"><option value="offset">offset</option><option value="timestamp">timestamp</option>' +
      '<option value="first">first</option><option value="last">last</option></select></label>' +
      '<label>Offset / time<input id="poll-value" value="0"></label>' +
      '<label>Count<input id="poll-count" type="number" min="1" max="1000" value="20"></label>' +
      '<label>Payload as<select id="poll-format">' + POLL_FORMATS.map((f) => '<option>' + f + '</option>').join('') + '</select></label>' +
      '<button id="poll">Poll</button></form>' +
      '<div id="poll-result"></div>' +
      '<h2>Send a message</h2><form class="stack wide" id="send-form">' +
      '<label>Partition<select id="send-partition"><option value="balanced">balanced</option>' + partitions + '</select></label>' +
      '<label>Payload<textarea id="send-payload" required></textarea></label>' +
      '<label>Headers (key=value per line, sent as strings)<textarea id="send-headers"></textarea></label>' +
      '<button id="send">Send</button></form>';
    byId('poll-kind').addEventListener('change', () => {
      const kind = byId('poll-kind').value;
      const input = byId('poll-value');
      input.disabled = kind === 'first' || kind === 'last';
      if (kind === 'timestamp') input.value = new Date(Date.now() - 3600e3).toISOString();
      if (kind === 'offset') input.value = '0';
    });
    byId('poll-format').addEventListener('change', () => { if (viewMessages.last) renderPolled(viewMessages.last); });
    onSubmit('poll-form', () => poll(path));
    onSubmit('send-form', async () => {
      const target = byId('send-partition').value;
      const partitioning = target === 'balanced' ? { kind: 'balanced', value: '' } : { kind: 'partition_id', value: u32ToB64(Number(target)) };
      const message = { id: 0, payload: textToB64(byId('send-payload').value) };
      const headers = byId('send-headers').value.split('\n').map((l) => l.trim()).filter((l) => l.includes('='));
      if (headers.length) {
        message.user_headers = headers.map((line) => {
          const at = line.indexOf('=');
          return { key: { kind: 'string', value: textToB64(line.slice(0, at)) }, value: { kind: 'string', value: textToB64(line.slice(at + 1)) } };
        });
      }
      const answer = await api('POST', path + '/messages', { partitioning, messages: [message] });
      const c = (answer && answer.confirmations && answer.confirmations[0]) || {};
      notice('Sent to partition ' + c.partition_id + ' at offset ' + c.base_offset, 'info');
      byId('send-payload').value = '';
      if (c.partition_id !== undefined) byId('poll-partition').value = String(c.partition_id);
      await poll(path);
    });
    await poll(path);
  }

  async function poll(path) {
    const kind = byId('poll-kind').value;
    let value = byId('poll-value').value.trim() || '0';
    if (kind === 'timestamp') {
      const ms = Date.parse(value);
      if (Number.isNaN(ms)) throw new Error('not a date: ' + value);
      value = String(ms * 1000);
    }
    if (kind === 'first' || kind === 'last') value = '0';
    const query = 'consumer_id=1&partition_id=' + seg(byId('poll-partition').value) + '&kind=' + kind +
      '&value=' + seg(value) + '&count=' + seg(byId('poll-count').value) + '&auto_commit=false';
    const polled = await api('GET', path + '/messages?' + query);
    viewMessages.last = polled;
    renderPolled(polled);
  }

  function renderPolled(polled) {
    const format = byId('poll-format').value;
    const rows = (polled.messages || []).map((m) => {
      const headers = Array.isArray(m.user_headers) ? m.user_headers.map((h) =>
        '<span class="tag">' + esc(new TextDecoder().decode(b64ToBytes(h.key.value))) + ' = ' + esc(headerValue(h.value)) + '</span>').join('') :
        (m.user_headers ? '<span class="tag">raw ' + esc(m.user_headers) + '</span>' : '');
      return [fmtNumber(m.header.offset), esc(fmtTime(m.header.timestamp)), '<span class="mono">' + esc(m.header.id) + '</span>',
        fmtNumber(m.header.payload_length), headers, '<pre class="payload">' + esc(renderPayload(m.payload, format)) + '</pre>'];
    });
    byId('poll-result').innerHTML = '<p class="muted">Partition ' + esc(polled.partition_id) + ', current offset ' +
      esc(polled.current_offset) + ', ' + esc(polled.count) + ' message(s).</p>' +
      table(['#Offset', 'Timestamp (UTC)', 'ID', '#Bytes', 'Headers', 'Payload'], rows, 'No messages from there.');
  }

  // ---------------------------------------------------------------- consumer groups

  async function viewGroups(streamId, topicId) {
    const path = topicPath(streamId, topicId);
    const groups = await api('GET', path + '/consumer-groups');
    const base = '#/streams/' + seg(streamId) + '/topics/' + seg(topicId) + '/groups/';
    app.innerHTML = crumbs([['#/streams', 'Streams'], ['#/streams/' + seg(streamId), 'stream ' + streamId],
      ['#/streams/' + seg(streamId) + '/topics/' + seg(topicId), 'topic ' + topicId], [null, 'consumer groups']]) +
      '<h1>Consumer groups</h1>' + topicTabs(streamId, topicId, 'groups') +
      '<form class="inline" id="group-form"><label>New group<input id="group-name" required maxlength="255"></label>' +
      '<button id="group-create">Create group</button></form>' +
      table(['#ID', 'Name', '#Members', '#Partitions', ''], groups.map((g) => [
        esc(g.id), '<a href="' + base + seg(g.id) + '">' + esc(g.name) + '</a>', fmtNumber(g.members_count),
        fmtNumber(g.partitions_count), button('delete-group', g.id, 'Delete', 'danger'),
      ]), 'No consumer groups.');
    onSubmit('group-form', async () => {
      await api('POST', path + '/consumer-groups', { name: byId('group-name').value });
      await viewGroups(streamId, topicId);
    });
    onEach('[data-action=delete-group]', 'click', async (el) => {
      if (!(await confirmAction('Delete consumer group ' + el.dataset.value + ' and its offsets?'))) return;
      await api('DELETE', path + '/consumer-groups/' + seg(el.dataset.value)).catch(showError);
      await viewGroups(streamId, topicId);
    });
  }

  async function viewGroup(streamId, topicId, groupId) {
    const render = async () => {
      const data = await api('GET', '/ui/api/groups/' + seg(streamId) + '/' + seg(topicId) + '/' + seg(groupId));
      const group = data.group;
      const totalLag = data.partitions.reduce((sum, p) => sum + p.lag, 0);
      app.innerHTML = crumbs([['#/streams', 'Streams'], ['#/streams/' + seg(streamId), 'stream ' + streamId],
        ['#/streams/' + seg(streamId) + '/topics/' + seg(topicId) + '/groups', 'consumer groups'], [null, group.name]]) +
        '<h1>Consumer group ' + esc(group.name) + ' <span class="muted">#' + esc(group.id) + '</span></h1>' +
        '<div class="cards">' + card('Members', fmtNumber(group.members_count)) + card('Partitions', fmtNumber(group.partitions_count)) +
        card('Total lag (messages)', fmtNumber(totalLag)) + '</div>' +
        '<h2>Members</h2>' + table(['#Member', '#Partitions', 'Assigned'], (group.members || []).map((m) => [
          esc(m.id), fmtNumber(m.partitions_count), esc((m.partitions || []).join(', ')),
        ]), 'No members connected.') +
        '<h2>Lag per partition</h2>' + table(['#Partition', '#Current offset', '#Stored offset', '#Lag', 'Member'], data.partitions.map((p) => [
          esc(p.partition_id), fmtNumber(p.current_offset), p.stored_offset === null ? 'none' : fmtNumber(p.stored_offset),
          fmtNumber(p.lag), p.member_id === null ? '-' : esc(p.member_id),
        ]));
    };
    await render();
    timer = setInterval(() => render().catch(showError), 2000);
  }

  // ---------------------------------------------------------------- users and tokens

  async function viewUsers() {
    const users = await api('GET', '/users').catch((e) => { if (e.status === 403) return null; throw e; });
    const tokens = await api('GET', '/personal-access-tokens');
    const userRows = (users || []).sort((a, b) => a.id - b.id).map((u) => [
      esc(u.id), esc(u.username), '<span class="' + (u.status === 'active' ? 'ok' : 'bad') + '">' + esc(u.status) + '</span>',
      esc(fmtTime(u.created_at)),
      button('user-permissions', u.id, 'Permissions') + ' ' + button('user-password', u.id, 'Password') + ' ' +
        button('user-status', u.id + ':' + (u.status === 'active' ? 'inactive' : 'active'), u.status === 'active' ? 'Deactivate' : 'Activate') + ' ' +
        button('user-delete', u.id, 'Delete', 'danger'),
    ]);
    app.innerHTML = '<h1>Users</h1>' +
      (users === null ? '<p class="empty">You may not list users (read_users).</p>' :
        '<form class="inline" id="user-form"><label>Username<input id="user-name" required minlength="3" maxlength="50"></label>' +
        '<label>Password<input id="user-password" type="password" required minlength="3" maxlength="100"></label>' +
        '<label>Status<select id="user-status"><option>active</option><option>inactive</option></select></label>' +
        '<button id="user-create">Create user</button></form>' + table(['#ID', 'Username', 'Status', 'Created', ''], userRows)) +
      '<div id="user-editor"></div>' +
      '<h2>Your personal access tokens</h2>' +
      '<form class="inline" id="token-form"><label>Name<input id="token-name" required maxlength="30"></label>' +
      '<label>Expires<select id="token-expiry"><option value="' + NEVER + '">never</option><option value="3600000000">in 1 hour</option>' +
      '<option value="86400000000">in 1 day</option><option value="2592000000000">in 30 days</option></select></label>' +
      '<button id="token-create">Create token</button></form><div id="token-secret"></div>' +
      table(['Name', 'Expires', ''], tokens.map((t) => [
        esc(t.name), t.expiry_at ? esc(fmtTime(t.expiry_at)) : 'never', button('token-delete', t.name, 'Delete', 'danger'),
      ]), 'No tokens.');
    onSubmit('user-form', async () => {
      await api('POST', '/users', { username: byId('user-name').value, password: byId('user-password').value, status: byId('user-status').value, permissions: null });
      await viewUsers();
    });
    onSubmit('token-form', async () => {
      const body = '{"name":' + JSON.stringify(byId('token-name').value) + ',"expiry":' + byId('token-expiry').value + '}';
      const created = await api('POST', '/personal-access-tokens', body);
      await viewUsers();
      byId('token-secret').innerHTML = '<p>Copy the token now; it is not shown again:</p><p class="secret" id="token-value">' + esc(created.token) + '</p>';
    });
    onEach('[data-action=token-delete]', 'click', async (el) => {
      if (!(await confirmAction('Delete token ' + el.dataset.value + '? Sessions using it end.'))) return;
      await api('DELETE', '/personal-access-tokens/' + seg(el.dataset.value)).catch(showError);
      await viewUsers();
    });
    onEach('[data-action=user-delete]', 'click', async (el) => {
      if (!(await confirmAction('Delete user ' + el.dataset.value + '?'))) return;
      await api('DELETE', '/users/' + seg(el.dataset.value)).catch(showError);
      await viewUsers();
    });
    onEach('[data-action=user-status]', 'click', async (el) => {
      const [id, status] = el.dataset.value.split(':');
      await api('PUT', '/users/' + seg(id), { status }).catch(showError);
      await viewUsers();
    });
    onEach('[data-action=user-password]', 'click', (el) => editPassword(el.dataset.value));
    onEach('[data-action=user-permissions]', 'click', (el) => editPermissions(el.dataset.value).catch(showError));
  }

  function editPassword(id) {
    byId('user-editor').innerHTML = '<div class="panel"><h2>Password of user ' + esc(id) + '</h2>' +
      '<form class="inline" id="password-form"><label>Current password<input id="password-current" type="password" required></label>' +
      '<label>New password<input id="password-new" type="password" required minlength="3" maxlength="100"></label>' +
      '<button>Change password</button></form></div>';
    onSubmit('password-form', async () => {
      await api('PUT', '/users/' + seg(id) + '/password', { current_password: byId('password-current').value, new_password: byId('password-new').value });
      notice('Password changed; the user\'s other sessions ended.', 'info');
      byId('user-editor').innerHTML = '';
    });
  }

  async function editPermissions(id) {
    const user = await api('GET', '/users/' + seg(id));
    byId('user-editor').innerHTML = '<div class="panel"><h2>Permissions of ' + esc(user.username) + '</h2>' +
      '<p class="muted">Iggy\'s permissions JSON (global, and per stream and topic); null removes them.</p>' +
      '<form class="stack" id="permissions-form"><textarea id="permissions-json" rows="14"></textarea>' +
      '<button>Save permissions</button></form></div>';
    byId('permissions-json').value = JSON.stringify(user.permissions, null, 2);
    onSubmit('permissions-form', async () => {
      const permissions = JSON.parse(byId('permissions-json').value);
      await api('PUT', '/users/' + seg(id) + '/permissions', { permissions });
      notice('Permissions saved.', 'info');
    });
  }

  // ---------------------------------------------------------------- configuration and steering

  function flatten(value, prefix, out) {
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      Object.keys(value).forEach((key) => flatten(value[key], prefix ? prefix + '.' + key : key, out));
    } else {
      out.push([prefix, value]);
    }
    return out;
  }

  const LIVE_CHOICES = { 'steering.policy': ['least_connections', 'hash'], 'log.level': ['error', 'warn', 'info', 'debug', 'trace'] };

  async function viewConfig() {
    const data = await api('GET', '/ui/api/config');
    const live = new Set(data.live_keys || []);
    const all = flatten(data.config, '', []).map(([key, value]) => [key, Array.isArray(value) ? JSON.stringify(value) : String(value)]);
    const liveRows = all.filter(([key]) => live.has(key)).map(([key, shown]) => {
      const id = 'live-' + key.replace(/[^a-z0-9]/gi, '-');
      const choices = LIVE_CHOICES[key];
      const input = choices && choices.includes(shown)
        ? '<select id="' + id + '">' + choices.map((c) => '<option' + (c === shown ? ' selected' : '') + '>' + esc(c) + '</option>').join('') + '</select>'
        : '<input id="' + id + '" value="' + esc(shown) + '">';
      return ['<span class="mono">' + esc(key) + '</span>', input, button('config-apply', key, 'Apply', 'primary')];
    });
    const rows = all.filter(([key]) => !live.has(key)).map(([key, shown]) =>
      ['<span class="mono">' + esc(key) + '</span>', '<span class="mono">' + esc(shown) + '</span>']);
    app.innerHTML = '<h1>Configuration</h1><p class="muted">From ' + esc(data.config_path || 'the embedded defaults and the environment') +
      '. Secrets are masked.</p><h2>Live settings</h2><p class="muted">These apply at once (and until riptide-control restarts). ' +
      'Live overrides in force: <span class="mono" id="live-overrides">' + esc(JSON.stringify(data.live_overrides)) + '</span></p>' +
      table(['Key', 'Value', ''], liveRows) +
      '<h2>Everything else</h2><p class="muted">Changed in riptide.toml (or the environment), then riptide-control restarted.</p>' +
      table(['Key', 'Value'], rows);
    onEach('[data-action=config-apply]', 'click', async (el) => {
      const key = el.dataset.value;
      const raw = byId('live-' + key.replace(/[^a-z0-9]/gi, '-')).value;
      const value = /^\d+$/.test(raw) ? Number(raw) : raw;
      try {
        const answer = await api('PUT', '/ui/api/config', { [key]: value });
        notice('Applied live: ' + (answer.applied || []).join(', '), 'info');
        await viewConfig();
      } catch (e) {
        showError(e);
      }
    });
  }

  async function viewSteering() {
    const render = async () => {
      const data = await api('GET', '/ui/api/steering');
      const workers = (data.workers || []).map((w) => [esc(w.worker), fmtNumber(w.connections_open), fmtNumber(w.connections_accepted)]);
      const xdp = data.xdp_counters ? table(['Counter', '#Value'], Object.keys(data.xdp_counters).map((k) => [esc(k), fmtNumber(data.xdp_counters[k])])) : '';
      const reuse = data.reuseport ? '<p>Program: policy ' + esc(data.reuseport.policy) + ', selected per worker ' +
        esc(JSON.stringify(data.reuseport.selected)) + ', failed selections ' + esc(data.reuseport.select_failed) + '</p>' : '';
      app.innerHTML = '<h1>Steering</h1><div class="cards">' + card('Policy', data.policy) + card('Enabled', String(data.enabled)) +
        card('State', data.state || data.unavailable || '-') + '</div>' + reuse +
        '<h2>Connections per network worker</h2>' + table(['#Worker', '#Open', '#Accepted'], workers, 'No statistics yet.') +
        (xdp ? '<h2>XDP program counters</h2>' + xdp : '') +
        '<p class="muted">The policy changes live on the configuration page (steering.policy).</p>';
    };
    await render();
    timer = setInterval(() => render().catch(showError), 2000);
  }

  // ---------------------------------------------------------------- routing

  const ROUTES = [
    [/^#\/login$/, viewLogin],
    [/^#\/overview$/, viewOverview],
    [/^#\/streams$/, viewStreams],
    [/^#\/streams\/([^/]+)$/, viewStream],
    [/^#\/streams\/([^/]+)\/topics\/([^/]+)$/, viewTopic],
    [/^#\/streams\/([^/]+)\/topics\/([^/]+)\/messages$/, viewMessages],
    [/^#\/streams\/([^/]+)\/topics\/([^/]+)\/groups$/, viewGroups],
    [/^#\/streams\/([^/]+)\/topics\/([^/]+)\/groups\/([^/]+)$/, viewGroup],
    [/^#\/users$/, viewUsers],
    [/^#\/config$/, viewConfig],
    [/^#\/steering$/, viewSteering],
  ];

  async function route() {
    byId('notice').hidden = true;
    clearInterval(timer);
    timer = null;
    const signedIn = !!sessionStorage.getItem(TOKEN);
    if (!signedIn && location.hash !== '#/login') {
      location.hash = '#/login';
      return;
    }
    if (signedIn && (location.hash === '' || location.hash === '#/' || location.hash === '#/login')) {
      location.hash = '#/overview';
      return;
    }
    header();
    for (const [pattern, view] of ROUTES) {
      const match = location.hash.match(pattern);
      if (match) {
        app.dataset.view = view.name;
        try {
          await view(...match.slice(1).map(decodeURIComponent));
        } catch (error) {
          showError(error);
        }
        return;
      }
    }
    app.innerHTML = '<p class="empty">No such page.</p>';
  }

  window.addEventListener('hashchange', route);
  scheduleRefresh();
  route();
}());
