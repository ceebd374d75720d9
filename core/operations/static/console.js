// The operator console's script (every page): the account picker, and the traffic charts:
// stacked bars per 10 minutes over the last 24 hours, drawn on <canvas> from the JSON the page
// carries (#traffic-data). Hand-written, no library; no inline handlers (the pages' CSP).
(function () {
  "use strict";
  var picker = document.getElementById("account");
  if (picker) {
    picker.addEventListener("change", function () { picker.form.submit(); });
  }
  var COLORS = ["#07c160", "#3b82f6", "#f59e0b", "#ef4444", "#8b5cf6", "#14b8a6", "#ec4899", "#6b7280"];
  var STEP = 10; // minutes per bar
  var source = document.getElementById("traffic-data");
  if (!source) { return; }
  var data = JSON.parse(source.textContent);
  var namesSource = document.getElementById("label-names");
  var names = namesSource ? JSON.parse(namesSource.textContent) : {};

  function buckets(rows, labels) {
    var width = 0;
    labels.forEach(function (l) { width = Math.max(width, rows[l].length); });
    var n = Math.ceil(width / STEP);
    return labels.map(function (l) {
      var out = new Array(n).fill(0);
      rows[l].forEach(function (v, i) { out[Math.floor(i / STEP)] += v; });
      return out;
    });
  }

  function clock(seconds) {
    var d = new Date(seconds * 1000);
    return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
  }

  function draw(canvas, series) {
    var labels = series.labels.slice(0, COLORS.length);
    var ctx = canvas.getContext("2d");
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    canvas.width = w * ratio; canvas.height = h * ratio;
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px sans-serif";
    ctx.fillStyle = "#6b7280";
    var left = 36, bottom = 18, top = 8, plotW = w - left - 6, plotH = h - top - bottom;
    var stacks = buckets(series.rows, labels);
    var n = stacks.length ? stacks[0].length : 24 * 60 / STEP;
    var max = 0;
    for (var i = 0; i < n; i++) {
      var sum = 0;
      stacks.forEach(function (s) { sum += s[i]; });
      max = Math.max(max, sum);
    }
    var scale = max ? plotH / max : 0;
    ctx.strokeStyle = "#e5e7eb";
    ctx.beginPath(); ctx.moveTo(left, top + plotH + 0.5); ctx.lineTo(left + plotW, top + plotH + 0.5); ctx.stroke();
    ctx.fillText(String(max), 2, top + 10);
    ctx.fillText("0", 2, top + plotH);
    var barW = plotW / n;
    for (var j = 0; j < n; j++) {
      var y = top + plotH;
      stacks.forEach(function (s, k) {
        var height = s[j] * scale;
        if (height > 0) {
          ctx.fillStyle = COLORS[k];
          ctx.fillRect(left + j * barW, y - height, Math.max(barW - 1, 1), height);
          y -= height;
        }
      });
    }
    ctx.fillStyle = "#6b7280";
    for (var t = 0; t <= 4; t++) {
      var at = Math.round(t * (n - 1) / 4);
      ctx.fillText(clock(series.start + at * STEP * 60), Math.min(left + at * barW, w - 34), h - 4);
    }
    var legend = canvas.parentNode.querySelector(".legend");
    legend.textContent = "";
    if (!labels.length) {
      var none = document.createElement("li");
      none.textContent = legend.dataset.empty;
      legend.appendChild(none);
    }
    labels.forEach(function (label, k) {
      var item = document.createElement("li");
      var swatch = document.createElement("i");
      swatch.style.background = COLORS[k];
      item.appendChild(swatch);
      var total = series.rows[label].reduce(function (a, b) { return a + b; }, 0);
      item.appendChild(document.createTextNode((names[label] || label) + "：" + total));
      legend.appendChild(item);
    });
    canvas.dataset.drawn = String(labels.length);
  }

  document.querySelectorAll("canvas[data-dimension]").forEach(function (canvas) {
    draw(canvas, data[canvas.dataset.dimension] || {start: 0, labels: [], rows: {}});
  });
})();
