// Search page: draw on a canvas (Pointer Events: mouse, pen or finger), search on pen-up (debounced),
// with the model's class guesses as filter chips, "more like this" on every photo, and optional
// attention heat maps over the sketch and the photos. An uploaded PNG is laid on the canvas, scaled to
// fit, so one sees what was searched and can draw on top of it.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const widthInput = document.getElementById("width");
const statusEl = document.getElementById("status");
const resultsEl = document.getElementById("results");
const guessesEl = document.getElementById("guesses");
const gallerySelect = document.getElementById("gallery");
const explainBox = document.getElementById("explain");
const sketchHeat = document.getElementById("sketch-attention");
const queryNote = document.getElementById("query-note");
const warningsEl = document.getElementById("warnings");
const closeOnly = document.getElementById("close-only");
const minSimilarity = document.getElementById("min-similarity");
const minSimilarityValue = document.getElementById("min-similarity-value");
const cutoffNote = document.getElementById("cutoff-note");
const strokes = []; // each: {width, points: [[x, y], ...]}
let current = null;
let debounce = null;
let inFlight = null;
// Queries are numbered: one that wakes from reading its sketch after a newer query began (or after
// Clear) gives way, rather than start its request then and abort the newer one's. A new query also
// stops the answer still coming for an older one, which would otherwise land over it.
let query = 0;
function newQuery() {
  clearTimeout(debounce); // a pen-up search still pending would only repeat or contradict this one
  if (inFlight) inFlight.abort();
  return ++query;
}
let label = null; // the chosen "looks like" chip, or null
let uploaded = null; // the uploaded PNG: searched as it is while nothing is drawn on top of it
let background = null; // the uploaded sketch as drawn under the strokes: {image, x, y, w, h} in canvas pixels
let sent = null; // where the image last searched lies on the canvas (explain's box is in its pixels)
const hasQuery = () => strokes.length || uploaded;
let rerun = null; // the last query (the sketch, or "more like" a photo), run again when the cutoff changes

const pretty = (name) => name.replaceAll("_", " ");

function toCanvas(event) {
  const rect = pad.getBoundingClientRect();
  return [(event.clientX - rect.left) * (pad.width / rect.width), (event.clientY - rect.top) * (pad.height / rect.height)];
}

function drawStroke(stroke) {
  const pts = stroke.points;
  ctx.lineWidth = stroke.width;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#000";
  ctx.beginPath();
  ctx.moveTo(pts[0][0], pts[0][1]);
  if (pts.length === 1) ctx.lineTo(pts[0][0] + 0.1, pts[0][1]);
  // quadratic curves through midpoints: smooth strokes from jittery pointer samples
  for (let i = 1; i < pts.length - 1; i++) {
    const mx = (pts[i][0] + pts[i + 1][0]) / 2, my = (pts[i][1] + pts[i + 1][1]) / 2;
    ctx.quadraticCurveTo(pts[i][0], pts[i][1], mx, my);
  }
  if (pts.length > 1) ctx.lineTo(pts[pts.length - 1][0], pts[pts.length - 1][1]);
  ctx.stroke();
}

function redraw() {
  ctx.clearRect(0, 0, pad.width, pad.height);
  if (background) ctx.drawImage(background.image, background.x, background.y, background.w, background.h);
  strokes.forEach(drawStroke);
}

// The uploaded sketch, scaled to fit the canvas and centred.
function fitted(image) {
  const scale = Math.min(pad.width / image.width, pad.height / image.height);
  const w = image.width * scale, h = image.height * scale;
  return { image, x: (pad.width - w) / 2, y: (pad.height - h) / 2, w, h };
}

async function loadSketch(file) {
  try {
    return fitted(await createImageBitmap(file));
  } catch {
    return null; // not an image the browser reads: the server's answer says why
  }
}

