"""Run every benchmark and print one Markdown table (also written to bench/results/latest.md)."""

from __future__ import annotations

from bench import bodies, browser, cache, dead_cache, herd, load, pdf, pipeline, render, reports, sources
from bench.table import print_table

BENCHMARKS = [sources, reports, render, browser, load, cache, dead_cache, herd, pipeline, bodies, pdf]


def main() -> None:
    rows: list[dict[str, str]] = []
    for benchmark in BENCHMARKS:
        rows += benchmark.main()
    print_table(rows, save=True)


if __name__ == "__main__":
    main()
