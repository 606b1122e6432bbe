// adit's web dashboard: a single page with hash routes (#/overview, #/miner/<wallet>,
// #/site/<site>, #/cluster, #/sql, #/control; boards.js adds the dashboards people build,
// #/boards, #/board/<id>, #/public/<link>), drawn from adit's own HTTP API.
//
// - Every panel loads on its own: a failing call shows its error in that panel, and the rest
//   of the page stays live. A table not written yet is "no data", never an error.
// - Live updates come from GET /api/v1/live (Server-Sent Events). EventSource cannot send an
//   Authorization header, so the stream is read with fetch() and parsed here, reconnecting
//   with Last-Event-ID after a drop.
// - The bearer token is asked for when the API answers 401 and kept in sessionStorage only.
// - Charts are inline SVG drawn below; nothing is loaded from anywhere but this origin.
// - Key figures carry data-testid, data-value (the raw number) and data-sql (the exact SQL
//   the page ran), so a test can compare what is shown with what SQL says.
'use strict';

const TOKEN_KEY = 'adit.token';
const SQL_KEY = 'adit.sql';
const LIVE_SUBJECTS = 'results.>,mining.block.>';
const REFRESH_MS = 15000;
const COLORS = ['#38bdf8', '#a78bfa', '#34d399', '#fbbf24', '#f87171', '#f472b6', '#60a5fa', '#4ade80',
  '#fb923c', '#2dd4bf'];

// ---------------------------------------------------------------------------------------------
// DOM helpers (text always goes in as text nodes: nothing from the API is parsed as HTML)

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function appendAll(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function replace(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
}

const $ = (sel, root = document) => root.querySelector(sel);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Formatting

function sig3(v) {
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a === 0) return '0';
  // Three significant figures below 100 too: 46 W is "0.0462 kW", not "0.05 kW".
  const decimals = Math.min(12, 2 - Math.floor(Math.log10(a)));
  return v.toFixed(Math.max(0, decimals));
}

function isNum(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

const fmt = {
  hash(hs) {
    if (!isNum(hs)) return '—';
    const units = ['H/s', 'kH/s', 'MH/s', 'GH/s', 'TH/s', 'PH/s', 'EH/s'];
    let v = Math.abs(hs);
    let i = 0;
    while (v >= 999.5 && i < units.length - 1) {
      v /= 1000;
      i += 1;
    }
    return `${sig3(hs < 0 ? -v : v)} ${units[i]}`;
  },
  kw(watts) {
    return isNum(watts) ? `${sig3(watts / 1000)} kW` : '—';
  },
  kwOf(kw) {
    return isNum(kw) ? `${sig3(kw)} kW` : '—';
  },
  temp(c) {
    return isNum(c) ? `${c.toFixed(1)} °C` : '—';
  },
  pct(x) {
    return isNum(x) ? `${(x * 100).toFixed(x < 0.1 ? 1 : 0)} %` : '—';
  },
  xmr(atomic) {
    if (!isNum(atomic)) return '—';
    return atomic === 0 ? '0 XMR' : `${(atomic / 1e12).toFixed(6)} XMR`;
  },
  int(v) {
    return isNum(v) ? Math.round(v).toLocaleString('en-US') : '—';
  },
  num(v, digits = 2) {
    return isNum(v) ? v.toFixed(digits) : '—';
  },
  jth(v) {
    return isNum(v) ? `${v.toFixed(1)} J/TH` : '—';
  },
  time(ts) {
    const t = parseTs(ts);
    if (t === null) return '—';
    return new Date(t).toLocaleTimeString('en-GB', { hour12: false });
  },
  datetime(ts) {
    const t = parseTs(ts);
    if (t === null) return '—';
    const d = new Date(t);
    const pad = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  },
  // The time alone when it is today, else the date and time to the minute.
  when(ts) {
    const t = parseTs(ts);
    if (t === null) return '—';
    const d = new Date(t);
    if (d.toDateString() === new Date().toDateString()) return fmt.time(t);
    return fmt.datetime(t).slice(0, 16);
  },
  ago(ts) {
    const t = parseTs(ts);
    if (t === null) return '—';
    return fmt.span(Date.now() - t, ' ago', 'in ');
  },
  span(ms, suffix = '', prefixFuture = '') {
    const future = ms < 0;
    let x = Math.abs(ms) / 1000;
    let text;
    if (x < 60) text = `${Math.round(x)} s`;
    else if ((x /= 60) < 60) text = `${Math.round(x)} min`;
    else if ((x /= 60) < 48) text = `${x.toFixed(1)} h`;
    else text = `${(x / 24).toFixed(1)} d`;
    return future ? `${prefixFuture}${text}` : `${text}${suffix}`;
  },
  short(text, n = 14) {
    const t = String(text ?? '');
    return t.length > n ? `${t.slice(0, n - 6)}…${t.slice(-5)}` : t;
  },
};

// A timestamp as the API writes it (RFC 3339, with or without a zone: UTC) → ms, or null.
function parseTs(ts) {
  if (ts === null || ts === undefined || ts === '') return null;
  if (typeof ts === 'number') return ts;
  let text = String(ts).trim().replace(' ', 'T');
  if (!/(Z|[+-]\d\d:?\d\d)$/i.test(text)) text += 'Z';
  const t = Date.parse(text);
  return Number.isNaN(t) ? null : t;
}

const lit = (v) => `'${String(v).replace(/'/g, "''")}'`;
const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------------
// The API: bearer token, errors, SQL

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// A table not written yet, or nothing in the window: shown as "no data", never as an error.
class NoData extends Error {}

const auth = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  prompt: null,
  set(token) {
    this.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    updateTokenButton();
    live.restart();
  },
  // Asks once for a token however many calls were refused at the same time.
  ask(reason) {
    if (!this.prompt) {
      this.prompt = new Promise((resolve) => {
        const dialog = $('#token-dialog');
        $('#token-reason').textContent = reason;
        $('#token-input').value = '';
        const done = () => {
          dialog.removeEventListener('close', done);
          const value = $('#token-input').value.trim();
          const ok = dialog.returnValue === 'ok' && value !== '';
          if (ok) this.set(value);
          this.prompt = null;
          resolve(ok);
        };
        dialog.addEventListener('close', done);
        dialog.returnValue = '';
        dialog.showModal();
        $('#token-input').focus();
      });
    }
    return this.prompt;
  },
};

function authHeaders(extra) {
  const headers = { ...(extra || {}) };
  if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
  return headers;
}

async function api(path, opts = {}, retried = false) {
  let resp;
  try {
    resp = await fetch(path, {
      method: opts.method || 'GET',
      headers: authHeaders(opts.headers),
      body: opts.body,
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'network', `cannot reach the API (${e.message})`);
  }
  if (resp.status === 401 && !retried) {
    const reason = auth.token
      ? 'The API refused this token. Enter another one.'
      : 'The API asks for a bearer token.';
    if (await auth.ask(reason)) return api(path, opts, true);
  }
  if (!resp.ok) {
    let code = `http_${resp.status}`;
    let message = resp.statusText || `HTTP ${resp.status}`;
    try {
      const body = await resp.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch (_) {
      // Not JSON: keep the status text.
    }
    throw new ApiError(resp.status, code, message);
  }
  return resp;
}

async function getJson(path) {
  return (await api(path)).json();
}

async function postJson(path, body) {
  const resp = await api(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return resp.json();
}

// Memoizes a loader for `ttl` ms, so panels refreshing together share one request.
function memo(ttl, loader) {
  const cache = new Map();
  return (...args) => {
    const key = JSON.stringify(args);
    const hit = cache.get(key);
    if (hit && Date.now() - hit.at < ttl) return hit.promise;
    const promise = loader(...args);
    cache.set(key, { at: Date.now(), promise });
    promise.catch(() => cache.delete(key));
    return promise;
  };
}

// The tables that exist: a panel whose table is not written yet says "no data" without
// asking (and without an error in the browser's console).
const tables = memo(8000, async () => new Set(Object.keys(await getJson('/api/v1/tables'))));

async function sql(query, needs = []) {
  if (needs.length) {
    const have = await tables();
    const missing = needs.filter((t) => !have.has(t));
    if (missing.length) throw new NoData(`no ${missing.join(', ')} table yet`);
  }
  try {
    const resp = await api('/api/v1/sql?format=json', {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: query,
    });
    return await resp.json();
  } catch (e) {
    if (e instanceof ApiError && /table\b.*\bnot found/i.test(e.message)) throw new NoData('no data yet');
    throw e;
  }
}

const sites = memo(10000, async () => {
  try {
    const list = await getJson('/api/v1/registry/sites');
    return list.sort((a, b) => String(a.id).localeCompare(String(b.id)));
  } catch (e) {
    // Without the registry, the sites that have energy rows (no allocation known).
    const rows = await sql('SELECT DISTINCT site AS id FROM site_energy_1m ORDER BY id', ['site_energy_1m']);
    if (!rows.length) throw e;
    return rows;
  }
});

// A site's power: its last complete minute (site_energy_1m) once there is one; before that (a
// minute closes a minute or two after it ends) the sum of each machine's newest reading of the
// last minute, held in memory (latest_energy_readings, when `query.latest` is on), so a new
// farm shows its power at once. The rows ({value, at, fresh}) and the SQL that gave them.
async function sitePower(id) {
  const minute = `SELECT avg_power_w AS value, minute AS at, false AS fresh FROM site_energy_1m WHERE site = ${lit(id)}`;
  const have = await tables();
  if (!have.has('latest_energy_readings')) {
    const query = `${minute} ORDER BY at DESC LIMIT 1`;
    return { rows: await sql(query, ['site_energy_1m']), query };
  }
  const newest = `SELECT sum(power_w) AS value, max(ts) AS at, true AS fresh FROM latest_energy_readings WHERE site = ${lit(id)} AND ts > now() - INTERVAL '1 minute'`;
  // Before the energy pipeline's first minute its table may not exist yet.
  const query = have.has('site_energy_1m')
    ? `SELECT value, at, fresh FROM (${minute} UNION ALL ${newest}) WHERE value IS NOT NULL ORDER BY fresh, at DESC LIMIT 1`
    : newest;
  return { rows: await sql(query), query };
}
function sitePowerWhen(row) {
  return row.fresh ? `now, from each machine's newest reading · ${fmt.time(row.at)}` : `minute ${fmt.time(row.at)}`;
}

const pools = memo(10000, async () => {
  const found = new Set();
  const [registry, seen] = await Promise.allSettled([
    getJson('/api/v1/registry/pools'),
    sql('SELECT DISTINCT pool FROM hashrate_1m ORDER BY pool', ['hashrate_1m']),
  ]);
  if (registry.status === 'fulfilled') registry.value.forEach((p) => found.add(p.id));
  if (seen.status === 'fulfilled') seen.value.forEach((p) => found.add(p.pool));
  return [...found].sort();
});

// ---------------------------------------------------------------------------------------------
// Live updates: SSE over fetch, with Last-Event-ID on reconnect

const live = {
  lastId: null,
  count: 0,
  feed: [],
  controller: null,
  backoff: 1000,
  state: 'connecting',
  wake: null,
  // Reconnects now (a new token): ends the open stream or the wait before the next attempt.
  restart() {
    if (this.controller) this.controller.abort();
    if (this.wake) this.wake();
  },
  pause(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  },
};

function setLiveState(state, title) {
  live.state = state;
  const el = $('#live-status');
  el.dataset.state = state;
  el.dataset.count = String(live.count);
  el.textContent = state === 'live' ? `live · ${live.count}` : state;
  el.title = title || 'Live updates from /api/v1/live';
}

async function runLive() {
  for (;;) {
    setLiveState(live.lastId ? 'reconnecting' : 'connecting');
    const controller = new AbortController();
    live.controller = controller;
    const headers = authHeaders({ Accept: 'text/event-stream' });
    if (live.lastId) headers['Last-Event-ID'] = live.lastId;
    let resp = null;
    try {
      resp = await fetch(`/api/v1/live?subjects=${enc(LIVE_SUBJECTS)}`, {
        headers,
        signal: controller.signal,
        cache: 'no-store',
      });
    } catch (_) {
      resp = null;
    }
    let wait = live.backoff;
    if (resp && resp.ok && resp.body) {
      setLiveState('live');
      live.backoff = 1000;
      try {
        await readEvents(resp.body, controller);
      } catch (_) {
        // Dropped (network, server restart, abort): reconnect below.
      }
      wait = 500;
    } else if (resp && resp.status === 401) {
      setLiveState('no token', 'The live stream needs a token with the read role');
      wait = 10000;
    } else if (resp && resp.status === 404) {
      setLiveState('unavailable', 'This server has no /api/v1/live');
      wait = 60000;
    } else if (resp) {
      setLiveState('error', `The live stream answered ${resp.status}`);
    }
    await live.pause(wait);
    live.backoff = Math.min(live.backoff * 2, 15000);
  }
}

// Reads one SSE response to its end. A silent stream (no event and no heartbeat for 45 s)
// is dropped so the loop reconnects.
async function readEvents(body, controller) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data = [];
  let type = '';
  let watchdog = setTimeout(() => controller.abort(), 45000);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), 45000);
      buffer += decoder.decode(value, { stream: true });
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buffer);
        if (!m) break;
        // A CR at the very end may be the first half of a CRLF: wait for the rest.
        if (m[0] === '\r' && m.index === buffer.length - 1) break;
        const line = buffer.slice(0, m.index);
        buffer = buffer.slice(m.index + m[0].length);
        if (line === '') {
          if (data.length) dispatchLive(type || 'message', data.join('\n'));
          data = [];
          type = '';
          continue;
        }
        if (line.startsWith(':')) continue; // heartbeat comment
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'data') data.push(val);
        else if (field === 'event') type = val;
        else if (field === 'id' && !val.includes('\0')) live.lastId = val;
      }
    }
  } finally {
    clearTimeout(watchdog);
  }
}

