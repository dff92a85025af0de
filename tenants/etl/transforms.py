"""Pure transformation helpers for the ETL tenant (a second module, shipped with index.py)."""

from __future__ import annotations

from typing import Any


class BadRecordError(ValueError):
    """A record that no retry will fix."""


def clean(record: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(record, dict) or "sku" not in record:
        raise BadRecordError(f"record without a sku: {record!r}")
    try:
        qty = int(record.get("qty", 0))
        price = round(float(record.get("price", 0.0)), 2)
    except (TypeError, ValueError):
        raise BadRecordError(
            f"record {record.get('sku')!r} has a non-numeric qty or price"
        ) from None
    if qty < 0:
        raise BadRecordError(f"record {record['sku']!r} has a negative quantity")
    return {"sku": str(record["sku"]).upper(), "qty": qty, "price": price}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    revenue = round(sum(r["qty"] * r["price"] for r in rows), 2)
    units = sum(r["qty"] for r in rows)
    top = max(rows, key=lambda r: r["qty"] * r["price"])["sku"] if rows else None
    return {"rows": len(rows), "units": units, "revenue": revenue, "top_sku": top}
