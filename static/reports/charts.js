// Charts of report panels, drawn with the vendored Chart.js from the JSON the server renders
// (reports/presentation.py: chart()). One entry point, FanoutCharts.draw(canvas, data), which
// the page script calls for each panel it shows. Kinds: bar, stacked, line, area, pie, donut,
// scatter. A line or bar chart whose panel says its last point is partial draws that point
// dashed and lighter, and says "(partial)" in its label and tooltip.
(function () {
  "use strict";

  const PALETTE = ["#2f6fdf", "#e8773a", "#2a9d6f", "#c0417d", "#8a63d2", "#b8931f", "#2595b5", "#7f8c8d"];

  function css(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  // compact: for an axis, "$600K" rather than "$600,000.00".
  function formatter(format, compact) {
    const locale = document.documentElement.lang || undefined;
    const options = compact ? { notation: "compact", minimumFractionDigits: 0, maximumFractionDigits: 1 } : {};
    format = format || {};
    if (format.style === "currency") {
      options.style = "currency";
      options.currency = format.currency || "USD";
    } else if (format.style === "percent") {
      options.style = "percent";
    }
    // An axis shows round figures (compact); tooltips keep the column's decimals.
    if (!compact && format.decimals !== null && format.decimals !== undefined) {
      options.minimumFractionDigits = format.decimals;
      options.maximumFractionDigits = format.decimals;
    } else if (!compact && format.style !== "currency") {
      options.maximumFractionDigits = 2;
    }
    const number = new Intl.NumberFormat(locale, options);
    return function (value) {
      return value === null || value === undefined ? "" : number.format(value);
    };
  }

  function withAlpha(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function config(data) {
    const kind = data.kind;
    const whole = kind === "pie" || kind === "donut";
    const last = data.labels.length - 1;
    const partial = Boolean(data.partial) && last >= 0;
    const labels = data.labels.slice();
    if (partial && kind !== "scatter") labels[last] = labels[last] + " (partial)";
    const formats = data.datasets.map(function (set) { return formatter(set.format); });
    const axis = formatter(data.datasets.length ? data.datasets[0].format : null, true);

    const datasets = data.datasets.map(function (set, index) {
      const colour = PALETTE[index % PALETTE.length];
      const common = { label: set.label, data: set.data };
      if (whole) {
        return Object.assign(common, {
          backgroundColor: set.data.map(function (_, i) { return PALETTE[i % PALETTE.length]; }),
          borderColor: css("--surface", "#fff"),
          borderWidth: 2,
        });
      }
      if (kind === "scatter") {
        return Object.assign(common, {
          data: set.data.map(function (y, i) { return { x: data.labels[i], y: y }; }),
          backgroundColor: withAlpha(colour, 0.7),
          borderColor: colour,
          pointRadius: 3,
        });
      }
      if (kind === "line" || kind === "area") {
        return Object.assign(common, {
          borderColor: colour,
          backgroundColor: withAlpha(colour, kind === "area" ? 0.25 : 1),
          fill: kind === "area" ? (data.datasets.length > 1 ? "stack" : "origin") : false,
          borderWidth: 2,
          tension: 0.2,
          pointRadius: labels.map(function (_, i) { return partial && i === last ? 4 : 1.5; }),
          pointBackgroundColor: labels.map(function (_, i) { return partial && i === last ? css("--surface", "#fff") : colour; }),
          segment: {
            borderDash: function (ctx) { return partial && ctx.p1DataIndex === last ? [5, 4] : undefined; },
          },
        });
      }
      // bar and stacked
      return Object.assign(common, {
        backgroundColor: labels.map(function (_, i) { return partial && i === last ? withAlpha(colour, 0.35) : colour; }),
        borderColor: colour,
        borderWidth: labels.map(function (_, i) { return partial && i === last ? 2 : 0; }),
      });
    });

    const stacked = kind === "stacked" || (kind === "area" && data.datasets.length > 1);
    const options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      color: css("--fg", "#1d2430"),
      plugins: {
        legend: { display: whole || data.datasets.length > 1, labels: { color: css("--fg", "#1d2430") } },
        tooltip: {
          callbacks: {
            label: function (ctx) {
              const value = kind === "scatter" ? ctx.parsed.y : whole ? ctx.parsed : ctx.parsed.y;
              const name = whole ? ctx.label : ctx.dataset.label;
              return name + ": " + formats[ctx.datasetIndex](value);
            },
          },
        },
      },
    };
    if (!whole) {
      options.interaction = kind === "scatter" ? { mode: "nearest", intersect: true } : { mode: "index", intersect: false };
      const grid = { color: css("--line", "#dde2ea") };
      const ticks = { color: css("--muted", "#5b6576") };
      options.scales = {
        x: { stacked: stacked, grid: grid, ticks: ticks, title: { display: kind === "scatter", text: data.x_label, color: ticks.color } },
        y: {
          stacked: stacked,
          beginAtZero: kind !== "line" && kind !== "scatter",
          grid: grid,
          ticks: Object.assign({ callback: function (value) { return axis(value); } }, ticks),
        },
      };
      if (kind === "scatter") options.scales.x.type = "linear";
    }
    const types = { bar: "bar", stacked: "bar", line: "line", area: "line", pie: "pie", donut: "doughnut", scatter: "scatter" };
    return { type: types[kind] || "bar", data: { labels: kind === "scatter" ? undefined : labels, datasets: datasets }, options: options };
  }

  function draw(canvas, data) {
    if (typeof window.Chart === "undefined") return null;
    const chart = new window.Chart(canvas, config(data));
    canvas.dataset.drawn = chart.config.type;
    return chart;
  }

  window.FanoutCharts = { draw: draw, config: config };
})();
