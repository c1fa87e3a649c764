"""The pieces of an xlsx file that the fast workbook writer puts together, without openpyxl.

Pure functions of their arguments (no file, no clock):

- :func:`row_xml`: one dashboard row as a ``<row>`` element of SpreadsheetML. Rows and cells
  carry no ``r`` reference (the schema makes it optional: a reader counts rows and cells in
  order), so a row's XML does not depend on where it sits, and a day of Transactions rendered
  once stays valid whichever days come before it.
- :func:`deflate_part`: a piece of a zip entry, compressed on its own and ended on a byte
  boundary without a final block, so pieces compressed on different days concatenate into one
  valid deflate stream; :func:`crc32_combine` gives the CRC-32 of the whole from the pieces'.
- :func:`add_styles`: the workbook's ``styles.xml`` with the number formats our rows use.
- :func:`write_zip`: the zip container itself, entry by entry, from such pieces.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol
from xml.sax.saxutils import escape

from bot.dashboard.base import XLSX_CELL_LIMIT, Cell, sink_text
from bot.money import number_format

DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
PCT_FORMAT = "0.0%"
_EPOCH = date(1899, 12, 30).toordinal()  # Excel's day 0 (the 1900 date system)


def format_of(cell: Cell) -> str | None:
    """The number format a typed cell is shown with (None: General)."""
    if cell.value is None:
        return None
    if cell.kind == "money":
        assert cell.currency
        return number_format(cell.currency)
    return {"date": DATE_FORMAT, "datetime": DATETIME_FORMAT, "pct": PCT_FORMAT}.get(cell.kind)


def _serial(value: date | datetime) -> str:
    days = value.toordinal() - _EPOCH
    if not isinstance(value, datetime):
        return str(days)
    seconds = value.hour * 3600 + value.minute * 60 + value.second
    fraction = Decimal(seconds * 1_000_000 + value.microsecond) / Decimal(86_400_000_000)
    return format(Decimal(days) + fraction, "f")


def _text(value: str) -> str:
    value = sink_text(value, XLSX_CELL_LIMIT)
    space = ' xml:space="preserve"' if value != value.strip() else ""
    return f'<c t="inlineStr"><is><t{space}>{escape(value)}</t></is></c>'


def cell_xml(cell: Cell, styles: Mapping[str, int]) -> str:
    """One ``<c>`` element; ``styles`` maps a number format to its cellXfs index."""
    v = cell.value
    if v is None or v == "":
        return "<c/>"  # keeps the next cell in its column: cells are counted, not referenced
    if cell.kind == "text":
        assert isinstance(v, str)
        return _text(v)
    if cell.kind == "bool":
        return _text("yes" if v else "no")
    fmt = format_of(cell)
    style = f' s="{styles[fmt]}"' if fmt else ""
    if cell.kind in ("date", "datetime"):
        assert isinstance(v, date)
        number = _serial(v)
    elif isinstance(v, Decimal):
        number = format(v, "f")
    else:
        assert isinstance(v, int) and not isinstance(v, bool)
        number = str(v)
    return f"<c{style}><v>{number}</v></c>"


def row_xml(row_cells: Sequence[Cell], styles: Mapping[str, int]) -> str:
    return "<row>" + "".join(cell_xml(c, styles) for c in row_cells) + "</row>"


# -- deflate pieces and their CRC ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """Bytes of a zip entry as one compressed piece: ``data`` inflates to ``size`` bytes
    whose CRC-32 is ``crc``."""

    data: bytes
    size: int
    crc: int


def deflate_part(raw: bytes, *, last: bool = False) -> Part:
    """``raw`` compressed as a piece of a longer stream (the ``last`` piece ends it)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = c.compress(raw) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return Part(data, len(raw), zlib.crc32(raw))


def inflate_part(part: Part) -> bytes:
    try:
        raw = zlib.decompressobj(-15).decompress(part.data)
    except zlib.error as e:
        raise ValueError(f"a cached piece of the workbook is damaged ({e})") from e
    if len(raw) != part.size or zlib.crc32(raw) != part.crc:
        raise ValueError("a cached piece of the workbook does not inflate to what was recorded")
    return raw


_POLY = 0xEDB88320  # CRC-32 (reflected), as zlib computes it


