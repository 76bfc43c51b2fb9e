// A job's page (templates/modeling/job_detail.html): live progress and metric curves, followed over
// the job's websocket or by polling (static/js/job_follow.js).
(function () {
  "use strict";

  function setup(section) {
    const curveTarget = section.querySelector("[data-curve]");
    const status = section.querySelector("[data-live-status]");
    let job = JSON.parse(document.getElementById("job-data").textContent);
    const finished = window.followJob.FINISHED;

    function show(field, value) { window.followJob.show(section, field, value); }

    function drawCurve(curve) {
      if (!curve || !curve.length) return;
      const names = Object.keys(curve[curve.length - 1]).filter(function (key) { return key !== "step"; });
      const traces = names.map(function (name) {
        const points = curve.filter(function (point) { return point[name] != null; });
        return { x: points.map(function (p) { return p.step; }), y: points.map(function (p) { return p[name]; }), name: name, mode: "lines+markers",
                 yaxis: name.indexOf("loss") === -1 ? "y2" : "y" };
      });
      Plotly.react(curveTarget, traces, { height: 300, margin: { l: 50, r: 50, t: 10, b: 40 }, template: "plotly_white",
        xaxis: { title: "step" }, yaxis: { title: "loss" }, yaxis2: { overlaying: "y", side: "right", title: "metric" },
        legend: { orientation: "h" } }, { responsive: true, displaylogo: false });
    }

    const startedFinished = finished.includes(job.state);

    function render(payload) {
      job = Object.assign(job, payload);
      if (!startedFinished && finished.includes(job.state) && !section.dataset.reloading) {
        // Finished while watched: reload once for the result, checkpoints, log and the Retry button.
        section.dataset.reloading = "true";
        setTimeout(function () { window.location.reload(); }, 800);
      }
      show("state", job.state);
      show("message", job.message);
      show("progress", job.progress);
      show("percent", Math.round(job.progress * 100));
      show("device", job.device || "—");
      show("worker_host", job.worker_host || "—");
      show("attempts", job.attempts);
      show("error", job.error);
      if (payload.log_tail !== undefined) show("log_tail", payload.log_tail);
      if (payload.curve) job.curve = payload.curve;
      else if (payload.point && payload.point.step != null && Object.keys(payload.point).length > 1) job.curve = (job.curve || []).concat([payload.point]);
      drawCurve(job.curve);
      section.dataset.state = job.state;
      section.dataset.progress = String(job.progress);
    }

    window.followJob({
      socketPath: section.dataset.socketPath, statusUrl: section.dataset.statusUrl, state: job.state, onUpdate: render,
      onConnection: function (connection, error) {
        if (!status) return;
        status.textContent = connection === "stopped" ? "· not updating (" + error.message + "); reload the page" : "· " + connection;
      },
    });
    render(job);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const section = document.querySelector("[data-job]");
    if (section) setup(section);
  });
})();