function dispatchLive(type, data) {
  // `ready` carries the starting position (its id, already kept): nothing to show.
  if (type === 'ready') {
    setLiveState('live');
    return;
  }
  let parsed;
  try {
    parsed = JSON.parse(data);
  } catch (_) {
    parsed = { subject: type, payload: data };
  }
  const item = type === 'notice'
    ? { at: Date.now(), notice: true, subject: 'notice', text: parsed.message || data, code: parsed.code }
    : { at: Date.now(), subject: parsed.subject || '', seq: parsed.seq, payload: parsed.payload };
  if (!item.notice) live.count += 1;
  live.feed.unshift(item);
  live.feed.length = Math.min(live.feed.length, 100);
  setLiveState('live');
  if (current) current.emit(item);
}

function summarize(ev) {
  if (ev.notice) return ev.text;
  const p = ev.payload || {};
  const [, kind] = ev.subject.split('.');
  if (ev.subject.startsWith('mining.share.')) {
    return `share ${p.accepted ? 'accepted' : `rejected${p.reason ? ` (${p.reason})` : ''}`}, difficulty ${p.difficulty}, ${fmt.short(p.miner)}.${p.worker}`;
  }
  if (ev.subject.startsWith('mining.block.')) {
    return `block ${p.height ?? ''} ${p.status ?? ''} by ${fmt.short(p.miner)}${p.worker ? `.${p.worker}` : ''}`;
  }
  switch (kind) {
    case 'energy':
      return `${p.site} ${fmt.time(p.minute)}: ${fmt.kw(p.avg_power_w)}, ${p.machines ?? '?'} machines`;
    case 'decision':
      return `${p.site} ${p.from_mode}→${p.to_mode} (${p.rule}) ${p.action}${p.machine ? ` ${p.machine}` : ''}${p.fan_level ? ` fans ${p.fan_level}` : ''}`;
    case 'violation':
      return `${p.event ?? ''} ${p.severity ?? ''} ${p.kind ?? ''} ${p.subject ?? ''}`.trim();
    case 'alert':
      return `${p.state ?? ''} ${p.rule ?? ''} (${p.severity ?? ''})`;
    case 'payout':
      return `${fmt.short(p.miner)} ${fmt.xmr(p.amount)} from block ${p.height}`;
    case 'payment':
      return `${p.status ?? ''} ${fmt.xmr(p.amount)} to ${fmt.short(p.miner)}`;
    case 'anomaly':
      return `${p.event ?? ''} ${p.detector ?? ''} ${p.subject ?? ''}`.trim();
    default: {
      const text = JSON.stringify(p);
      return text.length > 120 ? `${text.slice(0, 117)}…` : text;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Views, panels and their refresh

// What the current view registered: its timers and live listeners, dropped when it is left.
class ViewContext {
  constructor() {
    this.alive = true;
    this.timers = [];
    this.listeners = [];
    this.children = [];
  }
  // A part of the view that is rebuilt on its own (its timers end with it or with the view).
  child() {
    const c = new ViewContext();
    this.children = this.children.filter((x) => x.alive);
    this.children.push(c);
    return c;
  }
  every(ms, fn) {
    this.timers.push(setInterval(() => {
      if (this.alive && !document.hidden) fn();
    }, ms));
  }
  onLive(fn) {
    this.listeners.push(fn);
  }
  emit(ev) {
    for (const fn of this.listeners) {
      try {
        fn(ev);
      } catch (e) {
        console.warn('live listener failed', e);
      }
    }
    for (const c of this.children) if (c.alive) c.emit(ev);
  }
  dispose() {
    this.alive = false;
    this.timers.forEach(clearInterval);
    this.timers = [];
    this.listeners = [];
    this.children.forEach((c) => c.dispose());
    this.children = [];
  }
}

let current = null;

function errorNode(e) {
  if (e instanceof NoData) {
    return h('div', { class: 'empty', 'data-testid': 'no-data' }, 'No data', e.message ? h('span', { class: 'muted' }, ` — ${e.message}`) : null);
  }
  const forbidden = e instanceof ApiError && e.status === 403;
  const unauthorized = e instanceof ApiError && e.status === 401;
  return h('div', { class: 'error', 'data-testid': 'panel-error', role: 'alert' },
    h('strong', {}, e instanceof ApiError ? `${e.code}` : 'error'), ' ',
    e.message || String(e),
    (forbidden || unauthorized) ? h('button', {
      type: 'button', class: 'ghost small', onclick: () => auth.ask(forbidden ? 'This needs a token with a higher role.' : 'The API asks for a bearer token.'),
    }, 'Use another token') : null);
}

// Loads `loader()` into `target` now, every `every` ms and when a live event matches `live`;
// its errors stay inside `target`.
function bind(ctx, target, loader, opts = {}) {
  let running = false;
  let again = false;
  let scheduled = null;
  const run = async () => {
    if (!ctx.alive) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    target.classList.add('loading');
    try {
      const content = await loader(target);
      if (ctx.alive && content !== undefined) replace(target, content);
      target.dataset.state = 'ok';
      if (opts.stamp) opts.stamp.textContent = `updated ${fmt.time(Date.now())}`;
    } catch (e) {
      if (!ctx.alive) return;
      if (opts.onError) opts.onError(e);
      else replace(target, errorNode(e));
      target.dataset.state = e instanceof NoData ? 'empty' : 'error';
    } finally {
      running = false;
      target.classList.remove('loading');
      if (again && ctx.alive) {
        again = false;
        run();
      }
    }
  };
  const soon = () => {
    if (scheduled) return;
    scheduled = setTimeout(() => {
      scheduled = null;
      run();
    }, 800);
  };
  run();
  if (opts.every !== 0) ctx.every(opts.every || REFRESH_MS, run);
  if (opts.live) ctx.onLive((ev) => {
    if (opts.live.test(ev.subject)) soon();
  });
  return { refresh: run, soon };
}

// A framed panel whose body is bound to `loader`.
function panel(ctx, parent, opts, loader) {
  const stamp = h('span', { class: 'stamp' });
  const body = h('div', { class: 'panel-body' });
  const el = h('section', { class: `panel ${opts.cls || ''}`, 'data-testid': opts.testid },
    h('header', { class: 'panel-head' }, h('h2', {}, opts.title), opts.actions || null, stamp),
    opts.intro ? h('p', { class: 'intro' }, opts.intro) : null,
    body);
  parent.append(el);
  const bound = loader ? bind(ctx, body, loader, { ...opts, stamp }) : null;
  return { el, body, ...bound };
}

// A figure card: the value element carries `testid`, and after a load data-value and
// data-sql (when the loader gives them).
function stat(ctx, parent, opts, loader) {
  const value = h('div', { class: 'stat-value', 'data-testid': opts.testid }, '…');
  const sub = h('div', { class: 'stat-sub' });
  const card = h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, opts.label), value, sub);
  parent.append(card);
  return bind(ctx, value, async () => {
    const r = await loader();
    value.textContent = r.text;
    if (r.value !== undefined && r.value !== null) value.dataset.value = String(r.value);
    else delete value.dataset.value;
    if (r.sql) value.dataset.sql = r.sql;
    value.className = `stat-value ${r.tone ? `tone-${r.tone}` : ''}`;
    replace(sub, r.sub || '');
    card.title = r.title || '';
    return undefined;
  }, {
    ...opts,
    onError(e) {
      value.textContent = '—';
      delete value.dataset.value;
      value.className = 'stat-value muted';
      replace(sub, e instanceof NoData ? h('span', { class: 'muted', 'data-testid': 'no-data' }, 'no data') : errorNode(e));
    },
  });
}

function badge(text, tone) {
  return h('span', { class: `badge tone-${tone || toneOf(text)}` }, text ?? '—');
}

// A block the node accepted is `submitted` until it is confirmed or orphaned: pending.
function blockBadge(status) {
  return badge(status === 'submitted' ? 'pending' : status, toneOf(status));
}

function toneOf(word) {
  switch (String(word || '').toLowerCase()) {
    case 'mining': case 'running': case 'confirmed': case 'acked': case 'ok': case 'active': case 'resolved': case 'relayed':
      return 'ok';
    case 'curtailing': case 'curtailed': case 'resuming': case 'warning': case 'pending': case 'submitted': case 'idle': case 'created': case 'sent':
      return 'warn';
    case 'emergency': case 'failsafe': case 'critical': case 'violation': case 'firing': case 'offline': case 'error': case 'orphaned': case 'rejected':
    case 'failed': case 'unreachable':
      return 'bad';
    case 'sleeping': case 'dry_run': case 'info':
      return 'info';
    default:
      return 'muted';
  }
}

// A table: cols = [{key, label, fmt?(value, row), num?}], one row per object.
function table(cols, rows, opts = {}) {
  if (!rows.length) return h('div', { class: 'empty', 'data-testid': 'no-data' }, opts.empty || 'No data');
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'grid', 'data-testid': opts.testid },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { class: c.num ? 'num' : '' }, c.label)))),
      h('tbody', {}, rows.map((r) => h('tr', opts.rowAttrs ? opts.rowAttrs(r) : {},
        cols.map((c) => {
          const v = c.fmt ? c.fmt(r[c.key], r) : r[c.key];
          return h('td', { class: c.num ? 'num' : '' }, v === null || v === undefined || v === '' ? h('span', { class: 'muted' }, '—') : v);
        }))))));
}

function mono(text, n) {
  return h('span', { class: 'mono', title: text }, n ? fmt.short(text, n) : text);
}

// ---------------------------------------------------------------------------------------------
// Charts: inline SVG

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
}

function niceTicks(lo, hi, n) {
  const step = niceStep((hi - lo) / n || 1);
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  if (out[out.length - 1] < hi) out.push(out[out.length - 1] + step);
  return out;
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440].map((m) => m * 60000);

