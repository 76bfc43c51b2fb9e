// Draws every [data-figure] of a page from the JSON script element it names (plotly.js, bundled).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-figure]").forEach(function (target) {
      const data = document.getElementById(target.dataset.figure);
      if (!data) return;
      const figure = JSON.parse(data.textContent);
      Plotly.react(target, figure.data, figure.layout, { responsive: true, displaylogo: false });
      target.dataset.drawn = "true";
    });
  });
})();
