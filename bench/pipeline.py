"""How long each pipeline step takes on the configured Snowflake (the emulator under make bench).

    make bench
    python -m bench.pipeline        # with DATABASE_URL / SNOWFLAKE_* already set

Deploys the warehouse objects, creates the demo TPAs, then for each file size uploads
ROUNDS fresh generated claim files of one TPA and runs the pipeline in this process
(the same `execute_run` a db_worker calls). Reports the median seconds per step.

    python -m devtools.services run --data-dir .data/bench --fresh --redis -- python -m bench.pipeline
"""

from __future__ import annotations

import asyncio
import os
import statistics

import django

SIZES = (250, 5000, 50000)
ROUNDS = 3


def main() -> list[dict[str, str]]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--no-input", verbosity=0)
    call_command("snowflake_deploy", verbosity=0)
    from tpa import demo

    demo.ensure_master_data()
    return asyncio.run(run())


async def run() -> list[dict[str, str]]:
    from tpa import demo, uploads
    from tpa.models import RunStatus, Tpa
    from tpa.pipeline import execute_run
    from tpa.runs import start_run

    spec = demo.DEMO_TPAS[0]
    tpa = await Tpa.objects.aget(code=spec.code)
    rows = []
    seed = 100
    for size in SIZES:
        durations: dict[str, list[float]] = {}
        for _ in range(ROUNDS):
            seed += 1
            content = demo.claims_csv(spec, size, seed=seed)
            await uploads.upload(tpa, f"bench-{seed}.csv", [content], None)
            run = await execute_run((await start_run(tpa, None, enqueue=False)).pk)
            if run.status != RunStatus.SUCCEEDED:
                raise SystemExit(f"pipeline run {run.pk} {run.status}: {run.error}")
            for step in run.steps.all():
                durations.setdefault(step.name, []).append(step.duration or 0.0)
        for name, values in durations.items():
            rows.append(
                {
                    "benchmark": f"pipeline {name}, {size:,}-row file ({spec.code})",
                    "figure": f"{statistics.median(values):.2f} s",
                    "limit": "none set",
                    "note": f"median of {ROUNDS} runs on the configured Snowflake",
                }
            )
    return rows


if __name__ == "__main__":
    from bench.table import print_table

    print_table(main())
