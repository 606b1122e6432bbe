// Dashboards people build and share (#/boards, #/board/<id>, #/public/<link>), drawn from
// /api/v1/dashboards: a dashboard is data (panels of SQL with a kind, unit, thresholds and a
// place on a 24-column grid; variables; a time range), and this page is its renderer and
// editor. Panels run on the server with the viewer's variable values bound (never pasted into
// SQL); an edit is saved as a new revision with If-Match; a public dashboard opens through
// its link without a token, reading its own panels only.
//
// Loaded after app.js, whose helpers (h, s, api, getJson, postJson, panel, bind, table,
// lineChart, errorNode, fmt…) it uses; it adds its views to VIEWS.
'use strict';

const RANGES = ['now-15m', 'now-1h', 'now-6h', 'now-24h', 'now-7d', 'now-30d'];
const KINDS = ['timeseries', 'bar', 'stat', 'table', 'gauge'];
const ROW_PX = 44;
const ROW_GAP = 10; // the grid's gap (style.css .board-grid)

// Where a board's data comes from: a signed-in viewer's routes or a public link's.
function boardSource(id, link) {
  const base = link ? `/api/v1/public/dashboards/${enc(link)}` : `/api/v1/dashboards/${enc(id)}`;
  return {
    panel: (pid, ask) => postJson(`${base}/panels/${enc(pid)}/query`, ask),
    values: (name) => postJson(`${base}/variables/${enc(name)}/values`, {}),
  };
}

