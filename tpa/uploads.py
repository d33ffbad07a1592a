"""Upload a TPA file: check it, reserve its record, PUT it to the stage, confirm the record.

Order matters to the user: every check that can refuse the file runs before anything is
staged. Then the record is written first, as "staging": the database's constraints (one
stage path, one content per TPA) decide between two uploads of one name or one content at
the same moment, before either touches the stage, so a losing upload never removes what a
winning one staged. Holding the path in Postgres makes the PUT safe to repeat
(OVERWRITE = TRUE): whatever sits at that path without a record is a leftover of an
attempt that never got recorded. A PUT that times out on the client may still have landed;
the stage is asked (LIST) before the upload is called failed, and a failed upload leaves
neither a record nor a staged file.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from project.sources import SourceError
from project.sources.errors import QueryError
from tpa import snowflake, staging
from tpa.cache import master_data
from tpa.mapping import header_problems, row_checks
from tpa.models import FileStatus, IngestionFile, Tpa
from tpa.staging import Prepared, Refused

logger = logging.getLogger(__name__)


def max_upload_bytes() -> int:
    return int(getattr(settings, "TPA_UPLOAD_MAX_BYTES", 50 * 2**20))


async def upload(
    tpa: Tpa, name: str, chunks: Iterable[bytes], user: Any, *, replaces: IngestionFile | None = None
) -> IngestionFile:
    """Stage one CSV for `tpa` and record it; Refused (with the reason) when it cannot be.
    `replaces`: a failed file of the TPA that this upload corrects; it is discarded once the
    new one is staged."""
    if not tpa.active:
        raise Refused(f"{tpa.code} is inactive: it takes no files.", status=409)
    if replaces is not None and (replaces.tpa_id != tpa.pk or replaces.status != FileStatus.FAILED):
        raise Refused("Only a failed file of this TPA can be replaced.", status=409)
    safe = staging.safe_name(name)
    prepared = await asyncio.to_thread(staging.spool, chunks, max_upload_bytes())
    try:
        header = await asyncio.to_thread(staging.read_header, prepared)
        master = await master_data(tpa.code)
        if problems := header_problems(header, master):
            raise Refused("The header does not match the field mappings. " + " ".join(problems))
        # Every value against its mapping's type, before anything is staged or recorded.
        await asyncio.to_thread(staging.check_rows, prepared, row_checks(header, master))
        if earlier := await _same_content(tpa, prepared.sha256):
            raise Refused(duplicate_message(earlier, replaces), status=409)
        directory = staging.stage_dir(tpa.code, timezone.localdate())
        record = await _reserve(tpa, name, directory, safe, prepared, header, user)
        try:
            await _stage(record, prepared)
        except BaseException:
            await IngestionFile.objects.filter(pk=record.pk, status=FileStatus.STAGING).adelete()
            raise
        record.status, record.row_count = FileStatus.UPLOADED, prepared.row_count
        await IngestionFile.objects.filter(pk=record.pk).aupdate(
            status=FileStatus.UPLOADED, row_count=prepared.row_count, updated_at=timezone.now()
        )
        if replaces is not None:
            from tpa.runs import discard_file

            await discard_file(replaces, user)
        return record
    finally:
        await asyncio.to_thread(prepared.cleanup)


async def _same_content(tpa: Tpa, sha256: str) -> IngestionFile | None:
    await _drop_abandoned_reservations(tpa)
    return (
        await IngestionFile.objects.filter(tpa=tpa, sha256=sha256)
        .exclude(status=FileStatus.DISCARDED)
        .select_related("run")
        .afirst()
    )


async def _drop_abandoned_reservations(tpa: Tpa) -> None:
    """A web process that died between reserving and staging leaves a "staging" record; once
    no PUT can still be going on, it would only block its name and content forever."""
    before = timezone.now() - datetime.timedelta(seconds=2 * snowflake.stage_timeout() + 60)
    await IngestionFile.objects.filter(tpa=tpa, status=FileStatus.STAGING, updated_at__lt=before).adelete()


def duplicate_message(earlier: IngestionFile, replaces: IngestionFile | None = None) -> str:
    """Which earlier file has this content, and what to do about it."""
    when = f"{timezone.localtime(earlier.uploaded_at):%Y-%m-%d %H:%M}"
    seen = f"This file has the same content as {earlier.original_name} ({earlier.stage_path}), uploaded {when}"
    if replaces is not None and earlier.pk == replaces.pk:
        return f"{seen}, the file it would replace: correct the file first, or retry that one as it is."
    if earlier.status == FileStatus.FAILED:
        return (
            f"{seen}, which failed: {earlier.error or 'no reason recorded'} "
            "Retry that file once the cause is fixed (for example the mappings), or discard it and upload again."
        )
    if earlier.status == FileStatus.TRANSFORMED:
        return f"{seen}, which is loaded already: its claims are in gold. Nothing to do."
    if earlier.status == FileStatus.STAGING:
        return f"{seen}, which someone is uploading right now."
    return f"{seen}, which is {earlier.status} and waits for a run. Start a run to load it."


async def _reserve(
    tpa: Tpa, name: str, directory: str, safe: str, prepared: Prepared, header: list[str], user: Any
) -> IngestionFile:
    """The file's record, as "staging", under its name or (taken) a name told apart by content."""
    stem = safe.removesuffix(".csv")
    for candidate in (safe, f"{stem[:80]}-{prepared.sha256[:8]}.csv"):
        path = f"{directory}/{candidate}"
        if await IngestionFile.objects.filter(stage_path=path).aexists():
            continue  # same name, other content, same day: keep both
        try:
            return await IngestionFile.objects.acreate(
                tpa=tpa,
                original_name=name[:255],
                stage_path=path,
                size=prepared.size,
                sha256=prepared.sha256,
                row_count=prepared.row_count,
                columns=header,
                status=FileStatus.STAGING,
                uploaded_by=user if getattr(user, "is_authenticated", False) else None,
            )
        except IntegrityError:
            # Someone else took this path or this content at the same moment.
            if earlier := await _same_content(tpa, prepared.sha256):
                raise Refused(duplicate_message(earlier), status=409) from None
    raise Refused(f"{safe} was uploaded twice today already; rename the file and upload it again.", status=409)


