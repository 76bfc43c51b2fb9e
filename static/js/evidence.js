// Evidence windows on the rating page (templates/evaluation/partials/evidence_form.html): a clinician marks where in
// the chart they saw what they rate, by brushing the minute chart or by typing "day 3 22:00", ties each window to a
// dimension, and the windows go with the rating as JSON (evaluation.evidence checks them on submit).
(function () {
  "use strict";

  const MINUTES_PER_DAY = 1440;
  const MINUTE_MS = 60000;

  // "day 3 22:00", "3 22:00", "Day 3, Mon 22:00" (as the axis prints it) -> minutes of the participant's data.
  function parseTime(text) {
    const parts = /^\s*(?:day\s*)?(\d+)\s*,?\s*(?:[a-z]{3}\s+)?(\d{1,2}):(\d{2})\s*$/i.exec(text || "");
    if (!parts) return null;
    const day = Number(parts[1]), hour = Number(parts[2]), minute = Number(parts[3]);
    if (day < 1 || hour > 24 || minute > 59 || (hour === 24 && minute > 0)) return null;
    return (day - 1) * MINUTES_PER_DAY + hour * 60 + minute;
  }

  function formatTime(minutes) {
    const day = Math.floor(minutes / MINUTES_PER_DAY) + 1;
    const within = minutes - (day - 1) * MINUTES_PER_DAY;
    const pad = function (n) { return String(n).padStart(2, "0"); };
    return "day " + day + " " + pad(Math.floor(within / 60)) + ":" + pad(within % 60);
  }

  function setup(fieldset) {
    const form = fieldset.closest("form");
    const field = fieldset.querySelector("[data-evidence-field]");
    const list = fieldset.querySelector("[data-evidence-list]");
    const from = fieldset.querySelector("[data-evidence-from]");
    const to = fieldset.querySelector("[data-evidence-to]");
    const dimension = fieldset.querySelector("[data-evidence-dimension]");
    const note = fieldset.querySelector("[data-evidence-note]");
    const error = fieldset.querySelector("[data-evidence-error]");
    const brush = fieldset.querySelector("[data-evidence-brush]");
    const first = Number(fieldset.dataset.windowStart), last = Number(fieldset.dataset.windowEnd);
    const labels = {};
    Array.from(dimension.options).forEach(function (option) { labels[option.value] = option.textContent; });

    function windows() {
      try { const value = JSON.parse(field.value || "[]"); return Array.isArray(value) ? value : []; } catch (e) { return []; }
    }

    function say(message) { error.textContent = message; error.hidden = !message; }

    function render() {
      list.replaceChildren();
      windows().forEach(function (window, index) {
        const item = document.createElement("li");
        item.dataset.evidenceWindow = String(index);
        const text = document.createElement("span");
        text.textContent = (labels[window.dimension] || window.dimension) + ": " + formatTime(window.start) + " – " +
          formatTime(window.end) + (window.note ? " · " + window.note : "");
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "button-link";
        remove.textContent = "Remove";
        remove.setAttribute("aria-label", "Remove the window " + text.textContent);
        remove.addEventListener("click", function () {
          const kept = windows();
          kept.splice(index, 1);
          store(kept);
          from.focus();
        });
        item.append(text, " ", remove);
        list.append(item);
      });
    }

    function store(kept) {
      field.value = JSON.stringify(kept);
      render();
      form.dispatchEvent(new Event("change", { bubbles: true }));  // the draft autosave (rating.js) keeps it
    }

    function add() {
      const start = parseTime(from.value), end = parseTime(to.value);
      if (start === null || end === null) { say("Type the start and end as the chart shows them, e.g. day 3 22:00."); (start === null ? from : to).focus(); return; }
      if (end <= start) { say("The window must end after it starts."); to.focus(); return; }
      if (start < first || end > last) { say("The window must lie within the days the chart shows (" + formatTime(first) + " – " + formatTime(last) + ")."); from.focus(); return; }
      if (note.value.length > 500) { say("The note is longer than 500 characters."); note.focus(); return; }
      say("");
      const kept = windows();
      kept.push({ dimension: dimension.value, start: start, end: end, note: note.value.trim() });
      store(kept);
      from.value = ""; to.value = ""; note.value = "";
      from.focus();
    }

    fieldset.querySelector("[data-evidence-add]").addEventListener("click", add);
    [from, to, note].forEach(function (input) {
      input.addEventListener("keydown", function (event) {
        if (event.key === "Enter") { event.preventDefault(); event.stopPropagation(); add(); }
      });
    });
    // Typing in these boxes is not the rating: only the hidden field is the evidence the draft keeps.
    [from, to, note, dimension].forEach(function (input) {
      input.addEventListener("change", function (event) { event.stopPropagation(); });
      input.addEventListener("input", function (event) { event.stopPropagation(); });
    });

    // Brushing: the chart's drag selects a time span instead of zooming while "Mark on the chart" is pressed.
    const chart = document.querySelector('[data-trajectory] [data-chart="minutes"]');
    function setBrushing(on) {
      brush.setAttribute("aria-pressed", String(on));
      if (!chart || !chart.layout) return;
      Plotly.relayout(chart, on ? { dragmode: "select", selectdirection: "h" } : { dragmode: "zoom" });
    }
    brush.addEventListener("click", function () {
      if (!chart || !chart.layout) { say("The chart is still loading: type the window instead."); return; }
      setBrushing(brush.getAttribute("aria-pressed") !== "true");
    });
    let listening = null;
    function listen() {
      if (!chart || !chart.on || listening === chart) return;
      listening = chart;
      chart.on("plotly_selected", function (event) {
        // The panels share the time axis but each has its own (x, x2, x3...): the range is under the one dragged on.
        const axis = event && event.range ? Object.keys(event.range).find(function (key) { return /^x\d*$/.test(key); }) : null;
        if (!axis) return;
        const origin = chart.layout.meta.origin_ms;
        const ms = event.range[axis].map(window.trajectoryChart.axisMs);
        if (!isFinite(ms[0]) || !isFinite(ms[1])) return;
        const start = Math.max(first, Math.floor((ms[0] - origin) / MINUTE_MS));
        const end = Math.min(last, Math.ceil((ms[1] - origin) / MINUTE_MS));
        if (!(end > start)) return;
        from.value = formatTime(start);
        to.value = formatTime(end);
        Plotly.restyle(chart, { selectedpoints: [null] });
        setBrushing(false);
        dimension.focus();
      });
    }
    if (chart) {
      new MutationObserver(listen).observe(chart, { childList: true });
      listen();
    }

    document.addEventListener("evidence:restored", render);
    render();
    fieldset.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-evidence]").forEach(setup);
  });
  window.evidenceTime = { parse: parseTime, format: formatTime };
})();
