// promptseg review page: walks the review queue; talks only to the JSON API under /api.
// The page state is exposed for tests and scripts: on <body> data-ready, data-busy ("1" while a request
// runs), data-actions (user actions running), data-saved (writes done); on the canvas data-image and
// data-focused (ids).
"use strict";

const COLORS = { pending: "#ffb000", accepted: "#22c55e", rejected: "#ef4444", focused: "#00e5ff" };
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");

const st = {
  summary: null,
  queue: { images: [], all: [] },
  image: null,        // {image: row, annotations: [...]}
  bitmap: null,
  masks: new Map(),   // annotation id -> {version, tinted: Map(colour -> canvas)}
  focus: -1,
  overlays: true,
  drawMode: false,
  drag: null,         // {kind: "move" | "resize" | "draw", ...}
  nudge: null,        // {timer, id}
  busy: 0,
  actions: 0,
  saved: 0,
  scale: 1,
  undo: [],           // decisions made on this page, newest last: {id, at, image} (U / Ctrl+Z)
};

// --- API -------------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = "Bearer " + token;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = Object.assign({}, options, { method: options.method || "POST", body: JSON.stringify(options.json) });
  }
  setBusy(+1);
  try {
    const response = await fetch("api/" + path, Object.assign({}, options, { headers }));
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return options.raw ? await response.blob() : await response.json();
  } finally {
    setBusy(-1);
  }
}

function setBusy(delta) {
  st.busy += delta;
  document.body.dataset.busy = st.busy > 0 ? "1" : "0";
}

function say(message) { $("status").textContent = message || ""; }

// runs one user action; its error goes to the status line; body[data-actions] counts those running
async function guarded(action) {
  st.actions += 1;
  document.body.dataset.actions = String(st.actions);
  try {
    say("");
    await action();
  } catch (err) {
    say(err.message);
  } finally {
    st.actions -= 1;
    document.body.dataset.actions = String(st.actions);
  }
}

// --- loading ---------------------------------------------------------------------------------

async function refreshSummary() {
  st.summary = await api("summary");
  const review = st.summary.counts.review;
  const total = review.pending + review.accepted + review.rejected;
  $("counts").innerHTML =
    `<span class="pending">${review.pending} pending</span> · ` +
    `<span class="accepted">${review.accepted} accepted</span> · ` +
    `<span class="rejected">${review.rejected} rejected</span>`;
  $("progress").max = Math.max(total, 1);
  $("progress").value = total - review.pending;
  $("user").textContent = "reviewing as " + st.summary.user;
  $("empty").hidden = review.pending > 0;
  renderLabels();
}

async function refreshQueue() {
  st.queue = await api("queue");
  const select = $("images");
  select.innerHTML = "";
  for (const row of order()) {
    const option = document.createElement("option");
    option.value = row.id;
    option.textContent = `${row.path} (${row.pending} pending / ${row.total})`;
    select.appendChild(option);
  }
  if (st.image) select.value = st.image.image.id;
}

// the queue's images (least confident first), then every other drafted image
function order() {
  const seen = new Set(st.queue.images.map((r) => r.id));
  return st.queue.images.concat(st.queue.all.filter((r) => !seen.has(r.id)));
}

async function loadImage(imageId, focusId) {
  await flushNudge();
  const doc = await api(`images/${imageId}`);
  const blob = await api(`images/${imageId}/file`, { raw: true });
  st.bitmap = await createImageBitmap(blob);
  st.image = doc;
  st.masks.clear();
  await Promise.all(doc.annotations.filter((a) => a.has_mask).map(loadMask));
  const byId = doc.annotations.findIndex((a) => a.id === focusId);
  const pending = doc.annotations.findIndex((a) => a.review_state === "pending");
  st.focus = byId >= 0 ? byId : pending >= 0 ? pending : doc.annotations.length ? 0 : -1;
  canvas.dataset.width = st.bitmap.width;
  canvas.dataset.height = st.bitmap.height;
  canvas.dataset.image = imageId;
  $("image-name").textContent = doc.image.path;
  $("images").value = imageId;
  layout();
  render();
}

async function loadMask(ann) {
  const blob = await api(`annotations/${ann.id}/mask.png?v=${encodeURIComponent(ann.version)}`, { raw: true });
  st.masks.set(ann.id, { version: ann.version, bitmap: await createImageBitmap(blob), tinted: new Map() });
}