async def _stage(record: IngestionFile, prepared: Prepared) -> None:
    """PUT the normalised copy to the record's path; Refused (502) when it is not there after."""
    await asyncio.to_thread(staging.normalise, prepared, record.tpa.code, record.stage_path)
    assert prepared.normalised is not None
    try:
        await snowflake.put(prepared.normalised, record.stage_dir, record.stage_name)
        return
    except QueryError as exc:
        # The warehouse refused the statement: nothing was stored.
        failure: SourceError = exc
    except SourceError as exc:
        # Timed out or cut off: the file may have landed all the same.
        failure = exc
        if await _landed(record, prepared):
            logger.warning("PUT of %s failed on the client (%s) but the file is staged", record.stage_path, exc)
            return
    logger.warning("PUT of %s failed: %s", record.stage_path, failure.message)
    await _remove_quietly(record.stage_path)
    raise Refused(f"The file could not be staged, nothing was recorded: {failure.message}", status=502) from failure


async def _landed(record: IngestionFile, prepared: Prepared) -> bool:
    assert prepared.normalised is not None
    size = prepared.normalised.stat().st_size
    try:
        staged = await snowflake.list_stage(record.stage_path)
    except SourceError:
        return False
    return any(f.path == record.stage_path and f.size == size for f in staged)


async def _remove_quietly(path: str) -> None:
    """Remove a half-staged file at a path this upload holds; a failure here changes nothing
    for the user (a later upload of the path overwrites it)."""
    try:
        await snowflake.remove(path)
    except SourceError as exc:
        logger.warning("could not remove %s after a failed PUT: %s", path, exc.message)
