// Strata explorer: reads the relayer's JSON API, and verifies receipts in the
// browser. The relayer is not trusted for what is verified: hashes and
// signatures are recomputed here (WebCrypto), and the batch root is read from
// the chain's own JSON-RPC endpoint.
'use strict';

const $ = (id) => document.getElementById(id);
const utf8 = new TextEncoder();
let config = null; // /v1/config
const lastJson = {}; // section -> last rendered JSON text (skip redraws)

// ---------- small DOM helpers (text only: nothing from the network is parsed as HTML) ----------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'onclick') e.addEventListener('click', v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}
function table(headers, rows, numeric) {
  const num = new Set(numeric || []);
  return el('table', {},
    el('thead', {}, el('tr', {}, headers.map((h, i) => el('th', num.has(i) ? { class: 'num' } : {}, h)))),
    el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c, i) => el('td', num.has(i) ? { class: 'num' } : {}, c))))));
}
function replace(id, ...content) {
  const box = $(id);
  box.replaceChildren(...content);
}
function empty(text) { return el('p', { class: 'empty' }, text); }
function mono(text, title) { return el('span', { class: 'mono', title: title || text }, text); }
function short(hex) { return hex && hex.length > 20 ? hex.slice(0, 10) + '…' + hex.slice(-8) : hex; }

// ---------- formatting ----------
function tokens(n) {
  const d = config ? config.token_decimals : 6;
  const s = BigInt(n).toString().padStart(d + 1, '0');
  const whole = BigInt(s.slice(0, s.length - d)).toLocaleString('en-US');
  const frac = s.slice(s.length - d).replace(/0+$/, '');
  return frac ? whole + '.' + frac : whole;
}
function when(ms) {
  if (!ms) return '';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}
function count(n) { return Number(n).toLocaleString('en-US'); }

// ---------- bytes ----------
function hexToBytes(h) {
  if (typeof h !== 'string' || h.length % 2 !== 0 || /[^0-9a-fA-F]/.test(h)) throw new Error('not a hex string');
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(i * 2, 2), 16);
  return out;
}
function toHex(b) { return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(''); }
function concat(...parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
function equal(a, b) { return a.length === b.length && a.every((x, i) => x === b[i]); }
function u64le(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}
function readU64(b, off) { return new DataView(b.buffer, b.byteOffset).getBigUint64(off, true); }
function readU32(b, off) { return new DataView(b.buffer, b.byteOffset).getUint32(off, true); }
function base64ToBytes(s) { return Uint8Array.from(atob(s), (c) => c.charCodeAt(0)); }

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
function b58encode(bytes) {
  let n = 0n;
  for (const b of bytes) n = n * 256n + BigInt(b);
  let s = '';
  while (n > 0n) { s = B58[Number(n % 58n)] + s; n /= 58n; }
  for (const b of bytes) { if (b === 0) s = '1' + s; else break; }
  return s;
}
function b58decode(s) {
  let n = 0n;
  for (const c of s) {
    const i = B58.indexOf(c);
    if (i < 0) throw new Error('not base58: ' + s);
    n = n * 58n + BigInt(i);
  }
  const out = [];
  while (n > 0n) { out.unshift(Number(n % 256n)); n /= 256n; }
  for (const c of s) { if (c === '1') out.unshift(0); else break; }
  return new Uint8Array(out);
}
function pubkeyBytes(s) {
  const b = b58decode(s);
  if (b.length !== 32) throw new Error(s + ' is not a 32-byte key');
  return b;
}

// ---------- crypto ----------
async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', concat(...parts)));
}
async function ed25519Verify(publicKey, signature, message) {
  const key = await crypto.subtle.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
  return crypto.subtle.verify({ name: 'Ed25519' }, key, signature, message);
}
// Whether 32 bytes decode as a point on the ed25519 curve (as curve25519-dalek
// decompresses it): a program-derived address must not be one.
const P = 2n ** 255n - 19n;
function mod(a) { const r = a % P; return r >= 0n ? r : r + P; }
function modPow(b, e) {
  let r = 1n; b = mod(b);
  while (e > 0n) { if (e & 1n) r = (r * b) % P; b = (b * b) % P; e >>= 1n; }
  return r;
}
const D = mod(-121665n * modPow(121666n, P - 2n));
function isOnCurve(bytes) {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) + BigInt(bytes[i]);
  y = mod(y & ((1n << 255n) - 1n));
  const y2 = (y * y) % P;
  const u = mod(y2 - 1n);
  const v = mod(D * y2 + 1n);
  const w = (u * modPow(v, P - 2n)) % P; // x² = u / v
  return w === 0n || modPow(w, (P - 1n) / 2n) === 1n;
}
async function findProgramAddress(seeds, programId) {
  for (let bump = 255; bump >= 0; bump--) {
    const h = await sha256(...seeds, Uint8Array.of(bump), programId, utf8.encode('ProgramDerivedAddress'));
    if (!isOnCurve(h)) return h;
  }
  throw new Error('no program address for these seeds');
}

