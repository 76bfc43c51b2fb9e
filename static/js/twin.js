// The digital-twin page (templates/modeling/twin.html): follows a queued simulation's progress over
// its websocket or by polling (static/js/job_follow.js), reloads once when it succeeds, and draws each
// featured biomarker's fan chart (the 50 % and 90 % bands and the median of every arm, with the
// participant's recent measurements).
(function () {
  "use strict";

  const COLOURS = ["#57606a", "#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00"];

  function rgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function band(x, low, high, colour, alpha, name, group) {
    return [
      { x: x, y: low, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false, legendgroup: group },
      { x: x, y: high, mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: rgba(colour, alpha), name: name,
        hoverinfo: "skip", showlegend: false, legendgroup: group },
    ];
  }

  function drawFan(target, data, name) {
    const results = data.results;
    const x = results.grid_days.map(function (day) { return results.start_day + day; });
    let traces = [];
    results.arms.forEach(function (arm, index) {
      const colour = COLOURS[index % COLOURS.length];
      const levels = results.bands[arm][name];
      const label = arm === "none" ? "no intervention" : arm.replace(/_/g, " ");
      traces = traces.concat(band(x, levels["0.05"], levels["0.95"], colour, 0.12, label + " 90 %", arm));
      traces = traces.concat(band(x, levels["0.25"], levels["0.75"], colour, 0.25, label + " 50 %", arm));
      traces.push({ x: x, y: levels["0.5"], mode: "lines", line: { color: colour, width: 2 }, name: label, legendgroup: arm });
    });
    const observed = results.history[name] || [];
    if (observed.length) {
      traces.push({ x: observed.map(function (p) { return p[0]; }), y: observed.map(function (p) { return p[1]; }), mode: "markers",
                    marker: { color: "#24292f", size: 5 }, name: "measured" });
    }
    Plotly.react(target, traces, {
      title: { text: results.labels[name] + " (" + results.units[name] + ")", font: { size: 14 } }, height: 280, template: "plotly_white",
      margin: { l: 50, r: 10, t: 35, b: 35 }, xaxis: { title: "day" }, legend: { orientation: "h", y: -0.25 },
      shapes: [{ type: "line", x0: results.start_day, x1: results.start_day, yref: "paper", y0: 0, y1: 1, line: { dash: "dot", color: "#8c959f" } }],
    }, { responsive: true, displaylogo: false });
    target.dataset.drawn = "true";
  }

  function drawResults() {
    const script = document.getElementById("twin-data");
    if (!script) return;
    const data = JSON.parse(script.textContent);
    document.querySelectorAll("[data-fan-chart]").forEach(function (target) { drawFan(target, data, target.dataset.fanChart); });
  }

  function follow(section) {
    if (window.followJob.FINISHED.includes(section.dataset.state)) return;
    const status = section.querySelector("[data-live-status]");
    function show(field, value) { window.followJob.show(section, field, value); }
    let updates = 0;
    window.followJob({
      socketPath: section.dataset.socketPath, statusUrl: section.dataset.statusUrl, state: section.dataset.state,
      onUpdate: function (job, via) {
        if (section.dataset.reloading) return;
        ["state_label", "message", "progress", "error", "queue_place"].forEach(function (field) { if (field in job) show(field, job[field]); });
        if (job.state && job.state !== "queued") show("queue_place", "");
        section.dataset.state = job.state;
        section.dataset.progress = String(job.progress);
        section.dataset.updates = String(++updates);
        section.dataset.via = via;
        if (job.state === "succeeded") {  // reload once, for the stored simulation's charts
          section.dataset.reloading = "true";
          window.location.reload();
        }
      },
      onConnection: function (connection, error) {
        if (connection === "stopped") show("message", "Progress is no longer updating (" + error.message + "); reload the page.");
        if (status) status.textContent = connection === "stopped" ? "" : "· " + connection;
      },
    });
  }

  // Choosing a participant shows their latest simulation at once (the page for ?participant=ID), before any new one.
  function showChosenParticipant(form) {
    const select = form.querySelector("select[name=participant]");
    if (!select) return;
    select.addEventListener("change", function () {
      if (!select.value) return;
      const url = new URL(window.location.href);
      url.search = "?participant=" + encodeURIComponent(select.value);
      window.location.assign(url.toString());
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.querySelector("[data-twin-form]");
    if (form) showChosenParticipant(form);
    const section = document.querySelector("[data-twin-job]");
    if (section) follow(section);
    drawResults();
  });
})();
