"""The TPA list and master data, read through project.cache and invalidated on any change.

Two namespaces: `tpa-list` (every TPA, for the list page and the API) and `master-data`
(one TPA's target schema with its columns and the TPA's field mappings, which the
upload check and the silver step read; under the key "all", every TPA's by code, which
`/api/tpa/master-data` serves). Both have warmers (`register_warmers`), so the admin, the API
and `manage.py cache_warm` fill exactly what the views read. Model signals cover saves
and deletes (the admin included); InvalidatingQuerySet covers update(), delete() and the bulk methods. The bump
waits for the commit, so no reader can cache the old rows again in between.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from project import cache, localcache

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

    @property
    def source_columns(self) -> list[str]:
        """The file columns the mappings read, in mapping order, each once."""
        seen: dict[str, None] = {}
        for mapping in self.mappings:
            if mapping.source_column:
                seen.setdefault(mapping.source_column, None)
        return list(seen)


async def load_tpa_list() -> list[TpaSummary]:
    from tpa.models import Tpa

    return [
        TpaSummary(t.code, t.name, t.active, t.contact_name, t.contact_email, str(t.target_schema))
        async for t in Tpa.objects.select_related("target_schema").order_by("code")
    ]


async def tpa_list() -> list[TpaSummary]:
    # The same namespace, key and loader as the registered warmer: a warm fills what this reads.
    # Kept a few seconds in the process (no thread hop); an invalidation reaches the next read.
    return (await localcache.load(TPA_LIST, "all", load_tpa_list)).value


def master_data_loader(tpa_code: str) -> Callable[[], Awaitable[MasterData]]:
    async def load() -> MasterData:
        from tpa.models import Tpa

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
            tpa.code, schema.pk, schema.name, schema.version, schema.table_name, schema.key_column, columns, mappings
        )

    return load


async def master_data(tpa_code: str) -> MasterData:
    return (await localcache.load(MASTER_DATA, tpa_code, master_data_loader(tpa_code))).value


async def load_all_master_data() -> dict[str, MasterData]:
    """Every TPA's master data by code, reloading each TPA's own entry on the way, so a warm
    (admin, API, `cache_warm`) also refreshes what the upload check and the pipeline read."""
    from tpa.models import Tpa

    codes = [code async for code in Tpa.objects.order_by("code").values_list("code", flat=True)]
    return {code: (await cache.load(MASTER_DATA, code, master_data_loader(code), fresh=True)).value for code in codes}


def register_warmers() -> None:
    # "all" cannot clash with a TPA's own entry: codes are upper case (tpa_code_validator).
    cache.register_warmer(TPA_LIST, load_tpa_list, key="all")
    cache.register_warmer(MASTER_DATA, load_all_master_data, key="all")


def namespaces_for(model: type[Any]) -> tuple[str, ...]:
    from tpa.models import FieldMapping, TargetColumn, TargetSchema, Tpa

    if model is Tpa or model is TargetSchema:
        return (TPA_LIST, MASTER_DATA)  # the list shows each TPA's schema name
    if model in (TargetColumn, FieldMapping):
        return (MASTER_DATA,)
    return ()


def invalidate_after_commit(model: type[Any]) -> None:
    for namespace in namespaces_for(model):
        transaction.on_commit(lambda namespace=namespace: cache.invalidate(namespace))


def _changed(sender: type[Any], **kwargs: Any) -> None:
    invalidate_after_commit(sender)


def connect_signals() -> None:
    from tpa.models import FieldMapping, TargetColumn, TargetSchema, Tpa

    for model in (Tpa, TargetSchema, TargetColumn, FieldMapping):
        post_save.connect(_changed, sender=model, dispatch_uid=f"tpa-cache-save-{model.__name__}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"tpa-cache-delete-{model.__name__}")