// The program's Merkle rules: inner node = sha256(0x01 || left || right), the
// index's parity picks the side, an odd last node is carried up unhashed.
async function walkProof(leaf, index, leafCount, proof) {
  if (index >= leafCount || proof.length > 32) return null;
  let node = leaf; let k = 0;
  while (leafCount > 1) {
    const sibling = index % 2 === 0 ? index + 1 : index - 1;
    if (sibling < leafCount) {
      if (k >= proof.length) return null;
      const s = proof[k++];
      node = index % 2 === 0 ? await sha256(Uint8Array.of(1), node, s) : await sha256(Uint8Array.of(1), s, node);
    }
    index = Math.floor(index / 2);
    leafCount = Math.ceil(leafCount / 2);
  }
  return k === proof.length ? node : null;
}

// ---------- data ----------
async function getJson(path) {
  const r = await fetch(path, { cache: 'no-store' });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) throw new Error((body && body.error) || (path + ': HTTP ' + r.status));
  return body;
}
async function chainRpc(method, params) {
  const r = await fetch(config.rpc_url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const j = await r.json();
  if (j.error) throw new Error(method + ': ' + (j.error.message || JSON.stringify(j.error)));
  return j.result;
}

// Receipt body layout (borsh): version 2's fields at fixed offsets; a hop's
// receipt (version 3) appends its HopPart's fields, in order, little-endian.
const RECEIPT_VERSION = 2;
const HOP_RECEIPT_VERSION = 3;
const BODY_LEN = 373;
const HOP_LEN = 185; // 32 + 3 × u8 + 3 × u16 + u32 + u64 + u32 + 4 × 32
const HOP_BODY_LEN = BODY_LEN + HOP_LEN;
function bodyLenOk(body) {
  return (body[0] === RECEIPT_VERSION && body.length === BODY_LEN) ||
    (body[0] === HOP_RECEIPT_VERSION && body.length === HOP_BODY_LEN);
}
function parseHop(body, o) {
  const view = new DataView(body.buffer, body.byteOffset);
  return {
    taskId: body.slice(o, o + 32),
    segment: body[o + 32],
    index: body[o + 33],
    count: body[o + 34],
    start: view.getUint16(o + 35, true),
    end: view.getUint16(o + 37, true),
    nLayers: view.getUint16(o + 39, true),
    positions: view.getUint32(o + 41, true),
    cells: view.getBigUint64(o + 45, true),
    sampleOffset: view.getUint32(o + 53, true),
    inputStates: body.slice(o + 57, o + 89),
    outputStates: body.slice(o + 89, o + 121),
    prev: body.slice(o + 121, o + 153),
    next: body.slice(o + 153, o + 185),
  };
}
function u16le(n) { const b = new Uint8Array(2); new DataView(b.buffer).setUint16(0, n, true); return b; }
function u32le(n) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n, true); return b; }
// A HopPart's borsh bytes from the relayer's JSON view of the hop (to check
// that what the relayer lists is what the node signed).
function encodeHop(task, segment, h) {
  return concat(hexToBytes(task), Uint8Array.of(segment, h.index, h.count), u16le(h.start), u16le(h.end),
    u16le(h.n_layers), u32le(h.positions), u64le(h.cells), u32le(h.sample_offset),
    hexToBytes(h.input_states), hexToBytes(h.output_states), hexToBytes(h.prev), hexToBytes(h.next));
}
// A hop receipt's own id: sha256("strata-hop-task-v1" || task || segment || index || node).
async function hopTaskId(hop, node) {
  return sha256(utf8.encode('strata-hop-task-v1'), hop.taskId, Uint8Array.of(hop.segment, hop.index), node);
}
// What a hop part proves by itself (as the relayer's Receipt::verify checks it).
function hopProblems(hop) {
  const out = [];
  if (hop.count === 0 || hop.index >= hop.count) out.push('index outside the route');
  if (hop.start >= hop.end || hop.end > hop.nLayers) out.push('blocks empty or outside the model');
  if ((hop.index === 0) !== (hop.start === 0) || (hop.index + 1 === hop.count) !== (hop.end === hop.nLayers)) out.push('blocks do not fit its place in the route');
  if (hop.cells > BigInt(hop.positions + 1) * BigInt(hop.end - hop.start)) out.push('bills more cells than it ran');
  return out;
}
// Why hop receipt b does not follow hop receipt a in its route (empty: it does).
function linkProblems(a, b) {
  const ha = a.hop, hb = b.hop, out = [];
  if (!equal(ha.taskId, hb.taskId) || ha.segment !== hb.segment || ha.index + 1 !== hb.index) out.push('not the next hop of the same task and segment');
  if (!equal(hb.inputStates, ha.outputStates)) out.push('hop ' + hb.index + '\'s input states are not hop ' + ha.index + '\'s output states');
  if (!equal(hb.prev, a.node)) out.push('hop ' + hb.index + ' names another previous hop');
  if (!equal(ha.next, b.node)) out.push('hop ' + ha.index + ' names another next hop');
  if (hb.start !== ha.end) out.push('blocks do not continue (' + ha.end + ' then ' + hb.start + ')');
  if (ha.count !== hb.count || ha.nLayers !== hb.nLayers) out.push('route or model sizes disagree');
  if (!equal(a.modelHash, b.modelHash)) out.push('different models');
  return out;
}
function parseBody(body) {
  const view = new DataView(body.buffer, body.byteOffset);
  return {
    hop: body[0] === HOP_RECEIPT_VERSION && body.length === HOP_BODY_LEN ? parseHop(body, BODY_LEN) : null,
    version: body[0],
    taskId: body.slice(1, 33),
    node: body.slice(33, 65),
    modelHash: body.slice(65, 97),
    promptTokens: readU32(body, 161),
    completionTokens: readU32(body, 165),
    sampling: {
      temperature: view.getFloat32(201, true),
      topP: view.getFloat32(205, true),
      topK: readU32(body, 209),
      seed: readU64(body, 213),
    },
    price: readU64(body, 221),
    voucherClient: body.slice(229, 261),
    voucherNode: body.slice(261, 293),
    voucherCumulative: readU64(body, 293),
    voucherSignature: body.slice(301, 365),
  };
}