// A subject filter (`results.energy.>`) as a test of subjects.
function subjectTest(filter) {
  if (!filter) return null;
  const parts = filter.split('.');
  const re = parts.map((p, i) => (p === '>' && i === parts.length - 1 ? '.+' : p === '*' ? '[^.]+' : p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('\\.');
  return new RegExp(`^${re}$`);
}

function thresholdColor(p, v) {
  let color = null;
  for (const t of p.thresholds || []) if (isNum(v) && v >= t.value) color = t.color;
  return color;
}

function withUnit(v, unit) {
  if (!isNum(v)) return v === null || v === undefined ? '—' : String(v);
  const text = Number.isInteger(v) ? v.toLocaleString('en-US') : sig3(v);
  return unit ? `${text} ${unit}` : text;
}

// A panel's rows drawn as its kind says.
function drawPanel(p, rows, el, range) {
  if (!rows.length) return h('div', { class: 'empty', 'data-testid': 'no-data' }, 'No data');
  const keys = Object.keys(rows[0]);
  const numeric = keys.filter((k) => rows.some((r) => isNum(r[k])));
  const first = numeric[0];
  switch (p.kind) {
    case 'stat':
    case 'gauge': {
      const v = rows[0][first ?? keys[0]];
      const color = thresholdColor(p, v);
      const value = h('div', { class: 'stat-value', 'data-testid': 'board-value', 'data-value': String(v ?? ''), style: color ? `color:${color}` : '' }, withUnit(v, p.unit));
      if (p.kind === 'stat' || !isNum(v)) return value;
      const lo = p.min ?? 0;
      const hi = p.max ?? 100;
      const share = Math.max(0, Math.min(1, (v - lo) / ((hi - lo) || 1)));
      return h('div', {}, value, h('div', { class: 'gauge' }, h('i', { style: `width:${(share * 100).toFixed(1)}%;${color ? `background:${color}` : ''}` })));
    }
    case 'timeseries': {
      const time = keys.find((k) => parseTs(rows[0][k]) !== null && !isNum(rows[0][k])) || keys[0];
      const split = keys.find((k) => k !== time && !numeric.includes(k));
      const values = numeric.filter((k) => k !== time);
      const series = split
        ? values.flatMap((v) => seriesBy(rows, split, time, v).map((x) => ({ ...x, name: values.length > 1 ? `${x.name} ${v}` : x.name })))
        : values.flatMap((v) => seriesBy(rows, null, time, v, v));
      series.forEach((x, i) => { x.color = COLORS[i % COLORS.length]; });
      return lineChart({ series, yFormat: (v) => withUnit(v, p.unit), from: range.from, to: range.to, el, height: Math.max(120, el.clientHeight - 30 || 180) });
    }
    case 'bar': {
      const label = keys.find((k) => !numeric.includes(k)) || keys[0];
      const value = numeric.find((k) => k !== label);
      const max = Math.max(...rows.map((r) => (isNum(r[value]) ? r[value] : 0)), 0) || 1;
      return h('div', { class: 'bars' }, rows.slice(0, 50).map((r) => h('div', { class: 'bar-row' },
        h('span', { class: 'bar-label' }, String(r[label] ?? '—')),
        h('span', { class: 'bar-track' }, h('i', { style: `width:${((isNum(r[value]) ? r[value] : 0) / max * 100).toFixed(1)}%;${thresholdColor(p, r[value]) ? `background:${thresholdColor(p, r[value])}` : ''}` })),
        h('span', { class: 'bar-value' }, withUnit(r[value], p.unit)))));
    }
    default:
      return table(keys.map((k) => ({ key: k, label: k, num: numeric.includes(k), fmt: (v) => (isNum(v) ? withUnit(v, '') : v) })), rows, { testid: 'board-table' });
  }
}

// Puts a panel's element where its layout says on the 24-column grid.
function place(el, l) {
  el.style.gridColumn = `${l.x + 1} / span ${l.w}`;
  el.style.gridRow = `${l.y + 1} / span ${l.h}`;
  el.style.minHeight = `${l.h * ROW_PX}px`;
}

// In the editor, a panel moves when dragged by its header and resizes when dragged by its
// corner, in whole grid cells; `done` runs once the pointer is released after a change.
function arrangeable(grid, el, p, done) {
  const handle = h('span', { class: 'resize-handle', 'data-testid': `resize-panel-${p.id}`, title: 'Drag to resize' });
  el.append(handle);
  el.classList.add('arrangeable');
  const begin = (resize) => (e) => {
    if (e.button !== 0 || e.target.closest('button')) return;
    e.preventDefault();
    const box = grid.getBoundingClientRect();
    const col = (box.width + ROW_GAP) / 24;
    const row = ROW_PX + ROW_GAP;
    const at = { px: e.clientX, py: e.clientY, ...p.layout };
    el.classList.add('arranging');
    const move = (ev) => {
      const dx = Math.round((ev.clientX - at.px) / col);
      const dy = Math.round((ev.clientY - at.py) / row);
      if (resize) {
        p.layout.w = Math.max(1, Math.min(24 - at.x, at.w + dx));
        p.layout.h = Math.max(1, Math.min(50, at.h + dy));
      } else {
        p.layout.x = Math.max(0, Math.min(24 - at.w, at.x + dx));
        p.layout.y = Math.max(0, at.y + dy);
      }
      place(el, p.layout);
    };
    const up = () => {
      window.removeEventListener('pointermove', move);
      window.removeEventListener('pointerup', up);
      el.classList.remove('arranging');
      if (['x', 'y', 'w', 'h'].some((k) => p.layout[k] !== at[k])) done(p);
    };
    window.addEventListener('pointermove', move);
    window.addEventListener('pointerup', up);
  };
  el.querySelector('.panel-head').addEventListener('pointerdown', begin(false));
  handle.addEventListener('pointerdown', begin(true));
}

// Draws a board into `root`: its variables and time range, then its panels on the grid.
// `edit`: the editor's hooks, or null for viewing. `saved`: the dashboard as the server has
// it (what runs there); a panel changed since is drawn as waiting for Save.
function drawBoard(ctx, root, board, source, state, edit, saved = board.dashboard) {
  const d = board.dashboard;
  const range = { from: state.from || d.time.from, to: d.time.to };
  const known = new Set(saved.variables.map((v) => v.name));
  const ask = () => ({
    variables: Object.fromEntries(Object.entries(state.values).filter(([k]) => known.has(k))),
    from: range.from,
    to: range.to,
  });
  const refreshers = [];
  const controls = h('div', { class: 'board-controls' });
  for (const v of d.variables) {
    if (!(v.name in state.values)) state.values[v.name] = v.default;
    const select = h('select', { 'data-testid': `board-var-${v.name}`, 'aria-label': v.label || v.name, onchange: (e) => { state.values[v.name] = e.target.value; refreshers.forEach((r) => r()); } },
      h('option', { value: state.values[v.name] }, state.values[v.name]));
    if (v.query && known.has(v.name)) {
      source.values(v.name).then((rows) => {
        const options = rows.map((r) => String(Object.values(r)[0]));
        if (!options.includes(state.values[v.name])) options.unshift(state.values[v.name]);
        replace(select, options.map((o) => h('option', { value: o, selected: o === state.values[v.name] }, o)));
      }).catch(() => {});
    }
    controls.append(h('label', { class: 'picker' }, `${v.label || v.name} `, select));
  }
  const rangeSelect = h('select', { 'data-testid': 'board-range', 'aria-label': 'time range', onchange: (e) => { state.from = e.target.value; range.from = e.target.value; refreshers.forEach((r) => r()); } },
    [...new Set([range.from, ...RANGES])].map((r) => h('option', { value: r, selected: r === range.from }, r.replace('now-', 'last '))));
  controls.append(h('label', { class: 'picker' }, 'Range ', rangeSelect));
  root.append(controls);
  const grid = h('div', { class: 'board-grid', 'data-testid': 'board-grid' });
  root.append(grid);
  for (const p of d.panels) {
    const l = p.layout;
    const actions = edit ? h('span', { class: 'panel-actions' },
      h('button', { type: 'button', class: 'ghost small', 'data-testid': `edit-panel-${p.id}`, onclick: () => edit.panel(p) }, 'Edit'),
      h('button', { type: 'button', class: 'ghost small', onclick: () => edit.remove(p) }, 'Remove')) : null;
    const stored = saved.panels.find((x) => x.id === p.id);
    const unsaved = !stored || stored.sql !== p.sql || JSON.stringify(saved.variables) !== JSON.stringify(d.variables);
    const shown = panel(ctx, grid, { title: p.title, testid: `board-panel-${p.id}`, actions, live: subjectTest(p.live), every: 30000 }, async (body) => {
      if (unsaved) return h('div', { class: 'empty' }, 'Changed: Save to run it here (Preview runs it in its editor).');
      const rows = await source.panel(p.id, ask()).catch((e) => {
        // A table no pipeline has written yet (a fresh install): no data, not an error.
        const missing = e.status === 400 && /table '(?:[^']*\.)?([^'.]+)' not found/.exec(e.message);
        throw missing ? new NoData(`no ${missing[1]} table yet`) : e;
      });
      body.dataset.rows = String(rows.length);
      return drawPanel(p, rows, body, { from: null, to: null });
    });
    place(shown.el, l);
    if (edit) arrangeable(grid, shown.el, p, edit.arranged);
    refreshers.push(shown.refresh);
  }
}

// #/boards: the dashboards this token may see, and a new one.
async function viewBoards(ctx, root) {
  const id = h('input', { 'data-testid': 'new-board-id', placeholder: 'farm-overview', pattern: '[a-z0-9][a-z0-9_-]*', 'aria-label': 'new dashboard id' });
  const title = h('input', { 'data-testid': 'new-board-title', placeholder: 'Farm overview', 'aria-label': 'new dashboard title' });
  const out = h('div', { class: 'result' });
  const create = h('button', { type: 'button', class: 'primary', 'data-testid': 'new-board', onclick: async () => {
    try {
      await api(`/api/v1/dashboards/${enc(id.value.trim())}`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json', 'If-Match': '0' },
        body: JSON.stringify({ title: title.value.trim() || id.value.trim(), panels: [newPanel([], 'stat')] }),
      });
      location.hash = `#/board/${enc(id.value.trim())}?edit=1`;
    } catch (e) {
      replace(out, errorNode(e));
    }
  } }, 'Create');
  root.append(pageHead('Dashboards', h('span', { class: 'board-new' }, id, title, create)), out);
  panel(ctx, root, { title: 'Dashboards you can open', testid: 'boards' }, async () => {
    const list = await getJson('/api/v1/dashboards');
    return table([
      { key: 'title', label: 'Dashboard', fmt: (v, r) => h('a', { href: `#/board/${enc(r.id)}` }, v) },
      { key: 'owner', label: 'Owner' },
      { key: 'visibility', label: 'Shared', fmt: (v) => badge(v.kind === 'shared' ? `with ${v.role}` : v.kind, v.kind === 'public' ? 'warn' : 'info') },
      { key: 'panels', label: 'Panels', num: true },
      { key: 'revision', label: 'Revision', num: true },
      { key: 'updated', label: 'Updated', fmt: (v) => fmt.ago(v) },
    ], list, { empty: 'No dashboards yet: create one above.', testid: 'boards-table' });
  }, { every: 20000 });
}

// A panel a new dashboard or "Add panel" starts with, placed below the others.
function newPanel(panels, kind = 'table') {
  let n = panels.length + 1;
  while (panels.some((p) => p.id === `panel-${n}`)) n += 1;
  const y = panels.reduce((m, p) => Math.max(m, p.layout.y + p.layout.h), 0);
  return { id: `panel-${n}`, title: `Panel ${n}`, kind, sql: 'SELECT count(*) AS tables FROM information_schema.tables', unit: '', thresholds: [], layout: { x: 0, y, w: 12, h: 5 } };
}

// The SQL of a panel with the viewer's values written in, for the editor's preview only (the
// editor's own SQL under its own token; saved panels run with values bound on the server).
function previewSql(sqlText, values, range) {
  const now = Date.now();
  const at = (r) => {
    const m = /^now-(\d+)([smhdw])$/.exec(r);
    if (r === 'now' || !m) return new Date(now).toISOString();
    const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2]];
    return new Date(now - Number(m[1]) * unit * 1000).toISOString();
  };
  const bound = { ...values, from: null, to: null };
  return sqlText.replace(/\$([a-z][a-z0-9_]*)/g, (all, name) => {
    if (name === 'from') return `TIMESTAMP ${lit(at(range.from))}`;
    if (name === 'to') return `TIMESTAMP ${lit(at(range.to))}`;
    return name in bound ? lit(bound[name]) : all;
  });
}