// series: [{name, color?, points: [[ms, value]]}]; refs: [{name, value, color?}]
// `el`: the element it is drawn into, whose width it takes (so its text is not scaled).
function lineChart({ series, refs = [], yFormat = String, height = 220, from, to, minY = 0, testid, area = true, gap = 180000, el }) {
  const pts = series.flatMap((x) => x.points);
  if (!pts.length) return h('div', { class: 'empty chart-empty', 'data-testid': 'no-data' }, 'No data in this window');
  const W = Math.max(420, Math.round((el && el.clientWidth) || 760));
  const H = height;
  const L = 72;
  const R = 16;
  const T = 12;
  const B = 26;
  const ts = pts.map((p) => p[0]);
  let x0 = from ?? Math.min(...ts);
  let x1 = to ?? Math.max(...ts);
  if (x1 <= x0) {
    x0 -= 30000;
    x1 += 30000;
  }
  const ys = pts.map((p) => p[1]).concat(refs.map((r) => r.value)).filter(isNum);
  let y0 = Math.min(minY ?? Infinity, ...ys);
  let y1 = Math.max(...ys);
  if (y1 <= y0) y1 = y0 + (Math.abs(y0) || 1);
  const yt = niceTicks(y0, y1 * 1.05, 4);
  y0 = yt[0];
  y1 = yt[yt.length - 1];
  const sx = (t) => L + ((t - x0) / (x1 - x0)) * (W - L - R);
  const sy = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const root = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'data-testid': testid });
  for (const v of yt) {
    root.append(s('line', { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: 'gridline' }));
    root.append(s('text', { x: L - 8, y: sy(v) + 4, class: 'axis', 'text-anchor': 'end' }, yFormat(v)));
  }
  const step = TIME_STEPS.find((st) => (x1 - x0) / st <= 7) || TIME_STEPS[TIME_STEPS.length - 1];
  const tz = new Date().getTimezoneOffset() * 60000;
  for (let t = Math.ceil((x0 - tz) / step) * step + tz; t <= x1; t += step) {
    root.append(s('line', { x1: sx(t), x2: sx(t), y1: T, y2: H - B, class: 'gridline faint' }));
    const d = new Date(t);
    const label = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
    root.append(s('text', { x: sx(t), y: H - 8, class: 'axis', 'text-anchor': 'middle' }, label));
  }
  series.forEach((x, i) => {
    x.color = x.color || COLORS[i % COLORS.length];
    const p = [...x.points].filter((q) => isNum(q[1])).sort((a, b) => a[0] - b[0]);
    if (!p.length) return;
    let d = '';
    let runStart = 0;
    const runs = [];
    p.forEach((q, j) => {
      const broken = j === 0 || q[0] - p[j - 1][0] > gap;
      if (broken && j > 0) runs.push(p.slice(runStart, j));
      if (broken) runStart = j;
      d += `${broken ? 'M' : 'L'}${sx(q[0]).toFixed(1)},${sy(q[1]).toFixed(1)}`;
    });
    runs.push(p.slice(runStart));
    if (area && i === 0 && series.length <= 2) {
      for (const run of runs) {
        const a = `M${sx(run[0][0]).toFixed(1)},${sy(Math.max(y0, 0)).toFixed(1)}${run.map((q) => `L${sx(q[0]).toFixed(1)},${sy(q[1]).toFixed(1)}`).join('')}L${sx(run[run.length - 1][0]).toFixed(1)},${sy(Math.max(y0, 0)).toFixed(1)}Z`;
        root.append(s('path', { d: a, fill: x.color, class: 'area' }));
      }
    }
    root.append(s('path', { d, stroke: x.color, class: 'series' }));
    if (p.length === 1 || runs.some((r) => r.length === 1)) {
      for (const run of runs.filter((r) => r.length === 1)) root.append(s('circle', { cx: sx(run[0][0]), cy: sy(run[0][1]), r: 3, fill: x.color }));
    }
  });
  refs.forEach((r) => {
    if (!isNum(r.value)) return;
    const color = r.color || '#f87171';
    root.append(s('line', { x1: L, x2: W - R, y1: sy(r.value), y2: sy(r.value), stroke: color, class: 'ref' }));
    root.append(s('text', { x: W - R - 4, y: sy(r.value) - 5, class: 'axis ref-label', 'text-anchor': 'end', fill: color }, `${r.name} ${yFormat(r.value)}`));
  });
  // Hover: a cursor line and each series' value at the nearest point.
  const cursor = s('line', { y1: T, y2: H - B, class: 'cursor', visibility: 'hidden' });
  const tip = s('g', { visibility: 'hidden', class: 'tip' });
  root.append(cursor, tip);
  const overlay = s('rect', { x: L, y: T, width: W - L - R, height: H - T - B, fill: 'transparent' });
  overlay.addEventListener('mousemove', (e) => {
    const box = root.getBoundingClientRect();
    const x = ((e.clientX - box.left) / box.width) * W;
    const t = x0 + ((x - L) / (W - L - R)) * (x1 - x0);
    const lines = [fmt.datetime(t)];
    let at = null;
    for (const x2 of series) {
      let best = null;
      for (const q of x2.points) if (!best || Math.abs(q[0] - t) < Math.abs(best[0] - t)) best = q;
      if (best) {
        at = at ?? best[0];
        lines.push(`${x2.name}: ${yFormat(best[1])}`);
      }
    }
    const cx = sx(at ?? t);
    cursor.setAttribute('x1', cx);
    cursor.setAttribute('x2', cx);
    cursor.setAttribute('visibility', 'visible');
    const width = Math.max(...lines.map((l) => l.length)) * 6.6 + 16;
    const left = cx + width + 12 > W ? cx - width - 8 : cx + 8;
    tip.replaceChildren(s('rect', { x: left, y: T + 4, width, height: lines.length * 15 + 8, rx: 4, class: 'tip-box' }),
      ...lines.map((l, i) => s('text', { x: left + 8, y: T + 19 + i * 15, class: 'tip-text' }, l)));
    tip.setAttribute('visibility', 'visible');
  });
  overlay.addEventListener('mouseleave', () => {
    cursor.setAttribute('visibility', 'hidden');
    tip.setAttribute('visibility', 'hidden');
  });
  root.append(overlay);
  const legend = series.length > 1 || refs.length
    ? h('div', { class: 'legend' },
      series.map((x) => h('span', {}, h('i', { class: 'swatch', style: `background:${x.color}` }), x.name)),
      refs.filter((r) => isNum(r.value)).map((r) => h('span', {}, h('i', { class: 'swatch dashed', style: `border-color:${r.color || '#f87171'}` }), r.name)))
    : null;
  return h('div', { class: 'chart-wrap' }, root, legend);
}

// Rows [{key, t, v}] → series per key.
function seriesBy(rows, key, t, v, names) {
  const by = new Map();
  for (const r of rows) {
    const k = key ? r[key] : (names || 'value');
    if (!by.has(k)) by.set(k, []);
    const time = parseTs(r[t]);
    if (time !== null && isNum(r[v])) by.get(k).push([time, r[v]]);
  }
  return [...by.entries()].sort((a, b) => String(a[0]).localeCompare(String(b[0]))).map(([name, points]) => ({ name: String(name), points }));
}

// ---------------------------------------------------------------------------------------------
// Overview

function pageHead(title, ...extra) {
  return h('div', { class: 'page-head' }, h('h1', {}, title), ...extra);
}

async function choosePool(query) {
  const asked = query.get('pool');
  if (asked) return asked;
  try {
    const list = await pools();
    return list[0] || 'main';
  } catch (_) {
    return 'main';
  }
}

function poolPicker(pool, onPick) {
  const select = h('select', { 'aria-label': 'pool', onchange: (e) => onPick(e.target.value) }, h('option', { value: pool }, pool));
  pools().then((list) => {
    if (!list.includes(pool)) list = [pool, ...list];
    replace(select, list.map((p) => h('option', { value: p, selected: p === pool }, p)));
  }).catch(() => {});
  return h('label', { class: 'picker' }, 'Pool ', select);
}

const poolView = memo(3000, (pool) => getJson(`/api/v1/pools/${enc(pool)}`));

