// Report page: every panel loads through its own request at once (or, above six panels,
// through one streamed response), shows a live elapsed time, and refreshes on its own.
// No inline scripts (CSP): data comes from data-attributes and json_script blocks.
(function () {
  "use strict";

  const report = document.querySelector("[data-report]");
  if (!report) return;

  const panels = new Map();
  for (const element of report.querySelectorAll("[data-panel]")) {
    panels.set(element.dataset.panel, {
      element: element,
      body: element.querySelector("[data-body]"),
      status: element.querySelector("[data-status]"),
      url: element.dataset.url,
      controller: null,
      timer: null,
      chart: null,
    });
  }

  function seconds(ms) {
    return (ms / 1000).toFixed(1) + " s";
  }

  function startLoading(panel) {
    if (panel.controller) panel.controller.abort();
    if (panel.timer) clearInterval(panel.timer);
    const started = performance.now();
    panel.element.classList.add("loading");
    panel.element.classList.remove("done", "failed");
    panel.element.setAttribute("aria-busy", "true");
    panel.status.textContent = "Running… 0.0 s";
    panel.timer = setInterval(function () {
      panel.status.textContent = "Running… " + seconds(performance.now() - started);
    }, 100);
  }

  function show(panel, html, ok) {
    if (panel.timer) clearInterval(panel.timer);
    panel.timer = null;
    panel.controller = null;
    if (panel.chart) {
      panel.chart.destroy();
      panel.chart = null;
    }
    panel.body.innerHTML = html;
    panel.status.textContent = "";
    panel.element.classList.remove("loading");
    panel.element.classList.add(ok ? "done" : "failed");
    panel.element.removeAttribute("aria-busy");
    drawChart(panel);
  }

  function showError(panel, message) {
    const box = document.createElement("div");
    box.className = "panel-error";
    box.setAttribute("role", "alert");
    box.textContent = message;
    show(panel, "", false);
    panel.body.appendChild(box);
  }

  function drawChart(panel) {
    const canvas = panel.body.querySelector("canvas[data-chart]");
    const data = panel.body.querySelector('script[type="application/json"]');
    if (!canvas || !data || typeof window.Chart === "undefined") return;
    const chart = JSON.parse(data.textContent);
    const kind = canvas.dataset.chart === "line" ? "line" : "bar";
    panel.chart = new window.Chart(canvas, {
      type: kind,
      data: {
        labels: chart.labels,
        datasets: chart.datasets.map(function (set) {
          return { label: set.label, data: set.data, borderWidth: kind === "line" ? 2 : 0, pointRadius: kind === "line" ? 1.5 : 0, tension: 0.2 };
        }),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { display: chart.datasets.length > 1 } },
        scales: { y: { beginAtZero: kind === "bar" } },
      },
    });
  }

  function withFresh(url) {
    return url + (url.indexOf("?") === -1 ? "?" : "&") + "fresh=1";
  }

  async function load(panel, fresh) {
    startLoading(panel);
    const controller = new AbortController();
    panel.controller = controller;
    try {
      const response = await fetch(fresh ? withFresh(panel.url) : panel.url, {
        headers: { Accept: "text/html" },
        credentials: "same-origin",
        signal: controller.signal,
      });
      const html = await response.text();
      if (panel.controller !== controller) return; // a newer load replaced this one
      show(panel, html, response.ok);
    } catch (error) {
      if (error.name === "AbortError") return;
      showError(panel, "Could not load this panel: " + error.message);
    }
  }

  // One response, one JSON line per panel as its query finishes.
  async function loadStreamed(url, fresh) {
    for (const panel of panels.values()) startLoading(panel);
    const controller = new AbortController();
    for (const panel of panels.values()) panel.controller = controller;
    const pending = new Set(panels.keys());
    try {
      const response = await fetch(fresh ? withFresh(url) : url, {
        headers: { Accept: "application/x-ndjson" },
        credentials: "same-origin",
        signal: controller.signal,
      });
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      report.dataset.streaming = "true";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (value) buffer += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffer.indexOf("\n")) !== -1) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (!line) continue;
          const item = JSON.parse(line);
          const panel = panels.get(String(item.panel));
          if (panel) {
            pending.delete(String(item.panel));
            show(panel, item.html, item.status < 400);
          }
        }
        if (done) break;
      }
    } catch (error) {
      if (error.name === "AbortError") return;
    }
    // Anything the stream did not deliver (it broke off) loads on its own.
    for (const id of pending) load(panels.get(id), fresh);
  }

  function loadAll(fresh) {
    if (report.dataset.streamUrl) {
      loadStreamed(report.dataset.streamUrl, fresh);
    } else {
      for (const panel of panels.values()) load(panel, fresh);
    }
  }

  report.addEventListener("click", function (event) {
    const refresh = event.target.closest("[data-refresh]");
    if (refresh) {
      const panel = panels.get(refresh.closest("[data-panel]").dataset.panel);
      if (panel) load(panel, true);
      return;
    }
    if (event.target.closest("[data-refresh-all]")) loadAll(true);
  });

  // Leaving the page aborts the requests, so the server cancels their queries.
  window.addEventListener("pagehide", function () {
    for (const panel of panels.values()) if (panel.controller) panel.controller.abort();
  });

  // A filter bar with errors leaves the panels waiting for valid values.
  if (!report.querySelector(".filter.invalid")) loadAll(false);
})();