async function replaceAnnotation(ann) {
  const list = st.image.annotations;
  const i = list.findIndex((a) => a.id === ann.id);
  if (i >= 0) list[i] = ann; else list.push(ann);
  const cached = st.masks.get(ann.id);
  if (ann.has_mask && (!cached || cached.version !== ann.version)) await loadMask(ann);
  st.saved += 1;
  document.body.dataset.saved = String(st.saved);
}

// --- drawing ---------------------------------------------------------------------------------

function layout() {
  if (!st.bitmap) return;
  const stage = $("stage");
  const scale = Math.min(4, (stage.clientWidth - 16) / st.bitmap.width, (stage.clientHeight - 16) / st.bitmap.height);
  st.scale = scale > 0 ? scale : 1;
  // the backing store has the shown size (in device pixels), so lines and labels stay sharp when a
  // small photo is enlarged; drawing is in image pixels through the transform set in render()
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(st.bitmap.width * st.scale * dpr);
  canvas.height = Math.round(st.bitmap.height * st.scale * dpr);
  canvas.style.width = Math.round(st.bitmap.width * st.scale) + "px";
  canvas.style.height = Math.round(st.bitmap.height * st.scale) + "px";
}

function focused() {
  return st.image && st.focus >= 0 ? st.image.annotations[st.focus] : null;
}

function tinted(ann, colour) {
  const entry = st.masks.get(ann.id);
  if (!entry) return null;
  if (!entry.tinted.has(colour)) {
    const off = document.createElement("canvas");
    off.width = entry.bitmap.width;
    off.height = entry.bitmap.height;
    const c = off.getContext("2d");
    c.drawImage(entry.bitmap, 0, 0);
    c.globalCompositeOperation = "source-in";
    c.fillStyle = colour;
    c.fillRect(0, 0, off.width, off.height);
    entry.tinted.set(colour, off);
  }
  return entry.tinted.get(colour);
}

function render() {
  if (!st.bitmap) return;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const k = canvas.width / st.bitmap.width;
  ctx.setTransform(k, 0, 0, k, 0, 0);
  ctx.drawImage(st.bitmap, 0, 0);
  const current = focused();
  canvas.dataset.focused = current ? current.id : "";
  if (st.overlays) {
    const anns = st.image.annotations;
    for (const ann of anns) {
      const mask = tinted(ann, ann === current ? COLORS.focused : COLORS[ann.review_state]);
      if (!mask) continue;
      ctx.globalAlpha = ann === current ? 0.45 : 0.3;
      ctx.drawImage(mask, 0, 0);
    }
    ctx.globalAlpha = 1;
    const px = 1 / st.scale;
    // the focused box last, so it is on top
    for (const ann of anns.filter((a) => a !== current).concat(current ? [current] : [])) {
      const [x1, y1, x2, y2] = ann.box_xyxy;
      const isFocused = ann === current;
      ctx.lineWidth = (isFocused ? 3 : 2) * px;
      ctx.strokeStyle = isFocused ? COLORS.focused : COLORS[ann.review_state];
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      ctx.font = `${Math.round(12 * px)}px sans-serif`;
      const text = ann.label + (ann.score == null ? "" : " " + ann.score.toFixed(2));
      const width = ctx.measureText(text).width + 6 * px;
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fillRect(x1, Math.max(0, y1 - 16 * px), width, 16 * px);
      ctx.fillStyle = "#000";
      ctx.fillText(text, x1 + 3 * px, Math.max(0, y1 - 16 * px) + 12 * px);
      if (isFocused) {
        for (const [hx, hy] of corners(ann.box_xyxy)) ctx.fillRect(hx - 3 * px, hy - 3 * px, 6 * px, 6 * px);
      }
    }
  }
  if (st.drag && st.drag.kind === "draw") {
    const [x1, y1, x2, y2] = st.drag.box;
    ctx.setLineDash([6 / st.scale, 4 / st.scale]);
    ctx.lineWidth = 2 / st.scale;
    ctx.strokeStyle = COLORS.focused;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.setLineDash([]);
  }
  renderList();
}

function corners([x1, y1, x2, y2]) {
  return [[x1, y1], [x2, y1], [x1, y2], [x2, y2]];
}