// #/board/<id>: a dashboard, and its editor for whoever may change it.
async function viewBoard(ctx, root, args, query) {
  const id = args[0];
  if (!id) {
    location.hash = '#/boards';
    return;
  }
  let board = await getJson(`/api/v1/dashboards/${enc(id)}`);
  let saved = JSON.parse(JSON.stringify(board.dashboard));
  const state = { values: {}, from: null };
  let editing = query.get('edit') === '1';
  const body = h('div', { class: 'board' });
  const head = h('div');
  root.append(head, body);
  let child = null;
  const draw = () => {
    const d = board.dashboard;
    if (child) child.dispose();
    child = ctx.child();
    const revision = h('span', { class: 'muted', 'data-testid': 'board-revision', 'data-revision': String(board.revision) }, `revision ${board.revision}`);
    const link = board.link ? h('a', { 'data-testid': 'board-link', href: `#/public/${board.link}`, class: 'mono' }, `${location.origin}/#/public/${board.link}`) : null;
    const visibility = h('select', { 'data-testid': 'board-visibility', 'aria-label': 'who sees it', disabled: !editing },
      [['private', 'Private'], ['shared:read', 'Shared with readers'], ['shared:operate', 'Shared with operators'], ['public', 'Public link']].map(([v, label]) => {
        const cur = d.visibility.kind === 'shared' ? `shared:${d.visibility.role}` : d.visibility.kind;
        return h('option', { value: v, selected: v === cur }, label);
      }));
    const out = h('div', { class: 'result', 'data-testid': 'board-result' });
    const save = async () => {
      const [kind, role] = visibility.value.split(':');
      d.visibility = kind === 'shared' ? { kind, role } : { kind };
      try {
        const resp = await api(`/api/v1/dashboards/${enc(id)}`, {
          method: 'PUT',
          headers: { 'Content-Type': 'application/json', 'If-Match': String(board.revision) },
          body: JSON.stringify(d),
        });
        board = await resp.json();
        saved = JSON.parse(JSON.stringify(board.dashboard));
        editing = false;
        draw();
      } catch (e) {
        replace(out, errorNode(e));
      }
    };
    const buttons = editing
      ? [h('button', { type: 'button', class: 'ghost', 'data-testid': 'add-panel', onclick: () => { d.panels.push(newPanel(d.panels)); draw(); } }, 'Add panel'),
        h('button', { type: 'button', class: 'primary', 'data-testid': 'save-board', onclick: save }, 'Save')]
      : [board.editable ? h('button', { type: 'button', class: 'ghost', 'data-testid': 'edit-board', onclick: () => { editing = true; draw(); } }, 'Edit') : '',
        h('button', { type: 'button', class: 'ghost', 'data-testid': 'copy-board', title: 'Save a private copy of your own to change', onclick: () => copyBoard(id, d, out) }, 'Save a copy')];
    replace(head, pageHead(d.title, revision, h('label', { class: 'picker' }, 'Who sees it ', visibility), ...buttons), link ? h('p', {}, 'Public link: ', link) : '',
      editing ? variableEditor(d, draw) : '', out);
    const canvas = h('div');
    replace(body, canvas);
    const edit = editing ? {
      panel: (p) => editPanel(p, d, state, () => draw(), out),
      remove: (p) => { d.panels = d.panels.filter((x) => x !== p); draw(); },
      arranged: () => draw(),
    } : null;
    drawBoard(child, canvas, board, boardSource(id, null), state, edit, saved);
  };
  draw();
}

