// The sensor page: each sensor's latest health (GET /sensors) and a chart
// of its capture and drop rates (GET /sensors/history), refreshed while
// the page is shown. Loaded before app.js, whose $ and api it calls.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

// span says how long a number of seconds is in its two largest units:
// "3 d 4 h", "5 h 12 min", "40 s".
function span(sec) {
  if (!(sec >= 0)) return "";
  const units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
  const parts = [];
  for (const [name, n] of units) {
    if (sec >= n || (name === "s" && parts.length === 0)) {
      parts.push(Math.floor(sec / n) + " " + name);
      sec %= n;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

function bytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
}

function perSecond(r) {
  if (r === undefined || r === null) return "";
  return (r >= 100 ? r.toFixed(0) : r.toFixed(2)) + "/s";
}

function svgEl(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// clock is a time of day in UTC, with seconds when the chart spans less
// than an hour.
function clock(t, withSeconds) { return new Date(t).toISOString().slice(11, withSeconds ? 19 : 16); }

// chart draws packets/s (left axis) and drops/s (right axis) of one
// sensor's samples over time; each rate has its own scale, as drops are
// usually far fewer than packets.
function chart(name, samples) {
  const W = 560, H = 160, L = 60, R = 60, T = 10, B = 24;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart", role: "img",
    "aria-label": name + ": packets and drops per second" });
  const pts = samples.filter((s) => s.packets_per_second !== undefined)
    .map((s) => ({ t: Date.parse(s.time), p: s.packets_per_second, d: s.drops_per_second }));
  svg.append(svgEl("rect", { x: L, y: T, width: W - L - R, height: H - T - B, class: "frame" }));
  if (pts.length === 0) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nodata" }, "no rates yet"));
    return svg;
  }
  const t0 = pts[0].t, t1 = Math.max(pts[pts.length - 1].t, t0 + 1);
  const pMax = Math.max(1, ...pts.map((q) => q.p)), dMax = Math.max(1, ...pts.map((q) => q.d));
  const x = (t) => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = (v, max) => H - B - v / max * (H - T - B);
  const line = (cls, key, max) => svgEl("polyline", { class: cls, fill: "none",
    points: pts.map((q) => x(q.t).toFixed(1) + "," + y(q[key], max).toFixed(1)).join(" ") });
  svg.append(line("packets", "p", pMax), line("drops", "d", dMax));
  const label = (xx, yy, anchor, cls, text) => svg.append(svgEl("text", { x: xx, y: yy, "text-anchor": anchor, class: cls }, text));
  label(L - 4, T + 10, "end", "packets", perSecond(pMax));
  label(L - 4, H - B, "end", "packets", "0");
  label(L - 4, (H - B + T) / 2, "end", "packets", "pkts");
  label(W - R + 4, T + 10, "start", "drops", perSecond(dMax));
  label(W - R + 4, H - B, "start", "drops", "0");
  label(W - R + 4, (H - B + T) / 2, "start", "drops", "drops");
  const short = t1 - t0 < 3600e3;
  label(L, H - 6, "start", "axis", clock(t0, short) + " UTC");
  label(W - R, H - 6, "end", "axis", clock(t1, short) + " UTC");
  return svg;
}

async function loadSensorPage() {
  const [sensors, hist] = await Promise.all([
    (await api("/sensors")).json(),
    (await api("/sensors/history")).json(),
  ]);
  const now = Date.now();
  const rows = sensors.map((s) => {
    const h = s.health;
    const tr = document.createElement("tr");
    tr.className = "sensor";
    const cell = (v, cls) => { const td = document.createElement("td"); td.textContent = v; if (cls) td.className = cls; tr.append(td); };
    cell(s.name);
    if (!h) {
      cell("unknown: not polled yet", "down");
      return tr;
    }
    if (h.up) {
      cell(h.capture_up === false ? "up (capture down)" : "up", h.capture_up === false ? "down" : "up");
    } else {
      cell("down: " + h.error, "down");
    }
    cell(h.oldest_packet ? h.oldest_packet.replace(/\.\d+Z$/, "Z") : "");
    cell(h.oldest_packet ? span((now - Date.parse(h.oldest_packet)) / 1000) : "");
    cell(perSecond(h.packets_per_second));
    cell(perSecond(h.drops_per_second), h.drops_per_second > 0 ? "down" : "");
    cell(h.up ? bytes(h.disk_bytes) : "");
    cell(bytes(h.disk_free_bytes));
    return tr;
  });
  $("#sensors tbody").replaceChildren(...rows);
  const figs = hist.sensors.map((s) => {
    const fig = document.createElement("figure");
    fig.className = "sensor-chart";
    fig.dataset.sensor = s.name;
    const cap = document.createElement("figcaption");
    cap.textContent = s.name + " — packets/s (blue, left axis) and drops/s (red, right axis); up to " +
      span(hist.history_seconds) + " kept";
    fig.append(cap, chart(s.name, s.samples));
    return fig;
  });
  $("#charts").replaceChildren(...figs);
  return hist.interval_seconds;
}

let sensorTimer;

// showSensors loads the page now and again every poll interval (at
// least every 2 s) while it is shown.
function showSensors() {
  clearTimeout(sensorTimer);
  const again = (sec) => {
    if (!$("#sensors-page").hidden) sensorTimer = setTimeout(showSensors, sec * 1000);
  };
  loadSensorPage()
    .then((iv) => again(Math.max(2, iv || 30)))
    .catch((e) => { showError(e.message); again(30); });
}

function stopSensors() { clearTimeout(sensorTimer); }