// ---------- verification ----------
async function verify(taskId) {
  const box = $('verify-result');
  const checks = [];
  const show = () => box.replaceChildren(...checks.map((c) => el('div', { class: 'check ' + (c.ok ? 'ok' : 'bad') },
    el('span', { class: 'mark' }, c.ok ? '✓' : '✗'), el('span', { class: 'name' }, c.name),
    el('span', { class: 'mono' }, c.detail))));
  const check = (name, ok, detail) => { checks.push({ name, ok: !!ok, detail }); show(); return !!ok; };
  box.replaceChildren(el('p', {}, 'verifying…'));
  document.body.dataset.verify = 'running';
  try {
    if (!window.crypto || !crypto.subtle) {
      check('WebCrypto', false, 'this page is not a secure context (use https or localhost): crypto.subtle is unavailable');
      return;
    }
    if (!config) config = await getJson('/v1/config');
    const programId = pubkeyBytes(config.program_id);
    const view = await getJson('/v1/receipts/' + taskId);
    const raw = hexToBytes(view.raw);
    const body = raw.slice(0, raw.length - 64);
    const signature = raw.slice(raw.length - 64);
    const ok = check('receipt bytes', bodyLenOk(body),
      raw.length + ' bytes: a version-' + body[0] + ' body of ' + body.length + ' bytes and a 64-byte node signature');
    if (!ok) return;
    const b = parseBody(body);
    check('task id', toHex(b.taskId) === taskId.toLowerCase(), toHex(b.taskId));
    if (b.hop) {
      const id = await hopTaskId(b.hop, b.node);
      const problems = hopProblems(b.hop);
      check('hop', equal(id, b.taskId) && problems.length === 0,
        'hop ' + b.hop.index + ' of ' + b.hop.count + ', segment ' + b.hop.segment + ' of task ' + toHex(b.hop.taskId) +
        ', blocks ' + b.hop.start + '–' + b.hop.end + ' of ' + b.hop.nLayers +
        (equal(id, b.taskId) ? '; id = sha256("strata-hop-task-v1" || task || segment || index || node)' : '; its id is NOT its hop id') +
        (problems.length ? '; ' + problems.join(', ') : ''));
    }

    const digest = await sha256(body);
    check('digest', toHex(digest) === view.digest,
      'sha256(body) = ' + toHex(digest) + (toHex(digest) === view.digest ? ' (matches the relayer\'s)' : ' but the relayer says ' + view.digest));

    const nodeSigned = await ed25519Verify(b.node, signature, concat(utf8.encode('STRRCPT1'), digest));
    check('node signature', nodeSigned, 'ed25519 over "STRRCPT1" || digest by node ' + b58encode(b.node));

    const voucherMessage = concat(utf8.encode('STRVOUC1'), programId, b.voucherNode, u64le(b.voucherCumulative));
    const clientSigned = await ed25519Verify(b.voucherClient, b.voucherSignature, voucherMessage);
    const pays = equal(b.voucherNode, b.node);
    const covers = b.voucherCumulative >= b.price;
    check('voucher', clientSigned && pays && covers,
      'signed by client ' + b58encode(b.voucherClient) + (clientSigned ? '' : ' (BAD SIGNATURE)') +
      (pays ? ', pays this node' : ', pays ANOTHER node') + ', cumulative ' + tokens(b.voucherCumulative) +
      (covers ? ' covers' : ' does NOT cover') + ' price ' + tokens(b.price));

    const leaf = await sha256(Uint8Array.of(0), utf8.encode('receipt'), b.taskId, b.node, digest);
    check('leaf', toHex(leaf) === view.leaf,
      'sha256(0x00 || "receipt" || task || node || digest) = ' + toHex(leaf));

    const inc = view.batch;
    if (!inc) {
      check('batch', false, 'not in a batch yet (the relayer batches receipts every ' +
        (config.batch_interval_ms / 1000) + ' s); try again shortly');
      return;
    }
    const address = b58encode(await findProgramAddress([utf8.encode('batch'), u64le(inc.batch_id)], programId));
    const info = await chainRpc('getAccountInfo', [address, { encoding: 'base64', commitment: 'confirmed' }]);
    const acct = info && info.value;
    if (!acct) {
      check('batch account', false, 'batch ' + inc.batch_id + ' account ' + address + ' is not on-chain (yet) at ' + config.rpc_url);
      return;
    }
    const data = base64ToBytes(acct.data[0]);
    const disc = (await sha256(utf8.encode('account:Batch'))).slice(0, 8);
    const layoutOk = acct.owner === config.program_id && data.length >= 94 && equal(data.slice(0, 8), disc) &&
      readU64(data, 10) === BigInt(inc.batch_id);
    check('batch account', layoutOk, 'batch ' + inc.batch_id + ' at ' + address + ' (PDA of "batch" || id), owner ' +
      acct.owner + ', read from ' + config.rpc_url);
    if (!layoutOk) return;
    const onchainRoot = data.slice(58, 90);
    const taskCount = readU32(data, 90);
    const proof = inc.proof.map(hexToBytes);
    const root = await walkProof(leaf, inc.leaf_index, taskCount, proof);
    check('Merkle proof', root !== null && equal(root, onchainRoot),
      'leaf ' + inc.leaf_index + ' of ' + taskCount + ', ' + proof.length + ' sibling(s) → ' +
      (root ? toHex(root) : '(proof does not fit the tree)') + '; on-chain root ' + toHex(onchainRoot));
  } catch (e) {
    check('error', false, String(e && e.message ? e.message : e));
  } finally {
    const bad = checks.filter((c) => !c.ok).length;
    box.append(el('p', { class: 'verdict ' + (bad ? 'bad' : 'ok') },
      bad ? 'NOT verified: ' + bad + ' check(s) failed' : 'Verified: all ' + checks.length + ' checks hold'));
    document.body.dataset.verify = bad ? 'failed' : 'verified';
  }
}