function renderList() {
  const list = $("annotations");
  list.innerHTML = "";
  st.image.annotations.forEach((ann, i) => {
    const li = document.createElement("li");
    li.className = i === st.focus ? "focused" : "";
    li.dataset.id = ann.id;
    const score = ann.score == null ? "—" : ann.score.toFixed(2);
    li.innerHTML = `<span class="label"></span> <span class="muted">${score} · ${ann.source}</span> ` +
      `<span class="state ${ann.review_state}">${ann.review_state}</span>`;
    li.querySelector(".label").textContent = ann.label;
    li.addEventListener("click", () => { st.focus = i; render(); });
    list.appendChild(li);
  });
}

function renderLabels() {
  const list = $("labels");
  list.innerHTML = "";
  st.summary.labels.forEach((name, i) => {
    const li = document.createElement("li");
    li.textContent = name;
    li.title = i < 9 ? `key ${i + 1}` : "";
    li.addEventListener("click", () => guarded(() => relabel(name)));
    list.appendChild(li);
  });
}

// --- actions ---------------------------------------------------------------------------------

// a correction (label, box, mask) is a person confirming the object: it is accepted as corrected
async function decide(ann, body) {
  const updated = await api(`annotations/${ann.id}/decision`, { json: Object.assign({ state: "accepted" }, body) });
  remember(updated);
  await replaceAnnotation(updated);
  return updated;
}

async function verdict(state) {
  await flushNudge();
  const ann = focused();
  if (!ann) return;
  await decide(ann, { state });
  await refreshSummary();
  await advance();
}

// the next pending annotation of this image after the focused one, else the queue's next image
async function advance() {
  const anns = st.image.annotations;
  for (let step = 1; step <= anns.length; step++) {
    const i = (st.focus + step) % anns.length;
    if (anns[i].review_state === "pending") {
      st.focus = i;
      render();
      return;
    }
  }
  await refreshQueue();
  const next = st.queue.images.find((r) => r.id !== st.image.image.id);
  if (next) await loadImage(next.id);
  else render();
}

async function relabel(name) {
  await flushNudge();
  const ann = focused();
  if (!ann || !name.trim()) return;
  await decide(ann, { label: name.trim() });
  await refreshSummary();
  render();
}

async function refine() {
  await flushNudge();
  const ann = focused();
  if (!ann) return;
  const updated = await api(`annotations/${ann.id}/refine`, { json: { box: ann.box_xyxy } });
  remember(updated);
  await replaceAnnotation(updated);
  await refreshSummary();
  render();
}

async function commitBox(ann) {
  await decide(ann, { box: ann.box_xyxy.map((v) => Math.round(v * 100) / 100) });
  await refreshSummary();
  render();
}

function nudge(dx, dy, resize) {
  const ann = focused();
  if (!ann) return;
  const [x1, y1, x2, y2] = ann.box_xyxy;
  const w = st.bitmap.width, h = st.bitmap.height;
  if (resize) {
    ann.box_xyxy = [x1, y1, clamp(x2 + dx, x1 + 1, w), clamp(y2 + dy, y1 + 1, h)];
  } else {
    const mx = clamp(dx, -x1, w - x2), my = clamp(dy, -y1, h - y2);
    ann.box_xyxy = [x1 + mx, y1 + my, x2 + mx, y2 + my];
  }
  render();
  if (st.nudge) clearTimeout(st.nudge.timer);
  st.nudge = { ann, timer: setTimeout(() => guarded(flushNudge), 500) };
}

// a run of arrow keys is one decision, saved after a pause or before any other action
async function flushNudge() {
  if (!st.nudge) return;
  const { ann, timer } = st.nudge;
  clearTimeout(timer);
  st.nudge = null;
  await commitBox(ann);
}

function remember(ann) {
  st.undo.push({ id: ann.id, at: ann.decided_at, image: st.image.image.id });
}

// undo the newest decision made on this page (the server puts back the old values and logs the undo)
async function undo() {
  await flushNudge();
  const last = st.undo.pop();
  if (!last) {
    say("nothing to undo");
    return;
  }
  await api(`annotations/${last.id}/undo`, { json: { at: last.at } });
  st.saved += 1;
  document.body.dataset.saved = String(st.saved);
  await refreshSummary();
  await refreshQueue();
  await loadImage(last.image, last.id);
}