async function viewOverview(ctx, root, _args, query) {
  const pool = await choosePool(query);
  root.append(pageHead('Overview', poolPicker(pool, (p) => { location.hash = `#/overview?pool=${enc(p)}`; })));

  // Pool figures.
  const stats = h('div', { class: 'stats' });
  root.append(h('h3', { class: 'section' }, `Pool ${pool}`), stats);
  const hashrateSql = `SELECT minute, sum(hashrate_hs) AS value FROM hashrate_1m WHERE pool = ${lit(pool)} GROUP BY minute ORDER BY minute DESC LIMIT 1`;
  stat(ctx, stats, { label: 'Hashrate (1 min)', testid: 'pool-hashrate', live: /^results\.energy\./ }, async () => {
    const rows = await sql(hashrateSql, ['hashrate_1m']);
    if (!rows.length) throw new NoData();
    return { text: fmt.hash(rows[0].value), value: rows[0].value, sql: hashrateSql, sub: `minute ${fmt.time(rows[0].minute)}` };
  });
  stat(ctx, stats, { label: 'Hashrate (10 min)', testid: 'pool-hashrate-10m' }, async () => {
    const p = await poolView(pool);
    return { text: fmt.hash(p.hashrate_hs), value: p.hashrate_hs, sub: `1 h: ${fmt.hash(p.hashrate_1h_hs)}` };
  });
  stat(ctx, stats, { label: 'Miners online', testid: 'miners-online' }, async () => {
    const p = await poolView(pool);
    return { text: fmt.int(p.miners_online), value: p.miners_online, sub: `${fmt.num(p.shares_per_second, 3)} shares/s` };
  });
  stat(ctx, stats, { label: 'Workers online', testid: 'workers-online' }, async () => {
    const p = await poolView(pool);
    return { text: fmt.int(p.workers_online), value: p.workers_online, sub: 'share in the last 10 min' };
  });
  const sharesSql = `SELECT sum(CASE WHEN accepted THEN 1 ELSE 0 END) AS accepted, sum(CASE WHEN accepted THEN 0 ELSE 1 END) AS rejected FROM shares WHERE pool = ${lit(pool)} AND ts > now() - INTERVAL '1 hour'`;
  const shares = memo(3000, () => sql(sharesSql, ['shares']));
  stat(ctx, stats, { label: 'Accepted shares (1 h)', testid: 'shares-accepted' }, async () => {
    const r = (await shares())[0] || {};
    return { text: fmt.int(r.accepted ?? 0), value: r.accepted ?? 0, sql: sharesSql, tone: 'ok' };
  });
  stat(ctx, stats, { label: 'Rejected shares (1 h)', testid: 'shares-rejected' }, async () => {
    const r = (await shares())[0] || {};
    const total = (r.accepted || 0) + (r.rejected || 0);
    return {
      text: fmt.int(r.rejected ?? 0), value: r.rejected ?? 0, sql: sharesSql,
      tone: r.rejected ? 'warn' : undefined, sub: total ? `${fmt.pct((r.rejected || 0) / total)} of shares` : '',
    };
  });
  stat(ctx, stats, { label: 'Blocks found', testid: 'blocks-found', live: /^mining\.block\./ }, async () => {
    const p = await poolView(pool);
    const last = p.last_block;
    return {
      text: fmt.int(p.blocks_found), value: p.blocks_found,
      sub: last ? h('span', {}, `last ${last.height} `, blockBadge(last.status)) : 'none yet',
    };
  });
  stat(ctx, stats, { label: 'Height', testid: 'pool-height' }, async () => {
    const p = await poolView(pool);
    return {
      text: p.height === null || p.height === undefined ? '—' : String(p.height), value: p.height,
      sub: p.effort !== null && p.effort !== undefined ? `effort ${fmt.pct(p.effort)}` : '',
    };
  });

  const row1 = h('div', { class: 'grid-2 wide-left' });
  root.append(row1);
  const chartSql = `SELECT minute, sum(hashrate_hs) AS hashrate_hs FROM hashrate_1m WHERE pool = ${lit(pool)} AND minute >= now() - INTERVAL '60 minutes' GROUP BY minute ORDER BY minute`;
  panel(ctx, row1, { title: 'Pool hashrate — last hour', testid: 'pool-hashrate-chart', live: /^results\.energy\./ }, async (el) => {
    const rows = await sql(chartSql, ['hashrate_1m']);
    const now = Date.now();
    return lineChart({ series: seriesBy(rows, null, 'minute', 'hashrate_hs', pool), yFormat: fmt.hash, from: now - 3600000, to: now, el });
  });
  livePanel(ctx, row1);

  // Where the pool stands: its top miners, and its hashrate beside the network's.
  const row2 = h('div', { class: 'grid-2' });
  root.append(row2);
  panel(ctx, row2, { title: 'Top miners — 24 h', testid: 'leaderboard' }, async () => {
    const rows = await getJson(`/api/v1/pools/${enc(pool)}/leaderboard?window=24h&limit=10`);
    return table([
      { key: 'rank', label: '#', num: true },
      { key: 'miner', label: 'Miner', fmt: (v) => h('a', { href: `#/miner/${enc(v)}?pool=${enc(pool)}`, class: 'mono', title: v }, fmt.short(v, 22)) },
      { key: 'workers', label: 'Workers', num: true, fmt: fmt.int },
      { key: 'hashrate_hs', label: 'Hashrate', num: true, fmt: fmt.hash },
      { key: 'share', label: 'Of pool', num: true, fmt: (v) => (isNum(v) ? fmt.pct(v) : '—') },
    ], rows, { empty: 'No share counted in the last 24 hours yet (a minute counts once it has closed)', testid: 'leaderboard-table' });
  });
  panel(ctx, row2, { title: 'Pool and network hashrate — 24 h', testid: 'pool-vs-network' }, async (el) => {
    const rows = await getJson(`/api/v1/pools/${enc(pool)}/network?hours=24`);
    const series = [
      { name: `pool ${pool}`, points: rows.filter((r) => isNum(r.pool_hs)).map((r) => [parseTs(r.hour), r.pool_hs]) },
      { name: 'network', points: rows.filter((r) => isNum(r.network_hs)).map((r) => [parseTs(r.hour), r.network_hs]) },
    ];
    const last = rows.filter((r) => isNum(r.share)).pop();
    const now = Date.now();
    const chart = lineChart({ series, yFormat: fmt.hash, from: now - 24 * 3600000, to: now, gap: 2 * 3600000, area: false, el });
    return h('div', {}, chart, h('p', { class: 'muted', 'data-testid': 'network-share' },
      last ? `The pool's share of the network in the hour from ${fmt.time(last.hour)}: ${fmt.pct(last.share)}` : 'No network figure yet'));
  });

  // Sites.
  root.append(h('h3', { class: 'section' }, 'Sites'));
  const siteGrid = h('div', { class: 'grid-2' });
  root.append(siteGrid);
  const siteState = { built: '', ctx: null };
  const temps = memo(3000, () => sql(
    "SELECT site, max(value) AS hottest, avg(value) AS mean, count(*) AS sensors FROM (SELECT site, sensor, value, row_number() OVER (PARTITION BY site, sensor ORDER BY ts DESC) AS rn FROM sensor_readings WHERE kind = 'temperature' AND ts > now() - INTERVAL '10 minutes') WHERE rn = 1 GROUP BY site",
    ['sensor_readings']));
  const modes = memo(3000, () => sql(modeSql(), ['decisions']));
  const powerSeries = memo(3000, () => sql(
    "SELECT site, minute, avg_power_w FROM site_energy_1m WHERE minute >= now() - INTERVAL '60 minutes' ORDER BY minute",
    ['site_energy_1m']));
  const siteHolder = h('div', { class: 'holder' });
  siteGrid.append(siteHolder);
  bind(ctx, siteHolder, async () => {
    const list = await sites();
    const key = list.map((x) => `${x.id}:${x.allocation_kw}`).join(',');
    if (key !== siteState.built) {
      siteState.built = key;
      siteGrid.replaceChildren(siteHolder);
      if (siteState.ctx) siteState.ctx.dispose();
      siteState.ctx = ctx.child();
      if (!list.length) throw new NoData('no site in the registry');
      for (const site of list) siteCard(siteState.ctx, siteGrid, site, { temps, modes, powerSeries });
    }
    return '';
  }, { every: 30000 });

  const row3 = h('div', { class: 'grid-2' });
  root.append(row3);
  panel(ctx, row3, { title: 'Blocks', testid: 'blocks', live: /^mining\.block\./ }, async () => {
    const rows = await getJson(`/api/v1/pools/${enc(pool)}/blocks?limit=10`);
    return table([
      { key: 'height', label: 'Height', num: true },
      { key: 'status', label: 'Status', fmt: blockBadge },
      { key: 'reward', label: 'Reward', num: true, fmt: fmt.xmr },
      { key: 'effort', label: 'Effort', num: true, fmt: fmt.pct },
      { key: 'confirmations', label: 'Conf.', num: true },
      { key: 'miner', label: 'Found by', fmt: (v, r) => mono(`${v}.${r.worker}`, 22) },
      { key: 'found_at', label: 'Found', fmt: fmt.when },
    ], rows, { empty: 'No block found yet' });
  });
  panel(ctx, row3, { title: 'Last payouts', testid: 'payouts', live: /^results\.payout\./ }, async () => {
    const rows = await sql(`SELECT ts, height, miner, amount FROM payouts WHERE pool = ${lit(pool)} ORDER BY ts DESC, miner LIMIT 10`, ['payouts']);
    return table([
      { key: 'ts', label: 'When', fmt: fmt.when },
      { key: 'height', label: 'Block', num: true },
      { key: 'miner', label: 'Miner', fmt: (v) => h('a', { href: `#/miner/${enc(v)}?pool=${enc(pool)}`, class: 'mono', title: v }, fmt.short(v, 22)) },
      { key: 'amount', label: 'Amount', num: true, fmt: fmt.xmr },
    ], rows, { empty: 'No payout yet' });
  });

  const row4 = h('div', { class: 'grid-2' });
  root.append(row4);
  panel(ctx, row4, { title: 'Open alerts', testid: 'alerts', live: /^results\.alert\./ }, async () => {
    const rows = (await getJson('/api/v1/alerts?limit=200')).filter((a) => a.state !== 'resolved');
    return table([
      { key: 'severity', label: 'Severity', fmt: (v) => badge(v) },
      { key: 'rule', label: 'Alert' },
      { key: 'labels', label: 'Labels', fmt: labelText },
      { key: 'value', label: 'Value', num: true, fmt: (v) => (isNum(v) ? sig3(v) : v) },
      { key: 'state', label: 'State', fmt: (v) => badge(v) },
      { key: 'active_at', label: 'Since', fmt: fmt.ago },
    ], rows, { empty: 'No alert pending or firing', testid: 'alerts-table' });
  });
  panel(ctx, row4, { title: 'Open violations', testid: 'violations', live: /^results\.violation\./ }, async () => {
    const rows = await getJson('/api/v1/violations?status=open&limit=50');
    return violationTable(rows);
  });

  // A pool paying per share carries the risk of its luck: shown only where it does.
  const risk = await getJson(`/api/v1/pools/${enc(pool)}/risk?days=30`).catch(() => null);
  if (risk && risk.days.length) {
    panel(ctx, root, { title: 'Paid per share — luck and net by day (30 days)', testid: 'pool-risk', intro: `Luck over the days shown: ${isNum(risk.luck) ? fmt.pct(risk.luck) : '—'} · net ${fmt.xmr(risk.net)} (blocks found − shares credited).` }, async () => {
      const now = await getJson(`/api/v1/pools/${enc(pool)}/risk?days=30`);
      return table([
        { key: 'day', label: 'Day' },
        { key: 'shares', label: 'Shares', num: true, fmt: fmt.int },
        { key: 'credited', label: 'Credited', num: true, fmt: fmt.xmr },
        { key: 'blocks', label: 'Blocks', num: true, fmt: fmt.int },
        { key: 'found', label: 'Found', num: true, fmt: fmt.xmr },
        { key: 'luck', label: 'Luck', num: true, fmt: (v) => (isNum(v) ? fmt.pct(v) : '—') },
        { key: 'carried', label: 'Net carried', num: true, fmt: fmt.xmr },
        { key: 'reserve_good', label: 'Reserve', fmt: (v) => (v === null || v === undefined ? '—' : badge(v ? 'proven' : 'short', v ? 'ok' : 'bad')) },
      ], now.days.slice().reverse(), { empty: 'No share paid per share in the last 30 days' });
    });
  }
}

// Each site's mode after its newest decision, with the rule of its newest decision that was
// not a fan step (a fan step's rule is the fan band, not what set the mode).
function modeSql(site) {
  const where = site ? `WHERE site = ${lit(site)}` : '';
  const and = site ? `AND site = ${lit(site)}` : '';
  return 'SELECT l.site, l.to_mode, l.target_kw, l.ts, m.rule AS mode_rule, m.ts AS mode_since '
    + `FROM (SELECT site, to_mode, target_kw, ts, row_number() OVER (PARTITION BY site ORDER BY ts DESC) AS rn FROM decisions ${where}) l `
    + `LEFT JOIN (SELECT site, rule, ts, row_number() OVER (PARTITION BY site ORDER BY ts DESC) AS rn FROM decisions WHERE rule <> 'fan_band' ${and}) m `
    + 'ON m.site = l.site AND m.rn = 1 WHERE l.rn = 1 ORDER BY l.site';
}

function modeSub(r) {
  const parts = [];
  if (r.mode_rule) parts.push(`${r.mode_rule.replace(/_/g, ' ')} at ${fmt.time(r.mode_since)}`);
  if (isNum(r.target_kw)) parts.push(`target ${fmt.kwOf(r.target_kw)}`);
  return parts.join(' · ');
}

function labelText(v) {
  let labels = v;
  if (typeof v === 'string') {
    try {
      labels = JSON.parse(v);
    } catch (_) {
      return v;
    }
  }
  if (!labels || typeof labels !== 'object') return String(v ?? '');
  return Object.entries(labels).filter(([k]) => !['alertname', 'severity'].includes(k)).map(([k, x]) => `${k}=${x}`).join(' ');
}

function violationTable(rows) {
  return table([
    { key: 'severity', label: 'Severity', fmt: (v) => badge(v) },
    { key: 'site', label: 'Site', fmt: (v) => (v ? h('a', { href: `#/site/${enc(v)}` }, v) : null) },
    { key: 'kind', label: 'Kind' },
    { key: 'subject', label: 'Subject' },
    { key: 'peak', label: 'Peak', num: true, fmt: (v) => (isNum(v) ? sig3(v) : v) },
    { key: 'limit', label: 'Limit', num: true, fmt: (v) => (isNum(v) ? sig3(v) : v) },
    { key: 'started', label: 'Started', fmt: fmt.ago },
  ], rows, { empty: 'No open violation', testid: 'violations-table' });
}

function livePanel(ctx, parent) {
  const list = h('ol', { class: 'feed', 'data-testid': 'live-feed' });
  const count = h('span', { class: 'stamp', 'data-testid': 'live-count' }, '0');
  const el = h('section', { class: 'panel', 'data-testid': 'live' },
    h('header', { class: 'panel-head' }, h('h2', {}, 'Live events'), count),
    h('p', { class: 'intro' }, `Results as they happen (${LIVE_SUBJECTS}).`),
    list);
  parent.append(el);
  const render = () => {
    count.textContent = String(live.count);
    count.dataset.value = String(live.count);
    if (!live.feed.length) {
      replace(list, h('li', { class: 'muted' }, live.state === 'live' ? 'Waiting for the next result…' : `Live stream: ${live.state}`));
      return;
    }
    replace(list, live.feed.slice(0, 40).map((ev) => h('li', { 'data-testid': 'live-event', class: ev.notice ? 'notice' : '' },
      h('time', {}, fmt.time(ev.at)),
      h('span', { class: 'subject' }, ev.subject),
      h('span', { class: 'what' }, summarize(ev)))));
  };
  render();
  ctx.onLive(render);
  ctx.every(5000, render);
}

