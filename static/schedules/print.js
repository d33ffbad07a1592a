// The print view of a report (schedules/pdf.py): draws every chart without animation, opens
// the rows under each chart, then tells the printer it may print (window.fanoutPrintReady).
(function () {
  "use strict";
  for (const details of document.querySelectorAll("details")) details.open = true;
  for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
    const data = canvas.closest("[data-result]").querySelector('script[type="application/json"]');
    if (!data || typeof window.Chart === "undefined") continue;
    const chart = JSON.parse(data.textContent);
    const kind = canvas.dataset.chart === "line" ? "line" : "bar";
    new window.Chart(canvas, {
      type: kind,
      data: {
        labels: chart.labels,
        datasets: chart.datasets.map(function (set) {
          return { label: set.label, data: set.data, borderWidth: kind === "line" ? 2 : 0, pointRadius: 0, tension: 0.2 };
        }),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { display: chart.datasets.length > 1 } },
        scales: { y: { beginAtZero: kind === "bar" } },
      },
    });
  }
  window.fanoutPrintReady = true;
})();