async function addBox(box) {
  const ann = focused();
  const label = ann ? ann.label : (st.summary.labels[0] || "object");
  const created = await api(`images/${st.image.image.id}/annotations`, { json: { label, box, refine: true } });
  remember(created);
  st.saved += 1;
  document.body.dataset.saved = String(st.saved);
  await refreshSummary();
  await refreshQueue();
  await loadImage(st.image.image.id, created.id);
}

async function gotoImage(step) {
  const rows = order();
  if (!rows.length) return;
  const here = rows.findIndex((r) => st.image && r.id === st.image.image.id);
  const next = rows[(here + step + rows.length) % rows.length];
  await loadImage(next.id);
}

function moveFocus(step) {
  const n = st.image ? st.image.annotations.length : 0;
  if (!n) return;
  guarded(flushNudge);
  st.focus = (st.focus + step + n) % n;
  render();
}

function setDrawMode(on) {
  st.drawMode = on;
  canvas.classList.toggle("drawing", on);
  $("mode").hidden = !on;
  $("mode").textContent = "drag to draw a new box (Esc cancels)";
}

function clamp(v, lo, hi) { return Math.min(Math.max(v, lo), hi); }

// --- keyboard --------------------------------------------------------------------------------

document.addEventListener("keydown", (e) => {
  if (e.target === $("relabel")) {
    if (e.key === "Escape") { $("relabel").value = ""; canvas.focus(); }
    return;
  }
  if (e.target.tagName === "SELECT") return;
  const key = e.key;
  const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  let handled = true;
  if (arrows[key]) {
    const step = e.shiftKey ? 10 : 1;
    nudge(arrows[key][0] * step, arrows[key][1] * step, e.altKey || e.ctrlKey);
  } else if (key === "Tab") moveFocus(e.shiftKey ? -1 : 1);
  else if ((key === "z" || key === "Z") && (e.ctrlKey || e.metaKey)) guarded(undo);
  else if (e.ctrlKey || e.metaKey || e.altKey) handled = false;
  else if (key === "u" || key === "U") guarded(undo);
  else if (key === "a" || key === "A") guarded(() => verdict("accepted"));
  else if ("rRxX".includes(key) && key.length === 1) guarded(() => verdict("rejected"));
  else if (/^[1-9]$/.test(key)) {
    const name = st.summary && st.summary.labels[Number(key) - 1];
    if (name) guarded(() => relabel(name));
  } else if (key === "l" || key === "L") $("relabel").focus();
  else if (key === "f" || key === "F") guarded(refine);
  else if (key === "n" || key === "N") moveFocus(1);
  else if (key === "p" || key === "P") moveFocus(-1);
  else if (key === "j" || key === "J") guarded(() => gotoImage(1));
  else if (key === "k" || key === "K") guarded(() => gotoImage(-1));
  else if (key === "d" || key === "D") setDrawMode(!st.drawMode);
  else if (key === "h" || key === "H") { st.overlays = !st.overlays; render(); }
  else if (key === "?") $("help").hidden = !$("help").hidden;
  else if (key === "Escape") { setDrawMode(false); $("help").hidden = true; st.drag = null; render(); }
  else handled = false;
  if (handled) e.preventDefault();
});

$("relabel-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("relabel").value;
  $("relabel").value = "";
  canvas.focus();
  guarded(() => relabel(name));
});

// --- mouse -----------------------------------------------------------------------------------

function imagePoint(e) {
  const rect = canvas.getBoundingClientRect();
  return [(e.clientX - rect.left) * (st.bitmap.width / rect.width), (e.clientY - rect.top) * (st.bitmap.height / rect.height)];
}

// which part of a box is under the point: "x1y1"-style corner/edge names, "body", or null
function grip(box, [x, y]) {
  const tol = 6 / st.scale;
  const [x1, y1, x2, y2] = box;
  if (x < x1 - tol || x > x2 + tol || y < y1 - tol || y > y2 + tol) return null;
  let part = "";
  if (Math.abs(x - x1) <= tol) part += "x1";
  else if (Math.abs(x - x2) <= tol) part += "x2";
  if (Math.abs(y - y1) <= tol) part += "y1";
  else if (Math.abs(y - y2) <= tol) part += "y2";
  return part || "body";
}