// Saves `d` as a new private dashboard of the caller's (`<id>-copy`, `-copy-2`…) and opens it
// in the editor: how a built-in or someone else's dashboard becomes one to change.
async function copyBoard(id, d, out) {
  const copy = { ...JSON.parse(JSON.stringify(d)), title: `${d.title} (copy)`, visibility: { kind: 'private' } };
  const base = `${id.slice(0, 52)}-copy`;
  for (let n = 1; n <= 20; n += 1) {
    const target = n === 1 ? base : `${base}-${n}`;
    try {
      await api(`/api/v1/dashboards/${enc(target)}`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json', 'If-Match': '0' },
        body: JSON.stringify(copy),
      });
      location.hash = `#/board/${enc(target)}?edit=1`;
      return;
    } catch (e) {
      if (e.status !== 409) {
        replace(out, errorNode(e));
        return;
      }
    }
  }
  replace(out, errorNode(new Error(`${base} and 19 more copies exist: delete one`)));
}

// The variables of a dashboard being edited: each with a remove button, and a new one.
function variableEditor(d, redraw) {
  const name = h('input', { 'data-testid': 'var-name', placeholder: 'site', 'aria-label': 'variable name', class: 'narrow' });
  const query = h('input', { 'data-testid': 'var-query', placeholder: 'SELECT DISTINCT site FROM energy_readings ORDER BY site', 'aria-label': 'its values (SQL)' });
  const value = h('input', { 'data-testid': 'var-default', placeholder: 'site-01', 'aria-label': 'its default', class: 'narrow' });
  const add = () => {
    if (!name.value.trim()) return;
    d.variables.push({ name: name.value.trim(), label: name.value.trim(), query: query.value.trim() || null, default: value.value });
    redraw();
  };
  return h('div', { class: 'board-vars' }, 'Variables: ',
    d.variables.map((v) => h('span', { class: 'badge tone-info' }, `$${v.name} = ${v.default}`, ' ',
      h('button', { type: 'button', class: 'ghost small', onclick: () => { d.variables = d.variables.filter((x) => x !== v); redraw(); } }, '×'))),
    name, query, value, h('button', { type: 'button', class: 'ghost small', 'data-testid': 'add-variable', onclick: add }, 'Add variable'));
}

