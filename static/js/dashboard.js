// The study dashboard (templates/evaluation/dashboard.html): draws its figures, and when a rating
// commits (a websocket message) swaps in a fresh body with htmx. If the socket drops it reconnects,
// and meanwhile refreshes every 30 seconds.
(function () {
  "use strict";

  function drawFigures(root) {
    root.querySelectorAll("[data-figure]").forEach(function (target) {
      const data = document.getElementById(target.dataset.figure);
      if (!data) return;
      const figure = JSON.parse(data.textContent);
      Plotly.react(target, figure.data, figure.layout, { responsive: true, displaylogo: false });
    });
  }

  function setup(container) {
    const status = document.querySelector("[data-live-status]");
    let refreshing = false;
    let again = false;
    let fallback = null;

    function refresh() {
      if (refreshing) { again = true; return; }
      refreshing = true;
      htmx.ajax("GET", container.dataset.partialUrl, { target: container, swap: "innerHTML" }).then(function () {
        drawFigures(container);
        container.dataset.refreshed = String(Number(container.dataset.refreshed || 0) + 1);
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
    }

    function connect(delay) {
      const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      const socket = new WebSocket(scheme + window.location.host + container.dataset.socketPath);
      socket.onopen = function () {
        if (status) status.textContent = "Live: updates as ratings arrive";
        container.dataset.live = "true";
        clearInterval(fallback);
        fallback = null;
      };
      socket.onmessage = refresh;
      socket.onclose = function () {
        container.dataset.live = "false";
        if (status) status.textContent = "Reconnecting… (refreshing every 30 s meanwhile)";
        if (!fallback) fallback = setInterval(refresh, 30000);
        setTimeout(function () { connect(Math.min(delay * 2, 30000)); }, delay);
      };
    }

    drawFigures(container);
    connect(1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const container = document.querySelector("[data-dashboard]");
    if (container) setup(container);
  });
})();
