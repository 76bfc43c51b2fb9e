// A job's page (templates/modeling/job_detail.html): live progress, every reported metric as curves,
// the actions its state allows (Cancel after a confirmation, Retry), followed over the job's
// websocket or by polling (static/js/job_follow.js).
(function () {
  "use strict";

  // Metric names in words ("val_auroc" -> "Validation AUROC"), as the server writes them (payload.metric_labels).
  const labels = {};

  function metricLabel(name) {
    return labels[name] || name;
  }

  function isLoss(name) { return name.indexOf("loss") !== -1; }

  // Every numeric metric any point reported (a validation metric is reported only every few steps),
  // in the order they first appear.
  function metricNames(curve) {
    const names = [];
    curve.forEach(function (point) {
      Object.keys(point).forEach(function (key) {
        if (key !== "step" && typeof point[key] === "number" && names.indexOf(key) === -1) names.push(key);
      });
    });
    return names;
  }

  function drawCurve(target, curve) {
    if (!target || !curve || !curve.length) return;
    const names = metricNames(curve);
    if (!names.length) return;
    const losses = names.filter(isLoss);
    const twoAxes = losses.length > 0 && losses.length < names.length;
    const traces = names.map(function (name) {
      const points = curve.filter(function (point) { return typeof point[name] === "number"; });
      return { x: points.map(function (p) { return p.step; }), y: points.map(function (p) { return p[name]; }), name: metricLabel(name),
               mode: "lines+markers", marker: { size: 4 }, yaxis: twoAxes && !isLoss(name) ? "y2" : "y" };
    });
    const layout = {
      height: 320, margin: { l: 60, r: twoAxes ? 60 : 20, t: 10, b: 50 }, showlegend: true,
      legend: { orientation: "h", y: -0.3 },
      xaxis: { title: { text: "Step" } },
      yaxis: { title: { text: losses.length ? "Loss" : "Metric value" } },
    };
    if (twoAxes) layout.yaxis2 = { overlaying: "y", side: "right", title: { text: "Metric value" } };
    Plotly.react(target, traces, layout, { responsive: true, displaylogo: false });
  }

  function setup(section) {
    const curveTarget = section.querySelector("[data-curve]");
    const status = section.querySelector("[data-live-status]");
    const actions = document.querySelector("[data-job-actions]");
    const cancelForm = actions && actions.querySelector("[data-cancel-form]");
    const cancelling = actions && actions.querySelector("[data-cancelling]");
    const retryForm = actions && actions.querySelector("[data-retry-form]");
    let job = JSON.parse(document.getElementById("job-data").textContent);
    Object.assign(labels, job.metric_labels || {});
    const finished = window.followJob.FINISHED;

    function show(field, value) { window.followJob.show(section, field, value); }

    // Only the actions the job's current state allows: no Cancel once it ended (or while it stops), Retry when it applies.
    function showActions() {
      const ended = finished.includes(job.state);
      if (cancelForm) cancelForm.hidden = ended || job.cancel_requested;
      if (cancelling) cancelling.hidden = ended || !job.cancel_requested;
      if (retryForm) retryForm.hidden = !job.retryable;
    }

    if (cancelForm) {
      cancelForm.addEventListener("submit", function (event) {
        const question = job.state === "running"
          ? "Cancel job #" + job.id + "? It is running: it stops at its next progress report, and what it has not saved is lost."
          : "Cancel job #" + job.id + " before it starts?";
        if (!window.confirm(question)) event.preventDefault();
      });
    }

    const startedFinished = finished.includes(job.state);

    function render(payload) {
      Object.assign(labels, payload.metric_labels || {});
      job = Object.assign(job, payload);
      if (!startedFinished && finished.includes(job.state) && !section.dataset.reloading) {
        // Finished while watched: reload once for the result, failures, checkpoints and log.
        section.dataset.reloading = "true";
        setTimeout(function () { window.location.reload(); }, 800);
      }
      show("state", job.state_label || job.state);
      const stateElement = section.querySelector('[data-field="state"]');
      if (stateElement) stateElement.className = "state state-" + job.state;
      show("message", job.message);
      if (payload.queue_place !== undefined) show("queue_place", payload.queue_place);
      else if (job.state !== "queued") show("queue_place", "");
      show("progress", job.progress);
      show("percent", Math.round(job.progress * 100));
      show("device", job.device || "—");
      show("worker_host", job.worker_host || "—");
      show("attempts", job.attempts);
      show("error", job.error);
      if (payload.log_tail !== undefined) show("log_tail", payload.log_tail);
      if (payload.curve) job.curve = payload.curve;
      else if (payload.point && payload.point.step != null && Object.keys(payload.point).length > 1) job.curve = (job.curve || []).concat([payload.point]);
      if (curveTarget) drawCurve(curveTarget, job.curve);
      showActions();
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