// The panel editor: its title, kind, unit, place and SQL, with a preview of the SQL's rows.
function editPanel(p, d, state, redraw, out) {
  const dialog = h('dialog', { class: 'panel-editor', 'data-testid': 'panel-editor' });
  const input = (key, attrs = {}) => h('input', { value: p[key] ?? '', 'data-testid': `panel-${key}`, ...attrs });
  const title = input('title');
  const unit = input('unit');
  const kind = h('select', { 'data-testid': 'panel-kind' }, KINDS.map((k) => h('option', { value: k, selected: k === p.kind }, k)));
  const sqlBox = h('textarea', { rows: 6, spellcheck: 'false', 'data-testid': 'panel-sql' }, p.sql);
  const num = (key) => h('input', { type: 'number', min: 0, value: p.layout[key], 'data-testid': `panel-${key}`, class: 'narrow' });
  const place = { x: num('x'), y: num('y'), w: num('w'), h: num('h') };
  const preview = h('div', { class: 'preview', 'data-testid': 'panel-preview' });
  const runPreview = async () => {
    try {
      const rows = await sql(previewSql(sqlBox.value, state.values, d.time));
      replace(preview, drawPanel({ ...p, kind: kind.value, unit: unit.value }, rows, preview, {}));
    } catch (e) {
      replace(preview, errorNode(e));
    }
  };
  const apply = () => {
    p.title = title.value;
    p.unit = unit.value;
    p.kind = kind.value;
    p.sql = sqlBox.value;
    for (const k of ['x', 'y', 'w', 'h']) p.layout[k] = Number(place[k].value);
    dialog.close();
    dialog.remove();
    replace(out, h('span', { class: 'muted' }, 'Changed: save to keep it.'));
    redraw();
  };
  dialog.append(h('h2', {}, `Panel ${p.id}`),
    field('Title', title), field('Kind', kind), field('Unit', unit),
    h('div', { class: 'row' }, ['x', 'y', 'w', 'h'].map((k) => field(k, place[k]))),
    field('SQL ($from, $to and the variables are bound)', sqlBox),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'ghost', 'data-testid': 'panel-preview-run', onclick: runPreview }, 'Preview'),
      h('button', { type: 'button', class: 'primary', 'data-testid': 'panel-apply', onclick: apply }, 'Apply'),
      h('button', { type: 'button', class: 'ghost', onclick: () => { dialog.close(); dialog.remove(); } }, 'Cancel')),
    preview);
  document.body.append(dialog);
  dialog.showModal();
}

// #/public/<link>: a public dashboard, without a token.
async function viewPublic(ctx, root, args) {
  const link = args[0] || '';
  const board = await getJson(`/api/v1/public/dashboards/${enc(link)}`);
  root.append(pageHead(board.dashboard.title, h('span', { class: 'badge tone-warn' }, 'public')));
  if (board.dashboard.description) root.append(h('p', { class: 'intro' }, board.dashboard.description));
  drawBoard(ctx, root, board, boardSource(null, link), { values: {}, from: null }, null);
}

Object.assign(VIEWS, { boards: viewBoards, board: viewBoard, public: viewPublic });