async function showReceipt(taskId, run) {
  $('verify-section').hidden = false;
  $('verify-task').textContent = taskId;
  replace('verify-result', el('button', { onclick: () => verify(taskId) }, 'Verify'));
  try {
    const v = await getJson('/v1/receipts/' + taskId);
    const inc = v.batch;
    const kv = [
      ['task id', mono(v.task_id)],
      ['node', mono(b58encode(hexToBytes(v.node)))],
      ['client', mono(b58encode(hexToBytes(v.client)))],
      ['model', mono(v.model_hash)],
      ['tokens', v.prompt_tokens + ' prompt + ' + v.completion_tokens + ' generated = ' + v.work_units + ' work units'],
      ['price', tokens(v.price) + ' (voucher cumulative ' + tokens(v.voucher_cumulative) + ')'],
      ['finished', when(v.finished_at_ms)],
      ['received', when(v.received_at_ms)],
      ['digest', mono(v.digest)],
      ['leaf', mono(v.leaf)],
      ['batch', inc ? inc.batch_id + ' (' + inc.status + '), leaf ' + inc.leaf_index + ' of ' + inc.leaf_count : 'not batched yet'],
      ['post_batch tx', inc && inc.post_signature ? mono(inc.post_signature) : '—'],
    ];
    const parsed = parseBody(hexToBytes(v.raw).slice(0, -64));
    if (parsed.hop) {
      const h = parsed.hop;
      const task = toHex(h.taskId);
      kv.push(['pipelined task', el('span', {}, el('a', { onclick: () => openTask(task) }, mono(task)),
        ' — hop ' + h.index + ' of ' + h.count + ', segment ' + h.segment + ', blocks ' + h.start + '–' + h.end +
        ' of ' + h.nLayers + ', ' + h.cells + ' cells')]);
    }
    // The task's audit state, when the relayer has any (older relayers lack these routes).
    const [audits, challenges] = await Promise.all([
      getJson('/v1/audits?task=' + taskId).catch(() => []),
      getJson('/v1/challenges?task=' + taskId).catch(() => []),
    ]);
    kv.push(['audit reports', audits.length ? el('span', {}, audits.map((a) => el('div', {},
      (a.outcome === 'passed' ? 'passed' : 'failed: ' + a.check) + ' by ', mono(a.verifier),
      a.role === 'committee' ? ' (committee)' : '', a.flagged ? ' — flagged: ' + a.flag : ''))) : 'none']);
    kv.push(['challenges', challenges.length ? el('span', {}, challenges.map((c) => el('div', {},
      c.status + ', slashed ' + tokens(c.slashed) + ', challenger ', mono(c.challenger)))) : 'none']);
    replace('receipt-details', el('dl', { class: 'kv' }, kv.map(([k, val]) => [el('dt', {}, k), el('dd', {}, val)])));
  } catch (e) {
    replace('receipt-details', empty(String(e.message || e)));
    return;
  }
  if (run) await verify(taskId);
}

