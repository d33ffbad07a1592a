from __future__ import annotations

import csv
import json
import os
import sys
from collections import defaultdict
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404

from reports.exports import csv_cell
from reports.filters import ListMapping
from reports.models import QueryLog, Report, json_safe
from reports.runner import PanelRun
from reports.services import InvalidFilters, Prepared, label, open_report, run_panels


class Command(BaseCommand):
    help = "Run every panel of a report at once and print each result with its timing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The report's slug.")
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="A filter value (repeat for several; a date range is NAME_from=... NAME_to=...).",
        )
        parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
        parser.add_argument("--fresh", action="store_true", help="Bypass cached results.")
        parser.add_argument("--limit", type=int, default=20, help="Rows shown per panel in table format.")

    def handle(
        self, *args: Any, slug: str, param: list[str], format: str, fresh: bool, limit: int, **options: Any
    ) -> None:
        values: dict[str, list[str]] = defaultdict(list)
        for item in param:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--param takes NAME=VALUE, not {item!r}.")
            values[name.strip()].append(value)
        try:
            prepared, runs = async_to_sync(run_for_command)(slug, ListMapping(values), fresh)
        except Http404 as exc:
            raise CommandError(str(exc)) from None
        except InvalidFilters as exc:
            errors = "; ".join(f"{name}: {message}" for name, message in exc.errors.items())
            raise CommandError(f"Check the filters: {errors}") from None
        report = prepared.report
        printer = {"table": self.print_tables, "csv": self.print_csv, "json": self.print_json}[format]
        try:
            printer(report, prepared.state.params(), runs, limit)
            self.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly. Point stdout at /dev/null so the
            # interpreter's last flush does not fail again (the Python docs' advice on SIGPIPE).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None
        if failed := [run for run in runs if not run.ok]:
            raise CommandError(f"{len(failed)} of {len(runs)} panels failed.", returncode=1)

    def print_tables(self, report: Report, params: dict[str, Any], runs: list[PanelRun], limit: int) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(report.title))
        for run in runs:
            timing = f"{run.duration_ms:.0f} ms" + (" (cached)" if run.cache_hit else "")
            if run.error:
                self.stdout.write(f"\n{run.title}  [{timing}]  " + self.style.ERROR(run.error["message"]))
                continue
            self.stdout.write(f"\n{run.title}  [{timing}, {run.row_count} rows]")
            self.stdout.write(format_table(run.columns, run.rows[:limit]))
            if run.row_count > limit:
                self.stdout.write(self.style.WARNING(f"… {run.row_count - limit} more rows (--limit)"))

    def print_csv(self, report: Report, params: dict[str, Any], runs: list[PanelRun], limit: int) -> None:
        writer = csv.writer(self.stdout)
        for run in runs:
            writer.writerow([f"# {run.title}", f"{run.duration_ms:.0f} ms", run.error["message"] if run.error else ""])
            if run.ok:
                writer.writerow(run.columns)
                writer.writerows([csv_cell(value) for value in row] for row in run.rows)
            writer.writerow([])

    def print_json(self, report: Report, params: dict[str, Any], runs: list[PanelRun], limit: int) -> None:
        payload = {"slug": report.slug, "parameters": json_safe(params), "panels": [run.as_dict() for run in runs]}
        # One compact document in one write (json.dump writes token by token, and each
        # OutputWrapper.write ends its piece with a newline).
        self.stdout.write(json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":")))


async def run_for_command(slug: str, values: ListMapping, fresh: bool) -> tuple[Prepared, list[PanelRun]]:
    prepared = await open_report(None, slug, values)
    return prepared, await run_panels(prepared, None, trigger=QueryLog.Trigger.COMMAND, fresh=fresh)


def format_table(columns: list[str], rows: list[list[Any]]) -> str:
    cells = [[label(value) for value in row] for row in rows]
    widths = [max([len(column), *(len(row[index]) for row in cells)]) for index, column in enumerate(columns)]
    line = "  ".join("-" * width for width in widths)
    out = ["  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)), line]
    out += ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out) if columns else "(no columns)"
