"""The TPA list and master data, read through project.cache; `invalidate` after a change.

Two namespaces: `tpa-list` (every TPA, for the list page and the API) and `master-data`
(one TPA's target schema with its columns and the TPA's field mappings, which the
upload check and the silver step read; under the key "all", every TPA's by code, which
`/api/tpa/master-data` serves). Both have warmers (`register_warmers`), so the admin, the API
and `manage.py cache_warm` fill exactly what the views read.

Invalidation is one explicit call, `invalidate`, made by the code that saves master data (the
mappings page, the admin, the demo loader) once its transaction has committed, so no reader
can cache the old rows again in between; it says which namespaces it could not reach, and
the save tells the person. A write that bypasses these (a shell, a migration) is followed by
`manage.py cache_clear tpa-list master-data`. The pipeline never depends on it: a run reads
the mappings it applies from Postgres (`load_master_data`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from django.db.models import F

from project import auth, cache, localcache
from project.localcache import MISSING, Missing
from tpa.models import Access, Tpa, access_for

logger = logging.getLogger(__name__)

TPA_LIST = "tpa-list"
MASTER_DATA = "master-data"


@dataclass(frozen=True, slots=True)
class TpaSummary:
    code: str
    name: str
    active: bool
    contact_name: str
    contact_email: str
    target_schema: str


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    data_type: str
    required: bool


@dataclass(frozen=True, slots=True)
class Mapping:
    id: int
    source_column: str
    target_column: str
    transform: str
    argument: str


@dataclass(frozen=True, slots=True)
class MasterData:
    tpa_code: str
    schema_id: int
    schema_name: str
    schema_version: int
    table_name: str
    key_column: str
    columns: tuple[Column, ...]
    mappings: tuple[Mapping, ...]
    # Tpa.mappings_version when these were read: a run records the version it applied.
    mappings_version: int = 0

    @property
    def source_columns(self) -> list[str]:
        """The file columns the mappings read, in mapping order, each once."""
        seen: dict[str, None] = {}
        for mapping in self.mappings:
            if mapping.source_column:
                seen.setdefault(mapping.source_column, None)
        return list(seen)


async def load_tpa_list() -> list[TpaSummary]:
    return [
        TpaSummary(t.code, t.name, t.active, t.contact_name, t.contact_email, str(t.target_schema))
        async for t in Tpa.objects.select_related("target_schema").order_by("code")
    ]


async def tpa_list() -> list[TpaSummary]:
    # The same namespace, key and loader as the registered warmer: a warm fills what this reads.
    # Kept a few seconds in the process (no thread hop); an invalidation reaches the next read.
    return (await localcache.load(TPA_LIST, "all", load_tpa_list)).value


async def tpa_list_for(user: Any) -> tuple[Access, list[TpaSummary]]:
    """What `user` may do with TPAs, and the TPA list as they may see it: no database round
    trip while the list and the user's rights are unchanged."""
    entry, stamp = await localcache.load_stamped(TPA_LIST, "all", load_tpa_list)
    access, codes = await tpa_access(user, stamp)
    return access, [tpa for tpa in entry.value if tpa.code in codes]


# Per user: (access_for, the codes Tpa.objects.visible_to lets them see), read once and kept
# while both the auth generation (users, groups, permissions: project.auth) and the TPA
# list's (a TPA added, removed or renamed: `invalidate`) stand.
TPA_ACCESS = localcache.LocalCache("tpa-access", ttl=10)


async def tpa_access(user: Any, tpa_stamp: int | None | Missing = MISSING) -> tuple[Access, frozenset[str]]:
    """What `user` may do with TPAs and the codes of those they may see. `tpa_stamp`: the
    TPA list's generation when the caller has just read it (else it is read here)."""
    if isinstance(tpa_stamp, Missing):
        tpa_stamp = await localcache.namespace_generation(TPA_LIST).aget()
    auth_stamp = await auth.auth_stamp(user)
    stamp = None if auth_stamp is None or tpa_stamp is None or not user.is_authenticated else (auth_stamp, tpa_stamp)
    found = TPA_ACCESS.get(user.pk, stamp)
    if isinstance(found, Missing):
        # Both read after the stamps: a change meanwhile is newer than the stamp it is kept under.
        access = await access_for(user)
        codes = frozenset([code async for code in Tpa.objects.visible_to(user).values_list("code", flat=True)])
        found = (access, codes)
        TPA_ACCESS.set(user.pk, found, stamp)
    return cast(tuple[Access, frozenset[str]], found)


def master_data_loader(tpa_code: str) -> Callable[[], Awaitable[MasterData]]:
    async def load() -> MasterData:
        tpa = await Tpa.objects.select_related("target_schema").aget(code=tpa_code)
        schema = tpa.target_schema
        columns = tuple(
            [Column(c.name, c.data_type, c.required) async for c in schema.columns.order_by("position", "id")]
        )
        mappings = tuple(
            [
                Mapping(m.id, m.source_column, m.target_column, m.transform, m.argument)
                async for m in tpa.mappings.filter(target_schema=schema).order_by("id")
            ]
        )
        return MasterData(
            tpa.code,
            schema.pk,
            schema.name,
            schema.version,
            schema.table_name,
            schema.key_column,
            columns,
            mappings,
            tpa.mappings_version,
        )

    return load


async def master_data(tpa_code: str) -> MasterData:
    """A TPA's master data through the cache (pages, the upload check)."""
    return (await localcache.load(MASTER_DATA, tpa_code, master_data_loader(tpa_code))).value


async def load_master_data(tpa_code: str) -> MasterData:
    """A TPA's master data straight from Postgres: what a run applies, never stale."""
    return await master_data_loader(tpa_code)()


async def load_all_master_data() -> dict[str, MasterData]:
    """Every TPA's master data by code, reloading each TPA's own entry on the way, so a warm
    (admin, API, `cache_warm`) also refreshes what the upload check reads."""
    codes = [code async for code in Tpa.objects.order_by("code").values_list("code", flat=True)]
    return {code: (await cache.load(MASTER_DATA, code, master_data_loader(code), fresh=True)).value for code in codes}


def register_warmers() -> None:
    # "all" cannot clash with a TPA's own entry: codes are upper case (tpa_code_validator).
    cache.register_warmer(TPA_LIST, load_tpa_list, key="all")
    cache.register_warmer(MASTER_DATA, load_all_master_data, key="all")


def invalidate(*, tpas: bool = True) -> list[str]:
    """Make every process reload master data (and the TPA list when `tpas`), after the change
    committed. Returns the namespaces the cache could not be told about: the caller shows them
    to the person who saved, since readers may see the old values until their TTL ends."""
    failed = []
    for namespace in (TPA_LIST, MASTER_DATA) if tpas else (MASTER_DATA,):
        try:
            reached = cache.invalidate(namespace)
        except Exception:
            logger.warning("could not invalidate %s", namespace, exc_info=True)
            reached = 0
        if not reached:
            failed.append(namespace)
    return failed


def stale_warning(failed: list[str]) -> str:
    """What to tell the person whose save could not invalidate `failed` (empty when none)."""
    if not failed:
        return ""
    return (
        f"Saved, but the cache could not be told ({', '.join(failed)}): pages may show the old values for a few "
        "minutes. Runs are not affected: they read the mappings from the database. "
        f"Run `manage.py cache_clear --yes {' '.join(failed)}` once the cache is back."
    )


def bump_mappings_version(tpa_id: int) -> None:
    """Record that a TPA's mappings changed (inside the saving transaction)."""
    Tpa.objects.filter(pk=tpa_id).update(mappings_version=F("mappings_version") + 1)