// ---------- pipelined tasks ----------
function openTask(task) {
  history.replaceState(null, '', '?task=' + task);
  showTask(task).then((found) => { if (found) window.scrollTo(0, $('task-section').offsetTop); });
}

// One hop receipt of a task's listing, re-checked here from its raw bytes:
// its digest, the node's signature, its hop id, and that the relayer's JSON
// fields are the signed ones.
async function checkHop(task, segment, h) {
  const raw = hexToBytes(h.raw);
  const body = raw.slice(0, raw.length - 64);
  const signature = raw.slice(raw.length - 64);
  if (raw.length < 64 || body[0] !== HOP_RECEIPT_VERSION || !bodyLenOk(body)) return { ok: false, problems: ['not a hop receipt (' + raw.length + ' bytes)'] };
  const b = parseBody(body);
  const problems = hopProblems(b.hop);
  const digest = await sha256(body);
  if (toHex(digest) !== h.digest) problems.push('digest differs from the relayer\'s');
  if (!(await ed25519Verify(b.node, signature, concat(utf8.encode('STRRCPT1'), digest)))) problems.push('node signature does not verify');
  if (!equal(await hopTaskId(b.hop, b.node), b.taskId)) problems.push('its id is not its hop id');
  if (toHex(b.taskId) !== h.receipt_id) problems.push('listed under another receipt id');
  if (toHex(b.hop.taskId) !== task || b.hop.segment !== segment) problems.push('belongs to another task or segment');
  if (!equal(encodeHop(task, segment, h), body.slice(BODY_LEN)) || toHex(b.node) !== h.node || BigInt(h.price) !== b.price) problems.push('the relayer\'s fields are not the signed ones');
  return { ok: problems.length === 0, problems, body: b };
}

