// stenofleet's page. Everything goes through stenofleet's own API; the
// session's CSRF token (GET /session) goes with every POST.
"use strict";

const $ = (sel) => document.querySelector(sel);
let csrf = "";

function showError(msg) {
  const e = $("#error");
  e.textContent = msg;
  e.hidden = !msg;
}

function setStatus(msg) { $("#status").textContent = msg; }

// api fetches path; a non-2xx answer throws its text (stenofleet relays
// the sensors' reason for refusing a query).
async function api(path, opts = {}) {
  opts.headers = Object.assign({ "X-CSRF-Token": csrf }, opts.headers || {});
  opts.credentials = "same-origin";
  const r = await fetch(path, opts);
  if (!r.ok) {
    throw new Error((await r.text()).trim() || ("HTTP " + r.status));
  }
  return r;
}

// utc reads a datetime-local input as UTC and gives the query's form.
function utc(id) {
  const v = $(id).value;
  if (!v) return "";
  return (v.length === 16 ? v + ":00" : v) + "Z";
}

function fullQuery() {
  let q = $("#q").value.trim();
  const parts = q ? ["(" + q + ")"] : [];
  if (utc("#after")) parts.push("after " + utc("#after"));
  if (utc("#before")) parts.push("before " + utc("#before"));
  return parts.join(" and ");
}

// sensorParam is "?sensors=a,b", or "" when every sensor is ticked.
function sensorParam() {
  const boxes = [...document.querySelectorAll("#sensor-list input")];
  const on = boxes.filter((b) => b.checked).map((b) => b.value);
  if (on.length === boxes.length) return "";
  return "?sensors=" + encodeURIComponent(on.join(","));
}

async function loadSensors(selected) {
  const list = await (await api("/sensors")).json();
  const fs = $("#sensor-list");
  for (const s of list) {
    const l = document.createElement("label");
    const b = document.createElement("input");
    b.type = "checkbox";
    b.value = s.name;
    b.checked = selected.length === 0 || selected.includes(s.name) || s.tags.some((t) => selected.includes(t));
    l.append(b, " " + s.name + (s.tags.length ? " [" + s.tags.join(", ") + "]" : ""));
    fs.append(l);
  }
}

async function preview() {
  showError("");
  setStatus("previewing…");
  const tbody = $("#preview tbody");
  tbody.replaceChildren();
  try {
    const p = await (await api("/preview" + sensorParam(), { method: "POST", body: fullQuery() })).json();
    for (const k of p.packets) {
      const tr = document.createElement("tr");
      tr.className = "packet";
      const addr = (a, port) => (a || "") + (port ? "." + port : "");
      for (const v of [k.time, k.sensor, addr(k.src, k.src_port), addr(k.dst, k.dst_port), k.protocol, k.length]) {
        const td = document.createElement("td");
        td.textContent = String(v);
        tr.append(td);
      }
      tbody.append(tr);
    }
    $("#preview").hidden = false;
    setStatus(p.packets.length + " packets shown" + (p.missing ? "; missing: " + p.missing.join(", ") : ""));
  } catch (e) {
    setStatus("");
    showError(e.message);
  }
}

async function download() {
  showError("");
  setStatus("downloading…");
  try {
    const r = await api("/query" + sensorParam(), { method: "POST", body: fullQuery() });
    const blob = await r.blob();
    const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
    // For checking the download against the API (tests, curious analysts).
    document.body.dataset.downloadSha256 = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    document.body.dataset.downloadBytes = String(blob.size);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "stenofleet.pcap";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    setStatus("downloaded " + blob.size + " bytes");
  } catch (e) {
    setStatus("");
    showError(e.message);
  }
}

async function runJob() {
  showError("");
  try {
    const j = await (await api("/q/query/" + encodeURIComponent(fullQuery()) + sensorParam())).json();
    setStatus("job " + j.id + " queued");
    await loadJobs();
  } catch (e) {
    showError(e.message);
  }
}

let jobTimer;

async function loadJobs() {
  const ids = await (await api("/ids")).json();
  const tbody = $("#jobs tbody");
  const rows = [];
  let pending = false;
  for (const id of ids || []) {
    const st = (await (await api("/status/" + encodeURIComponent(id))).json())[id];
    pending = pending || st.state === "Queued" || st.state === "Running";
    const tr = document.createElement("tr");
    tr.className = "job";
    const cell = (v) => { const td = document.createElement("td"); td.textContent = v; tr.append(td); return td; };
    cell(id.slice(0, 12));
    cell(st.query);
    cell(st.state + (st.partial ? " (partial)" : ""));
    cell(Object.entries(st.requests || {}).map(([s, r]) =>
      s + ": " + (r.error ? "error " + r.error : r.packets + " packets")).join("; "));
    const res = cell("");
    if (st.state === "Completed") {
      const a = document.createElement("a");
      a.href = st.url;
      a.textContent = "merged.pcap";
      res.append(a);
    }
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  // Refresh while a job is still to finish.
  clearTimeout(jobTimer);
  if (pending) jobTimer = setTimeout(() => loadJobs().catch((e) => showError(e.message)), 2000);
}

function route() {
  const sensors = location.hash === "#sensors";
  $("#query-page").hidden = sensors;
  $("#sensors-page").hidden = !sensors;
  if (sensors) showSensors(); else stopSensors();
}

async function main() {
  const s = await (await api("/session")).json();
  csrf = s.csrf;
  $("#user").textContent = s.user;
  $("#logout-csrf").value = csrf;
  $("#logout").hidden = !csrf;
  // Click-to-PCAP: /?q=<query>&after=…&before=…&sensors=a,b&run=1
  const u = new URLSearchParams(location.search);
  $("#q").value = u.get("q") || "";
  for (const k of ["after", "before"]) {
    if (u.get(k)) $("#" + k).value = u.get(k).replace(/Z$/, "");
  }
  await loadSensors((u.get("sensors") || "").split(",").filter(Boolean));
  $("#preview-btn").addEventListener("click", preview);
  $("#download-btn").addEventListener("click", download);
  $("#job-btn").addEventListener("click", runJob);
  window.addEventListener("hashchange", route);
  route();
  loadJobs().catch((e) => showError(e.message));
  if (u.get("run") === "1" && $("#q").value) await preview();
  document.body.dataset.ready = "1";
}

main().catch((e) => showError(e.message));
