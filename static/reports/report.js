// Report page. The page's own response brings every panel: the layout first, then each
// panel's result as its query finishes, appended after the layout ([data-arrival]); this
// script (loaded before those arrive) moves each into its slot. Refresh, a filter change
// and a single panel's reload go through the panel stream or a panel's own fragment.
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
      awaiting: false, // its result is still to come in the page's own response
      controller: null,
      timer: null,
      chart: null,
    });
  }

  function seconds(ms) {
    return (ms / 1000).toFixed(1) + " s";
  }

  function startLoading(panel, started) {
    if (panel.controller) panel.controller.abort();
    if (panel.timer) clearInterval(panel.timer);
    panel.awaiting = false;
    panel.element.classList.add("loading");
    panel.element.classList.remove("done", "failed");
    panel.element.setAttribute("aria-busy", "true");
    panel.status.textContent = "Running… " + seconds(performance.now() - started);
    panel.timer = setInterval(function () {
      panel.status.textContent = "Running… " + seconds(performance.now() - started);
    }, 100);
  }

  function clear(panel) {
    if (panel.timer) clearInterval(panel.timer);
    panel.timer = null;
    panel.controller = null;
    panel.awaiting = false;
    if (panel.chart) {
      panel.chart.destroy();
      panel.chart = null;
    }
  }

  function finish(panel, ok) {
    panel.status.textContent = "";
    panel.element.classList.remove("loading");
    panel.element.classList.add(ok ? "done" : "failed");
    panel.element.removeAttribute("aria-busy");
    drawChart(panel);
  }

  function show(panel, html, ok) {
    clear(panel);
    panel.body.innerHTML = html;
    finish(panel, ok);
  }

  function place(panel, result) {
    clear(panel);
    panel.body.replaceChildren(result);
    finish(panel, !result.classList.contains("failed"));
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
    if (!canvas || !data || panel.chart || !window.FanoutCharts || typeof window.Chart === "undefined") return;
    panel.chart = window.FanoutCharts.draw(canvas, JSON.parse(data.textContent)); // static/reports/charts.js
  }

  // The chart library loads without holding up the page: charts that arrived first are drawn once it is there.
  const library = document.querySelector("script[data-chart-library]");
  if (library && typeof window.Chart === "undefined") {
    library.addEventListener("load", function () {
      for (const panel of panels.values()) drawChart(panel);
    });
  }

  function withFresh(url) {
    return url + (url.indexOf("?") === -1 ? "?" : "&") + "fresh=1";
  }

  async function load(panel, fresh) {
    startLoading(panel, performance.now());
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
    const started = performance.now();
    for (const panel of panels.values()) startLoading(panel, started);
    const controller = new AbortController();
    for (const panel of panels.values()) panel.controller = controller;
    const pending = new Set(panels.keys());
    try {
      const response = await fetch(fresh ? withFresh(url) : url, {
        headers: { Accept: "application/x-ndjson" },
        credentials: "same-origin",
        signal: controller.signal,
      });
      if (response.status === 400) {
        // The filter values do not check out: the page itself shows which and why.
        window.location.assign(window.location.href);
        return;
      }
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
          if (panel && panel.controller === controller) {
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
    for (const id of pending) {
      const panel = panels.get(id);
      if (panel.controller === controller) load(panel, fresh);
    }
  }

  function loadAll(fresh) {
    if (report.dataset.streamUrl) {
      loadStreamed(report.dataset.streamUrl, fresh);
    } else {
      for (const panel of panels.values()) load(panel, fresh);
    }
  }

  // A panel is complete once its end marker has been parsed; a refresh since then wins.
  function takeArrivals() {
    for (const end of report.querySelectorAll("[data-arrival-end]")) {
      const arrival = end.parentElement;
      const panel = panels.get(arrival.dataset.arrival);
      const result = arrival.querySelector(".panel-result");
      if (panel && panel.awaiting && result) place(panel, result);
      arrival.remove();
    }
  }

  if (report.hasAttribute("data-arrivals")) {
    for (const panel of panels.values()) {
      startLoading(panel, 0); // since navigation started
      panel.awaiting = true;
    }
    const arrivals = new MutationObserver(takeArrivals);
    arrivals.observe(report, { childList: true, subtree: true });
    document.addEventListener("DOMContentLoaded", function () {
      arrivals.disconnect();
      takeArrivals();
      // The response broke off before these panels: each loads on its own.
      for (const panel of panels.values()) if (panel.awaiting) load(panel, false);
    });
  }

  function withoutQuery(url) {
    const at = url.indexOf("?");
    return at === -1 ? url : url.slice(0, at);
  }

  // A filter change reruns the panels in place; the address keeps the filters, so it can be shared.
  const form = report.querySelector("[data-filter-form]");
  if (form && report.dataset.streamUrl) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const query = new URLSearchParams(new FormData(form)).toString();
      const suffix = query ? "?" + query : "";
      window.history.pushState(null, "", withoutQuery(form.getAttribute("action")) + suffix);
      report.dataset.streamUrl = withoutQuery(report.dataset.streamUrl) + suffix;
      for (const panel of panels.values()) {
        panel.url = withoutQuery(panel.url) + suffix;
        panel.element.dataset.url = panel.url;
        for (const link of panel.element.querySelectorAll(".panel-tools a[href]")) {
          link.setAttribute("href", withoutQuery(link.getAttribute("href")) + suffix);
        }
      }
      loadStreamed(report.dataset.streamUrl, false);
    });
    // Back and forward: the page for that address, with its filters in the form.
    window.addEventListener("popstate", function () {
      window.location.reload();
    });
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
})();
