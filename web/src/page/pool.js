// adit: a pool's public team page (issue 61). Reads the public team ranking
// (/api/v1/public/pools/{pool}/teams) and the pool's competitions with their standings
// (/api/v1/public/pools/{pool}/competitions); every value is written as text, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);

function hashrate(hs) {
  const units = ['H/s', 'kH/s', 'MH/s', 'GH/s', 'TH/s', 'PH/s'];
  let v = Number(hs) || 0;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

// A table body of the ranked teams (rank, team, miners, shares, hashrate).
function fill(tbody, rows, empty) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = 5;
    td.textContent = empty;
    tr.append(td);
    tbody.append(tr);
    return;
  }
  for (const r of rows) {
    const tr = document.createElement('tr');
    for (const v of [r.rank, r.team, r.miners, r.shares, hashrate(r.hashrate_hs)]) {
      const td = document.createElement('td');
      td.textContent = String(v);
      tr.append(td);
    }
    tbody.append(tr);
  }
}

async function getJson(url) {
  const r = await fetch(url);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.error && body.error.message) || `${r.status}`);
  return body;
}

function competition(c) {
  const section = document.createElement('section');
  section.dataset.testid = `competition-${c.id}`;
  const h = document.createElement('h3');
  h.textContent = `${c.name} (${c.state})`;
  const when = document.createElement('p');
  when.className = 'muted';
  when.textContent = `${c.starts} to ${c.ends}`;
  const table = document.createElement('table');
  table.className = 'grid';
  table.innerHTML = '<thead><tr><th>#</th><th>Team</th><th>Miners</th><th>Shares</th><th>Hashrate</th></tr></thead>';
  const tbody = document.createElement('tbody');
  table.append(tbody);
  fill(tbody, c.standings, c.state === 'upcoming' ? 'Not started yet' : 'No team has a share in it yet');
  section.append(h, when, table);
  return section;
}

async function show() {
  const pool = $('pool').value.trim();
  const windowName = $('window').value;
  $('pool-name').textContent = pool;
  history.replaceState(null, '', `?pool=${encodeURIComponent(pool)}&window=${windowName}`);
  const base = `/api/v1/public/pools/${encodeURIComponent(pool)}`;
  $('teams-error').textContent = '';
  try {
    fill($('teams'), await getJson(`${base}/teams?window=${windowName}`), 'No team has a share in this window');
  } catch (e) {
    $('teams-error').textContent = `Teams: ${e.message}`;
  }
  const list = $('competitions');
  try {
    const all = await getJson(`${base}/competitions`);
    list.replaceChildren(...all.map(competition));
    if (all.length === 0) list.textContent = 'No competition yet';
  } catch (e) {
    list.textContent = `Competitions: ${e.message}`;
  }
  document.body.dataset.loaded = 'true';
}

document.addEventListener('DOMContentLoaded', () => {
  const params = new URLSearchParams(location.search);
  if (params.get('pool')) $('pool').value = params.get('pool');
  if (params.get('window')) $('window').value = params.get('window');
  $('form').addEventListener('submit', (e) => { e.preventDefault(); show(); });
  show();
});