function siteCard(ctx, parent, site, shared) {
  const id = site.id;
  const modeSlot = h('span', { class: 'head-badge' });
  const body = h('div', { class: 'panel-body' });
  const el = h('section', { class: 'panel', 'data-testid': `site-${id}` },
    h('header', { class: 'panel-head' },
      h('h2', {}, h('a', { href: `#/site/${enc(id)}` }, site.name && site.name !== id ? `${id} — ${site.name}` : id)),
      modeSlot),
    body);
  parent.append(el);
  const stats = h('div', { class: 'stats compact' });
  const chart = h('div', { class: 'chart-slot' });
  body.append(stats, chart);
  const alloc = isNum(site.allocation_kw) ? site.allocation_kw : null;
  stat(ctx, stats, { label: 'Power', testid: `site-power-${id}`, live: /^results\.energy\./ }, async () => {
    const { rows, query: powerSql } = await sitePower(id);
    if (!rows.length || rows[0].value === null) throw new NoData();
    const used = alloc ? rows[0].value / 1000 / alloc : null;
    const when = sitePowerWhen(rows[0]);
    return {
      text: fmt.kw(rows[0].value), value: rows[0].value, sql: powerSql,
      tone: used === null ? undefined : used > 1 ? 'bad' : used * 100 >= (site.warning_pct ?? 80) ? 'warn' : 'ok',
      sub: alloc ? `${fmt.pct(used)} of ${fmt.kwOf(alloc)} · ${when}` : when,
    };
  });
  stat(ctx, stats, { label: 'Hottest sensor', testid: `site-temp-${id}` }, async () => {
    const r = (await shared.temps()).find((x) => x.site === id);
    if (!r) throw new NoData();
    const tone = isNum(site.emergency_temp_c) && r.hottest >= site.emergency_temp_c ? 'bad'
      : isNum(site.max_temp_c) && r.hottest > site.max_temp_c ? 'warn' : undefined;
    return { text: fmt.temp(r.hottest), value: r.hottest, tone, sub: `mean ${fmt.temp(r.mean)} · ${r.sensors} sensors` };
  });
  stat(ctx, stats, { label: 'Curtailment', testid: `site-mode-${id}`, live: new RegExp(`^results\\.decision\\.${id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }, async () => {
    const r = (await shared.modes()).find((x) => x.site === id);
    if (!r) throw new NoData();
    replace(modeSlot, badge(r.to_mode));
    return { text: r.to_mode, value: r.to_mode, tone: toneOf(r.to_mode), sub: modeSub(r) };
  });
  bind(ctx, chart, async (el) => {
    const rows = (await shared.powerSeries()).filter((r) => r.site === id).map((r) => ({ ...r, kw: r.avg_power_w / 1000 }));
    const now = Date.now();
    const refs = [];
    if (alloc) {
      refs.push({ name: 'allocation', value: alloc, color: '#f87171' });
      if (isNum(site.warning_pct)) refs.push({ name: `warning ${site.warning_pct} %`, value: (alloc * site.warning_pct) / 100, color: '#fbbf24' });
    }
    return lineChart({ series: seriesBy(rows, null, 'minute', 'kw', 'power'), refs, yFormat: fmt.kwOf, height: 180, from: now - 3600000, to: now, testid: `site-chart-${id}`, el });
  }, { live: /^results\.energy\./ });
}

// ---------------------------------------------------------------------------------------------
// Miner

async function viewMiner(ctx, root, args, query) {
  const wallet = args[0] || '';
  const pool = await choosePool(query);
  const input = h('input', { type: 'text', value: wallet, placeholder: 'wallet address (the miner login)', 'data-testid': 'miner-input', class: 'wide mono', spellcheck: 'false' });
  const poolInput = h('input', { type: 'text', value: pool, 'aria-label': 'pool', class: 'narrow' });
  const form = h('form', {
    class: 'inline-form',
    onsubmit: (e) => {
      e.preventDefault();
      const w = input.value.trim();
      if (w) location.hash = `#/miner/${enc(w)}?pool=${enc(poolInput.value.trim() || pool)}`;
    },
  }, input, h('label', { class: 'picker' }, 'Pool ', poolInput), h('button', { class: 'primary', 'data-testid': 'miner-submit' }, 'Show'));
  root.append(pageHead('Miner'), form);

  if (!wallet) {
    panel(ctx, root, { title: 'Miners seen in the last 24 hours', testid: 'recent-miners' }, async () => {
      const rows = await sql(`SELECT miner, count(DISTINCT worker) AS workers, sum(CASE WHEN accepted THEN 1 ELSE 0 END) AS accepted, max(ts) AS last_share FROM shares WHERE pool = ${lit(pool)} AND ts > now() - INTERVAL '24 hours' GROUP BY miner ORDER BY last_share DESC LIMIT 25`, ['shares']);
      return table([
        { key: 'miner', label: 'Miner', fmt: (v) => h('a', { href: `#/miner/${enc(v)}?pool=${enc(pool)}`, class: 'mono', title: v }, fmt.short(v, 40)) },
        { key: 'workers', label: 'Workers', num: true },
        { key: 'accepted', label: 'Accepted shares', num: true, fmt: fmt.int },
        { key: 'last_share', label: 'Last share', fmt: fmt.ago },
      ], rows, { empty: 'No miner has sent a share in 24 hours' });
    });
    return;
  }

  root.append(h('p', { class: 'muted' }, `Pool ${pool} · miner `, h('span', { class: 'mono break', 'data-testid': 'miner-wallet' }, wallet)));
  const view = memo(3000, () => getJson(`/api/v1/pools/${enc(pool)}/miners/${enc(wallet)}`));
  const stats = h('div', { class: 'stats wide' });
  root.append(stats);
  stat(ctx, stats, { label: 'Hashrate (10 min)', testid: 'miner-hashrate' }, async () => {
    const m = await view();
    return { text: fmt.hash(m.hashrate_hs), value: m.hashrate_hs, sub: `1 h: ${fmt.hash(m.hashrate_1h_hs)}` };
  });
  stat(ctx, stats, { label: 'Workers online', testid: 'miner-workers-online' }, async () => {
    const m = await view();
    return { text: fmt.int(m.workers_online), value: m.workers_online };
  });
  stat(ctx, stats, { label: 'Confirmed balance', testid: 'miner-balance', live: /^results\.(payout|payment)\./ }, async () => {
    const m = await view();
    const sub = m.credited > 0 ? `paid at the next payment round · ${fmt.xmr(m.credited)} credited per share` : 'paid at the next payment round';
    return { text: fmt.xmr(m.confirmed_balance), value: m.confirmed_balance, sub };
  });
  stat(ctx, stats, { label: 'Pending balance', testid: 'miner-pending', live: /^results\.payout\./ }, async () => {
    const m = await view();
    return { text: fmt.xmr(m.pending_balance), value: m.pending_balance, sub: 'blocks not yet confirmed' };
  });
  stat(ctx, stats, { label: 'Total paid', testid: 'miner-paid', live: /^results\.payment\./ }, async () => {
    const m = await view();
    return { text: fmt.xmr(m.total_paid), value: m.total_paid };
  });

  const chartSql = `SELECT worker, minute, sum(hashrate_hs) AS hashrate_hs FROM hashrate_1m WHERE pool = ${lit(pool)} AND miner = ${lit(wallet)} AND minute >= now() - INTERVAL '60 minutes' GROUP BY worker, minute ORDER BY minute`;
  panel(ctx, root, { title: 'Hashrate by worker — last hour', testid: 'miner-hashrate-chart' }, async (el) => {
    const rows = await sql(chartSql, ['hashrate_1m']);
    const now = Date.now();
    return lineChart({ series: seriesBy(rows, 'worker', 'minute', 'hashrate_hs'), yFormat: fmt.hash, from: now - 3600000, to: now, el });
  });
  panel(ctx, root, { title: 'Workers', testid: 'miner-workers' }, async () => {
    const rows = await getJson(`/api/v1/pools/${enc(pool)}/miners/${enc(wallet)}/workers`);
    return table([
      { key: 'worker', label: 'Worker' },
      { key: 'online', label: 'State', fmt: (v) => badge(v ? 'online' : 'offline', v ? 'ok' : 'bad') },
      { key: 'hashrate_hs', label: 'Hashrate (10 min)', num: true, fmt: fmt.hash },
      { key: 'hashrate_1h_hs', label: 'Hashrate (1 h)', num: true, fmt: fmt.hash },
      { key: 'reported_hs', label: 'Reported', num: true, fmt: (v) => (isNum(v) ? fmt.hash(v) : null) },
      { key: 'accepted_24h', label: 'Accepted (24 h)', num: true, fmt: fmt.int },
      { key: 'rejected_24h', label: 'Rejected (24 h)', num: true, fmt: fmt.int },
      { key: 'last_share_at', label: 'Last share', fmt: fmt.ago },
    ], rows, { empty: 'No worker in 24 hours', testid: 'workers-table' });
  });
  const row = h('div', { class: 'grid-2' });
  root.append(row);
  panel(ctx, row, { title: 'Payouts', testid: 'miner-payouts', live: /^results\.payout\./ }, async () => {
    const m = await view();
    return table([
      { key: 'found_at', label: 'Block found', fmt: fmt.when },
      { key: 'height', label: 'Height', num: true },
      { key: 'amount', label: 'Amount', num: true, fmt: fmt.xmr },
      { key: 'status', label: 'Status', fmt: (v) => badge(v) },
      { key: 'hash', label: 'Check', fmt: (v, r) => h('a', { href: `/verify?pool=${enc(pool)}&block=${enc(r.height)}&hash=${enc(v)}&miner=${enc(wallet)}`, title: 'Recompute this payout from the window the pool published', 'data-testid': 'payout-check' }, 'verify') },
    ], m.recent_payouts || [], { empty: 'No payout yet' });
  });
  panel(ctx, row, { title: 'Payments', testid: 'miner-payments', live: /^results\.payment\./ }, async () => {
    const m = await view();
    return table([
      { key: 'created_at', label: 'Made', fmt: fmt.when },
      { key: 'amount', label: 'Amount', num: true, fmt: fmt.xmr },
      { key: 'status', label: 'Status', fmt: (v) => badge(v) },
      { key: 'tx_hash', label: 'Transaction', fmt: (v) => mono(v, 18) },
      { key: 'proof', label: 'Proof', fmt: (v) => (v ? h('span', { class: 'mono', title: `check_tx_proof in your wallet with this transaction, your address, an empty message and:\n${v}` }, fmt.short(v, 18)) : null) },
    ], m.recent_payments || [], { empty: 'No payment yet' });
  });
}

// ---------------------------------------------------------------------------------------------
// Site

