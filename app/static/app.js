// Search page: draw on a canvas (Pointer Events), search on pen-up (debounced) or on the button.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const widthInput = document.getElementById("width");
const statusEl = document.getElementById("status");
const resultsEl = document.getElementById("results");
const gallerySelect = document.getElementById("gallery");
const strokes = []; // each: {width, points: [[x, y], ...]}
let current = null;
let debounce = null;
let inFlight = null;

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
  strokes.forEach(drawStroke);
}

pad.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  current = { width: Number(widthInput.value), points: [toCanvas(e)] };
  strokes.push(current);
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
  clearTimeout(debounce);
  debounce = setTimeout(search, 400);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("undo").addEventListener("click", () => { strokes.pop(); redraw(); if (strokes.length) search(); else showResults([]); });
document.getElementById("clear").addEventListener("click", () => { strokes.length = 0; redraw(); showResults([]); setStatus(""); });
document.getElementById("search").addEventListener("click", () => search());
document.getElementById("upload").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) search(file);
  e.target.value = "";
});

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

function canvasBlob() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

async function search(file) {
  const blob = file || (await canvasBlob());
  const form = new FormData();
  form.append("file", blob, file ? file.name : "sketch.png");
  const params = new URLSearchParams({ k: "24" });
  if (gallerySelect.value) params.set("gallery", gallerySelect.value);
  if (inFlight) inFlight.abort();
  inFlight = new AbortController();
  setStatus("Searching…");
  try {
    const response = await fetch(`/search?${params}`, { method: "POST", body: form, signal: inFlight.signal });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `the server answered ${response.status}`;
      setStatus(`Could not search: ${message}`, true);
      showResults([]);
      return;
    }
    showResults(body.results);
    setStatus(`${body.results.length} matches in gallery “${body.gallery}” (${body.took_ms.toFixed(0)} ms)`);
  } catch (err) {
    if (err.name !== "AbortError") setStatus(`Could not reach the server: ${err.message}`, true);
  }
}

function showResults(results) {
  resultsEl.replaceChildren(...results.map((m) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = m.url;
    a.target = "_blank";
    a.rel = "noopener";
    const img = document.createElement("img");
    img.src = m.thumbnail_url;
    img.loading = "lazy";
    img.alt = m.label ? `Photo of ${m.label.replaceAll("_", " ")}` : `Photo ${m.image_id}`;
    const meta = document.createElement("div");
    meta.className = "meta";
    const label = document.createElement("strong");
    label.textContent = `${m.rank}. ${m.label ? m.label.replaceAll("_", " ") : "—"}`;
    meta.append(label, `${(m.similarity * 100).toFixed(0)}% · ${m.hamming_distance} bits differ`);
    a.append(img, meta);
    li.append(a);
    return li;
  }));
}

async function loadGalleries() {
  try {
    const galleries = await (await fetch("/galleries")).json();
    gallerySelect.replaceChildren(...galleries.map((g) => {
      const option = document.createElement("option");
      option.value = g.name;
      option.textContent = g.indexed ? `${g.name} (${g.image_count})` : `${g.name} (not indexed yet)`;
      return option;
    }));
    document.getElementById("gallery-box").hidden = galleries.length < 2;
  } catch (err) {
    setStatus(`Could not load galleries: ${err.message}`, true);
  }
}
loadGalleries();
