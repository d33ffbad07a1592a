// The operations page reloads its figures every few seconds, in place: it fetches the page
// again and swaps the [data-live] region, so the scroll position stays. It waits while the
// tab is hidden, while a Cancel form has focus, and while the person pressed Pause.
(function () {
  "use strict";

  const live = document.querySelector("[data-live]");
  const toggle = document.querySelector("[data-refresh-toggle]");
  const updated = document.querySelector("[data-updated]");
  if (!live) return;
  const seconds = Number(live.dataset.refreshSeconds) || 15;
  let paused = false;
  let busy = false;

  async function refresh() {
    if (paused || busy || document.hidden || live.contains(document.activeElement)) return;
    busy = true;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.querySelector("[data-live]");
      if (!fresh) return;
      live.innerHTML = fresh.innerHTML;
      const stamp = page.querySelector("[data-updated]");
      if (updated && stamp) {
        updated.textContent = stamp.textContent;
        updated.setAttribute("datetime", stamp.getAttribute("datetime"));
      }
      live.dataset.refreshed = String(Number(live.dataset.refreshed || 0) + 1);
    } catch (error) {
      // A failed refresh leaves the last figures; the next one tries again.
    } finally {
      busy = false;
    }
  }

  if (toggle) {
    toggle.addEventListener("click", function () {
      paused = !paused;
      toggle.setAttribute("aria-pressed", String(paused));
      toggle.textContent = paused ? "Resume" : "Pause";
      if (!paused) refresh();
    });
  }
  window.setInterval(refresh, seconds * 1000);
})();