async function viewSite(ctx, root, args) {
  let list = [];
  let listError = null;
  try {
    list = await sites();
  } catch (e) {
    listError = e;
  }
  const id = args[0] || (list[0] && list[0].id) || '';
  const site = list.find((x) => x.id === id) || { id };
  const picker = h('select', { 'aria-label': 'site', 'data-testid': 'site-picker', onchange: (e) => { location.hash = `#/site/${enc(e.target.value)}`; } },
    (list.length ? list : [site]).map((x) => h('option', { value: x.id, selected: x.id === id }, x.id)));
  root.append(pageHead(`Site ${id}`, h('label', { class: 'picker' }, 'Site ', picker)));
  if (listError) root.append(errorNode(listError));
  if (!id) {
    root.append(h('div', { class: 'empty', 'data-testid': 'no-data' }, 'No site in the registry yet.'));
    return;
  }
  const alloc = isNum(site.allocation_kw) ? site.allocation_kw : null;
  if (site.name || alloc) {
    root.append(h('p', { class: 'muted' },
      [site.name, site.timezone, alloc ? `allocation ${fmt.kwOf(alloc)}` : null,
        isNum(site.warning_pct) ? `warning ${site.warning_pct} %, critical ${site.critical_pct} %` : null,
        isNum(site.max_temp_c) ? `max ${fmt.temp(site.max_temp_c)}, emergency ${fmt.temp(site.emergency_temp_c)}` : null].filter(Boolean).join(' · ')));
  }

  const stats = h('div', { class: 'stats wide' });
  root.append(stats);
  stat(ctx, stats, { label: 'Power', testid: 'site-power', live: /^results\.energy\./ }, async () => {
    const { rows, query: powerSql } = await sitePower(id);
    if (!rows.length || rows[0].value === null) throw new NoData();
    return { text: fmt.kw(rows[0].value), value: rows[0].value, sql: powerSql, sub: sitePowerWhen(rows[0]) };
  });
  stat(ctx, stats, { label: 'Of allocation', testid: 'site-used' }, async () => {
    const { rows } = await sitePower(id);
    if (!rows.length || rows[0].value === null || !alloc) throw new NoData(alloc ? '' : 'no allocation');
    const used = rows[0].value / 1000 / alloc;
    return { text: fmt.pct(used), value: used, tone: used > 1 ? 'bad' : used * 100 >= (site.warning_pct ?? 80) ? 'warn' : 'ok', sub: `of ${fmt.kwOf(alloc)}` };
  });
  const tempSql = `SELECT max(value) AS hottest, avg(value) AS mean FROM (SELECT sensor, value, row_number() OVER (PARTITION BY sensor ORDER BY ts DESC) AS rn FROM sensor_readings WHERE site = ${lit(id)} AND kind = 'temperature' AND ts > now() - INTERVAL '10 minutes') WHERE rn = 1`;
  stat(ctx, stats, { label: 'Hottest sensor', testid: 'site-temp' }, async () => {
    const r = (await sql(tempSql, ['sensor_readings']))[0];
    if (!r || !isNum(r.hottest)) throw new NoData();
    return { text: fmt.temp(r.hottest), value: r.hottest, sql: tempSql, sub: `mean ${fmt.temp(r.mean)}` };
  });
  const siteModeSql = modeSql(id);
  stat(ctx, stats, { label: 'Curtailment', testid: 'site-mode', live: /^results\.decision\./ }, async () => {
    const r = (await sql(siteModeSql, ['decisions']))[0];
    if (!r) throw new NoData();
    return { text: r.to_mode, value: r.to_mode, sql: siteModeSql, tone: toneOf(r.to_mode), sub: modeSub(r) };
  });

  const charts = h('div', { class: 'grid-2' });
  root.append(charts);
  panel(ctx, charts, { title: 'Power against allocation — last 3 hours', testid: 'site-power-chart', live: /^results\.energy\./ }, async (el) => {
    const rows = await sql(`SELECT minute, avg_power_w / 1000.0 AS kw FROM site_energy_1m WHERE site = ${lit(id)} AND minute >= now() - INTERVAL '3 hours' ORDER BY minute`, ['site_energy_1m']);
    const now = Date.now();
    const refs = alloc ? [{ name: 'allocation', value: alloc, color: '#f87171' }] : [];
    if (alloc && isNum(site.warning_pct)) refs.push({ name: `warning ${site.warning_pct} %`, value: (alloc * site.warning_pct) / 100, color: '#fbbf24' });
    return lineChart({ series: seriesBy(rows, null, 'minute', 'kw', 'power'), refs, yFormat: fmt.kwOf, from: now - 3 * 3600000, to: now, el });
  });
  panel(ctx, charts, { title: 'Temperatures — last hour', testid: 'site-temp-chart' }, async (el) => {
    const rows = await sql(`SELECT sensor, date_bin(INTERVAL '1 minute', ts) AS minute, avg(value) AS c FROM sensor_readings WHERE site = ${lit(id)} AND kind = 'temperature' AND ts >= now() - INTERVAL '60 minutes' GROUP BY sensor, minute ORDER BY minute`, ['sensor_readings']);
    const now = Date.now();
    const refs = [];
    if (isNum(site.max_temp_c)) refs.push({ name: 'max', value: site.max_temp_c, color: '#fbbf24' });
    return lineChart({ series: seriesBy(rows, 'sensor', 'minute', 'c'), refs, yFormat: (v) => `${sig3(v)} °C`, minY: null, area: false, from: now - 3600000, to: now, el });
  });

  panel(ctx, root, { title: 'Machines', testid: 'site-machines', intro: 'Latest state each machine reported (last 15 minutes) and its latest minute of energy.' }, async () => {
    const [registered, status, energy] = await Promise.allSettled([
      getJson(`/api/v1/registry/machines?site=${enc(id)}`),
      // The last-value table: each machine's newest status, held in memory by the query
      // process (no scan of miner_status).
      sql(`SELECT machine, state, hashrate_hs, temp_c, power_w, ts FROM latest_miner_status WHERE site = ${lit(id)} AND ts > now() - INTERVAL '15 minutes'`, ['latest_miner_status']),
      sql(`SELECT machine, avg_power_w, source, quality FROM (SELECT machine, avg_power_w, source, quality, row_number() OVER (PARTITION BY machine ORDER BY minute DESC) AS rn FROM machine_energy_1m WHERE site = ${lit(id)} AND minute > now() - INTERVAL '15 minutes') WHERE rn = 1`, ['machine_energy_1m']),
    ]);
    const byId = new Map();
    const row = (m) => {
      if (!byId.has(m)) byId.set(m, { machine: m });
      return byId.get(m);
    };
    if (registered.status === 'fulfilled') {
      for (const m of registered.value) Object.assign(row(m.id), { model: m.model, rack: m.rack, nominal_power_w: m.nominal_power_w, nominal_hashrate_hs: m.nominal_hashrate_hs });
    }
    if (status.status === 'fulfilled') for (const s2 of status.value) Object.assign(row(s2.machine), { state: s2.state, hashrate_hs: s2.hashrate_hs, temp_c: s2.temp_c, status_power_w: s2.power_w, seen: s2.ts });
    if (energy.status === 'fulfilled') for (const e of energy.value) Object.assign(row(e.machine), { power_w: e.avg_power_w, source: e.source, quality: e.quality });
    const failures = [registered, status, energy].filter((r) => r.status === 'rejected' && !(r.reason instanceof NoData)).map((r) => errorNode(r.reason));
    const rows = [...byId.values()].sort((a, b) => a.machine.localeCompare(b.machine));
    for (const r of rows) {
      r.power = isNum(r.power_w) ? r.power_w : r.status_power_w;
      r.efficiency = isNum(r.power) && isNum(r.hashrate_hs) && r.hashrate_hs > 0 ? r.power / (r.hashrate_hs / 1e12) : null;
    }
    return [failures, table([
      { key: 'machine', label: 'Machine' },
      { key: 'model', label: 'Model' },
      { key: 'state', label: 'State', fmt: (v) => (v ? badge(v) : null) },
      { key: 'power', label: 'Power', num: true, fmt: (v) => (isNum(v) ? fmt.kw(v) : null) },
      { key: 'hashrate_hs', label: 'Hashrate', num: true, fmt: (v) => (isNum(v) ? fmt.hash(v) : null) },
      { key: 'temp_c', label: 'Temperature', num: true, fmt: (v) => (isNum(v) ? fmt.temp(v) : null) },
      { key: 'efficiency', label: 'Efficiency', num: true, fmt: (v) => (isNum(v) ? fmt.jth(v) : null) },
      { key: 'source', label: 'Measured by' },
      { key: 'seen', label: 'Reported', fmt: fmt.ago },
    ], rows, { empty: 'No machine registered or reporting', testid: 'machines-table', rowAttrs: (r) => ({ 'data-testid': 'machine-row', 'data-machine': r.machine }) })];
  });

  panel(ctx, root, { title: 'Profit per machine — last 24 hours', testid: 'site-profit', intro: 'Each machine\u2019s shares at their expected value and the coin\u2019s price, against its energy at the site\u2019s price, over the settlement intervals closed in the last 24 hours; least margin first. Breakeven: the energy price per MWh at which it stops paying.' }, async () => {
    const v = await getJson(`/api/v1/sites/${enc(id)}/profit?hours=24`);
    if (!v.machines.length) throw new NoData('no settlement interval priced yet');
    const price = isNum(v.energy_price_per_mwh) ? h('p', { class: 'muted', 'data-testid': 'site-energy-price' }, `Energy price now: ${fmt.num(v.energy_price_per_mwh, 2)} per MWh (${fmt.ago(v.energy_price_at)}); a machine whose breakeven now is under it loses money.`) : null;
    // Small sums (a few minutes of one machine) keep three significant digits.
    const money = (x) => (!isNum(x) ? '—' : Math.abs(x) >= 1 || x === 0 ? x.toFixed(2) : x.toPrecision(3));
    return [price, table([
      { key: 'machine', label: 'Machine' },
      { key: 'intervals', label: 'Intervals (priced)', num: true, fmt: (x, r) => `${fmt.int(x)} (${fmt.int(r.margined)})` },
      { key: 'shares', label: 'Shares', num: true, fmt: fmt.int },
      { key: 'revenue', label: 'Revenue', num: true, fmt: money },
      { key: 'energy_kwh', label: 'Energy', num: true, fmt: (x) => (isNum(x) ? `${sig3(x)} kWh` : '—') },
      { key: 'energy_cost', label: 'Energy cost', num: true, fmt: money },
      { key: 'margin', label: 'Margin', num: true, fmt: (x) => (isNum(x) ? badge(money(x), x < 0 ? 'bad' : 'ok') : '—') },
      { key: 'breakeven_per_mwh', label: 'Breakeven / MWh', num: true, fmt: money },
      { key: 'breakeven_now_per_mwh', label: 'Breakeven now', num: true, fmt: (x) => (isNum(x) ? badge(money(x), isNum(v.energy_price_per_mwh) && x < v.energy_price_per_mwh ? 'bad' : 'ok') : '—') },
    ], v.machines, { empty: 'No machine priced', testid: 'profit-table', rowAttrs: (r) => ({ 'data-testid': 'profit-row', 'data-machine': r.machine, 'data-margin': r.margin }) })];
  });

  const logs = h('div', { class: 'stack' });
  root.append(logs);
  panel(ctx, logs, { title: 'Decisions (newest 30)', testid: 'site-decisions', live: /^results\.decision\./ }, async () => {
    const rows = await sql(`SELECT ts, from_mode, to_mode, rule, action, machine, fan_level, target_kw, load_kw, dry_run FROM decisions WHERE site = ${lit(id)} ORDER BY ts DESC, id LIMIT 30`, ['decisions']);
    return table([
      { key: 'ts', label: 'When', fmt: fmt.when },
      { key: 'to_mode', label: 'Mode', fmt: (v, r) => h('span', {}, r.from_mode !== v ? `${r.from_mode} → ` : '', badge(v)) },
      { key: 'rule', label: 'Rule' },
      { key: 'action', label: 'Action', fmt: (v, r) => `${v}${r.machine ? ` ${r.machine}` : ''}${isNum(r.fan_level) ? ` ${r.fan_level}` : ''}${r.dry_run ? ' (dry run)' : ''}` },
      { key: 'target_kw', label: 'Target', num: true, fmt: (v) => (isNum(v) ? fmt.kwOf(v) : null) },
      { key: 'load_kw', label: 'Load', num: true, fmt: fmt.kwOf },
    ], rows, { empty: 'No decision yet' });
  });
  panel(ctx, logs, { title: 'Commands (newest 30)', testid: 'site-commands', live: /^results\.decision\./ }, async () => {
    const rows = await sql(`SELECT ts, target, action, value, status, attempt, reply, actuator FROM commands WHERE site = ${lit(id)} ORDER BY ts DESC, id LIMIT 30`, ['commands']);
    return table([
      { key: 'ts', label: 'When', fmt: fmt.when },
      { key: 'target', label: 'Target' },
      { key: 'action', label: 'Action', fmt: (v, r) => `${v}${isNum(r.value) ? ` ${r.value}` : ''}` },
      { key: 'status', label: 'Status', fmt: (v) => badge(v) },
      { key: 'attempt', label: 'Try', num: true },
      { key: 'reply', label: 'Reply', fmt: (v) => (v ? h('span', { class: 'clip', title: v }, v) : null) },
    ], rows, { empty: 'No command yet' });
  });

  complianceLinks(root, id);
}

function complianceLinks(root, id) {
  const yesterday = new Date(Date.now() - 86400000).toISOString().slice(0, 10);
  const date = h('input', { type: 'date', value: yesterday, 'data-testid': 'compliance-date' });
  const href = (format) => `/api/v1/reports/compliance?site=${enc(id)}&date=${enc(date.value)}&format=${format}`;
  const result = h('div', { class: 'form-result' });
  const link = (format, label) => {
    const a = h('a', { href: href(format), target: '_blank', rel: 'noopener', class: 'button', 'data-testid': `compliance-link-${format}` }, label);
    date.addEventListener('change', () => a.setAttribute('href', href(format)));
    // With a token the report is fetched with it and opened as a blob (a plain link cannot
    // send the Authorization header).
    a.addEventListener('click', async (e) => {
      if (!auth.token) return;
      e.preventDefault();
      try {
        const resp = await api(href(format));
        const url = URL.createObjectURL(await resp.blob());
        if (format === 'html') window.open(url, '_blank', 'noopener');
        else download(url, `compliance-${id}-${date.value}.${format}`);
        setTimeout(() => URL.revokeObjectURL(url), 60000);
      } catch (err) {
        replace(result, errorNode(err));
      }
    });
    return a;
  };
  root.append(h('section', { class: 'panel', 'data-testid': 'compliance' },
    h('header', { class: 'panel-head' }, h('h2', {}, 'Compliance report')),
    h('p', { class: 'intro' }, 'Energy against allocation, violations, curtailment events and data quality for one day of this site, as the auditor reads it.'),
    h('div', { class: 'inline-form' }, h('label', { class: 'picker' }, 'Day ', date), link('html', 'Open report'), link('csv', 'CSV'), link('json', 'JSON')),
    result));
}

// ---------------------------------------------------------------------------------------------
// Cluster