pad.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  pad.focus({ preventScroll: true });
  pad.setPointerCapture(e.pointerId);
  current = { width: Number(widthInput.value), points: [toCanvas(e)] };
  strokes.push(current);
  if (!background) uploaded = null; // an upload the browser could not show is replaced by the drawing
  sketchHeat.hidden = true; // the drawing changes: the old attention no longer applies
  clearTimeout(debounce);
  redraw();
});
pad.addEventListener("pointermove", (e) => {
  if (!current) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events) current.points.push(toCanvas(ev));
  redraw();
});
function endStroke() {
  if (!current) return;
  current = null;
  rerun = search; // the drawing is the query now: a cutoff change meanwhile searches it, not an older query
  clearTimeout(debounce);
  debounce = setTimeout(search, 400);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function undo() {
  strokes.pop();
  redraw();
  sketchHeat.hidden = true;
  if (hasQuery()) search();
  else clearAll();
}
function clearAll() {
  newQuery(); // a search under way, or its answer, would land on the cleared page
  current = null; // cleared mid-stroke: the pointer's release searches nothing
  strokes.length = 0;
  uploaded = null;
  background = null;
  label = null;
  redraw();
  showResults([]);
  showGuesses([]);
  sketchHeat.hidden = true;
  queryNote.hidden = true;
  showWarnings([]);
  showCutoff(null);
  rerun = null;
  setStatus("");
}

document.getElementById("undo").addEventListener("click", undo);
document.getElementById("clear").addEventListener("click", clearAll);
document.getElementById("search").addEventListener("click", () => search());
document.getElementById("back-to-sketch").addEventListener("click", () => search());
explainBox.addEventListener("change", () => { if (hasQuery()) search(); });
gallerySelect.addEventListener("change", () => { label = null; if (hasQuery()) search(); });
// "Only close matches": the server leaves out matches less similar than the slider says, and counts them.
minSimilarity.disabled = !closeOnly.checked;
function cutoffChanged() {
  minSimilarity.disabled = !closeOnly.checked;
  minSimilarityValue.textContent = `${minSimilarity.value}%`;
  if (rerun) rerun();
}
closeOnly.addEventListener("change", cutoffChanged);
minSimilarity.addEventListener("input", () => { minSimilarityValue.textContent = `${minSimilarity.value}%`; });
minSimilarity.addEventListener("change", cutoffChanged);
document.getElementById("upload").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  e.target.value = "";
  if (!file) return;
  const mine = newQuery();
  const shown = await loadSketch(file);
  if (mine !== query) return; // cleared, or another file or query chosen, while this one was decoded
  strokes.length = 0;
  uploaded = file;
  label = null;
  sketchHeat.hidden = true;
  background = shown;
  redraw();
  search();
});

// Keyboard: Ctrl/Cmd+Z undoes a stroke, Escape clears, Enter searches (unless a control has the focus).
document.addEventListener("keydown", (e) => {
  const typing = e.target.closest && e.target.closest("input, select, textarea, button, a");
  if ((e.ctrlKey || e.metaKey) && !e.shiftKey && e.key.toLowerCase() === "z" && !typing) {
    e.preventDefault();
    undo();
  } else if (e.key === "Escape") {
    clearAll();
  } else if (e.key === "Enter" && !typing) {
    e.preventDefault();
    search();
  }
});

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

function canvasBlob() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

async function request(url, options, onOk) {
  inFlight = new AbortController(); // the query's newQuery() stopped the one before
  const signal = inFlight.signal;
  setStatus("Searching…");
  try {
    let response = await fetch(url, { ...options, signal });
    for (let retry = 0; response.status === 429 && retry < 3; retry++) {
      // the server is busy (an earlier explanation still running): wait as it asks, then retry
      const seconds = Number(response.headers.get("Retry-After")) || 1;
      await new Promise((r) => setTimeout(r, seconds * 1000));
      if (signal.aborted) return;
      response = await fetch(url, { ...options, signal });
    }
    const body = await response.json().catch(() => null);
    if (signal.aborted) return; // stopped while its answer was read: a newer query (or Clear) took over
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `the server answered ${response.status}`;
      forgetAnswer();
      setStatus(`Could not search: ${message}`, true);
      return;
    }
    onOk(body);
  } catch (err) {
    if (err.name === "AbortError" || signal.aborted) return; // a newer query (or Clear) took over
    forgetAnswer();
    setStatus(`Could not reach the server: ${err.message}`, true);
  }
}

// After a failed search nothing of the previous answer stays on screen: its results, chips (and the
// chosen one), warnings and heat map belonged to another query.
function forgetAnswer() {
  label = null;
  showResults([]);
  showGuesses([]);
  showWarnings([]);
  showCutoff(null);
  sketchHeat.hidden = true;
  queryNote.hidden = true;
}

