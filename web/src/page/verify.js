// adit: a miner's check of a block's payout in the browser (issue 59). Reads the pool's public
// window (/api/v1/public/pools/{pool}/blocks/{height}/window) or a saved one, recomputes the
// split's commitment and the PPLNS split with BigInt, and says equal or not. Written apart from
// the Rust verifier (adit verify payout) from the layout in schemas/src/window.rs, so the two
// check each other; SHA-256 is computed here, so the page works over plain http too.
"use strict";

// ---- SHA-256 (FIPS 180-4) ----
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

function sha256(bytes) {
  const bitLen = bytes.length * 8;
  const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLen / 0x100000000));
  view.setUint32(padded.length - 4, bitLen >>> 0);
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    const add = [a, b, c, d, e, f, g, hh];
    for (let i = 0; i < 8; i++) h[i] = (h[i] + add[i]) >>> 0;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(i * 4, h[i]);
  return out;
}

// ---- the layout of schemas/src/window.rs ----
const utf8 = (s) => new TextEncoder().encode(s);
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

class Bytes {
  constructor() { this.parts = []; }
  raw(b) { this.parts.push(b); }
  u32(n) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n); this.parts.push(b); }
  u64(n) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n)); this.parts.push(b); }
  text(s) { const b = utf8(s); this.u32(b.length); this.parts.push(b); }
  done() {
    const out = new Uint8Array(this.parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of this.parts) { out.set(p, at); at += p.length; }
    return out;
  }
}

function minerId(pool, login) {
  const b = new Bytes();
  b.raw(utf8("adit-miner-id-v1"));
  b.text(pool);
  b.text(login);
  return hex(sha256(b.done()).slice(0, 16));
}

function unhex(s) {
  if (!/^[0-9a-fA-F]{32}$/.test(s)) throw new Error(`miner id ${JSON.stringify(s)} is not 32 hex characters`);
  return Uint8Array.from(s.match(/../g), (x) => parseInt(x, 16));
}

function windowHash(v) {
  const b = new Bytes();
  b.raw(utf8("adit-pplns-window-v1"));
  b.text(v.pool); b.u64(v.height); b.text(v.hash); b.u64(v.reward); b.u64(v.network_difficulty);
  b.text(v.factor); b.u64(v.fee_bps); b.text(v.unfilled); b.text(v.scheme);
  const ids = v.miners.map(unhex);
  for (const [seq, m, d] of v.shares) {
    if (!(m >= 0 && m < ids.length)) throw new Error(`a share names miner #${m} of ${ids.length}`);
    b.u64(seq); b.raw(ids[m]); b.u64(d);
  }
  return hex(sha256(b.done()));
}

// ---- the PPLNS split, integers only ----
function factor(text) {
  const m = /^(\d*)(?:\.(\d{0,6}))?$/.exec(text.trim());
  if (!m || (m[1] === "" && !m[2])) throw new Error(`factor ${JSON.stringify(text)} is not a decimal number`);
  const frac = (m[2] || "").replace(/0+$/, "");
  const den = 10n ** BigInt(frac.length);
  const num = BigInt(m[1] || "0") * den + BigInt(frac || "0");
  if (num === 0n || num > 1000n * den) throw new Error(`factor ${text} must be above 0 and at most 1000`);
  return [num, den];
}

function split(v) {
  if (v.scheme === "solo") return solo(v);
  if (v.scheme === "pps" || v.scheme === "fpps") return kept(v);
  if (v.scheme !== "pplns") throw new Error(`scheme ${JSON.stringify(v.scheme)} is not pplns, solo, pps or fpps`);
  const [num, den] = factor(v.factor);
  const nd = BigInt(v.network_difficulty);
  if (nd === 0n) throw new Error("network difficulty 0");
  if (BigInt(v.fee_bps) >= 10000n) throw new Error(`fee_bps ${v.fee_bps} must be below 10000`);
  if (v.unfilled !== "pool" && v.unfilled !== "scale") throw new Error(`unfilled ${v.unfilled}`);
  const window = nd * num;
  const weights = v.miners.map(() => 0n);
  let remaining = window, counted = 0;
  for (const [, m, d] of v.shares) {
    if (remaining === 0n) break;
    const w = BigInt(d) * den < remaining ? BigInt(d) * den : remaining;
    weights[m] += w;
    remaining -= w;
    counted++;
  }
  const filled = window - remaining;
  const reward = BigInt(v.reward);
  const fee = (reward * BigInt(v.fee_bps)) / 10000n;
  const distributable = reward - fee;
  const denominator = v.unfilled === "scale" && filled > 0n ? filled : window;
  let cumulative = 0n, paid = 0n;
  const amounts = weights.map((w) => {
    if (w === 0n) return 0n;
    cumulative += w;
    const due = (distributable * cumulative) / denominator;
    const amount = due - paid;
    paid = due;
    return amount;
  });
  return { fee, paid, remainder: distributable - paid, amounts, weights, counted };
}