async function viewCluster(ctx, root) {
  root.append(pageHead('Cluster'));
  const holder = h('div', { class: 'holder' });
  root.append(holder);
  const notRunning = (why) => h('div', { class: 'notice', 'data-testid': 'cluster-not-running' },
    h('h2', {}, 'The cluster is not running'),
    h('p', {}, why),
    h('p', { class: 'muted' }, 'When a CoopMine coordinator and its workers run, their hashrate reports appear here with the shares the coordinator forwards to the pool.'));
  const workersSql = "SELECT cluster, worker, avg(hashrate_hs) AS hashrate_hs, max(ts) AS last_seen, count(*) AS samples FROM hashrate_samples WHERE ts > now() - INTERVAL '10 minutes' GROUP BY cluster, worker ORDER BY cluster, worker";
  let built = '';
  let sub = null;
  bind(ctx, holder, async () => {
    let rows;
    try {
      rows = await sql(workersSql, ['hashrate_samples']);
    } catch (e) {
      if (e instanceof NoData) {
        built = '';
        if (sub) sub.dispose();
        return notRunning('No worker has ever reported its hashrate (there is no hashrate_samples table).');
      }
      throw e;
    }
    if (!rows.length) {
      built = '';
      if (sub) sub.dispose();
      return notRunning('No worker has reported its hashrate in the last 10 minutes.');
    }
    const clusters = [...new Set(rows.map((r) => r.cluster))];
    if (clusters.join(',') === built) return undefined;
    built = clusters.join(',');
    if (sub) sub.dispose();
    sub = ctx.child();
    return clusters.map((c) => clusterSection(sub, c));
  }, { every: 20000 });
}

function clusterSection(ctx, cluster) {
  const el = h('div', { class: 'cluster', 'data-testid': `cluster-${cluster}` }, h('h3', { class: 'section' }, `Cluster ${cluster}`));
  const stats = h('div', { class: 'stats' });
  el.append(stats);
  const workers = memo(3000, () => sql(`SELECT worker, avg(hashrate_hs) AS hashrate_hs, max(ts) AS last_seen, count(*) AS samples FROM hashrate_samples WHERE cluster = ${lit(cluster)} AND ts > now() - INTERVAL '10 minutes' GROUP BY worker ORDER BY worker`, ['hashrate_samples']));
  stat(ctx, stats, { label: 'Reported hashrate (10 min)', testid: `cluster-hashrate-${cluster}` }, async () => {
    const rows = await workers();
    const total = rows.reduce((a, r) => a + (r.hashrate_hs || 0), 0);
    return { text: fmt.hash(total), value: total, sub: 'Σ of each worker\'s mean' };
  });
  stat(ctx, stats, { label: 'Workers reporting', testid: `cluster-workers-${cluster}` }, async () => {
    const rows = await workers();
    return { text: String(rows.length), value: rows.length };
  });
  const sharesSql = `SELECT sum(CASE WHEN forwarded AND upstream_verdict = 'accepted' THEN 1 ELSE 0 END) AS accepted, sum(CASE WHEN forwarded AND upstream_verdict <> 'accepted' THEN 1 ELSE 0 END) AS refused, sum(CASE WHEN valid THEN difficulty ELSE 0 END) / 3600.0 AS measured_hs, sum(CASE WHEN valid THEN 0 ELSE 1 END) AS invalid FROM cluster_shares WHERE cluster = ${lit(cluster)} AND ts > now() - INTERVAL '1 hour'`;
  const shares = memo(3000, () => sql(sharesSql, ['cluster_shares']));
  stat(ctx, stats, { label: 'Shares accepted upstream (1 h)', testid: `cluster-shares-${cluster}` }, async () => {
    const r = (await shares())[0] || {};
    return { text: fmt.int(r.accepted ?? 0), value: r.accepted ?? 0, sql: sharesSql, sub: `${fmt.int(r.refused ?? 0)} refused upstream, ${fmt.int(r.invalid ?? 0)} invalid` };
  });
  stat(ctx, stats, { label: 'Measured hashrate (1 h)', testid: `cluster-measured-${cluster}` }, async () => {
    const r = (await shares())[0] || {};
    return { text: fmt.hash(r.measured_hs ?? 0), value: r.measured_hs ?? 0, sql: sharesSql, sub: 'work of valid shares / hour' };
  });
  const grid = h('div', { class: 'grid-2' });
  el.append(grid);
  panel(ctx, grid, { title: 'Reported hashrate — last hour' }, async (el) => {
    const rows = await sql(`SELECT date_bin(INTERVAL '1 minute', ts) AS minute, worker, avg(hashrate_hs) AS hs FROM hashrate_samples WHERE cluster = ${lit(cluster)} AND ts >= now() - INTERVAL '60 minutes' GROUP BY minute, worker ORDER BY minute`, ['hashrate_samples']);
    const byMinute = new Map();
    for (const r of rows) byMinute.set(r.minute, (byMinute.get(r.minute) || 0) + r.hs);
    const now = Date.now();
    return lineChart({ series: [{ name: cluster, points: [...byMinute.entries()].map(([m, v]) => [parseTs(m), v]) }], yFormat: fmt.hash, from: now - 3600000, to: now, el });
  });
  panel(ctx, grid, { title: 'Workers', testid: `cluster-workers-table-${cluster}` }, async () => table([
    { key: 'worker', label: 'Worker' },
    { key: 'hashrate_hs', label: 'Hashrate (10 min mean)', num: true, fmt: fmt.hash },
    { key: 'samples', label: 'Reports', num: true },
    { key: 'last_seen', label: 'Last report', fmt: fmt.ago },
    { key: 'last_seen', label: 'State', fmt: (v) => (Date.now() - parseTs(v) < 120000 ? badge('online', 'ok') : badge('silent', 'warn')) },
  ], await workers()));
  return el;
}

// ---------------------------------------------------------------------------------------------
// SQL console

function download(url, name) {
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}

async function viewSql(ctx, root) {
  root.append(pageHead('SQL'));
  const textarea = h('textarea', { class: 'sql-input mono', 'data-testid': 'sql-input', spellcheck: 'false', rows: 8 });
  textarea.value = sessionStorage.getItem(SQL_KEY)
    || 'SELECT site, minute, avg_power_w / 1000.0 AS kw, quality\nFROM site_energy_1m\nORDER BY minute DESC\nLIMIT 20';
  const status = h('span', { class: 'stamp', 'data-testid': 'sql-status' });
  const result = h('div', { class: 'sql-result', 'data-testid': 'sql-result' }, h('div', { class: 'empty' }, 'Run a query to see its rows.'));
  const run = async () => {
    const query = textarea.value.trim();
    if (!query) return;
    sessionStorage.setItem(SQL_KEY, textarea.value);
    status.textContent = 'running…';
    result.dataset.state = 'running';
    const started = performance.now();
    try {
      const resp = await api('/api/v1/sql?format=json', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: query });
      const rows = await resp.json();
      const ms = performance.now() - started;
      const cols = rows.length ? Object.keys(rows[0]) : [];
      const shown = rows.slice(0, 1000);
      status.textContent = `${rows.length} row${rows.length === 1 ? '' : 's'} · ${ms.toFixed(0)} ms`;
      status.dataset.rows = String(rows.length);
      replace(result,
        rows.length > shown.length ? h('p', { class: 'muted' }, `Showing the first ${shown.length} rows; download for all of them.`) : null,
        rows.length ? table(cols.map((c) => ({
          key: c, label: c, num: shown.some((r) => typeof r[c] === 'number'),
          fmt: (v) => (v !== null && typeof v === 'object' ? JSON.stringify(v) : v === null ? h('span', { class: 'muted' }, 'null') : String(v)),
        })), shown, { testid: 'sql-table' }) : h('div', { class: 'empty' }, 'No rows.'));
      result.dataset.state = 'ok';
    } catch (e) {
      status.textContent = '';
      replace(result, errorNode(e));
      result.dataset.state = 'error';
    }
  };
  const fetchFile = async (format) => {
    const query = textarea.value.trim();
    if (!query) return;
    status.textContent = `preparing ${format}…`;
    try {
      const resp = await api(`/api/v1/sql?format=${format}`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: query });
      const blob = await resp.blob();
      const url = URL.createObjectURL(blob);
      download(url, `adit-query.${format}`);
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      status.textContent = `${format}: ${blob.size.toLocaleString('en-US')} bytes`;
    } catch (e) {
      status.textContent = '';
      replace(result, errorNode(e));
    }
  };
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });
  const tablesList = h('div', { class: 'tables-list', 'data-testid': 'sql-tables' });
  const side = h('section', { class: 'panel side' }, h('header', { class: 'panel-head' }, h('h2', {}, 'Tables')), tablesList);
  const main = h('section', { class: 'panel' },
    h('header', { class: 'panel-head' }, h('h2', {}, 'Query'), status),
    textarea,
    h('div', { class: 'toolbar' },
      h('button', { type: 'button', class: 'primary', onclick: run, 'data-testid': 'sql-run' }, 'Run'),
      h('span', { class: 'muted hint' }, 'Ctrl+Enter'),
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'ghost', onclick: () => fetchFile('csv'), 'data-testid': 'sql-csv' }, 'Download CSV'),
      h('button', { type: 'button', class: 'ghost', onclick: () => fetchFile('parquet'), 'data-testid': 'sql-parquet' }, 'Download Parquet')),
    result);
  root.append(h('div', { class: 'sql-layout' }, side, main));
  bind(ctx, tablesList, async () => {
    const all = await getJson('/api/v1/tables');
    const names = Object.keys(all).sort();
    if (!names.length) throw new NoData('no table written yet');
    return names.map((name) => h('details', {},
      h('summary', {}, h('span', { class: 'mono' }, name), ' ',
        h('button', {
          type: 'button', class: 'ghost small', title: 'Query it',
          onclick: (e) => {
            e.preventDefault();
            textarea.value = `SELECT *\nFROM ${name}\nLIMIT 100`;
            run();
          },
        }, '▸')),
      h('ul', {}, all[name].map((c) => h('li', {}, h('span', { class: 'mono' }, c.name), ' ', h('span', { class: 'muted' }, c.type))))));
  }, { every: 60000 });
}

// ---------------------------------------------------------------------------------------------
// Control

function confirmDialog({ title, text, okLabel = 'Confirm', input = null }) {
  const dialog = $('#confirm-dialog');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  const wrap = $('#confirm-input-wrap');
  const field = $('#confirm-input');
  wrap.hidden = !input;
  field.value = input ? input.value || '' : '';
  $('#confirm-input-label').textContent = input ? input.label : '';
  field.placeholder = input && input.placeholder ? input.placeholder : '';
  return new Promise((resolve) => {
    const done = () => {
      dialog.removeEventListener('close', done);
      if (dialog.returnValue !== 'ok') return resolve(null);
      if (input && input.mustEqual !== undefined && field.value.trim() !== input.mustEqual) return resolve(null);
      return resolve({ value: field.value.trim() });
    };
    dialog.addEventListener('close', done);
    dialog.returnValue = '';
    dialog.showModal();
    if (input) field.focus();
  });
}

function siteDatalist() {
  const list = h('datalist', { id: 'sites-list' });
  sites().then((all) => replace(list, all.map((x) => h('option', { value: x.id }, x.name || x.id)))).catch(() => {});
  return list;
}

function field(label, input) {
  return h('label', { class: 'field' }, h('span', {}, label), input);
}

function resultBox(testid) {
  return h('div', { class: 'form-result', 'data-testid': testid, role: 'status' });
}

async function submitOverride(body, out, after) {
  replace(out, h('span', { class: 'muted' }, 'sending…'));
  out.dataset.state = 'sending';
  try {
    const r = await postJson('/api/v1/control/overrides', body);
    replace(out, h('div', { class: 'ok-box' }, `Accepted: ${r.id}, until ${fmt.datetime(r.expires)}. The controller applies it at its next step.`));
    out.dataset.state = 'ok';
    out.dataset.id = r.id;
    if (after) after(r);
  } catch (e) {
    replace(out, errorNode(e));
    out.dataset.state = 'error';
  }
}

const DURATIONS = ['15m', '30m', '1h', '2h', '4h', '12h', '24h'];
const durationSelect = (testid, value = '1h') => h('select', { 'data-testid': testid }, DURATIONS.map((d) => h('option', { value: d, selected: d === value }, d)));