canvas.addEventListener("mousedown", (e) => {
  if (!st.image || e.button !== 0) return;
  canvas.focus();
  guarded(flushNudge);  // the box's arrow-key moves are saved before the mouse takes it
  const p = imagePoint(e);
  if (st.drawMode) {
    st.drag = { kind: "draw", start: p, box: [p[0], p[1], p[0], p[1]] };
    return;
  }
  let ann = focused();
  let part = ann && st.overlays ? grip(ann.box_xyxy, p) : null;
  if (!part) {
    // the smallest box under the point takes the focus
    let best = -1, area = Infinity;
    st.image.annotations.forEach((a, i) => {
      const [x1, y1, x2, y2] = a.box_xyxy;
      if (p[0] >= x1 && p[0] <= x2 && p[1] >= y1 && p[1] <= y2 && (x2 - x1) * (y2 - y1) < area) {
        best = i;
        area = (x2 - x1) * (y2 - y1);
      }
    });
    if (best < 0 || !st.overlays) return;
    st.focus = best;
    ann = focused();
    part = "body";
    render();
  }
  st.drag = { kind: part === "body" ? "move" : "resize", part, ann, start: p, box: ann.box_xyxy.slice(), moved: false };
});

window.addEventListener("mousemove", (e) => {
  if (!st.drag) return;
  const p = imagePoint(e);
  const d = st.drag;
  const w = st.bitmap.width, h = st.bitmap.height;
  const dx = p[0] - d.start[0], dy = p[1] - d.start[1];
  if (d.kind === "draw") {
    d.box = [Math.min(d.start[0], p[0]), Math.min(d.start[1], p[1]), Math.max(d.start[0], p[0]), Math.max(d.start[1], p[1])]
      .map((v, i) => clamp(v, 0, i % 2 ? h : w));
  } else if (d.kind === "move") {
    const [x1, y1, x2, y2] = d.box;
    const mx = clamp(dx, -x1, w - x2), my = clamp(dy, -y1, h - y2);
    d.ann.box_xyxy = [x1 + mx, y1 + my, x2 + mx, y2 + my];
  } else {
    let [x1, y1, x2, y2] = d.box;
    if (d.part.includes("x1")) x1 = clamp(x1 + dx, 0, x2 - 1);
    if (d.part.includes("x2")) x2 = clamp(x2 + dx, x1 + 1, w);
    if (d.part.includes("y1")) y1 = clamp(y1 + dy, 0, y2 - 1);
    if (d.part.includes("y2")) y2 = clamp(y2 + dy, y1 + 1, h);
    d.ann.box_xyxy = [x1, y1, x2, y2];
  }
  d.moved = d.moved || Math.abs(dx) + Math.abs(dy) > 1;
  render();
});

window.addEventListener("mouseup", () => {
  const d = st.drag;
  if (!d) return;
  st.drag = null;
  if (d.kind === "draw") {
    setDrawMode(false);
    const [x1, y1, x2, y2] = d.box.map((v) => Math.round(v));
    if (x2 - x1 >= 3 && y2 - y1 >= 3) guarded(() => addBox([x1, y1, x2, y2]));
    else render();
  } else if (d.moved) {
    d.ann.box_xyxy = d.ann.box_xyxy.map((v) => Math.round(v));
    guarded(() => commitBox(d.ann));
  } else {
    d.ann.box_xyxy = d.box;
    render();
  }
});

// --- buttons and start -----------------------------------------------------------------------

$("accept").addEventListener("click", () => guarded(() => verdict("accepted")));
$("reject").addEventListener("click", () => guarded(() => verdict("rejected")));
$("refine").addEventListener("click", () => guarded(refine));
$("draw").addEventListener("click", () => setDrawMode(!st.drawMode));
$("next-image").addEventListener("click", () => guarded(() => gotoImage(1)));
$("prev-image").addEventListener("click", () => guarded(() => gotoImage(-1)));
$("help-button").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
$("images").addEventListener("change", (e) => guarded(() => loadImage(Number(e.target.value))));
window.addEventListener("resize", () => { layout(); render(); });

guarded(async () => {
  document.body.dataset.saved = "0";
  await refreshSummary();
  await refreshQueue();
  const first = st.queue.images[0] || st.queue.all[0];
  if (first) await loadImage(first.id);
  else say("this project has no drafted images yet; run 'promptseg label' first");
  canvas.focus();
}).then(() => { document.body.dataset.ready = "1"; });  // also when loading failed (its error shown)