// SOLO: the finding share's miner takes the reward less the fee.
function solo(v) {
  if (BigInt(v.fee_bps) >= 10000n) throw new Error(`fee_bps ${v.fee_bps} must be below 10000`);
  const reward = BigInt(v.reward);
  const fee = (reward * BigInt(v.fee_bps)) / 10000n;
  const amounts = v.miners.map(() => 0n);
  const weights = v.miners.map(() => 0n);
  const first = v.shares[0];
  if (first) { amounts[first[1]] = reward - fee; weights[first[1]] = BigInt(first[2]); }
  const paid = first ? reward - fee : 0n;
  return { fee, paid, remainder: reward - fee - paid, amounts, weights, counted: first ? 1 : 0 };
}

// PPS and FPPS: the pool paid each share as it came, so it keeps the block whole.
function kept(v) {
  return { fee: 0n, paid: 0n, remainder: BigInt(v.reward), amounts: v.miners.map(() => 0n), weights: v.miners.map(() => 0n), counted: 0 };
}

// Everything that differs between the view and what it recomputes to, in words.
function check(v, login) {
  const differences = [];
  const computed = windowHash(v);
  if (computed !== v.window_hash) differences.push(`the shares and rules published hash to ${computed}, the split recorded ${v.window_hash}`);
  const s = split(v);
  if (s.counted !== v.shares.length) differences.push(`the window fills after ${s.counted} of the ${v.shares.length} shares published`);
  for (const [what, got, said] of [["fee", s.fee, v.fee], ["paid", s.paid, v.paid], ["remainder", s.remainder, v.remainder]]) {
    if (got !== BigInt(said)) differences.push(`${what}: the split gives ${got}, the view says ${said}`);
  }
  if (v.payouts.length !== v.miners.length) differences.push(`${v.payouts.length} payouts for ${v.miners.length} miners`);
  s.amounts.forEach((a, i) => {
    if (a !== BigInt(v.payouts[i] ?? 0)) differences.push(`miner ${v.miners[i]}: the split pays ${a}, the view says ${v.payouts[i]}`);
  });
  let mine = null;
  if (login) {
    const id = minerId(v.pool, login);
    const i = v.miners.indexOf(id);
    mine = { id, published: i < 0 ? 0n : BigInt(v.payouts[i]), recomputed: i < 0 ? 0n : s.amounts[i] };
  }
  return { equal: differences.length === 0, computed, differences, mine };
}

// ---- the page ----
const $ = (id) => document.getElementById(id);

function show(windows, login, hash) {
  const chosen = windows.filter((w) => !hash || w.hash.toLowerCase() === hash.toLowerCase());
  if (chosen.length !== 1) {
    throw new Error(chosen.length === 0 ? "no published window for that block" :
      `${chosen.length} blocks were split at this height; give the hash (${chosen.map((w) => w.hash).join(", ")})`);
  }
  const v = chosen[0];
  const r = check(v, login);
  const verdict = $("verdict");
  verdict.textContent = r.equal ? "EQUAL" : "NOT EQUAL";
  verdict.className = r.equal ? "ok" : "bad";
  const lines = [
    `block ${v.height} (${v.hash}), reward ${v.reward}, ${v.shares.length} shares, ${v.miners.length} miners`,
    `commitment recorded ${v.window_hash}`,
    `commitment computed ${r.computed}`,
  ];
  if (r.mine) {
    lines.push(r.mine.published === 0n && r.mine.recomputed === 0n
      ? `your login (id ${r.mine.id}) has no share in this window`
      : `you (id ${r.mine.id}): paid ${r.mine.published}, the window gives ${r.mine.recomputed}`);
  }
  lines.push(...r.differences);
  $("details").textContent = lines.join("\n");
}

function fail(e) {
  $("verdict").textContent = "NOT CHECKED";
  $("verdict").className = "bad";
  $("details").textContent = String(e.message || e);
}

async function fromPool() {
  const pool = $("pool").value.trim(), height = $("block").value.trim();
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(pool) || !/^\d+$/.test(height)) throw new Error("give a pool id and a block height");
  const r = await fetch(`/api/v1/public/pools/${pool}/blocks/${height}/window`);
  const body = await r.json();
  if (!r.ok) throw new Error(body?.error?.message || `HTTP ${r.status}`);
  return body;
}

async function run(event) {
  event?.preventDefault();
  $("verdict").textContent = "checking…";
  $("verdict").className = "";
  try {
    const pasted = $("saved").value.trim();
    const parsed = pasted ? JSON.parse(pasted) : await fromPool();
    show(Array.isArray(parsed) ? parsed : [parsed], $("miner").value.trim(), $("hash").value.trim());
  } catch (e) {
    fail(e);
  }
}

window.addEventListener("DOMContentLoaded", () => {
  const q = new URLSearchParams(location.search);
  for (const k of ["pool", "block", "hash", "miner"]) if (q.get(k)) $(k).value = q.get(k);
  $("form").addEventListener("submit", run);
  if (q.get("block")) run();
});