function showCutoff(body) {
  cutoffNote.hidden = !(body && body.min_similarity !== null && body.min_similarity !== undefined);
  if (cutoffNote.hidden) return;
  const hidden = body.below_cutoff;
  const percent = Math.round(body.min_similarity * 100);
  cutoffNote.textContent = hidden
    ? `Only close matches (${percent}% similar or more): ${hidden === 1 ? "1 less similar photo" : `${hidden} less similar photos`} hidden.`
    : `Only close matches (${percent}% similar or more): none hidden.`;
}

// Notes the server attaches to an answer (each {code, message}), e.g. when it changed what was asked.
function showWarnings(warnings) {
  warningsEl.hidden = !warnings.length;
  warningsEl.replaceChildren(...warnings.map((w) => {
    const li = document.createElement("li");
    li.dataset.code = w.code;
    li.textContent = w.message;
    return li;
  }));
}

function baseParams() {
  const params = new URLSearchParams({ k: "24" });
  if (gallerySelect.value) params.set("gallery", gallerySelect.value);
  if (label) params.set("label", label);
  if (closeOnly.checked) params.set("min_similarity", String(Number(minSimilarity.value) / 100));
  return params;
}

async function search() {
  const mine = newQuery();
  rerun = search;
  // an upload with nothing drawn on it goes as it is (the canvas shows it scaled); else the whole canvas
  const asIs = uploaded && !strokes.length ? uploaded : null;
  const where = asIs && background ? background : { x: 0, y: 0, w: pad.width, h: pad.height };
  const blob = asIs || (await canvasBlob());
  if (mine !== query) return;
  const params = baseParams();
  if (explainBox.checked) params.set("explain", "1");
  queryNote.hidden = true;
  // the PNG as the whole body: no multipart form for the server to parse (the server reads the bytes
  // and refuses anything that is not a PNG, whatever the header says). Its bytes, not the File itself:
  // Chromium's DevTools drops the answer's body when a request's body is a file-backed Blob.
  let png;
  try {
    png = await blob.arrayBuffer();
  } catch (err) { // an uploaded file moved or changed on disk since it was chosen
    if (mine !== query) return;
    forgetAnswer();
    setStatus(`Could not read the sketch: ${err.message}`, true);
    return;
  }
  if (mine !== query) return;
  sent = where;
  const init = { method: "POST", body: png, headers: { "Content-Type": "image/png" } };
  await request(`/search?${params}`, init, (body) => {
    showGuesses(body.guesses, body.label);
    showSketchHeat(body.explanation);
    showResults(body.results);
    showWarnings(body.warnings || []);
    showCutoff(body);
    const only = body.label ? ` showing only “${pretty(body.label)}”` : "";
    setStatus(`${body.results.length} matches in gallery “${body.gallery}”${only} (${body.took_ms.toFixed(0)} ms)` + flatNote(body));
  });
}

async function moreLike(match) {
  newQuery();
  label = null;
  rerun = () => moreLike(match);
  await request(`/search/similar/${match.image_id}?${baseParams()}`, { method: "POST" }, (body) => {
    showGuesses([]);
    sketchHeat.hidden = true;
    showResults(body.results);
    showWarnings(body.warnings || []);
    showCutoff(body);
    queryNote.querySelector("span").textContent = `Photos like ${match.label ? pretty(match.label) : "photo"} #${match.image_id}.`;
    queryNote.hidden = !hasQuery();
    setStatus(`${body.results.length} photos like #${match.image_id} (${body.took_ms.toFixed(0)} ms)`);
  });
}

function showGuesses(guesses, applied = null) {
  guessesEl.hidden = !guesses.length;
  if (!guesses.length) return guessesEl.replaceChildren();
  const title = document.createElement("span");
  title.className = "chips-title";
  title.textContent = "Looks like:";
  const chips = guesses.map((g) => {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.dataset.label = g.label;
    chip.textContent = `${pretty(g.label)} ${(g.probability * 100).toFixed(0)}%`;
    if (!g.in_gallery) {
      // the model knows this kind but the gallery has no photo of it: nothing to filter to
      chip.disabled = true;
      chip.classList.add("none");
      chip.append(" · none here");
      chip.title = `The gallery has no photos of ${pretty(g.label)}`;
      return chip;
    }
    chip.setAttribute("aria-pressed", String(g.label === applied));
    chip.title = g.label === applied ? "Show every kind again" : `Show only ${pretty(g.label)}`;
    chip.addEventListener("click", () => {
      label = label === g.label ? null : g.label;
      search();
    });
    return chip;
  });
  guessesEl.replaceChildren(title, ...chips);
}

