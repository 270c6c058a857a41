// gocolytics dashboard. Every string from the database is shown with
// textContent or as an option's text, never as HTML: event data comes from
// game clients, which anyone can imitate.
"use strict";

(function () {
  const KEY = "gocolytics.adminKey";
  const APP = "gocolytics.application";
  const REFRESH_MS = 10000;
  const COLORS = ["#2563eb", "#db2777", "#16a34a", "#ea580c", "#7c3aed", "#0891b2", "#ca8a04", "#dc2626", "#4b5563", "#65a30d"];
  const $ = (id) => document.getElementById(id);
  const charts = {};
  let timer = null;
  let busy = false;
  // The page runs this script before the chart library, so that its first
  // requests go out while the library loads; charts wait for it (all
  // deferred scripts have run at DOMContentLoaded).
  const chartsReady = new Promise((resolve) => {
    if (typeof uPlot !== "undefined" || document.readyState === "complete") resolve();
    else document.addEventListener("DOMContentLoaded", resolve, { once: true });
  });

  // The key arrives in the fragment (#key=...), which browsers never send
  // to a server; it moves to local storage and leaves the address bar.
  function takeKeyFromFragment() {
    const m = /(?:^#|&)key=([^&]*)/.exec(location.hash);
    if (m) {
      try { localStorage.setItem(KEY, decodeURIComponent(m[1])); } catch (e) { /* storage off: no key kept */ }
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  function key() {
    try { return localStorage.getItem(KEY) || ""; } catch (e) { return ""; }
  }

  function status(text, isError) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("error", !!isError);
  }

  function needKey(message) {
    $("need-key").hidden = false;
    $("pickers").hidden = true;
    $("data").hidden = true;
    status(message || "", !!message);
    stopTimer();
  }

  class Unauthorized extends Error {}

  async function api(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== "" && v !== undefined && v !== null) q.set(k, v);
    }
    const url = path + (q.toString() ? "?" + q.toString() : "");
    const r = await fetch(url, { headers: { "Authorization": "Bearer " + key() }, cache: "no-store", referrerPolicy: "no-referrer" });
    if (r.status === 401) throw new Unauthorized("the admin key was refused");
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      let detail = body && body.detail;
      if (Array.isArray(detail)) detail = detail.map((d) => (d.loc || []).join(".") + ": " + d.msg).join("; ");
      throw new Error(r.status + " " + (detail || r.statusText));
    }
    return body;
  }

  // Days are YYYY-MM-DD; the server counts them in UTC unless LOCAL_TIME,
  // and its "today" may not be the browser's: the 7/30/90-day pickers send
  // days=N and let the server place the range, custom ranges send dates.
  function isoDay(d) { return d.toISOString().slice(0, 10); }
  function addDays(day, n) { const d = new Date(day + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + n); return isoDay(d); }
  function dayToTs(day) { return Date.parse(day + "T00:00:00Z") / 1000; }

  function range() {
    const r = $("range").value;
    if (r === "custom") return { since: $("since").value, until: $("until").value };
    return { days: r };
  }

  function filters() {
    return Object.assign({ application: $("application").value, version: $("version").value, platform: $("platform").value }, range());
  }

  // The application last shown, so that a new load can ask for its
  // figures at once, beside the list of applications.
  function lastApplication() {
    try { return localStorage.getItem(APP) || ""; } catch (e) { return ""; }
  }

  function setOptions(select, names, allLabel) {
    const keep = select.value;
    select.replaceChildren();
    if (allLabel !== undefined) select.add(new Option(allLabel, ""));
    for (const n of names) select.add(new Option(n, n));
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  }

  function clear(el) { el.replaceChildren(); }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function fmtSeconds(s) {
    if (s < 60) return String(Math.round(s * 10) / 10) + " s";
    if (s < 3600) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  // clearChart removes the chart drawn in the element id, if any.
  function clearChart(id) {
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
    clear($(id));
  }

  function chart(id, title, xs, series, opts) {
    const el = $(id);
    clearChart(id);
    if (typeof uPlot === "undefined") { el.textContent = "Chart library not loaded."; return; }
    const width = Math.max(280, el.clientWidth || 600);
    const o = {
      width: width, height: 240,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: { x: { time: true } },
      // Days only on the x axis: ticks a whole number of days apart.
      axes: [{ space: 60, incrs: [86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400],
        values: (u, vals) => vals.map((v) => isoDay(new Date(v * 1000)).slice(5)) }, { size: 50 }],
      series: [{ label: "Day", value: (u, v) => v == null ? "–" : isoDay(new Date(v * 1000)) }].concat(series.map((s, i) => ({
        label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2,
        fill: s.fill ? (s.color || COLORS[i % COLORS.length]) + "55" : undefined,
        value: s.value,
      }))),
    };
    Object.assign(o, opts || {});
    charts[id] = new uPlot(o, [xs].concat(series.map((s) => s.values)), el);
  }

  function bars(el, rows) {
    clear(el);
    const max = Math.max(1, ...rows.map((r) => r.count));
    for (const r of rows) {
      const row = document.createElement("div");
      row.className = "row";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = r.name;
      name.title = r.name;
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = (100 * r.count / max).toFixed(1) + "%";
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = r.label || String(r.count);
      row.append(name, bar, count);
      el.appendChild(row);
    }
    if (!rows.length) el.textContent = "No events in this range.";
  }

  function renderTiles(s) {
    $("tile-dau").textContent = s.dau;
    $("tile-wau").textContent = s.wau;
    $("tile-mau").textContent = s.mau;
    $("tile-new").textContent = s.new_users;
    $("tile-sessions").textContent = s.sessions;
    $("tile-median").textContent = s.sessions ? fmtSeconds(s.median_session_seconds) : "–";
  }

  function renderRetention(rows) {
    const body = $("retention").tBodies[0];
    clear(body);
    for (const r of rows.slice().reverse()) {
      const tr = document.createElement("tr");
      tr.dataset.cohort = r.cohort;
      cell(tr, r.cohort);
      cell(tr, String(r.users), "num");
      for (const k of ["d1", "d7", "d30"]) {
        const v = r[k];
        const td = cell(tr, v === null ? "–" : (r.users ? v + " (" + Math.round(100 * v / r.users) + "%)" : String(v)), "cell");
        td.dataset.col = k;
        if (v !== null && r.users) td.style.backgroundColor = "rgba(37, 99, 235, " + (0.08 + 0.6 * v / r.users).toFixed(2) + ")";
      }
      body.appendChild(tr);
    }
  }

  function renderRecent(events) {
    const body = $("recent").tBodies[0];
    clear(body);
    for (const e of events) {
      const tr = document.createElement("tr");
      cell(tr, e.time.slice(0, 19));
      cell(tr, e.event_type);
      cell(tr, e.user_id);
      cell(tr, e.version);
      cell(tr, e.platform);
      const v = JSON.stringify(e.value);
      cell(tr, v, "value").title = v;
      body.appendChild(tr);
    }
  }

  function renderStats(st, types, versions) {
    renderTiles(st.summary);
    const xs = st.days.map((d) => dayToTs(d.day));
    chart("chart-users", "Users", xs, [
      { label: "Users", values: st.days.map((d) => d.users) },
      { label: "New users", values: st.days.map((d) => d.new_users) },
    ]);
    chart("chart-types", "Events", xs, types.series.map((s, i) => ({ label: s.name, values: s.values, color: COLORS[i % COLORS.length] })));
    // Stacked: each line is the sum of its version and those below it;
    // the tooltip shows the version's own users.
    const stacked = [];
    let acc = versions.days.map(() => 0);
    versions.series.forEach((s, i) => {
      acc = acc.map((a, j) => a + s.values[j]);
      stacked.push({ label: s.name, values: acc.slice(), own: s.values, color: COLORS[i % COLORS.length], fill: true });
    });
    stacked.reverse();
    for (const s of stacked) { const own = s.own; s.value = (u, v, si, idx) => idx == null ? "–" : String(own[idx]); }
    chart("chart-versions", "Versions", xs, stacked);
    bars($("platforms"), st.platforms.map((p) => ({ name: p.platform, count: p.users, label: p.users + " users" })));
    renderRetention(st.retention);
    const names = st.event_types.map((t) => t.event_type);
    document.querySelectorAll("#funnel-steps select").forEach((sel, i) => {
      const fresh = !sel.value;
      setOptions(sel, names);
      if (fresh && i < names.length) sel.selectedIndex = i;
    });
    setOptions($("value-type"), names);
    if (!$("version").value) setOptions($("version"), st.versions.map((v) => v.version), "All");
    if (!$("platform").value) setOptions($("platform"), st.platforms.map((p) => p.platform), "All");
  }

  // The figures come again every 10 s, or less often when they take long to
  // compute: never more than a tenth of the time (STATS_SHARE), so a page
  // left open cannot slow the server's ingest down. The latest events, one
  // cheap query, come every 10 s.
  const STATS_SHARE = 10;
  let statsDue = 0;

  // A picker changed while the figures are being fetched: fetch them again
  // once that is done (the answer on its way is for the old choice).
  let again = false;

  async function refresh(tailOnly) {
    if (!key()) return;
    if (busy) { if (!tailOnly) again = true; return; }
    busy = true;
    try {
      const f = filters();
      if (!f.application) { status("No events yet: nothing to show."); $("data").hidden = true; return; }
      const recent = api("/v1.0/stats/recent", { application: f.application, limit: 50 });
      if (!tailOnly || Date.now() >= statsDue) {
        // One pass over the events answers the figures and the series.
        const started = Date.now();
        const st = await api("/v1.0/stats", Object.assign({ series: "event_type,version" }, f));
        statsDue = Date.now() + Math.max(REFRESH_MS, STATS_SHARE * (Date.now() - started)) - 500;
        await chartsReady;
        $("data").hidden = false;
        renderStats(st, st.series[0], st.series[1]);
        const days = st.days.length ? st.days[0].day + " to " + st.days[st.days.length - 1].day : "";
        status(f.application + ", " + days + " · updated " + new Date().toLocaleTimeString());
        try { localStorage.setItem(APP, f.application); } catch (e) { /* storage off */ }
      }
      renderRecent(await recent);
      document.body.dataset.loaded = "true";
    } catch (e) {
      if (e instanceof Unauthorized) needKey("The admin key was refused; paste a valid one.");
      else status("Could not load the statistics: " + e.message, true);
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  async function showFunnel(ev) {
    ev.preventDefault();
    const steps = [...document.querySelectorAll("#funnel-steps select")].map((s) => s.value).filter((v) => v);
    try {
      const res = await api("/v1.0/stats/funnel", Object.assign({ steps: steps.join(",") }, filters()));
      const first = res.length ? res[0].users : 0;
      bars($("funnel"), res.map((r, i) => ({ name: (i + 1) + ". " + r.step, count: r.users,
        label: r.users + (first ? " (" + Math.round(100 * r.users / first) + "%)" : "") })));
    } catch (e) {
      $("funnel").textContent = e.message;
    }
  }

  function addFunnelStep() {
    const box = $("funnel-steps");
    if (box.children.length >= 8) return;
    const sel = document.createElement("select");
    sel.setAttribute("aria-label", "step " + (box.children.length + 1));
    setOptions(sel, [...$("value-type").options].map((o) => o.value));
    if (sel.options.length > box.children.length) sel.selectedIndex = box.children.length;
    box.appendChild(sel);
  }

  async function showValue(ev) {
    ev.preventDefault();
    const note = $("value-note");
    try {
      const days = await api("/v1.0/stats/value", Object.assign({}, filters(), { event_type: $("value-type").value, field: $("value-field").value.trim() }));
      await chartsReady;
      const skipped = days.reduce((a, d) => a + d.skipped, 0);
      const count = days.reduce((a, d) => a + d.count, 0);
      note.textContent = count + " numbers" + (skipped ? ", " + skipped + " events without a number skipped" : "");
      chart("chart-value", "Value", days.map((d) => dayToTs(d.day)), ["avg", "p50", "p95", "min", "max"].map((k) => ({ label: k, values: days.map((d) => d[k]) })),
        { scales: { x: { time: true }, y: { auto: true } } });
    } catch (e) {
      note.textContent = e.message;
    }
  }

  // The funnel and the value chart come when asked for; when the pickers
  // change they would show another range or filter than the rest of the
  // page, so they go until asked for again (their steps and field stay).
  function clearAsked() {
    clear($("funnel"));
    $("value-note").textContent = "";
    clearChart("chart-value");
  }

  function stopTimer() { if (timer) { clearInterval(timer); timer = null; } }
  function startTimer() {
    stopTimer();
    if ($("live").checked) timer = setInterval(() => { if (document.visibilityState === "visible") refresh(true); }, REFRESH_MS);
  }

  // URL parameters preset the pickers: ?application=A&since=...&until=...
  function presetFromURL() {
    const q = new URLSearchParams(location.search);
    if (q.get("since") || q.get("until")) {
      $("range").value = "custom";
      $("since").value = q.get("since") || "";
      $("until").value = q.get("until") || "";
    } else if (q.get("days")) {
      $("range").value = q.get("days");
    }
    for (const k of ["version", "platform"]) {
      if (q.get(k)) setOptions($(k), [q.get(k)], "All"), $(k).value = q.get(k);
    }
    if (q.get("live") === "0") $("live").checked = false;
    return q.get("application") || "";
  }

  // The first figures do not wait for the list of applications: when the
  // address or the last visit names an application, they are asked for
  // beside it, and asked for again only if the list has no such
  // application.
  async function start() {
    $("need-key").hidden = true;
    $("pickers").hidden = false;
    const wanted = presetFromURL() || lastApplication();
    document.querySelectorAll(".custom").forEach((el) => { el.hidden = $("range").value !== "custom"; });
    if (!$("funnel-steps").children.length) { addFunnelStep(); addFunnelStep(); }
    let early = null;
    if (wanted) {
      setOptions($("application"), [wanted]);
      early = refresh();
    }
    try {
      const apps = await api("/v1.0/stats/applications");
      setOptions($("application"), apps.map((a) => a.application));
      if (wanted && apps.some((a) => a.application === wanted)) $("application").value = wanted;
      if (!$("since").value && apps.length) {
        const a = apps.find((x) => x.application === $("application").value) || apps[0];
        $("until").value = a.last_day;
        $("since").value = addDays(a.last_day, -29);
      }
    } catch (e) {
      if (early) await early;
      if (e instanceof Unauthorized) { needKey("The admin key was refused; paste a valid one."); return; }
      status("Could not load the applications: " + e.message, true);
      return;
    }
    if (early) await early;
    if ($("application").value !== wanted || !early) await refresh();
    startTimer();
  }

  function init() {
    takeKeyFromFragment();
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const k = $("key-input").value.trim();
      if (!k) return;
      try { localStorage.setItem(KEY, k); } catch (e) { /* storage off */ }
      $("key-input").value = "";
      start();
    });
    $("forget").addEventListener("click", () => { try { localStorage.removeItem(KEY); } catch (e) { /* storage off */ } needKey(""); });
    $("range").addEventListener("change", () => {
      document.querySelectorAll(".custom").forEach((el) => { el.hidden = $("range").value !== "custom"; });
      clearAsked();
      refresh();
    });
    for (const id of ["application", "since", "until", "version", "platform"]) $(id).addEventListener("change", () => { clearAsked(); refresh(); });
    $("live").addEventListener("change", startTimer);
    $("funnel-form").addEventListener("submit", showFunnel);
    $("funnel-add").addEventListener("click", addFunnelStep);
    $("value-form").addEventListener("submit", showValue);
    window.addEventListener("resize", () => {
      for (const [id, c] of Object.entries(charts)) c.setSize({ width: Math.max(280, $(id).clientWidth), height: 240 });
    });
    if (!key()) { needKey(""); return; }
    start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
