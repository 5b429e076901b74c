/* The operator's page: refresh the counters and draw the charts from stats.json
   (uPlot, vendored), every few seconds; check the upload size before sending. */
(() => {
  "use strict";

  const main = document.querySelector("[data-stats-url]");
  if (!main) return;
  const statsUrl = main.dataset.statsUrl;
  const every = Number(main.dataset.refreshSeconds || 5) * 1000;
  const status = document.getElementById("stats-status");
  const MB = 1024 * 1024;
  const HEIGHT = 170;

  // Each chart: which fields of a point it draws, how, and in what unit.
  const CHARTS = {
    hit_rate: { unit: "%", range: [0, 100], series: [
      { label: "hit rate", key: "hit_rate", scale: 100, stroke: "#0f766e", fill: "rgba(15,118,110,.08)" },
    ] },
    latency: { unit: "ms", log: true, series: [
      { label: "p50", key: "p50_ms", stroke: "#2563eb" },
      { label: "p95", key: "p95_ms", stroke: "#ea580c" },
    ] },
    redis: { unit: "MB", series: [
      { label: "used memory", key: "redis_used_memory", scale: 1 / MB, stroke: "#7c3aed", fill: "rgba(124,58,237,.08)" },
    ] },
    traffic: { unit: "", series: [
      { label: "requests", key: "requests", stroke: "#475467" },
      { label: "S3 GETs", key: "s3_gets", stroke: "#dc2626" },
    ] },
  };
  const plots = new Map();

  const number = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : String(Number(v.toPrecision(3))));
  function withUnit(v, unit) {
    if (v == null) return "–";
    if (unit === "ms" && v >= 1000) return number(v / 1000) + " s";
    return number(v) + (unit ? " " + unit : "");
  }

  // Draw a dot for a value with gaps on both sides: a line needs two points.
  function isolated(u, seriesIdx, show) {
    if (show) return null;
    const ys = u.data[seriesIdx];
    const idxs = [];
    for (let i = 0; i < ys.length; i++) {
      if (ys[i] != null && ys[i - 1] == null && ys[i + 1] == null) idxs.push(i);
    }
    return idxs;
  }

  function columns(points, chart) {
    const xs = points.map((p) => p.t);
    const ys = chart.series.map((s) =>
      points.map((p) => (p[s.key] == null ? null : p[s.key] * (s.scale || 1))));
    return [xs, ...ys];
  }

  // Latency spans 0.5 ms hits to second-long misses: a log scale keeps both readable.
  function yScale(chart) {
    if (chart.range) return { range: chart.range };
    if (chart.log) {
      return { distr: 3, log: 10, range: (u, lo, hi) => [0.1, Math.max(10, 10 ** Math.ceil(Math.log10(hi || 1) - 1e-9))] };
    }
    return { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.15 : 1] };
  }

  // Ticks and grid lines of the log axis: one per decade.
  function decades(u, axisIdx, min, max) {
    const splits = [];
    for (let e = Math.round(Math.log10(min)); 10 ** e <= max * 1.001; e++) splits.push(10 ** e);
    return splits;
  }

  function timeLabels(u, splits) {
    const span = u.scales.x.max - u.scales.x.min;
    const format = span > 86400
      ? { weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
      : { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    return splits.map((t) => new Date(t * 1000).toLocaleTimeString([], format));
  }

  function build(el, chart, data) {
    const opts = {
      width: el.clientWidth,
      height: HEIGHT,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { y: yScale(chart) },
      axes: [
        { space: 60, values: timeLabels },
        {
          size: 70,
          space: chart.log ? 16 : 30,
          splits: chart.log ? decades : undefined,
          values: (u, splits) => splits.map((v) => (v == null ? "" : withUnit(v, chart.unit))),
        },
      ],
      series: [{}, ...chart.series.map((s) => ({
        label: s.label, stroke: s.stroke, fill: s.fill, width: 2,
        points: { size: 6, fill: s.stroke, filter: isolated },
      }))],
    };
    return new uPlot(opts, data, el);
  }

  function showCounters(body) {
    for (const [key, text] of Object.entries(body.text)) {
      const el = document.getElementById(key);
      if (!el) continue;
      el.textContent = text;
      el.dataset.value = body.last_hour[key] ?? "";
    }
  }

  function showCharts(points) {
    for (const el of main.querySelectorAll("[data-chart]")) {
      const chart = CHARTS[el.dataset.chart];
      const data = columns(points, chart);
      if (plots.has(el)) plots.get(el).setData(data);
      else plots.set(el, build(el, chart, data));
    }
  }

  async function refresh() {
    try {
      const response = await fetch(statsUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || response.statusText);
      showCounters(body);
      showCharts(body.points);
      status.classList.remove("error");
      status.textContent = "Updated " + new Date().toLocaleTimeString() + " · every " + every / 1000 + " s";
    } catch (err) {
      status.classList.add("error");
      status.textContent = "Stats unavailable: " + err.message;
    }
  }

  refresh();
  setInterval(() => document.hidden || refresh(), every);
  new ResizeObserver(() => {
    for (const [el, plot] of plots) plot.setSize({ width: el.clientWidth, height: HEIGHT });
  }).observe(main);

  // Refuse an oversized file here, with a message, instead of a bare 413 from the server.
  const form = document.querySelector("form[data-max-bytes]");
  form?.addEventListener("submit", (event) => {
    const file = form.elements.file.files[0];
    const limit = Number(form.dataset.maxBytes);
    if (file && file.size > limit) {
      event.preventDefault();
      let note = form.parentElement.querySelector(".message.error");
      if (!note) {
        note = Object.assign(document.createElement("p"), { className: "message error" });
        note.setAttribute("role", "alert");
        form.before(note);
      }
      note.textContent = `The file is larger than the limit of ${(limit / MB).toFixed(0)} MB.`;
    }
  });

  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(button.dataset.copy);
      button.textContent = "Copied";
    });
  }
})();
