// The feedstack console: polls /v1/console/series every second and /v1/console/state every
// 5 s, draws the series with uPlot. Its own status (points per chart, errors seen, polls) is
// kept in #console-status as JSON, so a headless browser test can read what was drawn.
"use strict";
(function () {
  const status = { charts: {}, errors: [], polls: 0, state_polls: 0 };
  const statusEl = document.getElementById("console-status");
  function writeStatus() { statusEl.textContent = JSON.stringify(status); }
  function noteError(msg) { status.errors.push(String(msg).slice(0, 300)); writeStatus(); }
  window.addEventListener("error", (e) => noteError(e.message || "error"));
  window.addEventListener("unhandledrejection", (e) => noteError("rejection: " + (e.reason && e.reason.message || e.reason)));
  const origError = console.error.bind(console);
  console.error = function (...args) { noteError(args.join(" ")); origError(...args); };

  // The admin key: from the URL fragment (never sent to a server) or the form; kept per tab.
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("key")) { sessionStorage.setItem("feedstack-key", frag.get("key")); history.replaceState(null, "", location.pathname); }
  function headers() { const k = sessionStorage.getItem("feedstack-key"); return k ? { "X-API-Key": k } : {}; }
  const keyForm = document.getElementById("key-form");
  keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("feedstack-key", document.getElementById("key-input").value);
    keyForm.hidden = true;
  });

  async function getJSON(url) {
    const resp = await fetch(url, { headers: headers(), cache: "no-store" });
    if (resp.status === 401 || resp.status === 403) {
      keyForm.hidden = false;
      document.getElementById("key-why").textContent = "the console needs a key with the admin scope";
      return null;
    }
    if (!resp.ok) throw new Error(url + ": HTTP " + resp.status);
    return resp.json();
  }

  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#65a30d"];
  const charts = {};  // id -> {plot, keys}

  // One chart: series named by keys (values per point), plus constant threshold lines.
  function draw(id, t, named, thresholds) {
    const el = document.getElementById(id);
    const keys = Object.keys(named);
    const lines = Object.keys(thresholds || {});
    const sig = keys.concat(lines).join("|");
    let entry = charts[id];
    if (!entry || entry.sig !== sig) {
      if (entry) entry.plot.destroy();
      el.innerHTML = "<h3>" + el.dataset.title + "</h3>";
      const series = [{}];
      keys.forEach((k, i) => series.push({ label: k, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: false }));
      lines.forEach((k) => series.push({ label: k, stroke: "#999", dash: [6, 4], width: 1 }));
      const width = Math.max(300, el.clientWidth - 12);
      const plot = new uPlot({ width: width, height: 200, series: series, scales: { x: { time: true } }, legend: { live: false } }, [[]], el);
      entry = charts[id] = { plot: plot, sig: sig };
    }
    const data = [t];
    let points = 0;
    keys.forEach((k) => { data.push(named[k]); points += named[k].filter((v) => v !== null && v !== undefined).length; });
    lines.forEach((k) => data.push(t.map(() => thresholds[k])));
    entry.plot.setData(data);
    el.dataset.points = String(points);
    status.charts[id] = points;
  }

  function column(points, f) { return points.map((p) => { const v = f(p); return v === undefined ? null : v; }); }
  function keyed(points, field) {
    const names = new Set();
    points.forEach((p) => Object.keys(p[field] || {}).forEach((k) => names.add(k)));
    const out = {};
    Array.from(names).sort().forEach((k) => { out[k] = column(points, (p) => (p[field] || {})[k]); });
    return out;
  }

  async function pollSeries() {
    const doc = await getJSON("/v1/console/series");
    if (!doc) return;
    const pts = doc.points, t = column(pts, (p) => p.t), th = doc.thresholds, slo = doc.slo;
    draw("chart-rps", t, { "requests/s": column(pts, (p) => p.rps) });
    draw("chart-latency", t, { p50: column(pts, (p) => p.p50_ms), p99: column(pts, (p) => p.p99_ms) },
      { ["SLO p95 " + slo.p95_ms + " ms"]: slo.p95_ms, ["p99 alert " + slo.p99_alert_ms + " ms"]: slo.p99_alert_ms });
    draw("chart-fallbacks", t, keyed(pts, "fallbacks"));
    draw("chart-ctr", t, keyed(pts, "ctr"));
    draw("chart-freshness", t, { "lag s": column(pts, (p) => p.freshness_lag_s) },
      { ["max " + th.feature_max_lag_s + " s"]: th.feature_max_lag_s });
    draw("chart-drift", t, keyed(pts, "drift"), { ["PSI alert " + th.psi_alert]: th.psi_alert, ["KL alert " + th.kl_alert]: th.kl_alert });
    status.polls += 1;
    writeStatus();
  }

  function esc(v) { return String(v === null || v === undefined ? "" : v).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }
  function fmt(v) { return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : typeof v === "object" && v !== null ? JSON.stringify(v).replace(/,"/g, ", \"") : v; }
  function kv(obj) {
    if (!obj) return "<p class='muted'>none</p>";
    return "<table>" + Object.entries(obj).map(([k, v]) => "<tr><th>" + esc(k) + "</th><td>" + esc(fmt(v)) + "</td></tr>").join("") + "</table>";
  }
  function experiments(list) {
    if (!list || !list.length) return "<p class='muted'>no running experiment</p>";
    return list.map((e) => {
      if (e.note) return "<p>" + esc(e.experiment) + ": " + esc(e.note) + "</p>";
      const rows = Object.entries(e.arms || {}).map(([arm, a]) => {
        const l = a.lift || {};
        const ci = l.low !== undefined && l.low !== null ? "[" + fmt(l.low) + ", " + fmt(l.high) + "]" : "";
        return "<tr><td>" + esc(arm) + "</td><td>" + esc(a.version) + "</td><td>" + esc(fmt(a.ctr)) + "</td><td>" +
          esc(a.lift ? fmt(l.estimate) : "control") + "</td><td>" + esc(ci) + "</td></tr>";
      }).join("");
      return "<h3>" + esc(e.experiment) + "</h3><table><tr><th>arm</th><th>version</th><th>CTR</th><th>lift</th><th>interval (" +
        esc(fmt(e.interval_level)) + ")</th></tr>" + rows + "</table>";
    }).join("");
  }
  function decisions(list) {
    if (!list || !list.length) return "<p class='muted'>no decision yet</p>";
    return "<table>" + list.slice().reverse().map((d) => "<tr><td>" + esc(d.at || d.time || "") + "</td><td>" +
      esc(d.action || d.decision || "") + "</td><td>" + esc(d.reason || "") + " " + esc(d.challenger ? "challenger " + d.challenger : "") + "</td></tr>").join("") + "</table>";
  }

  async function pollState() {
    const doc = await getJSON("/v1/console/state");
    if (!doc) return;
    document.getElementById("serving").textContent = "serving " + Object.entries(doc.serving || {}).map(([a, v]) => a + " " + v).join(", ");
    document.getElementById("rollout").innerHTML = kv(doc.rollout);
    document.getElementById("decisions").innerHTML = decisions(doc.decisions);
    document.getElementById("experiments").innerHTML = experiments(doc.experiments);
    document.getElementById("lineage").innerHTML = Object.entries(doc.lineage || {}).map(([arm, l]) => "<h3>" + esc(arm) + "</h3>" + kv(l)).join("") || "<p class='muted'>no model</p>";
    const link = document.getElementById("report-link");
    link.hidden = !(doc.links && doc.links.report);
    status.state_polls += 1;
    writeStatus();
  }

  // The report link carries the key as a header: fetch it and open the result.
  document.getElementById("report-link").addEventListener("click", async (e) => {
    e.preventDefault();
    const resp = await fetch("/console/report", { headers: headers() });
    if (resp.ok) window.open(URL.createObjectURL(await resp.blob()), "_blank");
  });

  function loop(fn, ms) {
    const run = () => fn().catch((err) => noteError(err.message || err)).finally(() => setTimeout(run, ms));
    run();
  }
  writeStatus();
  loop(pollSeries, 1000);
  loop(pollState, 5000);
})();