// Shows pipelined task `task` (its hops by segment, a ✓/✗ for each link,
// judged here). Returns whether the relayer knows it as a pipelined task.
async function showTask(task) {
  let view;
  try {
    view = await getJson('/v1/tasks/' + task);
  } catch (e) {
    $('task-section').hidden = true;
    return false;
  }
  $('task-section').hidden = false;
  $('task-id').textContent = task;
  document.body.dataset.task = 'checking';
  const parts = [];
  const verdicts = [];
  for (const seg of view.segments) {
    const checked = [];
    for (const h of seg.hops) checked.push(await checkHop(task, seg.segment, h).catch((e) => ({ ok: false, problems: [String(e.message || e)] })));
    // Links are judged between the receipts stored under each hop's id;
    // conflicting claims are shown, marked, and left out of the chain.
    const stored = new Map();
    seg.hops.forEach((h, i) => { if (h.claim === 'stored' && checked[i].ok) stored.set(h.index, checked[i].body); });
    let hopCount = 0;
    for (const b of stored.values()) hopCount = Math.max(hopCount, b.hop.count);
    let brokenAt = null; const missing = [];
    for (let k = 0; k < hopCount; k++) if (!stored.has(k)) missing.push(k);
    const linkOf = new Map();
    for (let k = 1; k < hopCount; k++) {
      const a = stored.get(k - 1), b = stored.get(k);
      const problems = a && b ? linkProblems(a, b) : null;
      if (problems && problems.length && brokenAt === null) brokenAt = k;
      linkOf.set(k, problems);
    }
    const status = brokenAt !== null ? 'broken at hop ' + brokenAt : missing.length ? 'incomplete (missing hop ' + missing.join(', ') + ')' : 'linked';
    verdicts.push(brokenAt !== null ? 'broken' : missing.length ? 'incomplete' : 'linked');
    const rows = [];
    const byIndex = new Map();
    seg.hops.forEach((h, i) => { if (!byIndex.has(h.index)) byIndex.set(h.index, []); byIndex.get(h.index).push(i); });
    const last = Math.max(hopCount, ...seg.hops.map((h) => h.index + 1));
    for (let k = 0; k < last; k++) {
      if (k > 0) {
        const problems = linkOf.get(k);
        const name = ' link ' + (k - 1) + ' → ' + k + ': ';
        rows.push(el('tr', { class: 'link' }, el('td', { colspan: 9 },
          problems === null || problems === undefined
            ? el('span', { class: 'hint' }, '…' + name + 'a receipt is missing')
            : problems.length
              ? el('span', { class: 'bad-text' }, el('span', { class: 'mark' }, '✗'), name + problems.join('; '))
              : el('span', { class: 'ok-text' }, el('span', { class: 'mark' }, '✓'), name + 'states, neighbours and blocks match'))));
      }
      const here = byIndex.get(k) || [];
      if (!here.length) rows.push(el('tr', { class: 'hop missing' }, el('td', { class: 'num' }, String(k)), el('td', { colspan: 8, class: 'hint' }, 'no receipt yet')));
      for (const i of here) {
        const h = seg.hops[i];
        const c = checked[i];
        const inc = h.batch;
        rows.push(el('tr', { class: h.claim === 'stored' ? 'hop' : 'hop conflicting' },
          el('td', { class: 'num' }, String(h.index)),
          el('td', {}, h.claim === 'stored' ? 'stored' : el('span', { class: 'bad-text', title: 'a second receipt for this hop: listed, never batched or paid' }, 'conflicting claim')),
          el('td', {}, mono(b58encode(hexToBytes(h.node)))),
          el('td', {}, h.start + '–' + h.end + ' of ' + h.n_layers),
          el('td', { class: 'num' }, count(h.cells)),
          el('td', { class: 'num' }, tokens(h.price)),
          el('td', {}, h.claim === 'stored' ? el('a', { onclick: () => { history.replaceState(null, '', '?verify=' + h.receipt_id); showReceipt(h.receipt_id, true); window.scrollTo(0, $('verify-section').offsetTop); } }, brief(h.receipt_id)) : brief(h.receipt_id)),
          el('td', {}, inc ? inc.batch_id + ' (' + inc.status + '), leaf ' + inc.leaf_index : (h.claim === 'stored' ? 'pending' : '—')),
          el('td', {}, c.ok ? el('span', { class: 'ok-text' }, 'receipt checks hold') : el('span', { class: 'bad-text' }, c.problems.join('; ')))));
      }
    }
    const head = el('thead', {}, el('tr', {}, ['hop', 'claim', 'node', 'blocks', 'cells', 'price', 'receipt', 'batch', 'checked here'].map((x) => el('th', {}, x))));
    parts.push(el('h3', {}, 'Segment ' + seg.segment + ': ' + hopCount + ' hop(s), ',
      el('span', { class: 'task-status ' + (brokenAt === null && !missing.length ? 'ok-text' : 'bad-text') }, status),
      el('span', { class: 'hint' }, ' (the relayer says ' + seg.status + (seg.broken_at !== null ? ' at hop ' + seg.broken_at : '') + ')')));
    parts.push(el('table', { class: 'hops' }, head, el('tbody', {}, rows)));
  }
  if (view.truncated) parts.push(el('p', { class: 'empty' }, 'the relayer listed only part of this task\'s hop receipts'));
  replace('task-hops', ...parts);
  const last = verdicts[verdicts.length - 1] || 'incomplete';
  document.body.dataset.task = last;
  return true;
}

// ---------- sections ----------
function renderSummary(stats) {
  const items = [
    ['receipts', count(stats.receipts)], ['batched', count(stats.batched)], ['batches posted', count(stats.batches)],
    ['settlements', count(stats.settlements)], ['paid to nodes', tokens(stats.settled_paid)],
    ['protocol fees', tokens(stats.settled_fee)], ['epochs published', count(stats.epochs)],
  ];
  replace('summary', ...items.map(([k, v]) => el('div', { class: 'counter' }, el('div', { class: 'v' }, v), el('div', { class: 'k' }, k))));
}

