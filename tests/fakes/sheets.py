"""A fake Google Sheets API v4 on 127.0.0.1, for gspread and revbot's Sheet dashboard.

It keeps a real in-memory grid per sheet (``userEnteredValue`` and ``userEnteredFormat`` per
cell, Google's grid limits), issues OAuth tokens from its own ``/token`` endpoint and requires
them, answers errors in Google's JSON shape (reference sheets-and-resend.md §1), validates every
request against the discovery document (``google_contract``), counts requests and can inject
failures. Only what a test needs is implemented; an unsupported ``batchUpdate`` request type is
a clear 400, never a silent success. Like Google it refuses a body above 10 MiB and any change
that takes a spreadsheet above its cell limit (``max_cells``, Google's 10,000,000 by default),
and it records the bytes of each request and answer, so a test can say what a run costs.

A write is atomic without copying the spreadsheet: every cell changed in place is journalled
and put back if a later subrequest fails, so a 300,000-row tab costs a daily write what the day
costs, not a copy of 3,600,000 cells.

Known simplifications: formulas are stored, never evaluated (values reads return the formula
text); values.append's table detection is a simple "contiguous block" rule; FORMATTED_VALUE
rendering covers the number formats revbot uses, not Sheets' full pattern language.
"""

from __future__ import annotations

import base64
import copy
import functools
import gc
import itertools
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes._http import LocalServer
from tests.fakes.google_contract import SheetsContract, strip_nulls

DEFAULT_ROWS = 1000
DEFAULT_COLUMNS = 26
MAX_CELLS = 10_000_000
# Google's limit on a request body (a 400 INVALID_ARGUMENT above it).
MAX_BODY_BYTES = 10_485_760
MAX_COLUMNS = 18_278
SERIAL_EPOCH = datetime(1899, 12, 30)

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES = {
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute "
    "per user' of service 'sheets.googleapis.com' for consumer 'project_number:123456789'.",
    500: "Internal error encountered.",
    502: "Bad Gateway",
    503: "The service is currently unavailable.",
    504: "The request timed out. Please try again.",
}
QUOTA_DETAILS = [
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "RATE_LIMIT_EXCEEDED",
        "domain": "googleapis.com",
        "metadata": {
            "quota_metric": "sheets.googleapis.com/write_requests",
            "quota_limit": "WriteRequestsPerMinutePerUser",
            "service": "sheets.googleapis.com",
            "consumer": "projects/123456789",
        },
    }
]


@dataclass(frozen=True, slots=True)
class Formula:
    """A cell holding a formula, as :meth:`FakeSheetsServer.grid` reports it."""

    text: str


class RecordedRequest(NamedTuple):
    """One request to the Sheets API (token requests are kept apart), with its size: the bytes
    of its target (path and query, as sent), of its body, and of the JSON answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    target_bytes: int = 0
    body_bytes: int = 0
    response_bytes: int = 0

    @property
    def request_bytes(self) -> int:
        return self.target_bytes + self.body_bytes

    @property
    def kind(self) -> str:
        """``spreadsheets.get``, ``values.batchGet``, ``spreadsheets.batchUpdate``, ..."""
        return _kind_of(self.method, self.path)


class ApiError(Exception):
    """An error answered in Google's shape."""

    def __init__(
        self, code: int, message: str | None = None, *, details: list[Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message or DEFAULT_MESSAGES.get(code, HTTPStatus(code).phrase)
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "status": STATUS_NAMES.get(self.code, "UNKNOWN"),
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


def _bad_request(message: str, violations: Sequence[str] = ()) -> ApiError:
    details = None
    if violations:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"field": v.split(":", 1)[0], "description": v} for v in violations
                ],
            }
        ]
    return ApiError(400, message, details=details)


# --- A1 notation ------------------------------------------------------------------------------


