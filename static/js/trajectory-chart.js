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

  // Plotly reports a date axis's range as "2010-01-01 19:10:02.0478" (UTC, the figure's convention), "2010-01-01",
  // or a number of milliseconds.
  function axisMs(value) {
    if (typeof value === "number") return value;
    const parts = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?/.exec(String(value));
    if (!parts) return NaN;
    return Date.UTC(+parts[1], +parts[2] - 1, +parts[3], +(parts[4] || 0), +(parts[5] || 0), +(parts[6] || 0)) + Math.round(parseFloat(parts[7] || "0") * 1000);
  }

  // The x range a relayout event sets: a drag-zoom names its bounds one by one, a reset (double click, the
  // modebar's reset button) names the whole range; an autorange or a change of something else names none.
  function eventRange(event) {
    if (Array.isArray(event["xaxis.range"])) return event["xaxis.range"];
    if (event["xaxis.range[0]"] !== undefined && event["xaxis.range[1]"] !== undefined) return [event["xaxis.range[0]"], event["xaxis.range[1]"]];
    return null;
  }

  function drawMinuteChart(section, figure) {
    const target = section.querySelector('[data-chart="minutes"]');
    if (!target || !figure) return;
    const meta = figure.layout.meta;
    const url = section.dataset.minutesUrl;
    // The figure first drawn covers the whole window; Plotly keeps (and mutates) what it is given, so a
    // pristine copy is kept to draw again when the zoom is reset, with no request.
    const original = structuredClone(figure);
    const full = [meta.start_minute, meta.end_minute];
    let pending = null;
    let loadedRange = full;

    function loaded(start, end) {
      loadedRange = [start, end];
      section.dataset.loading = "false";
      section.dataset.loadedStart = String(start);
      section.dataset.loadedEnd = String(end);
    }

    Plotly.newPlot(target, figure.data, figure.layout, config()).then(function () {
      section.dataset.ready = "true";
    });

    target.on("plotly_relayout", function (event) {
      const range = eventRange(event);
      let start, end;
      if (event["xaxis.autorange"]) {
        start = full[0];
        end = full[1];
      } else if (range) {
        start = Math.floor((axisMs(range[0]) - meta.origin_ms) / MINUTE_MS);
        end = Math.ceil((axisMs(range[1]) - meta.origin_ms) / MINUTE_MS);
        if (!isFinite(start) || !isFinite(end)) return;
      } else {
        return;
      }
      // Nothing outside the window first drawn can be shown (a rating page's chart is the study's window).
      start = Math.max(full[0], start);
      end = Math.min(full[1], end);
      if (end - start < 10 || (start === loadedRange[0] && end === loadedRange[1])) return;
      if (pending) { pending.abort(); pending = null; }
      if (start === full[0] && end === full[1]) {
        const copy = structuredClone(original);
        Plotly.react(target, copy.data, copy.layout, config()).then(function () { loaded(start, end); });
        return;
      }
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
          return Plotly.react(target, detail.data, detail.layout, config());
        })
        .then(function () { loaded(start, end); })
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

  window.trajectoryChart = { axisMs: axisMs };  // evidence.js reads a brushed range with it

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-trajectory]").forEach(function (section) {
      setupMinuteChart(section);
      setupDailyChart(section);
    });
  });
})();