function renderChart(stats) {
  const buckets = stats.tasks_per_minute || [];
  const W = 1000, H = 160, left = 40, bottom = 22, top = 10;
  const max = Math.max(1, ...buckets.map((b) => b.tasks));
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'tasks per minute');
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
  };
  const plotW = W - left - 10, plotH = H - top - bottom;
  add('line', { x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH, stroke: '#999' });
  add('text', { x: left - 6, y: top + 10, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6470' }, String(max));
  add('text', { x: left - 6, y: top + plotH, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6470' }, '0');
  add('text', { x: left, y: H - 5, 'font-size': 11, fill: '#5b6470' }, '−60 min');
  add('text', { x: left + plotW, y: H - 5, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6470' }, 'now');
  const bw = plotW / Math.max(1, buckets.length);
  buckets.forEach((b, i) => {
    const h = (b.tasks / max) * plotH;
    if (b.tasks > 0) {
      add('rect', { x: left + i * bw + 1, y: top + plotH - h, width: Math.max(1, bw - 2), height: h, fill: '#1f5fbf' });
      add('text', { x: left + i * bw + bw / 2, y: top + plotH - h - 2, 'text-anchor': 'middle', 'font-size': 10, fill: '#1b1f24' }, String(b.tasks));
    }
  });
  const total = buckets.reduce((n, b) => n + b.tasks, 0);
  replace('chart', svg, el('p', { class: 'hint' }, total + ' task(s) in the last hour; redrawn every 2 s'));
}

function renderNodes(view) {
  const rows = view.nodes.map((n) => [
    mono(n.operator),
    n.registered ? n.roles.join(', ') : 'not registered',
    tokens(n.stake),
    n.unbonding ? tokens(n.unbonding) + ' until ' + when(n.unbonding_ends * 1000) : '0',
    n.memory_mb + ' MiB, ' + n.tokens_per_second + ' tok/s, ' + n.bandwidth_mbps + ' Mbit/s',
    el('span', {}, n.multiaddrs.map((a) => el('div', { class: 'mono' }, a))),
    count(n.tasks) + ' / ' + count(n.work_units),
    tokens(n.claimed),
    n.slashed_total ? el('span', { class: 'bad-text' }, tokens(n.slashed_total)) : '0',
  ]);
  const parts = [rows.length ? table(['operator', 'roles', 'stake', 'unbonding', 'capacity', 'multiaddrs', 'tasks / work units', 'claimed', 'slashed'], rows, [2, 6, 7, 8])
    : empty('no nodes registered or seen yet')];
  if (view.chain_error) parts.push(el('p', { class: 'empty' }, 'chain read failed: ' + view.chain_error));
  replace('nodes', ...parts);
}

function renderTasks(list) {
  const rows = list.map((r) => [
    el('a', { onclick: () => { history.replaceState(null, '', '?task=' + r.task_id); showReceipt(r.task_id, false); window.scrollTo(0, $('verify-section').offsetTop); } },
      mono(r.task_id)),
    mono(r.node),
    mono(r.client),
    r.prompt_tokens + ' + ' + r.completion_tokens,
    tokens(r.price),
    when(r.received_at_ms),
    r.batch_id === null ? 'pending' : String(r.batch_id),
    el('button', { onclick: () => { history.replaceState(null, '', '?verify=' + r.task_id); showReceipt(r.task_id, true); window.scrollTo(0, $('verify-section').offsetTop); } }, 'Verify'),
  ]);
  replace('tasks', rows.length ? table(['task', 'node', 'client', 'tokens', 'price', 'received', 'batch', ''], rows, [3, 4])
    : empty('no tasks yet'));
}

function renderBatches(list) {
  const rows = list.map((b) => [String(b.id), b.status, count(b.task_count), count(b.work_units), String(b.epoch),
    mono(short(b.root), b.root), b.signature ? mono(b.signature) : '—', when(b.planned_at_ms)]);
  replace('batches', rows.length ? table(['id', 'status', 'tasks', 'work units', 'epoch', 'root', 'post_batch signature', 'planned'], rows, [2, 3])
    : empty('no batches yet'));
}

// A long key or hash shortened on one line; the whole value is its tooltip.
function brief(text) { return el('span', { class: 'mono brief', title: text }, short(text)); }
// Clicking a task shows its receipt in the verification panel.
function taskLink(taskId) {
  return el('a', { onclick: () => { history.replaceState(null, '', '?task=' + taskId); showReceipt(taskId, false); window.scrollTo(0, $('verify-section').offsetTop); } },
    brief(taskId));
}
function keyList(keys) {
  return keys.length ? el('span', {}, keys.map((k) => el('div', {}, brief(k)))) : '—';
}

function renderAudits(list) {
  const rows = list.map((a) => [
    taskLink(a.task_id),
    brief(a.node),
    el('span', {}, brief(a.verifier), a.role === 'committee' ? ' (committee)' : ''),
    a.outcome === 'passed' ? el('span', { class: 'ok-text' }, 'passed')
      : el('span', { class: 'bad-text', title: a.detail || '' }, 'failed: ' + a.check),
    a.layers.join(', ') || '—',
    (a.cpu_micros / 1000).toLocaleString('en-US', { maximumFractionDigits: 1 }),
    when(a.finished_at_ms),
    a.flagged ? el('span', { class: 'bad-text', title: a.flag || '' }, 'flagged: ' + a.flag) : 'no',
  ]);
  replace('audits', rows.length ? table(['task', 'node', 'verifier', 'outcome / check', 'layers', 'CPU ms', 'when', 'flagged'], rows, [5])
    : empty('no audit reports yet'));
}

function renderChallenges(list) {
  const rows = list.map((c) => [
    taskLink(c.task_id),
    brief(c.accused),
    brief(c.challenger),
    c.status + (c.status === 'open' && !c.seed_drawn ? ' (committee not drawn)' : ''),
    keyList(c.committee),
    keyList(c.voters),
    tokens(c.slashed),
    when(c.opened_at * 1000),
  ]);
  replace('challenges', rows.length ? table(['task', 'accused', 'challenger', 'status', 'committee', 'voters', 'slashed', 'opened'], rows, [6])
    : empty('no challenges yet'));
}

function renderSettlements(list) {
  const rows = list.map((s) => [s.signature ? mono(s.signature) : '(found on-chain after a restart)', mono(s.client), mono(s.node),
    tokens(s.paid), tokens(s.fee), tokens(s.cumulative), when(s.at_ms)]);
  replace('settlements', rows.length ? table(['redeem_vouchers signature', 'client', 'node', 'paid', 'fee', 'cumulative', 'at'], rows, [3, 4, 5])
    : empty('no vouchers settled yet'));
}

function renderEpochs(list, nodes) {
  const rows = list.map((e) => [String(e.epoch), e.status, mono(short(e.root), e.root), tokens(e.declared),
    e.signature ? mono(e.signature) : '—',
    el('span', {}, e.leaves.map((l) => el('div', {}, mono(short(l.operator), l.operator), ' ', tokens(l.cumulative))))]);
  const parts = [rows.length ? table(['epoch', 'status', 'root', 'declared', 'publish_rewards signature', 'cumulative rewards'], rows, [3])
    : empty('no reward epochs yet')];
  const claims = (nodes ? nodes.nodes : []).filter((n) => n.claimed > 0);
  parts.push(el('h3', {}, 'Claims'));
  parts.push(claims.length ? table(['operator', 'claimed', 'last epoch'], claims.map((n) => [mono(n.operator), tokens(n.claimed), String(n.last_claim_epoch)]), [1])
    : empty('no rewards claimed yet'));
  replace('epochs', ...parts);
}

// Fetches every section; redraws only what changed.
async function refresh() {
  const sections = {
    stats: '/v1/stats', nodes: '/v1/nodes', tasks: '/v1/receipts?limit=50', batches: '/v1/batches',
    settlements: '/v1/settlements', epochs: '/v1/epochs', audits: '/v1/audits?limit=50',
    challenges: '/v1/challenges',
  };
  const results = await Promise.allSettled(Object.values(sections).map(getJson));
  const data = {}; const errors = [];
  Object.keys(sections).forEach((k, i) => {
    const r = results[i];
    if (r.status === 'fulfilled') data[k] = r.value; else errors.push(k + ': ' + r.reason.message);
  });
  const changed = (k, v) => {
    if (v === undefined) return false;
    const text = JSON.stringify(v);
    if (lastJson[k] === text) return false;
    lastJson[k] = text;
    return true;
  };
  if (changed('stats', data.stats)) { renderSummary(data.stats); renderChart(data.stats); }
  if (changed('nodes', data.nodes)) renderNodes(data.nodes);
  if (changed('tasks', data.tasks)) renderTasks(data.tasks);
  if (changed('batches', data.batches)) renderBatches(data.batches);
  if (changed('settlements', data.settlements)) renderSettlements(data.settlements);
  if (changed('audits', data.audits)) renderAudits(data.audits);
  if (changed('challenges', data.challenges)) renderChallenges(data.challenges);
  if (changed('epochs', data.epochs) | changed('claims', data.nodes)) renderEpochs(data.epochs || [], data.nodes);
  $('status').textContent = (errors.length ? 'errors: ' + errors.join('; ') + ' — ' : '') + 'updated ' + new Date().toLocaleTimeString();
}

async function main() {
  try {
    config = await getJson('/v1/config');
    $('chain-info').textContent = 'Chain RPC ' + config.rpc_url + ' · program ' + config.program_id +
      (config.mint ? ' · mint ' + config.mint : '') + ' · relayer ' + config.relayer +
      ' · batches every ' + config.batch_interval_ms / 1000 + ' s. Receipts are verified against the Batch account read from that RPC endpoint directly by this page.';
  } catch (e) {
    $('chain-info').textContent = 'config unavailable: ' + e.message;
  }
  const params = new URLSearchParams(location.search);
  const verifyId = params.get('verify');
  const taskId = params.get('task');
  const wanted = verifyId || taskId;
  if (wanted) {
    if (/^[0-9a-fA-F]{64}$/.test(wanted)) {
      // A pipelined task has hop receipts, not a receipt of its own.
      const pipelined = await showTask(wanted.toLowerCase());
      if (!pipelined || verifyId) await showReceipt(wanted.toLowerCase(), !!verifyId);
    } else { $('verify-section').hidden = false; replace('receipt-details', empty('not a task id (64 hex characters): ' + wanted)); }
  }
  await refresh();
  setInterval(() => { refresh().catch((e) => { $('status').textContent = 'refresh failed: ' + e.message; }); }, 2000);
}

main();