def _multmodp(a: int, b: int) -> int:
    """a(x) * b(x) modulo the CRC polynomial, reflected (zlib's multmodp)."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if (a & (m - 1)) == 0:
                break
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


_X2N = [1 << 30]  # x^(2^n) modulo p(x), n = 0, 1, ...: x^1 is 1 << 30 in reflected form
for _ in range(31):
    _X2N.append(_multmodp(_X2N[-1], _X2N[-1]))


def _x8nmodp(n: int) -> int:
    """x^(8n) modulo p(x)."""
    p = 1 << 31  # x^0 == 1
    k = 3
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return p


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A followed by B, from CRC-32(A), CRC-32(B) and len(B) (zlib's
    crc32_combine, which Python's zlib does not expose)."""
    return _multmodp(_x8nmodp(len2), crc1) ^ crc2


def joined(parts: Iterable[Part]) -> Part:
    """The pieces as one: their data concatenated, with the combined size and CRC."""
    data: list[bytes] = []
    size = crc = 0
    for part in parts:
        data.append(part.data)
        crc = crc32_combine(crc, part.crc, part.size)
        size += part.size
    return Part(b"".join(data), size, crc)


# -- styles -------------------------------------------------------------------------------------

_CELL_XFS = re.compile(r"<cellXfs count=\"(\d+)\">(.*?)</cellXfs>", re.S)
_NUM_FMTS = re.compile(r"<numFmts count=\"(\d+)\">(.*?)</numFmts>", re.S)
_NUM_FMT = re.compile(r'<numFmt numFmtId="(\d+)" formatCode="([^"]*)"/>')
_FONTS = re.compile(r"<fonts\b")


def add_styles(styles_xml: str, formats: Sequence[str]) -> tuple[str, dict[str, int]]:
    """``styles.xml`` (as openpyxl writes it) with one cell format per entry of ``formats``
    appended to its cellXfs; and the cellXfs index of each."""
    existing = {code: int(fid) for fid, code in _NUM_FMT.findall(styles_xml)}
    found = _NUM_FMTS.search(styles_xml)
    next_id = max([163, *existing.values()]) + 1  # custom formats start at 164
    added: list[str] = []
    ids: dict[str, int] = {}
    for code in formats:
        attr = escape(code, {'"': "&quot;"})
        if attr not in existing:
            existing[attr] = next_id
            added.append(f'<numFmt numFmtId="{next_id}" formatCode="{attr}"/>')
            next_id += 1
        ids[code] = existing[attr]
    if added:
        if found:
            count = int(found.group(1)) + len(added)
            block = f'<numFmts count="{count}">{found.group(2)}{"".join(added)}</numFmts>'
            styles_xml = styles_xml[: found.start()] + block + styles_xml[found.end() :]
        else:
            fonts = _FONTS.search(styles_xml)
            if fonts is None:
                raise ValueError("styles.xml without fonts")
            block = f'<numFmts count="{len(added)}">{"".join(added)}</numFmts>'
            styles_xml = styles_xml[: fonts.start()] + block + styles_xml[fonts.start() :]
    xfs = _CELL_XFS.search(styles_xml)
    if xfs is None:
        raise ValueError("styles.xml without cellXfs")
    base = int(xfs.group(1))
    mine = "".join(
        f'<xf numFmtId="{ids[code]}" fontId="0" fillId="0" borderId="0" xfId="0" '
        'applyNumberFormat="1"/>'
        for code in formats
    )
    block = f'<cellXfs count="{base + len(formats)}">{xfs.group(2)}{mine}</cellXfs>'
    styles_xml = styles_xml[: xfs.start()] + block + styles_xml[xfs.end() :]
    return styles_xml, {code: base + i for i, code in enumerate(formats)}


# -- the zip container --------------------------------------------------------------------------

_DOS_TIME = (0 << 11) | (0 << 5) | 0  # 00:00:00
_DOS_DATE = ((2000 - 1980) << 9) | (1 << 5) | 1  # 2000-01-01: fixed, so equal data, equal file


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def write_zip(out: Sink, entries: Sequence[tuple[str, Part]]) -> None:
    """A zip of deflated entries (each a whole deflate stream) written to ``out``."""
    central: list[bytes] = []
    offset = 0
    for name, part in entries:
        encoded = name.encode()
        if part.size >= 0xFFFFFFFF or len(part.data) >= 0xFFFFFFFF or offset >= 0xFFFFFFFF:
            raise ValueError(f"{name} is too big for a zip without ZIP64")
        fields = (20, 0, 8, _DOS_TIME, _DOS_DATE, part.crc, len(part.data), part.size)
        header = struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields, len(encoded), 0)
        out.write(header + encoded)
        out.write(part.data)
        central.append(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                *fields,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + encoded
        )
        offset += len(header) + len(encoded) + len(part.data)
    directory = b"".join(central)
    out.write(directory)
    out.write(
        struct.pack(
            "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), offset, 0
        )
    )
