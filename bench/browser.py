"""Time to first and last panel in Chromium of reports of 4, 8 and 16 panels of 200 ms on Postgres.

    make bench
    python -m bench.browser         # with DATABASE_URL / SNOWFLAKE_* already set

Starts the service as `make demo` does and opens each report in Debian's Chromium, driven
by Playwright as the browser tests drive it, signed in as a staff user. A script Playwright
adds to every document (before the page's own scripts, outside the page's CSP) notes
`performance.now()` the first time each panel is marked done or failed: milliseconds since
the start of navigation, which is where a user's wait begins. Panels sleep 200 ms on the
database and are never cached (TTL 0). Each figure is the median of ROUNDS loads after a
warm-up load of every report; the goal is the last panel within 1.25 × the slowest query.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.server import PANEL_MS, make_report, ms, serve, setup, sleep_panels, staff_session

SIZES = (4, 8, 16)
ROUNDS = 10
GOAL = 1.25
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

# Runs before the page's scripts; records when each panel first shows its result.
# `__panelsShownBy(n)` resolves once n panels have (the page's CSP forbids a polled predicate).
OBSERVER = """
const shown = {};
let waiting = null;
window.__panelsShownBy = function (count) {
  return new Promise(function (resolve, reject) {
    waiting = {count: count, resolve: resolve};
    setTimeout(function () {
      reject(new Error(Object.keys(shown).length + " of " + count + " panels after 30 s"));
    }, 30000);
    check();
  });
};
function check() {
  if (waiting && Object.keys(shown).length >= waiting.count) waiting.resolve(Object.values(shown));
}
new MutationObserver(function (records) {
  for (const record of records) {
    const panel = record.target;
    if (panel.dataset && panel.dataset.panel && !(panel.dataset.panel in shown)
        && (panel.classList.contains("done") || panel.classList.contains("failed"))) {
      shown[panel.dataset.panel] = {at: performance.now(), ok: panel.classList.contains("done")};
    }
  }
  check();
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["class"]});
"""


def slug(size: int) -> str:
    return f"bench-browser-{size}"


def load(page: Any, url: str, size: int) -> tuple[float, float, int]:
    """Milliseconds from navigation start to the first and the last panel, and failed panels."""
    page.goto(url, wait_until="commit")
    shown = page.evaluate(f"window.__panelsShownBy({size})")
    times = [item["at"] for item in shown]
    return min(times), max(times), sum(1 for item in shown if not item["ok"])


def main() -> list[dict[str, str]]:
    from playwright.sync_api import sync_playwright

    setup()
    user, cookies = staff_session()
    for size in SIZES:
        make_report(slug(size), user, sleep_panels("postgres", size))
    rows = []
    with serve() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_cookies([{"name": name, "value": value, "url": base} for name, value in cookies.items()])
        context.add_init_script(OBSERVER)
        page = context.new_page()
        for size in SIZES:  # warm-up: pools, the browser's cache of scripts and styles
            load(page, f"{base}/reports/{slug(size)}/", size)
        for size in SIZES:
            firsts, lasts, failed = [], [], 0
            for _ in range(ROUNDS):
                first, last, errors = load(page, f"{base}/reports/{slug(size)}/", size)
                firsts.append(first / 1000)
                lasts.append(last / 1000)
                failed += errors
            first, last = statistics.median(firsts), statistics.median(lasts)
            note = f"; {failed} failed panels" if failed else ""
            rows.append(
                {
                    "benchmark": f"browser: time to first / last panel, {size} × {PANEL_MS} ms on postgres",
                    "figure": f"{ms(first)} / {ms(last)}",
                    "limit": f"last ≤ {ms(GOAL * PANEL_MS / 1000)}",
                    "note": f"Chromium, from navigation start; last panel {last * 1000 / PANEL_MS:.2f}× the query; "
                    f"slowest load {ms(max(lasts))}; median of {ROUNDS}{note}",
                }
            )
        browser.close()
    return rows


if __name__ == "__main__":
    from bench.table import print_table

    print_table(main())
