"""CSV exports (docs/export.md): one writer behind the API's `…/export/` endpoints, admin's
"Export selected as CSV" and the replay's trades.csv.

Rows are read with `.iterator(chunk_size=…)` and written a block at a time, so an export of
any range holds one block in memory; nothing counts the rows first.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from asgiref.sync import sync_to_async
from django.contrib import admin
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import action

BLOCK_ROWS = 500  # rows read a query at a time and written as one block
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """Text a spreadsheet would run as a formula (a venue's symbol is outside data) gets a leading `'`."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def cell(value) -> str:
    """A value as one CSV cell: decimals in full (never `1E-10`), times ISO 8601 UTC, lists `;`-joined, dicts as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return text_cell(";".join(str(item) for item in value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text_cell(str(value))


@dataclass(frozen=True)
class CsvTable:
    """One export: its file name, its header, the values a row reads, and how they become its cells.

    `values` turns the caller's queryset (filtered and ordered) into a `values_list`: plain
    tuples, no model instances or related-object caches whose reference cycles would keep
    earlier blocks alive until the garbage collector's next full pass."""

    name: str
    header: Sequence[str]
    values: Callable  # queryset -> the values_list `row` reads
    row: Callable[[tuple], Sequence] = tuple  # one tuple of values -> the cells' values, in header order

    def blocks(self, queryset) -> Iterator[str]:
        """The CSV text, header first, in blocks of BLOCK_ROWS rows."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(self.header)
        for n, values in enumerate(self.values(queryset).iterator(chunk_size=BLOCK_ROWS), start=1):
            writer.writerow([cell(value) for value in self.row(values)])
            if n % BLOCK_ROWS == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    def response(self, queryset) -> StreamingHttpResponse:
        """A download of `queryset` (filtered and ordered by the caller), streamed."""
        return CsvResponse(self.blocks(queryset), content_type="text/csv; charset=utf-8",
                           headers={"Content-Disposition": f'attachment; filename="{self.name}.csv"'})

    def write(self, queryset, path: Path) -> Path:
        with path.open("w", encoding="utf-8", newline="") as out:
            out.writelines(self.blocks(queryset))
        return path

    def admin_action(self):
        """Admin's "Export selected as CSV" for this table (anyone who may view the rows)."""
        @admin.action(description="Export selected as CSV", permissions=["view"])
        def export_csv(modeladmin, request, queryset):
            return self.response(queryset)
        return export_csv


class CsvResponse(StreamingHttpResponse):
    """A download streamed from a synchronous generator under WSGI and ASGI alike.

    Served over ASGI (uvicorn), Django would read a synchronous iterator whole before sending
    a byte; here each block is read as it is sent, in the request's own thread
    (`thread_sensitive`), the one whose database connection holds the cursor."""

    async def __aiter__(self):
        blocks = iter(self.streaming_content)
        read = sync_to_async(next, thread_sensitive=True)
        while (block := await read(blocks, None)) is not None:
            yield block


CSV_RESPONSE = {(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, streamed (docs/export.md)")}


class CsvExportMixin:
    """`GET <list>/export/`: the list's rows, with its filters and order, as CSV (`export_table`)."""

    export_table: CsvTable

    @extend_schema(responses=CSV_RESPONSE)
    @action(detail=False, methods=["get"], url_path="export", pagination_class=None)
    def export(self, request, *args, **kwargs):
        """The list's rows (same filters, same order, no pages) as CSV, streamed."""
        return self.export_table.response(self.get_queryset())
