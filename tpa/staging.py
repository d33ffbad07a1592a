"""Files on their way to the stage: safe names, stage paths, and the checked, normalised copy.

A name from a user never reaches SQL as given: `safe_name` keeps [A-Za-z0-9._-] only and
refuses what signals a hostile or broken name (path parts, `..`, control characters), and
the stage path is built here as <tpa>/<yyyy>/<mm>/<dd>/<name>.

The upload is copied to a temporary file in chunks (hashing as it goes), its header is
checked against the TPA's mappings, and a normalised copy is written for the stage: the
lineage columns TPA_CODE, SOURCE_FILE, LINE_NO first, then the file's columns padded to
the 40 positions of BRONZE.RAW_ROWS. Everything streams: no file is ever whole in memory.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tpa.mapping import ColumnCheck
from tpa.models import MAX_SOURCE_COLUMNS

CHUNK = 64 * 1024
MAX_NAME = 100
# The row problems an upload refusal lists (it counts them all).
MAX_ROW_ERRORS = 10
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Refused(Exception):
    """The upload cannot go on; `message` tells the user why, `status` is the HTTP answer;
    `errors` the rows that did not fit, when that was the reason."""

    def __init__(self, message: str, status: int = 400, errors: list[RowError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = errors or []


def safe_name(name: str) -> str:
    """A stage-safe version of a user's file name, or Refused saying what is wrong with it."""
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise Refused("The file name contains control characters; rename the file and upload it again.")
    if "/" in name or "\\" in name:
        raise Refused("The file name contains a slash; send the file itself, named without a path.")
    if ".." in name:
        raise Refused("The file name contains '..'; rename the file and upload it again.")
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode())
    cleaned = re.sub(r"_+", "_", cleaned).strip("._-")
    stem, dot, extension = cleaned.rpartition(".")
    # No dot but the extension's: a stage path in COPY is a prefix, and this way no
    # file's path is the beginning of another's.
    stem = re.sub(r"[._]+", "_", stem).strip("_-")
    if not dot or extension.lower() != "csv" or not stem:
        raise Refused("Only .csv files can be uploaded.")
    return f"{stem[: MAX_NAME - 4]}.csv"


def stage_dir(tpa_code: str, day: datetime.date) -> str:
    return f"{tpa_code.lower()}/{day:%Y/%m/%d}"


@dataclass
class Prepared:
    """An upload copied to disk and checked: what the stage and the record need."""

    original: Path
    sha256: str
    size: int
    header: list[str] = field(default_factory=list)
    normalised: Path | None = None
    row_count: int = 0

    def cleanup(self) -> None:
        for path in (self.original, self.normalised):
            if path is not None:
                path.unlink(missing_ok=True)


def spool(chunks: Iterable[bytes], max_bytes: int) -> Prepared:
    """Copy an upload to a temporary file in chunks, with its sha256 and size. Blocking."""
    digest = hashlib.sha256()
    size = 0
    handle, name = tempfile.mkstemp(prefix="tpa-upload-", suffix=".csv")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise Refused(f"The file is larger than the limit of {max_bytes / 2**20:g} MiB.", status=413)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise Refused("The file is empty.")
    return Prepared(original=path, sha256=digest.hexdigest(), size=size)


def _reader(path: Path):  # type: ignore[no-untyped-def]
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - the caller closes it


def read_header(prepared: Prepared) -> list[str]:
    try:
        with _reader(prepared.original) as text:
            header = next(csv.reader(text), [])
    except UnicodeDecodeError:
        raise Refused("The file is not UTF-8 text.") from None
    except csv.Error as exc:
        raise Refused(f"The header is not valid CSV: {exc}.") from None
    prepared.header = [name.strip() for name in header]
    if not any(prepared.header):
        raise Refused("The file has no header row.")
    return prepared.header


def _rows(prepared: Prepared) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each data row, blank lines skipped; Refused on broken CSV."""
    width = len(prepared.header)
    try:
        with _reader(prepared.original) as text:
            reader = csv.reader(text)
            next(reader)
            for row in reader:
                if not any(value.strip() for value in row):
                    continue  # blank lines
                if len(row) != width:
                    raise Refused(
                        f"Line {reader.line_num} has {len(row)} fields; the header has {width}. Nothing was staged."
                    )
                yield reader.line_num, row
    except UnicodeDecodeError:
        raise Refused("The file is not UTF-8 text.") from None
    except csv.Error as exc:
        raise Refused(f"The file is not valid CSV: {exc}.") from None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    column: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.value[:60]!r} is {self.reason}"


def check_rows(prepared: Prepared, checks: dict[int, ColumnCheck], *, shown: int = MAX_ROW_ERRORS) -> None:
    """Read every row, counting them and checking each mapped value against its target type;
    Refused listing the first `shown` problems (line, column, value, reason). Blocking."""
    errors: list[RowError] = []
    count = rows = 0
    for line, row in _rows(prepared):
        rows += 1
        for position, check in checks.items():
            if reason := check.problem(row[position]):
                count += 1
                if len(errors) < shown:
                    errors.append(RowError(line, check.name, row[position], reason))
    if errors:
        more = f" ({count - len(errors)} more not shown)" if count > len(errors) else ""
        raise Refused(
            f"{count} {'value does' if count == 1 else 'values do'} not fit the mappings; nothing was staged{more}. "
            + "; ".join(map(str, errors))
            + ".",
            errors=errors,
        )
    if rows == 0:
        raise Refused("The file has a header but no rows.")
    prepared.row_count = rows


def normalise(prepared: Prepared, tpa_code: str, source_file: str) -> None:
    """Write the stage's copy: lineage columns, then the file's columns padded to C01..C40."""
    padding = [""] * (MAX_SOURCE_COLUMNS - len(prepared.header))
    handle, name = tempfile.mkstemp(prefix="tpa-stage-", suffix=".csv")
    prepared.normalised = Path(name)
    with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["TPA_CODE", "SOURCE_FILE", "LINE_NO", *(f"C{n:02d}" for n in range(1, 41))])
        for line, row in _rows(prepared):
            writer.writerow([tpa_code, source_file, line, *row, *padding])
