// The trajectory chart (templates/cohort/partials/trajectory_chart.html): renders the figures the
// server embedded, and when the user zooms the minute chart, fetches finer data for that range.
(function () {
  "use strict";

  const MINUTE_MS = 60000;

  function readFigure(id) {
    const element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  function config() {
    return { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
  }

  // The figure is embedded in the page, or (rating pages) at its own URL, which the browser caches.
  function loadFigure(section) {
    const url = section.dataset.minuteFigureUrl;
    if (!url) return Promise.resolve(readFigure(section.dataset.minuteFigure || "minute-chart-data"));  // several charts on a page name their data
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  function setupMinuteChart(section) {
    loadFigure(section).then(function (figure) {
      drawMinuteChart(section, figure);
    }).catch(function () {
      section.dataset.loading = "error";
    });
  }

  function drawMinuteChart(section, figure) {
    const target = section.querySelector('[data-chart="minutes"]');
    if (!target || !figure) return;
    const meta = figure.layout.meta;
    const url = section.dataset.minutesUrl;
    let pending = null;
    let loadedRange = [meta.start_minute, meta.end_minute];

    Plotly.newPlot(target, figure.data, figure.layout, config()).then(function () {
      section.dataset.ready = "true";
    });

    target.on("plotly_relayout", function (event) {
      let start, end;
      if (event["xaxis.autorange"]) {
        start = meta.start_minute;
        end = meta.end_minute;
      } else if (event["xaxis.range[0]"] !== undefined) {
        start = Math.floor((new Date(event["xaxis.range[0]"] + "Z").getTime() - meta.origin_ms) / MINUTE_MS);
        end = Math.ceil((new Date(event["xaxis.range[1]"] + "Z").getTime() - meta.origin_ms) / MINUTE_MS);
      } else {
        return;
      }
      start = Math.max(0, start);
      end = Math.min(meta.total_minutes, end);
      if (end - start < 10 || (start === loadedRange[0] && end === loadedRange[1])) return;
      if (pending) pending.abort();
      pending = new AbortController();
      section.dataset.loading = "true";
      // The same panels as the chart drawn (a day card on Find days draws fewer than the default).
      const channels = meta.channels ? "&channels=" + encodeURIComponent(meta.channels.join(",")) : "";
      fetch(url + "?start=" + start + "&end=" + end + channels, { signal: pending.signal, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (detail) {
          loadedRange = [start, end];
          return Plotly.react(target, detail.data, detail.layout, config());
        })
        .then(function () {
          section.dataset.loading = "false";
          section.dataset.loadedStart = String(start);
          section.dataset.loadedEnd = String(end);
        })
        .catch(function (error) {
          if (error.name !== "AbortError") section.dataset.loading = "error";
        });
    });
  }

  function setupDailyChart(section) {
    const target = section.querySelector('[data-chart="daily"]');
    const figure = readFigure("daily-chart-data");
    if (target && figure) Plotly.newPlot(target, figure.data, figure.layout, config());
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-trajectory]").forEach(function (section) {
      setupMinuteChart(section);
      setupDailyChart(section);
    });
  });
})();