// An honest reading of the masks: when they are flat the heat map is an even tint, and the page says so.
function flatNote(body) {
  const e = body.explanation;
  if (!e) return "";
  const photos = body.results.filter((m) => m.attention);
  const flatPhotos = photos.every((m) => m.attention.uniform);
  if (!e.uniform && !flatPhotos) return "";
  const range = `${e.mask_min.toFixed(3)}–${e.mask_max.toFixed(3)}`;
  const what = e.uniform && flatPhotos ? "sketch and photos" : e.uniform ? "sketch" : "photos";
  return `. Attention is flat for the ${what} (sketch ${range}): the model weighs every part alike`;
}

function showSketchHeat(explanation) {
  if (!explanation) {
    sketchHeat.hidden = true;
    return;
  }
  // the box is in the sent sketch's pixels, which lie at `sent` on the canvas; the canvas is shown
  // scaled, so position in percent of it
  const [left, top, side] = explanation.box;
  const sx = sent.w / explanation.width, sy = sent.h / explanation.height;
  sketchHeat.style.left = `${(100 * (sent.x + left * sx)) / pad.width}%`;
  sketchHeat.style.top = `${(100 * (sent.y + top * sy)) / pad.height}%`;
  sketchHeat.style.width = `${(100 * side * sx) / pad.width}%`;
  sketchHeat.style.height = `${(100 * side * sy) / pad.height}%`;
  sketchHeat.src = explanation.png;
  sketchHeat.title = `Where the network looked in your sketch (attention ${explanation.mask_min.toFixed(2)}–${explanation.mask_max.toFixed(2)})`;
  sketchHeat.hidden = false;
}

function showResults(results) {
  resultsEl.replaceChildren(...results.map((m) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = m.url;
    a.target = "_blank";
    a.rel = "noopener";
    const frame = document.createElement("div");
    frame.className = "frame";
    const img = document.createElement("img");
    img.src = m.thumbnail_url;
    img.loading = "lazy";
    img.alt = m.label ? `Photo of ${pretty(m.label)}` : `Photo ${m.image_id}`;
    frame.append(img);
    if (m.attention) {
      const heat = document.createElement("img");
      heat.className = "heat";
      heat.src = m.attention.png;
      heat.alt = "";
      heat.title = "Where the network looked in this photo";
      frame.append(heat);
      li.classList.add("explained");
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    const name = document.createElement("strong");
    name.textContent = `${m.rank}. ${m.label ? pretty(m.label) : "—"}`;
    meta.append(name, `${(m.similarity * 100).toFixed(0)}% · ${m.hamming_distance} bits differ`);
    a.append(frame, meta);
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more";
    more.textContent = "More like this";
    more.setAttribute("aria-label", `More photos like ${m.label ? pretty(m.label) : "photo"} #${m.image_id}`);
    more.addEventListener("click", () => moreLike(m));
    li.append(a, more);
    // a tap on a touch screen toggles the heat map (there is no hover); a second tap opens the photo
    a.addEventListener("click", (e) => {
      if (m.attention && matchMedia("(hover: none)").matches && !li.classList.contains("show-heat")) {
        e.preventDefault();
        resultsEl.querySelectorAll(".show-heat").forEach((x) => x.classList.remove("show-heat"));
        li.classList.add("show-heat");
      }
    });
    return li;
  }));
}

async function loadGalleries() {
  try {
    const galleries = await (await fetch("/galleries")).json();
    gallerySelect.replaceChildren(...galleries.map((g) => {
      const option = document.createElement("option");
      option.value = g.name;
      const photos = g.image_count === 1 ? "1 photo" : `${g.image_count} photos`;
      option.textContent = g.indexed ? `${g.name} (${photos})` : `${g.name} (not indexed yet)`;
      return option;
    }));
    // a gallery registered and not indexed yet may sort first: start on one that can be searched
    const searchable = galleries.find((g) => g.indexed);
    if (searchable) gallerySelect.value = searchable.name;
    document.getElementById("gallery-box").hidden = galleries.length < 2;
  } catch (err) {
    setStatus(`Could not load galleries: ${err.message}`, true);
  }
}
loadGalleries();
