// A head search's page (templates/modeling/partials/head_search.html): per task, the validation score of
// every trained head by training, one colour per proposer, the best-so-far line and the linear probe.
(function () {
  "use strict";

  function chart(target, search) {
    const trained = [];
    search.entries.forEach(function (entry) {
      if (entry.status === "trained" && entry.score != null) trained.push(entry);
    });
    const proposers = [];
    trained.forEach(function (entry) { if (proposers.indexOf(entry.proposer) === -1) proposers.push(entry.proposer); });
    const traces = proposers.map(function (proposer) {
      const points = [];
      trained.forEach(function (entry, index) { if (entry.proposer === proposer) points.push({ x: index + 1, entry: entry }); });
      return { x: points.map(function (p) { return p.x; }), y: points.map(function (p) { return p.entry.score; }), name: proposer,
               mode: "markers", type: "scatter", marker: { size: 9 },
               text: points.map(function (p) { return JSON.stringify(p.entry.spec.head); }), hovertemplate: "%{y:.3f}<br>%{text}<extra>" + proposer + "</extra>" };
    });
    let best = -Infinity;
    const bestSoFar = trained.map(function (entry) { best = Math.max(best, entry.score); return best; });
    traces.push({ x: trained.map(function (_, index) { return index + 1; }), y: bestSoFar, name: "best so far", mode: "lines",
                  line: { shape: "hv", color: "#222" } });
    if (search.probe && search.probe.validation != null) {
      traces.push({ x: [0.5, trained.length + 0.5], y: [search.probe.validation, search.probe.validation], name: "linear probe", mode: "lines",
                    line: { dash: "dash", color: "#888" } });
    }
    Plotly.newPlot(target, traces, { height: 300, margin: { l: 50, r: 20, t: 10, b: 40 }, template: "plotly_white",
      xaxis: { title: { text: "training" }, dtick: 1 }, yaxis: { title: { text: search.validation_metric + " (validation)" } }, legend: { orientation: "h" } },
      { responsive: true, displaylogo: false });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const data = document.getElementById("head-search-data");
    if (!data) return;
    const searches = JSON.parse(data.textContent);
    document.querySelectorAll("[data-head-chart]").forEach(function (target) {
      chart(target, searches[Number(target.dataset.headChart)]);
    });
  });
})();
