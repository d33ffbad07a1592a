from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tpa import uploads
from tpa.management.commands.tpa_run import describe, run_for, tpa_for
from tpa.models import RunStatus
from tpa.staging import CHUNK, Refused


def chunks(path: Path) -> Any:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


class Command(BaseCommand):
    help = "Upload a CSV for a TPA (checked, staged, recorded); --run starts a run, --wait waits for it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("code")
        parser.add_argument("file", type=Path)
        parser.add_argument("--run", action="store_true", help="start a pipeline run after the upload")
        parser.add_argument("--wait", action="store_true", help="with --run: wait for the worker to finish it")
        parser.add_argument("--inline", action="store_true", help="with --run: run it in this process")
        parser.add_argument("--timeout", type=float, default=600.0)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")

        async def go() -> None:
            tpa = await tpa_for(options["code"])
            try:
                file = await uploads.upload(tpa, path.name, chunks(path), None)
            except Refused as exc:
                raise CommandError(exc.message) from None
            self.stdout.write(f"staged {file.stage_path}: {file.row_count} rows, sha256 {file.sha256[:12]}")
            if options["run"]:
                run = await run_for(
                    tpa.code, wait=options["wait"], inline=options["inline"], seconds=options["timeout"]
                )
                self.stdout.write(describe(run))
                if run.status == RunStatus.FAILED:
                    raise CommandError(run.error)

        asyncio.run(go())
