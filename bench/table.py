from __future__ import annotations

import os
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "latest.md"


def markdown(rows: list[dict[str, str]]) -> str:
    headers = list(rows[0])
    lines = [
        f"Machine: {os.cpu_count()} cores",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(row[h] for h in headers) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def print_table(rows: list[dict[str, str]], *, save: bool = False) -> None:
    """Print the rows as Markdown; `save` also writes them to bench/results/latest.md (the
    whole `make bench` only: one benchmark run alone must not replace the full table)."""
    text = markdown(rows)
    print(text)
    if save:
        RESULTS.write_text(text)