async function viewControl(ctx, root) {
  root.append(pageHead('Control'),
    h('p', { class: 'muted' }, 'Overrides of the curtailment controller. Each needs a token with the operate role (admin for target and hold), expires by itself, and is recorded with the token\'s name.'),
    siteDatalist());

  let refreshList = () => {};
  const afterChange = () => [1500, 4000, 9000].forEach((ms) => setTimeout(() => refreshList(), ms));

  // Emergency shutdown. The controller's own shutdown is its `emergency_temperature` rule:
  // once the site's hottest temperature reaches the site's emergency_temp_c it puts every
  // machine to sleep at once (no ramp, no min_on) and runs the fans at 9, and lifts only once
  // the temperature is emergency_clear_c under and the cooldown has passed. A `target` override
  // of 0 kW would shed within the ramp and skip machines still inside their min_on, so it is
  // not a shutdown. The button therefore makes a `temperature` override at the site's
  // emergency_temp_c (operate role), with the operator's reason, until it expires or is
  // cancelled here.
  const eSite = h('input', { list: 'sites-list', placeholder: 'site', 'data-testid': 'emergency-site', required: true });
  const eDuration = durationSelect('emergency-duration', '1h');
  const eReason = h('input', { placeholder: 'why (recorded)', 'data-testid': 'emergency-reason', class: 'wide' });
  const eOut = resultBox('emergency-result');
  const eButton = h('button', {
    type: 'button', class: 'danger big', 'data-testid': 'emergency-button',
    onclick: async () => {
      const site = eSite.value.trim();
      if (!site) {
        replace(eOut, errorNode(new ApiError(0, 'bad_request', 'choose the site to shut down')));
        return;
      }
      let limit;
      try {
        const record = await getJson(`/api/v1/registry/sites/${enc(site)}`);
        limit = record.emergency_temp_c;
        if (!isNum(limit)) throw new ApiError(0, 'registry', `site ${site} has no emergency temperature`);
      } catch (e) {
        replace(eOut, errorNode(e));
        return;
      }
      const answer = await confirmDialog({
        title: `Emergency shutdown of ${site}?`,
        text: `Every machine at ${site} is put to sleep at once and its fans run at level 9, for ${eDuration.value} or until you cancel the override below; the controller then wakes machines after its cooldown. Type the site id to confirm.`,
        okLabel: `Shut down ${site}`,
        input: { label: 'Site id', placeholder: site, mustEqual: site },
      });
      if (!answer) {
        replace(eOut, h('span', { class: 'muted' }, 'Not confirmed: nothing was changed.'));
        eOut.dataset.state = 'cancelled';
        return;
      }
      await submitOverride({
        site, kind: 'temperature', value: limit, duration: eDuration.value,
        reason: `emergency shutdown from the dashboard${eReason.value.trim() ? `: ${eReason.value.trim()}` : ''}`,
      }, eOut, afterChange);
    },
  }, 'Emergency shutdown');
  root.append(h('section', { class: 'panel danger-zone', 'data-testid': 'emergency' },
    h('header', { class: 'panel-head' }, h('h2', {}, 'Emergency shutdown')),
    h('p', { class: 'intro' }, 'Puts every machine of a site to sleep now (the controller\'s emergency mode, through a temperature override at the site\'s emergency limit).'),
    h('div', { class: 'inline-form' }, field('Site', eSite), field('For', eDuration), field('Reason', eReason), eButton),
    eOut));

  const grid = h('div', { class: 'grid-2' });
  root.append(grid);

  // Any override.
  const oSite = h('input', { list: 'sites-list', placeholder: 'site', 'data-testid': 'override-site' });
  const oKind = h('select', { 'data-testid': 'override-kind' },
    [['fan_level', 'fan level (1–9)'], ['exclude_machine', 'exclude a machine'], ['grid', 'grid signal (kW)'], ['temperature', 'temperature (°C)'],
      ['target', 'load target (kW, admin)'], ['hold', 'hold (admin)']].map(([v, l]) => h('option', { value: v }, l)));
  const oMachine = h('input', { placeholder: 'machine', 'data-testid': 'override-machine' });
  const oValue = h('input', { type: 'number', step: 'any', placeholder: 'value', 'data-testid': 'override-value' });
  const oDuration = durationSelect('override-duration', '30m');
  const oReason = h('input', { placeholder: 'why (recorded)', 'data-testid': 'override-reason', class: 'wide' });
  const oOut = resultBox('override-result');
  const machineField = field('Machine', oMachine);
  const valueField = field('Value', oValue);
  const syncKind = () => {
    machineField.hidden = oKind.value !== 'exclude_machine';
    valueField.hidden = ['exclude_machine', 'hold'].includes(oKind.value);
  };
  oKind.addEventListener('change', syncKind);
  syncKind();
  grid.append(h('section', { class: 'panel', 'data-testid': 'override-form' },
    h('header', { class: 'panel-head' }, h('h2', {}, 'New override')),
    h('form', {
      class: 'form',
      onsubmit: (e) => {
        e.preventDefault();
        const body = { site: oSite.value.trim(), kind: oKind.value, duration: oDuration.value, reason: oReason.value.trim() || 'set from the dashboard' };
        if (oKind.value === 'exclude_machine') body.machine = oMachine.value.trim();
        if (!valueField.hidden && oValue.value !== '') body.value = Number(oValue.value);
        submitOverride(body, oOut, afterChange);
      },
    }, field('Site', oSite), field('Kind', oKind), machineField, valueField, field('For', oDuration), field('Reason', oReason),
    h('div', { class: 'toolbar' }, h('button', { class: 'primary', 'data-testid': 'override-submit' }, 'Make override'))),
    oOut));

  // The two test overrides.
  const gSite = h('input', { list: 'sites-list', placeholder: 'site', 'data-testid': 'grid-test-site' });
  const gTarget = h('input', { type: 'number', step: 'any', min: 0, placeholder: 'kW (empty: no curtailment)', 'data-testid': 'grid-test-kw' });
  const gDuration = durationSelect('grid-test-duration', '15m');
  const gOut = resultBox('grid-test-result');
  const tSite = h('input', { list: 'sites-list', placeholder: 'site', 'data-testid': 'temp-test-site' });
  const tValue = h('input', { type: 'number', step: 'any', placeholder: '°C', 'data-testid': 'temp-test-c' });
  const tDuration = durationSelect('temp-test-duration', '15m');
  const tOut = resultBox('temp-test-result');
  grid.append(h('section', { class: 'panel', 'data-testid': 'test-overrides' },
    h('header', { class: 'panel-head' }, h('h2', {}, 'Test overrides')),
    h('p', { class: 'intro' }, 'Stand in for the utility\'s demand-response signal or for a site\'s hottest temperature, to see the controller act.'),
    h('form', {
      class: 'form',
      onsubmit: (e) => {
        e.preventDefault();
        const body = { site: gSite.value.trim(), kind: 'grid', duration: gDuration.value, reason: 'grid signal test from the dashboard' };
        if (gTarget.value !== '') body.value = Number(gTarget.value);
        submitOverride(body, gOut, afterChange);
      },
    }, h('h4', {}, 'Grid signal'), field('Site', gSite), field('Curtail to', gTarget), field('For', gDuration),
    h('div', { class: 'toolbar' }, h('button', { class: 'primary', 'data-testid': 'grid-test-submit' }, 'Send grid test'))),
    gOut,
    h('form', {
      class: 'form',
      onsubmit: (e) => {
        e.preventDefault();
        submitOverride({ site: tSite.value.trim(), kind: 'temperature', value: Number(tValue.value), duration: tDuration.value, reason: 'temperature test from the dashboard' }, tOut, afterChange);
      },
    }, h('h4', {}, 'Temperature'), field('Site', tSite), field('Hottest reads', tValue), field('For', tDuration),
    h('div', { class: 'toolbar' }, h('button', { class: 'primary', 'data-testid': 'temp-test-submit' }, 'Send temperature test'))),
    tOut));

  const listOut = resultBox('cancel-result');
  const list = panel(ctx, root, { title: 'Overrides', testid: 'overrides', intro: 'Newest first. Active ones can be ended early.' }, async () => {
    const rows = await getJson('/api/v1/control/overrides?limit=100');
    const cancelled = new Set(rows.filter((r) => r.kind === 'cancel' && r.cancels).map((r) => r.cancels));
    const now = Date.now();
    for (const r of rows) {
      r.status = r.kind === 'cancel' ? 'cancel'
        : cancelled.has(r.id) ? 'cancelled'
          : (parseTs(r.expires) ?? 0) > now ? 'active' : 'expired';
    }
    const unit = { fan_level: '', grid: ' kW', target: ' kW', temperature: ' °C' };
    return [listOut, table([
      { key: 'status', label: 'Status', fmt: (v) => badge(v, v === 'active' ? 'ok' : 'muted') },
      { key: 'site', label: 'Site' },
      { key: 'kind', label: 'Kind' },
      { key: 'value', label: 'Value', num: true, fmt: (v, r) => (isNum(v) ? `${v}${unit[r.kind] || ''}` : r.machine || (r.cancels ? fmt.short(r.cancels, 24) : null)) },
      { key: 'reason', label: 'Reason', fmt: (v) => h('span', { class: 'clip', title: v }, v) },
      { key: 'by', label: 'By' },
      { key: 'ts', label: 'Made', fmt: fmt.when },
      { key: 'expires', label: 'Ends', fmt: (v, r) => (r.kind === 'cancel' ? null : r.status === 'active' ? fmt.span(now - parseTs(v), '', 'in ') : fmt.when(v)) },
      {
        key: 'id', label: '', fmt: (v, r) => (r.status !== 'active' ? null : h('button', {
          type: 'button', class: 'ghost small', 'data-testid': 'override-cancel',
          onclick: async () => {
            const answer = await confirmDialog({
              title: `End ${r.kind} override of ${r.site}?`, text: `${r.id}, made by ${r.by}: "${r.reason}".`, okLabel: 'End it',
              input: { label: 'Reason', value: 'ended from the dashboard' },
            });
            if (!answer) return;
            try {
              await postJson(`/api/v1/control/overrides/${enc(r.site)}/${enc(r.id)}/cancel`, { reason: answer.value || 'ended from the dashboard' });
              replace(listOut, h('div', { class: 'ok-box' }, `Cancellation of ${r.id} accepted; it is listed as cancelled once the controller has it.`));
              afterChange();
            } catch (e) {
              replace(listOut, errorNode(e));
            }
          },
        }, 'Cancel')),
      },
    ], rows, { empty: 'No override made yet', testid: 'overrides-table', rowAttrs: (r) => ({ 'data-testid': 'override-row', 'data-id': r.id, 'data-status': r.status, 'data-kind': r.kind, 'data-site': r.site }) })];
  }, { every: 10000 });
  refreshList = list.refresh;
}

// ---------------------------------------------------------------------------------------------
// Routing and start

const VIEWS = { overview: viewOverview, miner: viewMiner, site: viewSite, cluster: viewCluster, sql: viewSql, control: viewControl };

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, q] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch (_) {
      return p;
    }
  });
  const name = VIEWS[parts[0]] ? parts[0] : 'overview';
  return { name, args: parts.slice(1), query: new URLSearchParams(q || '') };
}

async function route() {
  if (current) current.dispose();
  const ctx = new ViewContext();
  current = ctx;
  const { name, args, query } = parseRoute();
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.route === name);
  const root = h('div', { class: 'page', 'data-view': name });
  $('#view').replaceChildren(root);
  document.title = `adit · ${name}`;
  try {
    await VIEWS[name](ctx, root, args, query);
  } catch (e) {
    if (ctx.alive) root.append(errorNode(e));
  }
  if (ctx.alive) root.dataset.ready = 'true';
}

function updateTokenButton() {
  const b = $('#token-button');
  b.textContent = auth.token ? 'Token ✓' : 'Token';
  b.title = auth.token ? 'A token is set for this tab' : 'No token set (the API may be open)';
}

function start() {
  updateTokenButton();
  $('#token-button').addEventListener('click', () => auth.ask(auth.token ? 'Replace the token this tab uses.' : 'Set the token this tab sends to the API.'));
  $('#token-clear').addEventListener('click', () => {
    auth.set('');
    $('#token-dialog').close('cleared');
  });
  window.addEventListener('hashchange', route);
  if (!location.hash) history.replaceState(null, '', '#/overview');
  route();
  // A public dashboard is opened without a token: the live stream would ask for one, so its
  // panels refresh on their timers instead.
  if (location.hash.startsWith('#/public/')) setLiveState('off', 'A public link refreshes its panels every 30 s');
  else runLive();
}

// After boards.js (loaded after this file) has added its views.
document.addEventListener('DOMContentLoaded', start);
