"""Demo master data and realistic generated claim files for three TPAs with different layouts."""

from __future__ import annotations

import csv
import datetime
import io
import random
from dataclasses import dataclass

from django.db import transaction

from tpa.cache import bump_mappings_version, invalidate
from tpa.models import ColumnType, FieldMapping, TargetColumn, TargetSchema, Tpa, Transform

# The CLAIMS target schema, version 1: SILVER.CLAIMS in tpa/snowflake/001_objects.sql.
CLAIMS_COLUMNS = [
    ("CLAIM_ID", ColumnType.TEXT, True),
    ("MEMBER_ID", ColumnType.TEXT, True),
    ("SERVICE_DATE", ColumnType.DATE, True),
    ("PROCEDURE_CODE", ColumnType.TEXT, False),
    ("DIAGNOSIS_CODE", ColumnType.TEXT, False),
    ("BILLED_AMOUNT", ColumnType.DECIMAL, True),
    ("PAID_AMOUNT", ColumnType.DECIMAL, False),
    ("CLAIM_STATUS", ColumnType.TEXT, False),
]


@dataclass(frozen=True)
class DemoTpa:
    code: str
    name: str
    contact: str
    # (source column, target column, transform, argument)
    mappings: list[tuple[str, str, str, str]]
    date_format: str  # strftime for the generated files


DEMO_TPAS = [
    DemoTpa(
        "ACME",
        "Acme Health Administrators",
        "Dana Ortiz",
        [
            ("claim_id", "CLAIM_ID", Transform.TRIM, ""),
            ("member_id", "MEMBER_ID", Transform.TRIM, ""),
            ("service_date", "SERVICE_DATE", Transform.DATE, "YYYY-MM-DD"),
            ("cpt", "PROCEDURE_CODE", Transform.TRIM, ""),
            ("icd10", "DIAGNOSIS_CODE", Transform.TRIM, ""),
            ("billed", "BILLED_AMOUNT", Transform.CAST, ""),
            ("paid", "PAID_AMOUNT", Transform.CAST, ""),
            ("status", "CLAIM_STATUS", Transform.TRIM, ""),
        ],
        "%Y-%m-%d",
    ),
    DemoTpa(
        "BLUEPEAK",
        "BluePeak Benefits",
        "Sam Whitfield",
        [
            ("Claim Number", "CLAIM_ID", Transform.TRIM, ""),
            ("Member", "MEMBER_ID", Transform.TRIM, ""),
            ("DOS", "SERVICE_DATE", Transform.DATE, "MM/DD/YYYY"),
            ("Procedure", "PROCEDURE_CODE", Transform.TRIM, ""),
            ("Charge Amount", "BILLED_AMOUNT", Transform.CAST, ""),
            ("Allowed Amount", "PAID_AMOUNT", Transform.CAST, ""),
            ("", "CLAIM_STATUS", Transform.CONSTANT, "PAID"),
        ],
        "%m/%d/%Y",
    ),
    DemoTpa(
        "CORAL",
        "Coral TPA Services",
        "Priya Raman",
        [
            ("CLM_NO", "CLAIM_ID", Transform.TRIM, ""),
            ("SUBSCRIBER_ID", "MEMBER_ID", Transform.TRIM, ""),
            ("SVC_DT", "SERVICE_DATE", Transform.DATE, "YYYYMMDD"),
            ("PROC_CD", "PROCEDURE_CODE", Transform.TRIM, ""),
            ("DX_CD", "DIAGNOSIS_CODE", Transform.TRIM, ""),
            ("AMT_BILLED", "BILLED_AMOUNT", Transform.CAST, ""),
            ("AMT_PAID", "PAID_AMOUNT", Transform.CAST, ""),
            ("CLM_STAT", "CLAIM_STATUS", Transform.TRIM, ""),
        ],
        "%Y%m%d",
    ),
]

PROCEDURES = ["99213", "99214", "80053", "85025", "93000", "36415", "71046", "97110", "90834", "99397"]
DIAGNOSES = ["E11.9", "I10", "J06.9", "M54.5", "Z00.00", "F41.1", "K21.9", "R51.9", "E78.5", "N39.0"]
STATUSES = ["PAID", "PAID", "PAID", "DENIED", "PENDED", "ADJUSTED"]


def claims_schema() -> TargetSchema:
    schema, _ = TargetSchema.objects.get_or_create(
        name="CLAIMS",
        version=1,
        defaults={
            "table_name": "CLAIMS",
            "key_column": "CLAIM_ID",
            "description": "Medical claim lines, one per claim.",
        },
    )
    for position, (name, data_type, required) in enumerate(CLAIMS_COLUMNS):
        TargetColumn.objects.update_or_create(
            schema=schema, name=name, defaults={"data_type": data_type, "required": required, "position": position}
        )
    return schema


@transaction.atomic
def ensure_master_data() -> list[Tpa]:
    """The CLAIMS schema and the three demo TPAs with their mappings; safe to run again."""
    schema = claims_schema()
    tpas = []
    for demo in DEMO_TPAS:
        tpa, _ = Tpa.objects.get_or_create(
            code=demo.code,
            defaults={
                "name": demo.name,
                "contact_name": demo.contact,
                "contact_email": f"{demo.contact.split()[0].lower()}@{demo.code.lower()}.example",
                "target_schema": schema,
            },
        )
        for source, target, transform, argument in demo.mappings:
            FieldMapping.objects.update_or_create(
                tpa=tpa,
                target_schema=schema,
                target_column=target,
                defaults={"source_column": source, "transform": transform, "argument": argument},
            )
        bump_mappings_version(tpa.pk)
        tpas.append(tpa)
    transaction.on_commit(invalidate)
    return tpas


def claims_csv(demo: DemoTpa, rows: int, seed: int, start: datetime.date = datetime.date(2026, 1, 1)) -> bytes:
    """A claim file in the TPA's own layout: its column names, date format and number style."""
    rng = random.Random(f"{demo.code}-{seed}")
    header = [source for source, *_ in demo.mappings if source]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    members = [f"M{rng.randrange(10**6, 10**7)}" for _ in range(max(5, rows // 4))]
    for n in range(rows):
        billed = round(rng.uniform(40, 2400), 2)
        status = rng.choice(STATUSES)
        paid = 0.0 if status == "DENIED" else round(billed * rng.uniform(0.4, 0.95), 2)
        day = start + datetime.timedelta(days=rng.randrange(0, 180))
        money = (lambda v: f"{v:,.2f}") if demo.code == "BLUEPEAK" else (lambda v: f"{v:.2f}")
        values = {
            "CLAIM_ID": f"{demo.code[:3]}-{seed:02d}{n:05d}",
            "MEMBER_ID": rng.choice(members),
            "SERVICE_DATE": day.strftime(demo.date_format),
            "PROCEDURE_CODE": rng.choice(PROCEDURES),
            "DIAGNOSIS_CODE": rng.choice(DIAGNOSES),
            "BILLED_AMOUNT": money(billed),
            "PAID_AMOUNT": money(paid),
            "CLAIM_STATUS": status,
        }
        writer.writerow([values[target] for source, target, *_ in demo.mappings if source])
    return out.getvalue().encode()
