// Admin page: the token lives in sessionStorage only (gone when the tab closes).
"use strict";

const statusEl = document.getElementById("admin-status");
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("adminToken") || "";

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

document.getElementById("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("adminToken", tokenInput.value.trim());
  refresh();
});

async function refresh() {
  try {
    const galleries = await api("/admin/galleries");
    setStatus(`Signed in. ${galleries.length} galleries.`);
    const rows = galleries.map((g) => {
      const tr = document.createElement("tr");
      const v = g.active_version;
      const cells = [g.name, String(g.image_count), v ? `v${v.id}: ${v.count} images, ${v.bits} bits` : "none yet"];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      const td = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Reindex";
      button.setAttribute("aria-label", `Reindex ${g.name}`);
      button.addEventListener("click", () => reindex(g.name));
      td.append(button);
      tr.append(td);
      return tr;
    });
    document.getElementById("galleries").replaceChildren(...rows);
    document.getElementById("upload-gallery").replaceChildren(...galleries.map((g) => new Option(g.name, g.name)));
  } catch (err) {
    setStatus(err.message, true);
  }
}

document.getElementById("new-gallery").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = document.getElementById("new-name").value.trim();
  const source = document.getElementById("new-source").value.trim();
  try {
    await api("/admin/galleries", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, source_dir: source || null }),
    });
    setStatus(`Gallery “${name}” created.`);
    refresh();
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
  try {
    const body = await api(`/admin/galleries/${encodeURIComponent(gallery)}/images`, { method: "POST", body: form });
    const added = body.images.filter((i) => !i.duplicate).length;
    setStatus(`Uploaded ${added} new photo(s) to “${gallery}”; reindex to make them searchable.`);
    refresh();
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
    text.textContent = `Job ${job.id}: ${job.state} — ${job.processed} of ${job.total || "?"} photos` + (job.error ? ` (${job.error})` : "");
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
