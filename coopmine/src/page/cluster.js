// The coordinator's page: its figures from its own REST API, every 5 s. Every value is put in
// with textContent (never as markup); the token, when the API asks for one, stays in this
// tab's sessionStorage.
'use strict';

const KEY = 'adit-cluster-token';
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function hashrate(hs) {
  const units = ['H/s', 'kH/s', 'MH/s', 'GH/s'];
  let v = Number(hs) || 0;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

async function get(path) {
  const headers = {};
  const token = sessionStorage.getItem(KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(path, { headers });
  if (r.status === 401) {
    $('token').style.display = 'block';
    throw new Error('a token is needed');
  }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

function stat(label, value, cls) {
  const box = el('div', undefined, 'stat');
  box.append(el('span', label, 'muted'), el('b', value, cls));
  return box;
}

function showStats(s) {
  $('cluster').textContent = s.cluster;
  const up = s.upstream || {};
  $('upstream').textContent = up.connected
    ? `mining at ${up.url}`
    : `not connected upstream${up.last_error ? `: ${up.last_error}` : ''}`;
  $('upstream').className = up.connected ? 'ok' : 'bad';
  $('stats').replaceChildren(
    stat('workers online', `${s.workers_online} / ${s.workers_total}`),
    stat('hashrate', hashrate(s.hashrate_hs)),
    stat('reported', hashrate(s.reported_hashrate_hs)),
    stat('valid shares', s.shares_valid, 'ok'),
    stat('invalid shares', s.shares_invalid, s.shares_invalid ? 'bad' : undefined),
    stat('accepted upstream', `${s.shares_accepted_upstream} of ${s.shares_forwarded}`),
  );
}

function showWorkers(list) {
  $('workers').replaceChildren(...list.map((w) => {
    const tr = el('tr');
    tr.append(
      el('td', w.worker), el('td', w.online ? 'yes' : 'no', w.online ? 'ok' : 'bad'),
      el('td', w.threads, 'n'), el('td', hashrate(w.hashrate_hs), 'n'),
      el('td', hashrate(w.reported_hashrate_hs), 'n'), el('td', w.shares_valid, 'n'),
      el('td', w.shares_invalid, 'n'), el('td', w.shares_forwarded, 'n'),
      el('td', new Date(w.last_seen).toLocaleTimeString()),
    );
    return tr;
  }));
}

// Valid and invalid shares per minute, as two bar series.
function showShares(shares) {
  const svg = $('shares');
  const ns = 'http://www.w3.org/2000/svg';
  const minutes = new Map();
  for (const s of shares) {
    const m = Math.floor(Date.parse(s.ts) / 60000);
    const c = minutes.get(m) || { valid: 0, invalid: 0 };
    if (s.valid) c.valid += 1; else c.invalid += 1;
    minutes.set(m, c);
  }
  const keys = [...minutes.keys()].sort((a, b) => a - b);
  svg.replaceChildren();
  if (!keys.length) {
    $('shares-note').textContent = 'No share yet';
    return;
  }
  // At least the last 30 minutes, ending now.
  const last = Math.max(keys[keys.length - 1], Math.floor(Date.now() / 60000));
  const first = Math.min(keys[0], last - 29);
  const span = last - first + 1;
  const top = Math.max(...keys.map((k) => minutes.get(k).valid + minutes.get(k).invalid));
  const w = 600 / span;
  for (const k of keys) {
    const c = minutes.get(k);
    const x = (k - first) * w;
    let y = 180;
    for (const [n, color, cls] of [[c.valid, '#3a7', 'valid'], [c.invalid, '#c33', 'invalid']]) {
      if (!n) continue;
      const h = (n / top) * 170;
      y -= h;
      const bar = document.createElementNS(ns, 'rect');
      bar.setAttribute('x', x + 0.5);
      bar.setAttribute('y', y);
      bar.setAttribute('width', Math.max(1, w - 1));
      bar.setAttribute('height', h);
      bar.setAttribute('fill', color);
      bar.setAttribute('class', `bar ${cls}`);
      svg.append(bar);
    }
  }
  const valid = shares.filter((s) => s.valid).length;
  $('shares-note').textContent = `${shares.length} shares over ${span} min: ${valid} valid, ${shares.length - valid} invalid`;
}

function showJob(jobs) {
  const job = jobs[0];
  if (!job) {
    $('job').replaceChildren(el('tr')).firstChild.append(el('td', 'No job from the pool yet', 'muted'));
    return;
  }
  $('job').replaceChildren(...[
    ['job', job.job_id], ['upstream job', job.upstream_job_id], ['pool', job.upstream],
    ['height', job.height], ['pool difficulty', job.upstream_difficulty],
    ['share difficulty', job.share_difficulty],
  ].map(([k, v]) => {
    const tr = el('tr');
    tr.append(el('th', k), el('td', v));
    return tr;
  }));
}

async function refresh() {
  try {
    const [stats, workers, shares, jobs] = await Promise.all([
      get('api/stats'), get('api/workers'), get('api/shares?limit=500'), get('api/jobs'),
    ]);
    showStats(stats);
    showWorkers(workers);
    showShares(shares);
    showJob(jobs);
    document.body.dataset.loaded = 'true';
  } catch (e) {
    $('upstream').textContent = e.message;
  }
}

$('token').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, $('token-input').value);
  $('token').style.display = 'none';
  refresh();
});
refresh();
setInterval(refresh, 5000);
