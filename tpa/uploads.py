"""Upload a TPA file: check it, refuse duplicates, PUT it to the stage, record it.

Order matters to the user: every check that can refuse the file runs before anything is
staged, and the record is written only after the PUT succeeded, so a failed PUT leaves
nothing half-recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from project.sources import SourceError
from tpa import snowflake, staging
from tpa.cache import master_data
from tpa.mapping import header_problems
from tpa.models import FileStatus, IngestionFile, Tpa
from tpa.staging import Refused

logger = logging.getLogger(__name__)


def max_upload_bytes() -> int:
    return int(getattr(settings, "TPA_UPLOAD_MAX_BYTES", 50 * 2**20))


async def upload(tpa: Tpa, name: str, chunks: Iterable[bytes], user: Any) -> IngestionFile:
    """Stage one CSV for `tpa` and record it; Refused (with the reason) when it cannot be."""
    if not tpa.active:
        raise Refused(f"{tpa.code} is inactive: it takes no files.", status=409)
    safe = staging.safe_name(name)
    prepared = await asyncio.to_thread(staging.spool, chunks, max_upload_bytes())
    try:
        header = await asyncio.to_thread(staging.read_header, prepared)
        if problems := header_problems(header, await master_data(tpa.code)):
            raise Refused("The header does not match the field mappings. " + " ".join(problems))
        if (
            earlier := await IngestionFile.objects.filter(tpa=tpa, sha256=prepared.sha256)
            .exclude(status=FileStatus.FAILED)
            .afirst()
        ):
            raise Refused(
                f"This file was already uploaded as {earlier.original_name} on "
                f"{timezone.localtime(earlier.uploaded_at):%Y-%m-%d %H:%M} (now {earlier.status}).",
                status=409,
            )
        directory = staging.stage_dir(tpa.code, timezone.localdate())
        path = f"{directory}/{safe}"
        if await IngestionFile.objects.filter(stage_path=path).aexists():
            # Same name, other content, same day: keep both, told apart by content.
            stem = safe.removesuffix(".csv")
            safe = f"{stem[:80]}-{prepared.sha256[:8]}.csv"
            path = f"{directory}/{safe}"
        await asyncio.to_thread(staging.normalise, prepared, tpa.code, path)
        assert prepared.normalised is not None
        try:
            await snowflake.put(prepared.normalised, directory, safe)
        except SourceError as exc:
            logger.warning("PUT of %s failed: %s", path, exc.message)
            raise Refused(f"The file could not be staged, nothing was recorded: {exc.message}", status=502) from exc
        try:
            return await IngestionFile.objects.acreate(
                tpa=tpa,
                original_name=name[:255],
                stage_path=path,
                size=prepared.size,
                sha256=prepared.sha256,
                row_count=prepared.row_count,
                columns=header,
                uploaded_by=user if getattr(user, "is_authenticated", False) else None,
            )
        except IntegrityError:
            # Someone uploaded the same content at the same moment: theirs stays.
            await snowflake.remove(path)
            raise Refused("This file was just uploaded by someone else.", status=409) from None
    finally:
        await asyncio.to_thread(prepared.cleanup)