def column_letter(index: int) -> str:
    """0 -> "A", 25 -> "Z", 26 -> "AA"."""
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def column_index(letters: str) -> int:
    """ "A" -> 0, "AA" -> 26."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n - 1


def quote_title(title: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", title) and not re.fullmatch(
        r"[A-Za-z]{1,3}\d+", title
    ):
        return title
    return "'" + title.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Area:
    """A rectangle of one sheet; ``None`` ends are unbounded (half-open, zero-based)."""

    sheet_id: int
    row0: int
    row1: int | None
    col0: int
    col1: int | None

    def clamp(self, rows: int, cols: int) -> Area:
        return Area(
            self.sheet_id,
            self.row0,
            rows if self.row1 is None else self.row1,
            self.col0,
            cols if self.col1 is None else self.col1,
        )


_CELL = re.compile(r"^([A-Za-z]{0,3})(\d*)$")


def _parse_cell(text: str) -> tuple[int | None, int | None]:
    m = _CELL.match(text)
    if not m or not (m.group(1) or m.group(2)):
        raise ValueError(text)
    col = column_index(m.group(1)) if m.group(1) else None
    row = int(m.group(2)) - 1 if m.group(2) else None
    if row is not None and row < 0:
        raise ValueError(text)
    return row, col


# --- field masks --------------------------------------------------------------------------------

FieldTree = dict[str, "FieldTree"]


def parse_fields(text: str) -> FieldTree:
    """``"a,b.c,d(e,f/g)"`` -> ``{"a": {}, "b": {"c": {}}, "d": {"e": {}, "f": {"g": {}}}}``."""
    pos = 0

    def merge(into: FieldTree, new: FieldTree) -> None:
        for key, sub in new.items():
            if key in into and into[key] and sub:
                merge(into[key], sub)
            elif key in into and not sub:
                into[key] = {}
            elif key not in into:
                into[key] = sub

    def parse_list() -> FieldTree:
        nonlocal pos
        tree: FieldTree = {}
        while pos < len(text):
            m = re.compile(r"\s*([A-Za-z0-9_*@$]+(?:[./][A-Za-z0-9_*@$]+)*)\s*").match(text, pos)
            if not m:
                raise ValueError(f"bad field mask near {text[pos:]!r}")
            pos = m.end()
            path = re.split(r"[./]", m.group(1))
            leaf: FieldTree = {}
            if pos < len(text) and text[pos] == "(":
                pos += 1
                leaf = parse_list()
                if pos >= len(text) or text[pos] != ")":
                    raise ValueError("unbalanced parentheses in field mask")
                pos += 1
            node: FieldTree = leaf
            for name in reversed(path):
                node = {name: node}
            merge(tree, node)
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            break
        return tree

    tree = parse_list()
    if pos != len(text):
        raise ValueError(f"bad field mask near {text[pos:]!r}")
    return tree


def select_fields(value: Any, tree: FieldTree) -> Any:
    """The partial response of ``value`` for a ``fields`` mask."""
    if not tree or "*" in tree:
        return value
    if isinstance(value, list):
        return [select_fields(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    return {k: select_fields(value[k], sub) for k, sub in tree.items() if k in value}


def apply_mask(target: Mapping[str, Any], source: Mapping[str, Any], tree: FieldTree) -> dict:
    """A copy of ``target`` with the ``tree`` fields taken from ``source`` (absent = cleared)."""
    if "*" in tree:
        return dict(source)
    path = _chain(tree)
    if path is not None:  # the common one-path masks ("userEnteredValue"), kept fast
        return _set_path(target, source, path)
    out = dict(target)
    for key, sub in tree.items():
        if not sub:
            if key in source:
                out[key] = source[key]  # shared, never mutated: cells are replaced whole
            else:
                out.pop(key, None)
            continue
        inner = apply_mask(out.get(key) or {}, source.get(key) or {}, sub)
        if inner:
            out[key] = inner
        else:
            out.pop(key, None)
    return out


Mask = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]


def compile_mask(tree: FieldTree) -> Mask:
    """``apply_mask`` for one ``tree``, its shape worked out once per request, not per cell."""
    if "*" in tree:
        return lambda target, source: dict(source)
    path = _chain(tree)
    if path is None:
        return lambda target, source: apply_mask(target, source, tree)
    if len(path) == 1:
        key = path[0]

        def one(target: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
            if not target and len(source) == 1 and key in source:
                return source  # type: ignore[return-value]  # shared: cells are never mutated
            out = dict(target)
            if key in source:
                out[key] = source[key]
            else:
                out.pop(key, None)
            return out

        return one
    if len(path) == 2:
        return _two_level(*path)
    return lambda target, source: _set_path(target, source, path)


def _two_level(outer: str, leaf: str) -> Mask:
    """The mask ``outer.leaf`` (``userEnteredFormat.numberFormat``): a cell whose ``outer``
    holds nothing else shares one ``outer`` per source, so formatting a column of 300,000
    cells makes one small dict per cell, not three."""
    memo: list[Any] = [None, {}]  # the last source, and its ``outer`` for such a cell

    def two(target: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
        if memo[0] is not source:
            given = source.get(outer) or {}
            memo[0], memo[1] = source, ({leaf: given[leaf]} if leaf in given else {})
        old = target.get(outer)
        if not old or (len(old) == 1 and leaf in old):
            inner = memo[1]
        else:
            inner = dict(old)
            given = source.get(outer) or {}
            if leaf in given:
                inner[leaf] = given[leaf]
            else:
                inner.pop(leaf, None)
        out = dict(target)
        if inner:
            out[outer] = inner
        else:
            out.pop(outer, None)
        return out

    return two


def _chain(tree: FieldTree) -> list[str] | None:
    """``["a", "b"]`` for the mask ``a.b``; None for a mask with branches."""
    path: list[str] = []
    node = tree
    while len(node) == 1:
        ((key, node),) = node.items()
        path.append(key)
    return path if path and not node else None


def _set_path(target: Mapping[str, Any], source: Mapping[str, Any], path: list[str]) -> dict:
    out = dict(target)
    key = path[0]
    if len(path) == 1:
        if key in source:
            out[key] = source[key]
        else:
            out.pop(key, None)
        return out
    inner = _set_path(target.get(key) or {}, source.get(key) or {}, path[1:])
    if inner:
        out[key] = inner
    else:
        out.pop(key, None)
    return out


# --- values: parsing and rendering -------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][+-]?\d+)?$")
_CURRENCY = re.compile(r"^([+-]?)\$(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)$")


def to_serial(value: date | datetime) -> float:
    """Days since 1899-12-30 (Sheets' serial number)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    delta = value.replace(tzinfo=None) - SERIAL_EPOCH
    return delta.days + delta.seconds / 86400 + delta.microseconds / 86_400_000_000


def from_serial(serial: float) -> datetime:
    return SERIAL_EPOCH + timedelta(days=serial)


def _user_entered(value: Any) -> dict[str, Any] | None:
    """CellData for one value typed by a user (USER_ENTERED); None clears the cell."""
    cell = _raw(value)
    if cell is None or "stringValue" not in cell["userEnteredValue"]:
        return cell  # booleans, numbers and blanks are the same either way
    text = str(value)
    if text.startswith("="):
        return {"userEnteredValue": {"formulaValue": text}}
    if text.startswith("'"):
        return {"userEnteredValue": {"stringValue": text[1:]}}
    if text.upper() in ("TRUE", "FALSE"):
        return {"userEnteredValue": {"boolValue": text.upper() == "TRUE"}}
    stripped = text.strip()
    if _NUMBER.match(stripped) and re.search(r"\d", stripped):
        return {"userEnteredValue": {"numberValue": _number(stripped.replace(",", ""))}}
    if stripped.endswith("%") and _NUMBER.match(stripped[:-1]) and re.search(r"\d", stripped):
        return {
            "userEnteredValue": {"numberValue": float(stripped[:-1].replace(",", "")) / 100},
            "userEnteredFormat": {"numberFormat": {"type": "PERCENT", "pattern": "0.00%"}},
        }
    m = _CURRENCY.match(stripped)
    if m:
        amount = _number(m.group(2).replace(",", ""))
        return {
            "userEnteredValue": {"numberValue": -amount if m.group(1) == "-" else amount},
            "userEnteredFormat": {"numberFormat": {"type": "CURRENCY", "pattern": '"$"#,##0.00'}},
        }
    for fmt, kind, pattern in (
        ("%Y-%m-%d", "DATE", "yyyy-mm-dd"),
        ("%Y-%m-%d %H:%M:%S", "DATE_TIME", "yyyy-mm-dd hh:mm:ss"),
        ("%Y-%m-%d %H:%M", "DATE_TIME", "yyyy-mm-dd hh:mm"),
        ("%m/%d/%Y", "DATE", "M/d/yyyy"),
    ):
        try:
            parsed = datetime.strptime(stripped, fmt)
        except ValueError:
            continue
        return {
            "userEnteredValue": {"numberValue": _number(repr(to_serial(parsed)))},
            "userEnteredFormat": {"numberFormat": {"type": kind, "pattern": pattern}},
        }
    return {"userEnteredValue": {"stringValue": text}}


def _raw(value: Any) -> dict[str, Any] | None:
    """CellData for one value stored as-is (RAW)."""
    if isinstance(value, bool):
        return {"userEnteredValue": {"boolValue": value}}
    if isinstance(value, int | float):
        return {"userEnteredValue": {"numberValue": value}}
    text = str(value)
    if text == "":
        return None
    return {"userEnteredValue": {"stringValue": text}}


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _plain_number(value: float) -> int | float:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _format_pattern_number(value: float, pattern: str) -> str:
    sections = pattern.split(";")
    section = sections[0]
    negative = value < 0
    if negative and len(sections) > 1:
        section = sections[1]
        value = -value
        negative = False
    m = re.search(r"[#0][#0,]*(?:\.0+)?", section)
    if not m:
        return str(_plain_number(value))
    core = m.group(0)
    decimals = len(core.split(".")[1]) if "." in core else 0
    body = f"{abs(value):,.{decimals}f}" if "," in core else f"{abs(value):.{decimals}f}"
    prefix = section[: m.start()].replace('"', "")
    suffix = section[m.end() :].replace('"', "")
    return ("-" if negative else "") + prefix + body + suffix


def _format_datetime(serial: float, pattern: str) -> str:
    moment = from_serial(serial)
    tokens = {
        "yyyy": f"{moment.year:04d}",
        "hh": f"{moment.hour:02d}",
        "ss": f"{moment.second:02d}",
        "dd": f"{moment.day:02d}",
        "mm": f"{moment.month:02d}",
        "M": str(moment.month),
        "d": str(moment.day),
    }
    out = ""
    i = 0
    seen_hour = False
    while i < len(pattern):
        for token, text in tokens.items():
            if pattern.startswith(token, i):
                # "mm" after "hh" means minutes, as in Sheets' patterns.
                out += f"{moment.minute:02d}" if token == "mm" and seen_hour else text
                seen_hour = seen_hour or token == "hh"
                i += len(token)
                break
        else:
            out += pattern[i]
            i += 1
    return out


def format_value(cell: Mapping[str, Any]) -> str:
    """FORMATTED_VALUE of a cell (a subset of Sheets' rendering, en_US locale)."""
    value = cell.get("userEnteredValue") or {}
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return "TRUE" if value["boolValue"] else "FALSE"
    if "formulaValue" in value:
        return str(value["formulaValue"])
    if "numberValue" not in value:
        return ""
    number = value["numberValue"]
    fmt = ((cell.get("userEnteredFormat") or {}).get("numberFormat")) or {}
    kind, pattern = fmt.get("type"), fmt.get("pattern")
    if kind in ("DATE", "DATE_TIME", "TIME"):
        default = {"DATE": "M/d/yyyy", "DATE_TIME": "M/d/yyyy hh:mm:ss", "TIME": "hh:mm:ss"}
        return _format_datetime(number, pattern or default[kind])
    if kind == "PERCENT":
        return _format_pattern_number(number * 100, (pattern or "0.00%").replace("%", "")) + "%"
    if kind in ("NUMBER", "CURRENCY", "SCIENTIFIC") and pattern:
        return _format_pattern_number(number, pattern)
    if kind == "CURRENCY":
        return _format_pattern_number(number, '"$"#,##0.00')
    return str(_plain_number(number))


def render_value(cell: Mapping[str, Any] | None, value_option: str, datetime_option: str) -> Any:
    """One cell as values.get returns it; ``None`` for an empty cell."""
    if not cell:
        return None
    value = cell.get("userEnteredValue")
    if not value:
        return None
    if value_option == "FORMATTED_VALUE":
        return format_value(cell)
    if "formulaValue" in value:
        return value["formulaValue"]
    if "numberValue" in value:
        kind = (((cell.get("userEnteredFormat") or {}).get("numberFormat")) or {}).get("type")
        if datetime_option == "FORMATTED_STRING" and kind in ("DATE", "DATE_TIME", "TIME"):
            return format_value(cell)
        return _plain_number(value["numberValue"])
    if "boolValue" in value:
        return value["boolValue"]
    if "stringValue" in value:
        return value["stringValue"]
    return None


def effective(cell: Mapping[str, Any] | None) -> Any:
    """A cell's value as tests see it: str, int/float, bool, :class:`Formula` or None."""
    value = (cell or {}).get("userEnteredValue") or {}
    if "formulaValue" in value:
        return Formula(value["formulaValue"])
    for key in ("stringValue", "numberValue", "boolValue"):
        if key in value:
            return value[key]
    return None


# --- the spreadsheet model ---------------------------------------------------------------------


@dataclass
class Sheet:
    """One sheet: its SheetProperties JSON, its cells and the charts anchored on it."""

    props: dict[str, Any]
    cells: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    charts: list[dict[str, Any]] = field(default_factory=list)
    dimension_props: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    @property
    def id(self) -> int:
        return int(self.props["sheetId"])

    @property
    def title(self) -> str:
        return str(self.props["title"])

    @property
    def rows(self) -> int:
        return int(self.props["gridProperties"].get("rowCount", 0))

    @property
    def cols(self) -> int:
        return int(self.props["gridProperties"].get("columnCount", 0))

    def clone(self) -> Sheet:
        # Cells are replaced, never mutated in place, so a shallow copy of the dict is a
        # snapshot; this keeps batchUpdate atomic without deep-copying 100,000s of cells.
        return Sheet(
            copy.deepcopy(self.props),
            dict(self.cells),
            copy.deepcopy(self.charts),
            copy.deepcopy(self.dimension_props),
        )

    def set_cell(self, row: int, col: int, cell: Mapping[str, Any] | None) -> None:
        if cell:
            self.cells[(row, col)] = dict(cell)
        else:
            self.cells.pop((row, col), None)

    def a1(self, area: Area) -> str:
        rows = area.clamp(self.rows, self.cols)
        start = f"{column_letter(rows.col0)}{rows.row0 + 1}"
        end = f"{column_letter(max(rows.col0, (rows.col1 or 1) - 1))}{max(rows.row1 or 1, 1)}"
        name = quote_title(self.title)
        return f"{name}!{start}" if start == end else f"{name}!{start}:{end}"

    def last_value_row(self, col0: int = 0, col1: int | None = None) -> int:
        """Index of the last row holding a value in columns [col0, col1), or -1."""
        last = -1
        for (r, c), cell in self.cells.items():
            in_columns = c >= col0 and (col1 is None or c < col1)
            if r > last and in_columns and cell.get("userEnteredValue"):
                last = r
        return last


@dataclass
class Spreadsheet:
    id: str
    title: str
    sheets: list[Sheet]
    shared: bool = True
    locale: str = "en_US"
    time_zone: str = "Etc/GMT"

    def clone(self) -> Spreadsheet:
        return Spreadsheet(
            self.id, self.title, [s.clone() for s in self.sheets], self.shared, self.locale,
            self.time_zone,
        )  # fmt: skip

    def sheet_by_id(self, sheet_id: int, where: str = "") -> Sheet:
        for sheet in self.sheets:
            if sheet.id == sheet_id:
                return sheet
        raise _bad_request(f"{where}No grid with id: {sheet_id}")

    def sheet_by_title(self, title: str) -> Sheet | None:
        for sheet in self.sheets:
            if sheet.title == title:
                return sheet
        return None

    def reindex(self) -> None:
        for i, sheet in enumerate(self.sheets):
            sheet.props["index"] = i

    def total_cells(self) -> int:
        return sum(s.rows * s.cols for s in self.sheets)

    def parse_range(self, text: str) -> tuple[Sheet, Area]:
        """A1 notation: ``'My sheet'!A1:B2``, ``Sheet1!A:B``, ``A2:B``, ``Sheet1``, ``A1``."""
        error = _bad_request(f"Unable to parse range: {text}")
        if "!" in text:
            name, _, ref = text.rpartition("!")
            if name.startswith("'") and name.endswith("'") and len(name) >= 2:
                name = name[1:-1].replace("''", "'")
            sheet = self.sheet_by_title(name)
            if sheet is None:
                raise error
        else:
            by_title = self.sheet_by_title(text[1:-1].replace("''", "'") if text.startswith("'")
                                           else text)  # fmt: skip
            if by_title is not None:
                return by_title, Area(by_title.id, 0, None, 0, None)
            sheet, ref = self.sheets[0], text
        try:
            first, _, second = ref.partition(":")
            r0, c0 = _parse_cell(first)
            if second:
                r1, c1 = _parse_cell(second)
            else:
                if r0 is None or c0 is None:
                    raise ValueError(ref)
                r1, c1 = r0, c0
        except ValueError:
            raise error from None
        # A missing end ("A2:B") runs to the end of the grid; "B2:A1" means "A1:B2".
        if r0 is not None and r1 is not None and r1 < r0:
            r0, r1 = r1, r0
        if c0 is not None and c1 is not None and c1 < c0:
            c0, c1 = c1, c0
        return sheet, Area(
            sheet.id,
            r0 or 0,
            None if r1 is None else r1 + 1,
            c0 or 0,
            None if c1 is None else c1 + 1,
        )


def _check_within(sheet: Sheet, area: Area) -> None:
    """Google's "exceeds grid limits" error for an explicit range beyond the grid."""
    if (
        area.row0 >= sheet.rows
        or area.col0 >= sheet.cols
        or (area.row1 is not None and area.row1 > sheet.rows)
        or (area.col1 is not None and area.col1 > sheet.cols)
    ):
        raise _bad_request(
            f"Range ({sheet.a1(area)}) exceeds grid limits. Max rows: {sheet.rows}, "
            f"max columns: {sheet.cols}"
        )


# --- the server ---------------------------------------------------------------------------------

Cells = dict[tuple[int, int], Any]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while one request is served: a 2 MB write makes millions of
    small dicts and lists, none in a cycle, and the collector would otherwise walk the whole
    heap (every stored cell) many times over; it runs once, later, instead."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _Journal:
    """The cells a write changed in place, each as it was before (None: it was empty)."""

    def __init__(self) -> None:
        self._dicts: dict[int, tuple[Cells, dict[tuple[int, int], Any]]] = {}

    def before(self, cells: Cells) -> dict[tuple[int, int], Any]:
        entry = self._dicts.get(id(cells))
        if entry is None:
            entry = self._dicts[id(cells)] = (cells, {})
        return entry[1]

    def undo(self) -> None:
        for cells, before in self._dicts.values():
            for key, old in before.items():
                if old is None:
                    cells.pop(key, None)
                else:
                    cells[key] = old


@dataclass
class _Injection:
    status: int
    times: int
    kind: str | None
    body: dict[str, Any] | None
    skip: int = 0


def _kind_of(method: str, path: str) -> str:
    found = _contract().match(method, path)
    return found[0].kind if found else f"{method} {path}"


@functools.cache
def _contract() -> SheetsContract:
    """One compiled contract per process (compiling the discovery document takes a moment)."""
    return SheetsContract()


class FakeSheetsServer(LocalServer):
    """The fake Sheets API. ``with FakeSheetsServer() as server: ... server.url``."""

    thread_name = "fake-sheets"

    def __init__(self, *, max_cells: int = MAX_CELLS) -> None:
        self.contract = _contract()
        # The most cells (rowCount x columnCount over all sheets) a spreadsheet may have.
        self.max_cells = max_cells
        self.spreadsheets: dict[str, Spreadsheet] = {}
        self.requests: list[RecordedRequest] = []
        self.statuses: list[int] = []
        self.violations: list[str] = []
        self.token_requests: list[dict[str, Any]] = []
        self.tokens: set[str] = set()
        self._injections: list[_Injection] = []
        self._lock = threading.RLock()
        self._ids = itertools.count(1_000_000_001, 7_919)
        # The write under way: per cells dict changed in place, each key's cell before it.
        self._journal: _Journal | None = None

    # lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    # test controls ---------------------------------------------------------------------------

    def create_spreadsheet(
        self,
        spreadsheet_id: str,
        title: str = "Untitled spreadsheet",
        *,
        sheets: Sequence[str] = ("Sheet1",),
        shared: bool = True,
    ) -> None:
        """A spreadsheet that exists (and is shared with the service account unless told)."""
        with self._lock:
            book = Spreadsheet(spreadsheet_id, title, [], shared)
            for i, name in enumerate(sheets):
                book.sheets.append(Sheet(self._sheet_props(name, 0 if i == 0 else None, i)))
            self.spreadsheets[spreadsheet_id] = book

    def share(self, spreadsheet_id: str) -> None:
        with self._lock:
            self.spreadsheets[spreadsheet_id].shared = True

    def unshare(self, spreadsheet_id: str) -> None:
        """Requests for it now answer 403 PERMISSION_DENIED."""
        with self._lock:
            self.spreadsheets[spreadsheet_id].shared = False

    def inject(
        self,
        status: int = 429,
        *,
        times: int = 1,
        kind: str | None = None,
        body: dict[str, Any] | None = None,
        skip: int = 0,
    ) -> None:
        """The next ``times`` Sheets requests (of ``kind`` if given) answer ``status``, once
        ``skip`` of them have been served as usual (say, the second body of a write)."""
        with self._lock:
            self._injections.append(_Injection(status, times, kind, body, skip))

    def clear_injections(self) -> None:
        with self._lock:
            self._injections.clear()

    def expire_tokens(self) -> None:
        """Every issued access token becomes invalid (the next request gets a 401)."""
        with self._lock:
            self.tokens.clear()

    def issue_token(self) -> str:
        token = "ya29.fake-" + secrets.token_urlsafe(16)
        with self._lock:
            self.tokens.add(token)
        return token

    def count(self, kind: str | None = None) -> int:
        """Sheets API requests received (all, or of one kind such as ``values.batchGet``)."""
        with self._lock:
            return sum(1 for r in self.requests if kind is None or r.kind == kind)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.statuses.clear()

    # test inspection -------------------------------------------------------------------------

    def _sheet(self, spreadsheet_id: str, title: str) -> Sheet:
        sheet = self.spreadsheets[spreadsheet_id].sheet_by_title(title)
        if sheet is None:
            raise KeyError(f"no sheet {title!r} in {spreadsheet_id}")
        return sheet

    def grid(self, spreadsheet_id: str, title: str) -> list[list[Any]]:
        """Values of the used area (A1 to the last value): str, number, bool, Formula, None."""
        with self._lock:
            sheet = self._sheet(spreadsheet_id, title)
            used = [k for k, c in sheet.cells.items() if c.get("userEnteredValue")]
            if not used:
                return []
            rows = max(r for r, _ in used) + 1
            cols = max(c for _, c in used) + 1
            return [[effective(sheet.cells.get((r, c))) for c in range(cols)] for r in range(rows)]

    def formats(self, spreadsheet_id: str, title: str) -> list[list[dict[str, Any] | None]]:
        """``userEnteredFormat.numberFormat`` per cell over the same area as :meth:`grid`."""
        with self._lock:
            shape = self.grid(spreadsheet_id, title)
            sheet = self._sheet(spreadsheet_id, title)
            return [
                [
                    ((sheet.cells.get((r, c)) or {}).get("userEnteredFormat") or {}).get(
                        "numberFormat"
                    )
                    for c in range(len(row))
                ]
                for r, row in enumerate(shape)
            ]

    def cell(self, spreadsheet_id: str, title: str, a1: str) -> dict[str, Any]:
        """The raw CellData (userEnteredValue, userEnteredFormat) at ``a1``."""
        with self._lock:
            book = self.spreadsheets[spreadsheet_id]
            sheet, area = book.parse_range(f"{quote_title(title)}!{a1}")
            return copy.deepcopy(sheet.cells.get((area.row0, area.col0), {}))

    def sheet_properties(self, spreadsheet_id: str, title: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._sheet(spreadsheet_id, title).props)

    def dimension_properties(
        self, spreadsheet_id: str, title: str
    ) -> dict[tuple[str, int], dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._sheet(spreadsheet_id, title).dimension_props)

    def charts(self, spreadsheet_id: str) -> list[dict[str, Any]]:
        """Every EmbeddedChart of the spreadsheet, in sheet order."""
        with self._lock:
            book = self.spreadsheets[spreadsheet_id]
            return [copy.deepcopy(c) for s in book.sheets for c in s.charts]

    def sheet_titles(self, spreadsheet_id: str) -> list[str]:
        with self._lock:
            return [s.title for s in self.spreadsheets[spreadsheet_id].sheets]

    # request handling --------------------------------------------------------------------------

    def _sheet_props(self, title: str, sheet_id: int | None, index: int) -> dict[str, Any]:
        return {
            "sheetId": next(self._ids) % 2_000_000_000 if sheet_id is None else sheet_id,
            "title": title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": DEFAULT_ROWS, "columnCount": DEFAULT_COLUMNS},
        }

    def handle(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """One HTTP request -> (status, JSON body as bytes)."""
        split = urlsplit(raw_path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        if path == "/token":
            status, payload = self._token(method, body)
            return status, json.dumps(payload).encode("utf-8")
        with self._lock, _collector_paused():
            try:
                status, payload = 200, self._api(method, path, query, headers, body)
            except ApiError as e:
                status, payload = e.code, e.body()
            data = json.dumps(payload).encode("utf-8")
            target = len(raw_path.encode("utf-8"))
            self.requests.append(RecordedRequest(method, path, query, target, len(body), len(data)))
            self.statuses.append(status)
            return status, data

    def traffic_bytes(self, kind: str | None = None) -> tuple[int, int]:
        """(bytes sent to, bytes answered by) the API, over all requests or one kind's."""
        with self._lock:
            chosen = [r for r in self.requests if kind is None or r.kind == kind]
            return sum(r.request_bytes for r in chosen), sum(r.response_bytes for r in chosen)

    def _token(self, method: str, body: bytes) -> tuple[int, dict[str, Any]]:
        form = parse_qs(body.decode("utf-8"))
        grant = form.get("grant_type", [""])[0]
        assertion = form.get("assertion", [""])[0]
        if method != "POST" or grant != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type", "error_description": grant}
        try:
            payload = assertion.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT."}
        with self._lock:
            self.token_requests.append(claims)
        if not claims.get("iss") or not claims.get("scope"):
            return 400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope."}
        return 200, {"access_token": self.issue_token(), "expires_in": 3599,
                     "token_type": "Bearer"}  # fmt: skip

    def _api(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> dict[str, Any]:
        if len(body) > MAX_BODY_BYTES:
            raise _bad_request(f"Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes.")
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            raise ApiError(401)
        found = self.contract.match(method, path)
        if found is None:
            raise ApiError(404, f"Method not found: {method} {path}")
        api_method, params = found
        for rule in self._injections:
            if rule.times > 0 and (rule.kind is None or rule.kind == api_method.kind):
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                rule.times -= 1
                if rule.body is not None:
                    raise _Injected(rule.status, rule.body)
                raise ApiError(rule.status, details=QUOTA_DETAILS if rule.status == 429 else None)
        try:
            data = json.loads(body) if body.strip() else None
            if b"null" in body:  # gspread sends nulls; Google ignores them (reference §0.6)
                data = strip_nulls(data)
        except ValueError:
            raise _bad_request("Invalid JSON payload received. Unexpected token.") from None
        problems = self.contract.query_errors(api_method, query)
        problems += self.contract.body_errors(api_method, data)
        if problems:
            self.violations.extend(f"{api_method.id}: {p}" for p in problems)
            raise _bad_request("Invalid JSON payload received. " + "; ".join(problems[:5]),
                               problems[:20])  # fmt: skip
        book = self.spreadsheets.get(params["spreadsheetId"])
        if book is None:
            raise ApiError(404)
        if not book.shared:
            raise ApiError(403)
        opts = {k: v[-1] for k, v in query.items()}
        handler = {
            "spreadsheets.get": self._spreadsheets_get,
            "spreadsheets.batchUpdate": self._spreadsheets_batch_update,
            "values.get": self._values_get,
            "values.batchGet": self._values_batch_get,
            "values.update": self._values_update,
            "values.batchUpdate": self._values_batch_update,
            "values.append": self._values_append,
            "values.clear": self._values_clear,
            "values.batchClear": self._values_batch_clear,
        }.get(api_method.kind)
        if handler is None:
            self.violations.append(f"{api_method.id}: not implemented by the fake")
            raise _bad_request(f"{api_method.id} is not implemented by the fake Sheets server")
        if api_method.http_method == "GET":
            result: dict[str, Any] = handler(book, params, opts, query, data or {})
        else:
            with self._atomic(book):
                result = handler(book, params, opts, query, data or {})
        return result

    # spreadsheets.get ---------------------------------------------------------------------------

    def _resource(self, book: Spreadsheet, *, grid_data: bool) -> dict[str, Any]:
        sheets = []
        for sheet in book.sheets:
            entry: dict[str, Any] = {"properties": copy.deepcopy(sheet.props)}
            if sheet.charts:
                entry["charts"] = copy.deepcopy(sheet.charts)
            if grid_data:
                entry["data"] = [self._grid_data(sheet)]
            sheets.append(entry)
        return {
            "spreadsheetId": book.id,
            "properties": {
                "title": book.title,
                "locale": book.locale,
                "autoRecalc": "ON_CHANGE",
                "timeZone": book.time_zone,
            },
            "sheets": sheets,
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{book.id}/edit",
        }

    @staticmethod
    def _grid_data(sheet: Sheet) -> dict[str, Any]:
        last_row = max((r for r, _ in sheet.cells), default=-1)
        rows = []
        for r in range(last_row + 1):
            cols = [c for (rr, c) in sheet.cells if rr == r]
            values = [copy.deepcopy(sheet.cells.get((r, c), {})) for c in range(max(cols) + 1)] \
                if cols else []  # fmt: skip
            rows.append({"values": values} if values else {})
        return {"startRow": 0, "startColumn": 0, "rowData": rows}

    def _spreadsheets_get(
        self,
        book: Spreadsheet,
        params: dict[str, str],
        opts: dict[str, str],
        query: dict[str, list[str]],
        data: dict[str, Any],
    ) -> dict[str, Any]:
        fields = opts.get("fields")
        grid = opts.get("includeGridData", "false").lower() == "true" and not fields
        resource = self._resource(book, grid_data=grid)
        if fields:
            try:
                resource = select_fields(resource, parse_fields(fields))
            except ValueError as e:
                raise _bad_request(f"Invalid field selection: {e}") from None
        return resource

    # values ---------------------------------------------------------------------------------

    def _read(self, book: Spreadsheet, text: str, opts: Mapping[str, str]) -> dict[str, Any]:
        sheet, area = book.parse_range(text)
        _check_within(sheet, area)
        area = area.clamp(sheet.rows, sheet.cols)
        value_option = opts.get("valueRenderOption", "FORMATTED_VALUE")
        dt_option = opts.get("dateTimeRenderOption", "SERIAL_NUMBER")
        assert area.row1 is not None and area.col1 is not None
        rows: list[list[Any]] = []
        # Walk the area or the stored cells, whichever is smaller: a few cells of a 300,000-row
        # sheet, or a whole column of a sheet that is mostly empty, are both cheap.
        present: dict[int, dict[int, Any]] = {}
        cells = sheet.cells
        if (area.row1 - area.row0) * (area.col1 - area.col0) <= len(cells):
            found = (
                ((r, c), cells[(r, c)])
                for r in range(area.row0, area.row1)
                for c in range(area.col0, area.col1)
                if (r, c) in cells
            )
        else:
            found = (
                (k, cell)
                for k, cell in cells.items()
                if area.row0 <= k[0] < area.row1 and area.col0 <= k[1] < area.col1
            )
        for (r, c), cell in found:
            value = render_value(cell, value_option, dt_option)
            if value is not None:
                present.setdefault(r - area.row0, {})[c - area.col0] = value
        if present:
            for r in range(max(present) + 1):
                cells = present.get(r, {})
                rows.append([cells.get(c, "") for c in range(max(cells) + 1)] if cells else [])
        major = opts.get("majorDimension", "ROWS")
        if major == "COLUMNS" and rows:
            width = max(len(r) for r in rows)
            cols = [[r[c] if c < len(r) else "" for r in rows] for c in range(width)]
            rows = [_rstrip(col) for col in cols]
        out: dict[str, Any] = {"range": sheet.a1(area), "majorDimension": major}
        if rows:
            out["values"] = rows
        return out

    def _values_get(
        self,
        book: Spreadsheet,
        params: dict[str, str],
        opts: dict[str, str],
        query: dict[str, list[str]],
        data: dict[str, Any],
    ) -> dict[str, Any]:
        return self._read(book, params["range"], opts)

    def _values_batch_get(
        self,
        book: Spreadsheet,
        params: dict[str, str],
        opts: dict[str, str],
        query: dict[str, list[str]],
        data: dict[str, Any],
    ) -> dict[str, Any]:
        ranges = [self._read(book, text, opts) for text in query.get("ranges", [])]
        return {"spreadsheetId": book.id, "valueRanges": ranges}

    def _write_values(
        self,
        book: Spreadsheet,
        text: str,
        value_range: Mapping[str, Any],
        option: str | None,
        *,
        start: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        if option not in ("RAW", "USER_ENTERED"):
            raise _bad_request("'valueInputOption' is required but not specified")
        sheet, area = book.parse_range(text)
        if value_range.get("range"):
            other_sheet, other = book.parse_range(value_range["range"])
            if (other_sheet.id, other.row0, other.col0) != (sheet.id, area.row0, area.col0):
                raise _bad_request(
                    f"Requested writing within range [{text}], but tried writing within "
                    f"range [{value_range['range']}]"
                )
        rows = [list(r) for r in value_range.get("values", [])]
        if value_range.get("majorDimension") == "COLUMNS" and rows:
            width = max(len(r) for r in rows)
            rows = [[col[i] if i < len(col) else None for col in rows] for i in range(width)]
        row0, col0 = start if start is not None else (area.row0, area.col0)
        height, width = len(rows), max((len(r) for r in rows), default=0)
        single_cell = area.row1 == area.row0 + 1 and area.col1 == area.col0 + 1
        if start is None and not single_cell:  # one cell is an anchor, as for Google
            if area.row1 is not None and row0 + height > area.row1:
                raise _bad_request(
                    f"Requested writing within range [{text}], but tried writing to row "
                    f"[{row0 + height}]"
                )
            if area.col1 is not None and col0 + width > area.col1:
                raise _bad_request(
                    f"Requested writing within range [{text}], but tried writing to column "
                    f"[{column_letter(col0 + width - 1)}]"
                )
        written = Area(sheet.id, row0, row0 + max(height, 1), col0, col0 + max(width, 1))
        if row0 + height > sheet.rows or col0 + width > sheet.cols:
            raise _bad_request(
                f"Range ({sheet.a1(written)}) exceeds grid limits. Max rows: {sheet.rows}, "
                f"max columns: {sheet.cols}"
            )
        parse = _user_entered if option == "USER_ENTERED" else _raw
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is None:
                    continue  # null leaves the cell unchanged
                if isinstance(value, list | dict):
                    raise _bad_request(f"Invalid values[{r}][{c}]: {type(value).__name__}_value")
                parsed = parse(value)
                old = sheet.cells.get((row0 + r, col0 + c), {})
                new = {k: v for k, v in old.items() if k != "userEnteredValue"}
                if parsed:
                    new["userEnteredValue"] = parsed["userEnteredValue"]
                    fmt = parsed.get("userEnteredFormat")
                    if fmt and not (new.get("userEnteredFormat") or {}).get("numberFormat"):
                        new["userEnteredFormat"] = {**new.get("userEnteredFormat", {}), **fmt}
                self._put(sheet.cells, (row0 + r, col0 + c), new)
        return {
            "spreadsheetId": book.id,
            "updatedRange": sheet.a1(written),
            "updatedRows": height,
            "updatedColumns": width,
            "updatedCells": sum(len(r) for r in rows),
        }

    def _values_update(
        self,
        book: Spreadsheet,
        params: dict[str, str],
        opts: dict[str, str],
        query: dict[str, list[str]],
        data: dict[str, Any],
    ) -> dict[str, Any]:
        work = book
        result = self._write_values(work, params["range"], data, opts.get("valueInputOption"))
        return result

    def _values_batch_update(
        self,
        book: Spreadsheet,
        params: dict[str, str],
        opts: dict[str, str],
        query: dict[str, list[str]],
        data: dict[str, Any],
    ) -> dict[str, Any]:
        work = book
        option = data.get("valueInputOption")
        responses = [
            self._write_values(work, item.get("range", ""), item, option)
            for item in data.get("data", [])
        ]
        return {
            "spreadsheetId": book.id,
            "totalUpdatedRows": sum(r["updatedRows"] for r in responses),
            "totalUpdatedColumns": sum(r["updatedColumns"] for r in responses),
            "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
            "totalUpdatedSheets": len({r["updatedRange"].rsplit("!", 1)[0] for r in responses}),
            "responses": responses,
        }

    def _values_append(
        self,
        book: Spreadsheet,
        params: dict[str, str],
        opts: dict[str, str],
        query: dict[str, list[str]],
        data: dict[str, Any],
    ) -> dict[str, Any]:
        work = book
        sheet, area = work.parse_range(params["range"])
        option = opts.get("valueInputOption")
        if option not in ("RAW", "USER_ENTERED"):
            raise _bad_request("'valueInputOption' is required but not specified")
        rows = data.get("values", [])
        width = max((len(r) for r in rows), default=0)
        col0 = area.col0
        single_cell = area.row1 == area.row0 + 1 and area.col1 == area.col0 + 1
        col_end = sheet.cols if area.col1 is None or single_cell else area.col1
        # The "table": the contiguous block of non-empty rows from the range's first data row.
        occupied = {r for (r, c), cell in sheet.cells.items()
                    if col0 <= c < col_end and cell.get("userEnteredValue")}  # fmt: skip
        first = next((r for r in sorted(occupied) if r >= area.row0), None)
        table_range = None
        target = area.row0
        if first is not None:
            end = first
            while end + 1 in occupied:
                end += 1
            cols_used = [
                c
                for (r, c), cell in sheet.cells.items()
                if first <= r <= end and c >= col0 and cell.get("userEnteredValue")
            ]
            table_range = sheet.a1(Area(sheet.id, first, end + 1, col0, max(cols_used) + 1))
            target = end + 1
        insert = opts.get("insertDataOption", "OVERWRITE") == "INSERT_ROWS"
        if insert and rows:
            moved = {}
            for (r, c), cell in sheet.cells.items():
                moved[(r + len(rows) if r >= target else r, c)] = cell
            sheet.cells = moved
            sheet.props["gridProperties"]["rowCount"] = sheet.rows + len(rows)
        need_rows = target + len(rows)
        if need_rows > sheet.rows:
            sheet.props["gridProperties"]["rowCount"] = need_rows
        if col0 + width > sheet.cols:
            sheet.props["gridProperties"]["columnCount"] = col0 + width
        self._check_limits(work)
        a1 = f"{quote_title(sheet.title)}!{column_letter(col0)}{target + 1}"
        updates = self._write_values(work, a1, {"values": rows}, option, start=(target, col0))
        out: dict[str, Any] = {"spreadsheetId": book.id, "updates": updates}
        if table_range:
            out["tableRange"] = table_range
        return out

    def _clear(self, book: Spreadsheet, text: str) -> str:
        sheet, area = book.parse_range(text)
        _check_within(sheet, area)
        area = area.clamp(sheet.rows, sheet.cols)
        assert area.row1 is not None and area.col1 is not None
        for key in [k for k in sheet.cells if area.row0 <= k[0] < area.row1
                    and area.col0 <= k[1] < area.col1]:  # fmt: skip
            rest = {k: v for k, v in sheet.cells[key].items() if k != "userEnteredValue"}
            self._put(sheet.cells, key, rest)
        return sheet.a1(area)

    def _values_clear(
        self,
        book: Spreadsheet,
        params: dict[str, str],
        opts: dict[str, str],
        query: dict[str, list[str]],
        data: dict[str, Any],
    ) -> dict[str, Any]:
        work = book
        cleared = self._clear(work, params["range"])
        return {"spreadsheetId": book.id, "clearedRange": cleared}

    def _values_batch_clear(
        self,
        book: Spreadsheet,
        params: dict[str, str],
        opts: dict[str, str],
        query: dict[str, list[str]],
        data: dict[str, Any],
    ) -> dict[str, Any]:
        work = book
        cleared = [self._clear(work, text) for text in data.get("ranges", [])]
        return {"spreadsheetId": book.id, "clearedRanges": cleared}

    # spreadsheets.batchUpdate ------------------------------------------------------------------

    def _put(self, cells: Cells, key: tuple[int, int], new: Mapping[str, Any]) -> None:
        """Set one cell (or empty it), journalled so a failed write can be undone."""
        old = cells.get(key)
        if self._journal is not None:
            self._journal.before(cells).setdefault(key, old)
        if new:
            cells[key] = dict(new)
        elif old is not None:
            del cells[key]

    @contextmanager
    def _atomic(self, book: Spreadsheet) -> Iterator[None]:
        """All of a write or none of it: cells changed in place are journalled, the small
        things (sheet list, properties, charts, dimension properties) are copied, and a
        handler that rebuilds a sheet's cells assigns a new dict, leaving the old one whole."""
        sheets = list(book.sheets)
        kept = [
            (s, copy.deepcopy(s.props), s.cells, copy.deepcopy(s.charts), dict(s.dimension_props))
            for s in sheets
        ]
        self._journal = journal = _Journal()
        try:
            yield
        except BaseException:
            journal.undo()
            for sheet, props, cells, charts, dimensions in kept:
                sheet.props, sheet.cells = props, cells
                sheet.charts, sheet.dimension_props = charts, dimensions
            book.sheets[:] = sheets
            raise
        finally:
            self._journal = None

    def _check_limits(self, book: Spreadsheet) -> None:
        if book.total_cells() > self.max_cells:
            raise _bad_request(
                "This action would increase the number of cells in the workbook above the "
                f"limit of {self.max_cells} cells."
            )
        for sheet in book.sheets:
            if sheet.cols > MAX_COLUMNS:
                raise _bad_request(f"Sheet {sheet.title} would exceed {MAX_COLUMNS} columns.")

    def _spreadsheets_batch_update(
        self,
        book: Spreadsheet,
        params: dict[str, str],
        opts: dict[str, str],
        query: dict[str, list[str]],
        data: dict[str, Any],
    ) -> dict[str, Any]:
        work = book
        replies = []
        requests = data.get("requests") or []
        if not requests:
            raise _bad_request("Must specify at least one request.")
        for i, request in enumerate(requests):
            kinds = [k for k in request if request[k] is not None]
            if len(kinds) != 1:
                problem = "No request set." if not kinds else f"oneof 'kind' set twice: {kinds}"
                raise _bad_request(f"Invalid requests[{i}]: {problem}")
            kind = kinds[0]
            handler = self._request_handlers().get(kind)
            if handler is None:
                self.violations.append(f"batchUpdate request {kind!r} is not supported by the fake")
                raise _bad_request(
                    f"Invalid requests[{i}]: {kind} is not supported by the fake Sheets server"
                )
            where = f"Invalid requests[{i}].{kind}: "
            try:
                reply = handler(work, request[kind])
                self._check_limits(work)
            except ApiError as e:
                if not e.message.startswith("Invalid requests["):
                    e.message = where + e.message
                raise
            replies.append(reply or {})
        out: dict[str, Any] = {"spreadsheetId": book.id, "replies": replies}
        if data.get("includeSpreadsheetInResponse"):
            out["updatedSpreadsheet"] = self._resource(work, grid_data=False)
        return out

    # -- batchUpdate request types

    def _request_handlers(self) -> dict[str, Any]:
        return {
            "addSheet": self._add_sheet,
            "deleteSheet": self._delete_sheet,
            "updateSheetProperties": self._update_sheet_properties,
            "updateCells": self._update_cells,
            "appendCells": self._append_cells,
            "appendDimension": self._append_dimension,
            "insertDimension": self._insert_dimension,
            "deleteDimension": self._delete_dimension,
            "sortRange": self._sort_range,
            "repeatCell": self._repeat_cell,
            "updateDimensionProperties": self._update_dimension_properties,
            "addChart": self._add_chart,
        }

    def _add_sheet(self, book: Spreadsheet, req: Mapping[str, Any]) -> dict[str, Any]:
        given = copy.deepcopy(req.get("properties") or {})
        title = given.get("title") or self._free_title(book)
        if any(s.title.lower() == title.lower() for s in book.sheets):
            raise _bad_request(
                f'A sheet with the name "{title}" already exists. Please enter another name.'
            )
        if "sheetId" in given and (
            given["sheetId"] < 0 or any(s.id == given["sheetId"] for s in book.sheets)
        ):
            raise _bad_request(f"Sheet with id {given['sheetId']} already exists.")
        index = given.get("index", len(book.sheets))
        props = self._sheet_props(title, given.get("sheetId"), index)
        grid = {**props["gridProperties"], **(given.get("gridProperties") or {})}
        if grid["rowCount"] < 1 or grid["columnCount"] < 1:
            raise _bad_request("Sheet must have at least one row and one column.")
        if grid.get("frozenRowCount", 0) >= grid["rowCount"]:
            raise _bad_request("You can't freeze all visible rows on the sheet.")
        props.update({k: v for k, v in given.items() if k not in ("gridProperties",)})
        props["title"], props["gridProperties"] = title, grid
        book.sheets.insert(min(index, len(book.sheets)), Sheet(props))
        book.reindex()
        return {"addSheet": {"properties": copy.deepcopy(props)}}

    @staticmethod
    def _free_title(book: Spreadsheet) -> str:
        n = len(book.sheets) + 1
        while book.sheet_by_title(f"Sheet{n}"):
            n += 1
        return f"Sheet{n}"

    def _delete_sheet(self, book: Spreadsheet, req: Mapping[str, Any]) -> None:
        sheet = book.sheet_by_id(int(req.get("sheetId", 0)))
        if len(book.sheets) == 1:
            raise _bad_request("You can't remove all the sheets in a document.")
        book.sheets.remove(sheet)
        book.reindex()

    def _update_sheet_properties(self, book: Spreadsheet, req: Mapping[str, Any]) -> None:
        props = req.get("properties") or {}
        if not req.get("fields"):
            raise _bad_request("At least one field must be specified in 'fields'.")
        sheet = book.sheet_by_id(int(props.get("sheetId", 0)))
        tree = parse_fields(req["fields"])
        new = apply_mask(sheet.props, props, tree)
        new["sheetId"] = sheet.id
        if new.get("title") != sheet.title and any(
            s is not sheet and s.title.lower() == str(new.get("title", "")).lower()
            for s in book.sheets
        ):
            raise _bad_request(
                f'A sheet with the name "{new.get("title")}" already exists. '
                "Please enter another name."
            )
        if not new.get("title"):
            raise _bad_request("Sheet title must not be empty.")
        grid = new.setdefault("gridProperties", {})
        for key in ("rowCount", "columnCount"):
            grid.setdefault(key, sheet.props["gridProperties"].get(key, 1))
        if grid.get("frozenRowCount", 0) >= grid["rowCount"]:
            raise _bad_request("You can't freeze all visible rows on the sheet.")
        index = new.get("index", sheet.props["index"])
        sheet.props = new
        if index != book.sheets.index(sheet):
            book.sheets.remove(sheet)
            book.sheets.insert(min(index, len(book.sheets)), sheet)
        book.reindex()
        if grid["rowCount"] < sheet.rows or grid["columnCount"] < sheet.cols:
            self._drop_outside(sheet)

    @staticmethod
    def _drop_outside(sheet: Sheet) -> None:
        sheet.cells = {k: v for k, v in sheet.cells.items()
                       if k[0] < sheet.rows and k[1] < sheet.cols}  # fmt: skip

    def _grid_area(self, book: Spreadsheet, grid_range: Mapping[str, Any]) -> tuple[Sheet, Area]:
        sheet = book.sheet_by_id(int(grid_range.get("sheetId", 0)))
        area = Area(
            sheet.id,
            int(grid_range.get("startRowIndex", 0)),
            grid_range.get("endRowIndex"),
            int(grid_range.get("startColumnIndex", 0)),
            grid_range.get("endColumnIndex"),
        )
        if (area.row1 is not None and area.row1 < area.row0) or (
            area.col1 is not None and area.col1 < area.col0
        ):
            raise _bad_request("GridRange end index must not be before its start index.")
        _check_within(sheet, Area(sheet.id, area.row0, area.row1 or area.row0 + 1, area.col0,
                                  area.col1 or area.col0 + 1))  # fmt: skip
        return sheet, area.clamp(sheet.rows, sheet.cols)

    def _fields(self, req: Mapping[str, Any]) -> FieldTree:
        text = req.get("fields")
        if not text:
            raise _bad_request("At least one field must be specified in 'fields'.")
        try:
            return parse_fields(text)
        except ValueError as e:
            raise _bad_request(str(e)) from None

    def _write_rows(
        self,
        sheet: Sheet,
        row0: int,
        col0: int,
        rows: Sequence[Mapping[str, Any]],
        tree: FieldTree,
        area: Area | None = None,
    ) -> None:
        height = len(rows) if area is None else (area.row1 or 0) - area.row0
        width = max((len(r.get("values") or []) for r in rows), default=0)
        if area is not None:
            width = (area.col1 or 0) - area.col0
        if row0 + height > sheet.rows or col0 + width > sheet.cols:
            written = Area(sheet.id, row0, row0 + max(height, 1), col0, col0 + max(width, 1))
            raise _bad_request(
                f"Range ({sheet.a1(written)}) exceeds grid limits. "
                f"Max rows: {sheet.rows}, max columns: {sheet.cols}"
            )
        cells, put = sheet.cells, compile_mask(tree)
        before = self._journal.before(cells) if self._journal is not None else None
        empty: dict[str, Any] = {}
        for r in range(height):
            values = (rows[r].get("values") or []) if r < len(rows) else []
            for c in range(width if area is not None else len(values)):
                source = values[c] if c < len(values) else empty
                key = (row0 + r, col0 + c)
                old = cells.get(key)
                new = put(old or empty, source)
                if before is not None and key not in before:
                    before[key] = old
                if new:
                    cells[key] = new
                elif old is not None:
                    del cells[key]

    def _update_cells(self, book: Spreadsheet, req: Mapping[str, Any]) -> None:
        tree = self._fields(req)
        rows = req.get("rows") or []
        if ("start" in req) == ("range" in req):
            raise _bad_request("Exactly one of 'start' or 'range' must be set.")
        if "start" in req:
            start = req["start"]
            sheet = book.sheet_by_id(int(start.get("sheetId", 0)))
            self._write_rows(sheet, int(start.get("rowIndex", 0)),
                             int(start.get("columnIndex", 0)), rows, tree)  # fmt: skip
        else:
            sheet, area = self._grid_area(book, req["range"])
            self._write_rows(sheet, area.row0, area.col0, rows, tree, area)

    def _append_cells(self, book: Spreadsheet, req: Mapping[str, Any]) -> None:
        tree = self._fields(req)
        sheet = book.sheet_by_id(int(req.get("sheetId", 0)))
        rows = req.get("rows") or []
        row0 = sheet.last_value_row() + 1
        width = max((len(r.get("values") or []) for r in rows), default=0)
        grid = sheet.props["gridProperties"]
        grid["rowCount"] = max(sheet.rows, row0 + len(rows))
        grid["columnCount"] = max(sheet.cols, width)
        self._write_rows(sheet, row0, 0, rows, tree)

    def _append_dimension(self, book: Spreadsheet, req: Mapping[str, Any]) -> None:
        sheet = book.sheet_by_id(int(req.get("sheetId", 0)))
        length = int(req.get("length", 0))
        if length < 1:
            raise _bad_request("length must be positive")
        key = {"ROWS": "rowCount", "COLUMNS": "columnCount"}.get(req.get("dimension", ""))
        if key is None:
            raise _bad_request("dimension must be ROWS or COLUMNS")
        sheet.props["gridProperties"][key] += length

    def _insert_dimension(self, book: Spreadsheet, req: Mapping[str, Any]) -> None:
        rng = req.get("range") or {}
        sheet = book.sheet_by_id(int(rng.get("sheetId", 0)))
        dim = rng.get("dimension")
        start, end = int(rng.get("startIndex", 0)), int(rng.get("endIndex", 0))
        size = sheet.rows if dim == "ROWS" else sheet.cols
        if dim not in ("ROWS", "COLUMNS") or not 0 <= start < end or start > size:
            raise _bad_request("Invalid dimension range.")
        if req.get("inheritFromBefore") and start == 0:
            raise _bad_request("Cannot inherit properties from before if inserting at index 0.")
        n, axis = end - start, 0 if dim == "ROWS" else 1
        moved: dict[tuple[int, int], dict[str, Any]] = {}
        for key, cell in sheet.cells.items():
            k = list(key)
            if k[axis] >= start:
                k[axis] += n
            moved[(k[0], k[1])] = cell
        neighbour = start - 1 if req.get("inheritFromBefore") else start + n
        for key, cell in list(moved.items()):
            if key[axis] == neighbour and cell.get("userEnteredFormat"):
                for i in range(start, end):
                    new_key = (i, key[1]) if axis == 0 else (key[0], i)
                    moved[new_key] = {"userEnteredFormat": copy.deepcopy(cell["userEnteredFormat"])}
        sheet.cells = moved
        sheet.props["gridProperties"]["rowCount" if dim == "ROWS" else "columnCount"] += n

    def _delete_dimension(self, book: Spreadsheet, req: Mapping[str, Any]) -> None:
        """Remove rows or columns: what is after them moves up (or left), the grid shrinks."""
        rng = req.get("range") or {}
        sheet = book.sheet_by_id(int(rng.get("sheetId", 0)))
        dim = rng.get("dimension")
        if dim not in ("ROWS", "COLUMNS"):
            raise _bad_request("dimension must be ROWS or COLUMNS")
        size = sheet.rows if dim == "ROWS" else sheet.cols
        start, end = int(rng.get("startIndex", 0)), int(rng.get("endIndex", size))
        if not 0 <= start < end or end > size:
            raise _bad_request(f"Invalid dimension range {start}:{end} (size {size}).")
        n, axis = end - start, 0 if dim == "ROWS" else 1
        if n == size:
            raise _bad_request(f"You can't delete all the {dim.lower()} on the sheet.")
        grid = sheet.props["gridProperties"]
        frozen = grid.get("frozenRowCount" if dim == "ROWS" else "frozenColumnCount", 0)
        if frozen and size - n <= frozen:
            raise _bad_request(f"Sorry, it is not possible to delete all non-frozen {dim.lower()}.")
        moved: dict[tuple[int, int], dict[str, Any]] = {}
        for key, cell in sheet.cells.items():
            i = key[axis]
            if i < start:
                moved[key] = cell
            elif i >= end:
                moved[(i - n, key[1]) if axis == 0 else (key[0], i - n)] = cell
        sheet.cells = moved
        sheet.dimension_props = {
            (d, i if d != dim or i < start else i - n): props
            for (d, i), props in sheet.dimension_props.items()
            if d != dim or not start <= i < end
        }
        grid["rowCount" if dim == "ROWS" else "columnCount"] = size - n

    def _sort_range(self, book: Spreadsheet, req: Mapping[str, Any]) -> None:
        """Sort the rows of a range by its sortSpecs, as a founder's Data > Sort range does:
        numbers before text before booleans, empty cells last whatever the order."""
        sheet, area = self._grid_area(book, req.get("range") or {})
        assert area.row1 is not None and area.col1 is not None
        specs = req.get("sortSpecs") or [{"dimensionIndex": area.col0}]
        cells = sheet.cells
        rows = [
            {c: cells[(r, c)] for c in range(area.col0, area.col1) if (r, c) in cells}
            for r in range(area.row0, area.row1)
        ]

        def rank(value: Any) -> tuple[int, Any]:
            if isinstance(value, bool):
                return (2, value)
            if isinstance(value, int | float):
                return (0, value)
            return (1, str(value).lower())

        for spec in reversed(specs):  # stable sorts, the first spec last
            column = int(spec.get("dimensionIndex", 0))
            descending = spec.get("sortOrder") == "DESCENDING"
            filled = [row for row in rows if effective(row.get(column)) is not None]
            empty = [row for row in rows if effective(row.get(column)) is None]
            filled.sort(key=lambda row: rank(effective(row[column])), reverse=descending)
            rows = filled + empty
        for r, row in enumerate(rows, start=area.row0):
            for c in range(area.col0, area.col1):
                self._put(cells, (r, c), row.get(c) or {})

    def _repeat_cell(self, book: Spreadsheet, req: Mapping[str, Any]) -> None:
        tree = self._fields(req)
        sheet, area = self._grid_area(book, req.get("range") or {})
        source = req.get("cell") or {}
        assert area.row1 is not None and area.col1 is not None
        cells, put = sheet.cells, compile_mask(tree)
        before = self._journal.before(cells) if self._journal is not None else None
        empty: dict[str, Any] = {}
        # Cells with nothing yet share one result (cells are replaced, never mutated).
        fresh = put(empty, source)
        for r in range(area.row0, area.row1):
            for c in range(area.col0, area.col1):
                key = (r, c)
                old = cells.get(key)
                new = put(old, source) if old else fresh
                if before is not None and key not in before:
                    before[key] = old
                if new:
                    cells[key] = new
                elif old is not None:
                    del cells[key]

    def _update_dimension_properties(self, book: Spreadsheet, req: Mapping[str, Any]) -> None:
        tree = self._fields(req)
        rng = req.get("range")
        if not rng:
            raise _bad_request("range is required")
        sheet = book.sheet_by_id(int(rng.get("sheetId", 0)))
        dim = rng.get("dimension")
        size = sheet.rows if dim == "ROWS" else sheet.cols
        start, end = int(rng.get("startIndex", 0)), int(rng.get("endIndex", size))
        if dim not in ("ROWS", "COLUMNS") or not 0 <= start < end <= size:
            raise _bad_request(f"Invalid dimension range {start}:{end} (size {size}).")
        for i in range(start, end):
            key = (dim, i)
            sheet.dimension_props[key] = apply_mask(
                sheet.dimension_props.get(key, {}), req.get("properties") or {}, tree
            )

    def _add_chart(self, book: Spreadsheet, req: Mapping[str, Any]) -> dict[str, Any]:
        chart = copy.deepcopy(req.get("chart") or {})
        existing = {c["chartId"] for s in book.sheets for c in s.charts}
        if "chartId" in chart:
            if chart["chartId"] in existing:
                raise _bad_request(f"Chart with id {chart['chartId']} already exists.")
        else:
            chart["chartId"] = next(self._ids) % 2_000_000_000
        spec = chart.get("spec") or {}
        basic = spec.get("basicChart")
        if basic is not None:
            if not basic.get("chartType"):
                raise _bad_request("basicChart.chartType is required")
            if len(basic.get("domains") or []) > 1:
                raise _bad_request("Only one domain is supported by basic charts.")
            for item in [*(basic.get("domains") or []), *(basic.get("series") or [])]:
                data = item.get("domain") or item.get("series") or {}
                for source in (data.get("sourceRange") or {}).get("sources", []):
                    _, area = self._grid_area(book, source)
                    if (area.row1 or 0) - area.row0 != 1 and (area.col1 or 0) - area.col0 != 1:
                        raise _bad_request("Chart source ranges must be a single row or column.")
        position = chart.get("position") or {}
        if position.get("newSheet"):
            props = self._sheet_props(f"Chart{len(existing) + 1}", None, len(book.sheets))
            props["sheetType"] = "OBJECT"
            host = Sheet(props)
            book.sheets.append(host)
            position = {"sheetId": host.id}
        elif "overlayPosition" in position:
            anchor = position["overlayPosition"].get("anchorCell") or {}
            host = book.sheet_by_id(int(anchor.get("sheetId", 0)))
            row, col = int(anchor.get("rowIndex", 0)), int(anchor.get("columnIndex", 0))
            if row >= host.rows or col >= host.cols:
                raise _bad_request("The chart's anchor cell is outside the grid.")
            overlay = position["overlayPosition"]
            overlay.setdefault("widthPixels", 600)
            overlay.setdefault("heightPixels", 371)
        elif "sheetId" in position:
            host = book.sheet_by_id(int(position["sheetId"]))
        else:
            raise _bad_request("The chart's position is required.")
        chart["position"] = position
        host.charts.append(chart)
        return {"addChart": {"chart": copy.deepcopy(chart)}}


def _rstrip(values: list[Any]) -> list[Any]:
    while values and values[-1] == "":
        values.pop()
    return values


class _Injected(ApiError):
    """An injected failure with a body given verbatim by the test."""

    def __init__(self, code: int, body: dict[str, Any]) -> None:
        super().__init__(code)
        self._body = body

    def body(self) -> dict[str, Any]:
        return self._body


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSheetsServer
    protocol_version = "HTTP/1.1"
    # The headers and the body are two writes: without this, Nagle's algorithm holds the body
    # until the client's delayed ACK of the headers, 40 ms on every request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, data = self.fake.handle(self.command, self.path, self.headers, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


# --- helpers for tests ----------------------------------------------------------------------------


def write_service_account_key(
    path: Path,
    *,
    token_uri: str,
    client_email: str = "revbot@test-project.iam.gserviceaccount.com",
) -> dict[str, Any]:
    """Write a throwaway service-account JSON key (fresh RSA key, never committed)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    info = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": client_email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
        + client_email.replace("@", "%40"),
        "universe_domain": "googleapis.com",
    }
    path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


def gspread_client(server: FakeSheetsServer) -> Any:
    """A plain gspread Client talking to ``server`` (a session that rewrites the Sheets host
    and carries a token the fake issued), for tests that act as a founder editing the sheet."""
    import gspread
    import requests

    token = server.issue_token()
    base = server.url

    class _Session(requests.Session):
        def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def, override]
            url = url.replace("https://sheets.googleapis.com", base, 1)
            headers = dict(kwargs.pop("headers", None) or {})
            headers["Authorization"] = f"Bearer {token}"
            return super().request(method, url, *args, headers=headers, **kwargs)

    return gspread.Client(None, session=_Session())  # type: ignore[arg-type]


FakeSheetsServer.handler = _Handler  # defined after the server class it serves

__all__ = [
    "FakeSheetsServer",
    "Formula",
    "RecordedRequest",
    "column_letter",
    "from_serial",
    "gspread_client",
    "to_serial",
    "write_service_account_key",
]


@contextmanager
def serving(sid: str, title: str = "Acme revenue") -> Iterator[FakeSheetsServer]:
    """A fake Sheets API holding one spreadsheet; on leaving, it must have seen no request
    that breaks Google's discovery document."""
    with FakeSheetsServer() as fake:
        fake.create_spreadsheet(sid, title, sheets=["Sheet1"])
        yield fake
        assert fake.violations == []
