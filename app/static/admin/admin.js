// Admin page: the token lives in sessionStorage only (gone when the tab closes).
"use strict";

const statusEl = document.getElementById("admin-status");
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("adminToken") || "";

// "1 gallery", "2 galleries": counts read as a person would write them
function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem("adminToken") || ""}`, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new Error(body && body.error ? body.error.message : `the server answered ${response.status}`);
  return body;
}

// A first visit says where the token comes from instead of showing empty tables.
if (tokenInput.value) {
  refresh();
} else {
  setStatus("Enter the admin token to manage galleries. `make demo` prints one when it starts; " +
    "a deployment sets it in SKETCH_ADMIN_TOKEN.");
}

document.getElementById("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("adminToken", tokenInput.value.trim());
  refresh();
});

async function refresh() {
  try {
    const galleries = await api("/admin/galleries");
    setStatus(`Signed in. ${plural(galleries.length, "gallery", "galleries")}.`);
    const rows = galleries.map((g) => {
      const tr = document.createElement("tr");
      const v = g.active_version;
      tr.append(
        cell(g.name),
        cell(plural(g.image_count, "photo", "photos")),
        cell(v ? `v${v.id}: ${plural(v.count, "photo", "photos")}, ${v.bits} bits` : "none yet"),
      );
      const td = document.createElement("td");
      td.className = "controls";
      td.append(
        button("Reindex", `Reindex ${g.name}`, () => reindex(g.name)),
        button("Delete", `Delete ${g.name}`, () => removeGallery(g)),
      );
      tr.append(td);
      return tr;
    });
    document.getElementById("galleries").replaceChildren(...rows);
    document.getElementById("upload-gallery").replaceChildren(...galleries.map((g) => new Option(g.name, g.name)));
    await loadJobs();
  } catch (err) {
    setStatus(err.message, true);
  }
}

function duration(seconds) {
  if (seconds === null) return "—";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

async function loadJobs() {
  const jobs = await api("/admin/jobs?limit=20");
  document.getElementById("jobs").replaceChildren(...jobs.map((j) => {
    const tr = document.createElement("tr");
    const failed = document.createElement("td");
    if (j.failed_items.length) {
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = plural(j.failed_items.length, "photo", "photos");
      const list = document.createElement("ul");
      list.append(...j.failed_items.map((f) => {
        const li = document.createElement("li");
        li.textContent = `${f.path}: ${f.reason}`;
        return li;
      }));
      details.append(summary, list);
      failed.append(details);
    } else {
      failed.textContent = "none";
    }
    const state = cell(j.error ? `${j.state}: ${j.error}` : j.state);
    state.className = `job-${j.state}`;
    tr.append(
      cell(`#${j.id}`),
      cell(j.gallery || "—"),
      state,
      cell(`${j.processed} of ${plural(j.total, "photo", "photos")}`),
      failed,
      cell(duration(j.duration_s)),
      cell(j.started_at ? new Date(j.started_at).toLocaleString() : "not yet"),
    );
    return tr;
  }));
}

async function removeGallery(g) {
  const what = `Delete gallery “${g.name}” with its ${plural(g.image_count, "photo", "photos")} and index versions? ` +
    "Uploaded photos are deleted; a source folder on the server is left as it is.";
  if (!confirm(what)) return;
  try {
    const body = await api(`/admin/galleries/${encodeURIComponent(g.name)}`, { method: "DELETE" });
    await refresh();
    setStatus(`Gallery “${body.gallery}” deleted (${plural(body.images_removed, "photo", "photos")}).`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

document.getElementById("new-gallery").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = document.getElementById("new-name").value.trim();
  const source = document.getElementById("new-source").value.trim();
  try {
    const created = await api("/admin/galleries", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, source_dir: source || null }),
    });
    // After the tables are redrawn: refresh() says "Signed in." itself, which hid this at once.
    await refresh();
    setStatus([`Gallery “${name}” created.`, ...created.warnings.map((w) => w.message)].join(" "));
  } catch (err) {
    setStatus(err.message, true);
  }
});

document.getElementById("upload-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const files = document.getElementById("upload-files").files;
  const gallery = document.getElementById("upload-gallery").value;
  if (!files.length) return setStatus("Choose one or more photos first.", true);
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const label = document.getElementById("upload-label").value.trim();
  if (label) form.append("label", label);  // the kind a search's chips and label filter find them by
  try {
    const body = await api(`/admin/galleries/${encodeURIComponent(gallery)}/images`, { method: "POST", body: form });
    const added = body.images.filter((i) => !i.duplicate).length;
    await refresh();
    const fresh = body.images.find((i) => !i.duplicate);
    const as = fresh && fresh.label ? `, labelled “${fresh.label}”,` : "";
    setStatus(`Uploaded ${plural(added, "new photo", "new photos")}${as} to “${gallery}”; reindex to make them searchable.`);
  } catch (err) {
    setStatus(err.message, true);
  }
});

async function reindex(name) {
  try {
    const { job_id } = await api(`/admin/galleries/${encodeURIComponent(name)}/reindex`, { method: "POST" });
    watch(job_id);
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function watch(jobId) {
  const bar = document.getElementById("job-progress");
  const text = document.getElementById("job-text");
  const failed = document.getElementById("job-failed");
  for (;;) {
    let job;
    try {
      job = await api(`/admin/jobs/${jobId}`);
    } catch (err) {
      text.textContent = err.message;
      return;
    }
    bar.max = Math.max(job.total, 1);
    bar.value = job.processed;
    text.textContent = `Job ${job.id}: ${job.state} — ${job.processed} of ${job.total ? plural(job.total, "photo", "photos") : "? photos"}` + (job.error ? ` (${job.error})` : "");
    failed.replaceChildren(...job.failed_items.map((f) => {
      const li = document.createElement("li");
      li.textContent = `${f.path}: ${f.reason}`;
      return li;
    }));
    if (job.state === "succeeded" || job.state === "failed") {
      refresh();
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

if (tokenInput.value) refresh();
