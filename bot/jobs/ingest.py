"""An itemized activity report (``balance_change_from_activity.itemized.3``) into the ledger.

``backfill --via report`` downloads one CSV for a large range, a million rows or more, and
this module stores it in bounded memory, at well over 100,000 rows a second on two cores:

- The file is read in blocks of whole records (``_blocks``); a quoted cell's lines stay in
  one block. Nothing ever holds the whole file or a list of all its rows.
- A block of plain lines (no quotes: nearly all of a report) is parsed a column at a time with
  C-level loops (``str.split``, ``map``, slicing) instead of a Python loop per row: amounts and
  timestamps are converted once per distinct value (a block has few prices, days and times of
  day) by the same exact code as the row-by-row path, and looked up for every row. Anything in
  doubt (a quote, a bad cell, an odd number of cells) sends the block through the validating
  row-by-row path (:func:`_ledger_rows`), which also names the bad row.
- A large file is cut into byte ranges (each reader finds the same record boundaries): this
  process parses the first straight into the ledger while child processes parse the others,
  each into its own scratch SQLite file (one ledger takes one writer), copied in afterwards
  with one ``INSERT ... SELECT`` each, in file order. (Threads cannot share the work: the
  writer gives up the GIL for every row it steps.)
- A report that is large next to the ledger is written as a bulk load (:class:`ReportLoad`):
  the indexes are rebuilt at the end instead of updated row by row.
- All of it is one ledger transaction: an ingest killed half-way leaves nothing behind and is
  simply run again.

A report row keeps its line, as Stripe wrote it, in ``raw`` (the downloaded file is archived
too, with its header).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import operator
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from bot.errors import ServiceError
from bot.inbound import ID, TOKEN, shown
from bot.ledger import Ledger, ReportConstants, ReportLoad, ReportScratch
from bot.money import MoneyError, exponent, to_minor

ITEMIZED_REQUIRED = (
    "balance_transaction_id", "created_utc", "available_on_utc", "currency", "gross", "net",
    "reporting_category",
)  # fmt: skip

# Blocks of about this many bytes (~700 rows): small enough for the CPU's caches.
BLOCK_BYTES = 128 * 1024
# Below this size a file is parsed in-process: starting children costs more than it saves.
PARALLEL_MIN_BYTES = 16 << 20
# The writer's page cache during an ingest.
INGEST_CACHE_MB = 48
# At most this many parts parsed at once (this process and children): SQLite writes one.
MAX_PARTS = 4

# REPORT_ROW_COLUMNS (bot.ledger), a column each: lists of equal length, or a 1-tuple for a
# constant.
Columns = list[Any]

_EPOCH = date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class IngestStats:
    rows: int
    inserted: int
    changed: int
    seconds: float


def read_header(path: Path) -> list[str]:
    from bot.reports import CsvError

    with open(path, "rb") as fh:  # the header only (a text reader would decode a whole buffer)
        data = fh.readline()
        while data.count(b'"') % 2 and (more := fh.readline()):
            data += more
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CsvError(
            f"report file {path}: its header is not UTF-8 text; the file is kept for inspection"
        ) from e
    header = [h.strip() for h in next(csv.reader(io.StringIO(text, newline="")), [])]
    missing = [c for c in ITEMIZED_REQUIRED if c not in header]
    if missing:
        raise CsvError(
            f"report file {path} has no {', '.join(repr(c) for c in missing)} column "
            f"(columns: {', '.join(header) or 'none'}); the file is kept for inspection"
        )
    return header


def _csv_line(cells: list[str]) -> str:
    """A record as one CSV line (quoted where needed): what a plain line already is."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue()[:-2]


def _utc_seconds(text: str) -> int:
    """A report timestamp in UTC (``YYYY-MM-DD HH:MM:SS``, or ISO 8601) -> unix seconds."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _ledger_rows(
    text: str,
    *,
    path: Path,
    header: list[str],
    row_no: int = 1,
) -> Iterator[tuple[Any, ...]]:
    """Records of a block -> rows laid out as ``REPORT_ROW_COLUMNS``, one at a time, checking
    everything (the reference the column-wise path is tested against). ``row_no`` is the
    number of the record before the block (the header is row 1, as in a spreadsheet)."""
    from bot.reports import CsvError

    col = {name: i for i, name in enumerate(header)}
    i_id, i_created, i_available = (
        col["balance_transaction_id"],
        col["created_utc"],
        col["available_on_utc"],
    )
    i_currency, i_gross, i_net = col["currency"], col["gross"], col["net"]
    i_category = col["reporting_category"]
    i_source, i_description = col.get("source_id"), col.get("description")
    ncols = len(header)

    def fail(message: str) -> CsvError:
        return CsvError(
            f"report file {path}: row {row_no}: {message}; the file is kept for inspection"
        )

    def minor(text: str, currency: str) -> int:
        try:
            return to_minor(Decimal(text.strip()), currency)
        except (InvalidOperation, MoneyError) as e:
            raise fail(f"{text!r} is not an amount in {currency.upper()}") from e

    def seconds(text: str) -> int:
        try:
            return _utc_seconds(text)
        except ValueError as e:
            raise fail(f"{text!r} is not a UTC timestamp") from e

    records = csv.reader(io.StringIO(text, newline=""))
    while True:
        row_no += 1
        try:
            cells = next(records, None)
        except csv.Error as e:
            raise fail(str(e)) from e
        if cells is None:
            return
        if not cells:
            continue  # a blank line
        if len(cells) != ncols:
            raise fail(f"{len(cells)} cells for {ncols} columns")
        currency = cells[i_currency].strip().lower()
        try:
            exponent(currency)
        except MoneyError as e:
            raise fail(f"{cells[i_currency]!r} is not a currency") from e
        txn_id = cells[i_id]
        if not txn_id:
            raise fail("no balance_transaction_id")
        if not ID.fullmatch(txn_id):
            raise fail(f"balance_transaction_id {shown(txn_id)} is not a Stripe id")
        if not TOKEN.fullmatch(cells[i_category]):
            raise fail(f"reporting_category {shown(cells[i_category])} is not a category")
        yield (
            txn_id,
            seconds(cells[i_created]),
            seconds(cells[i_available]),
            currency,
            minor(cells[i_gross], currency),
            minor(cells[i_net], currency),
            cells[i_category] or "other",
            "" if i_description is None else cells[i_description],
            "" if i_source is None else cells[i_source],
            _csv_line(cells),
        )


_NOT_ID = re.compile(r"[^A-Za-z0-9_\n]")


def _record_count(text: str) -> int:
    """How many records (blank lines included) a block of whole records holds."""
    if '"' not in text and text.count("\r") == text.count("\r\n"):
        return text.count("\n") + (not text.endswith("\n"))
    return sum(1 for _ in csv.reader(io.StringIO(text, newline="")))


def _blocks(path: Path, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """The file after its header in blocks of whole records, about ``block_bytes`` long, each
    with its offset in the file.

    Bytes, not text: a child decodes only the blocks it parses. A block ends at a line feed
    where the quotes are even (a quoted cell's lines stay together), so every reader of the
    file cuts it into the same blocks.
    """
    with open(path, "rb") as fh:
        if fh.read(3) != b"\xef\xbb\xbf":  # the BOM that utf-8-sig skips
            fh.seek(0)
        data = b""
        while True:  # the header record, already checked
            data += fh.readline()
            if not data or data.count(b'"') % 2 == 0:
                break
        offset = fh.tell()
        while data := fh.read(block_bytes):
            while not data.endswith(b"\n") or data.count(b'"') % 2:
                more = fh.readline()
                if not more:
                    break
                data += more
            yield offset, data
            offset += len(data)


def _decode(data: bytes) -> str:
    """A block's text; UnicodeDecodeError when it is not UTF-8."""
    return data.decode("utf-8")


class _Parser:
    """Blocks of records -> :data:`Columns`, keeping its caches of converted values."""

    def __init__(self, path: Path, header: list[str], *, fast: bool = True) -> None:
        self.path, self.header, self.use_fast = path, header, fast
        self.width = len(header)
        self.index = {name: i for i, name in enumerate(header)}
        self.exponents: dict[str, int | None] = {}
        self.amounts: dict[str, int] = {}  # currency + amount text -> minor units
        self.days: dict[str, int] = {}  # "YYYY-MM-DD" -> unix seconds at its midnight (UTC)
        self.times: dict[str, int] = {}  # "HH:MM:SS" -> seconds into the day
        self.stamps: dict[str, int] = {}  # availability text -> unix seconds

    def columns(self, text: str, row_no: int) -> Columns | None:
        """A block's rows as columns (None if it holds none); CsvError names a bad row,
        counting from ``row_no``, the number of the record before the block."""
        columns = self.fast(text) if self.use_fast else None
        return columns if columns is not None else self.slow(text, row_no)

    def slow(self, text: str, row_no: int) -> Columns | None:
        rows = list(_ledger_rows(text, path=self.path, header=self.header, row_no=row_no))
        return [list(c) for c in zip(*rows, strict=True)] if rows else None

    def _amounts(self, currencies: list[str], texts: list[str]) -> list[int]:
        keys = list(map(str.__add__, currencies, texts))  # codes are 3 letters: no ambiguity
        cache = self.amounts
        for key in set(keys).difference(cache):
            code, text = key[:3], key[3:]
            if not text.isascii():  # int() and Decimal() read other scripts' digits too
                raise ValueError(text)
            if self.exponents[code] == 2 and text[-3:-2] == "." and text.lstrip("-")[:-3].isdigit():
                if not text[-2:].isdigit():
                    raise ValueError(text)
                cache[key] = int(text[:-3] + text[-2:])
            else:
                cache[key] = to_minor(Decimal(text), code)  # MoneyError/InvalidOperation
        if len(cache) > 20_000:  # bounded memory: start over
            self.amounts = {}
        return list(map(cache.__getitem__, keys))

    def _seconds(self, texts: list[str], *, few: bool = False) -> list[int]:
        """Unix seconds of ``YYYY-MM-DD HH:MM:SS`` texts (UTC); ValueError for anything else.

        ``few``: the texts take few values (availability: midnights), so each distinct text
        is converted once and remembered; otherwise days and times of day are.
        """
        if few:
            cache = self.stamps
            for text in set(texts).difference(cache):
                cache[text] = self._seconds([text])[0]
            if len(cache) > 20_000:  # bounded memory: start over
                self.stamps = {}
            return list(map(cache.__getitem__, texts))
        parts = " ".join(texts).split(" ")
        # Each text has exactly one space: a text without one would be a whole part below,
        # which is neither a day nor a time, so the counts are enough.
        if len(parts) != 2 * len(texts):
            raise ValueError("not a date and a time")
        days, times = parts[0::2], parts[1::2]
        for d in set(days).difference(self.days):
            if len(d) != 10 or d[4] + d[7] != "--" or not (d[:4] + d[5:7] + d[8:]).isdigit():
                raise ValueError(d)
            if not d.isascii():
                raise ValueError(d)
            self.days[d] = (date.fromisoformat(d).toordinal() - _EPOCH) * 86_400
        for t in set(times).difference(self.times):
            if len(t) != 8 or t[2] + t[5] != "::" or not (t[:2] + t[3:5] + t[6:]).isdigit():
                raise ValueError(t)
            h, m, s = int(t[:2]), int(t[3:5]), int(t[6:])
            if h > 23 or m > 59 or s > 59 or not t.isascii():
                raise ValueError(t)
            self.times[t] = h * 3600 + m * 60 + s
        if len(self.days) > 20_000:  # bounded memory (times are at most 86,400)
            self.days = {}
        return list(
            map(operator.add, map(self.days.__getitem__, days), map(self.times.__getitem__, times))
        )

    def fast(self, text: str) -> Columns | None:
        """A block of plain lines as columns; None when it must take the row-by-row path."""
        if '"' in text or "\0" in text:  # quoted cells; NUL, which the csv module refuses
            return None
        if "\r" in text:
            if text.count("\r") != text.count("\r\n"):  # a lone CR ends a line for csv
                return None
            text = text.replace("\r\n", "\n")
        lines = text.split("\n")
        if not lines[-1]:
            lines.pop()
        width = self.width
        # Every line has exactly as many cells as the header (so no blank line either).
        if not lines or set(map(str.count, lines, itertools.repeat(","))) != {width - 1}:
            return None
        cells = ",".join(lines).split(",")
        index = self.index

        def column(name: str) -> list[str]:
            return cells[index[name] :: width]

        ids, currencies = column("balance_transaction_id"), column("currency")
        for code in set(currencies).difference(self.exponents):
            try:
                exp: int | None = exponent(code)
            except MoneyError:
                exp = None
            # Only a code exactly as stored (" USD" is stored as "usd": the slow path's job).
            self.exponents[code] = exp if code == code.strip().lower() else None
        if not all(ids) or any(self.exponents[c] is None for c in set(currencies)):
            return None
        # Ids and categories as the ledger accepts them (one scan of the block each); any
        # other value takes the row-by-row path, which names the row it refuses.
        if (
            max(map(len, ids)) > 255
            or _NOT_ID.search("\n".join(ids))
            or any(not TOKEN.fullmatch(c) for c in set(column("reporting_category")))
        ):
            return None
        try:
            gross = self._amounts(currencies, column("gross"))
            net = self._amounts(currencies, column("net"))
            created = self._seconds(column("created_utc"))
            available = self._seconds(column("available_on_utc"), few=True)
        except (ValueError, ArithmeticError, MoneyError):  # InvalidOperation is both
            return None
        categories = column("reporting_category")
        names = {c: c or "other" for c in set(categories)}
        return [
            ids,
            created,
            available,
            currencies,
            gross,
            net,
            list(map(names.__getitem__, categories)),
            column("description") if "description" in index else ("",),
            column("source_id") if "source_id" in index else ("",),
            lines,  # raw: the line itself
        ]


def column_rows(columns: Columns) -> Iterator[tuple[Any, ...]]:
    """The rows of a block's columns (a constant column is repeated)."""
    spread = (itertools.repeat(c[0]) if isinstance(c, tuple) else c for c in columns)
    return zip(*spread, strict=False)  # the repeated constants never end


def _column_count(columns: Columns) -> int:
    return max(len(c) for c in columns if not isinstance(c, tuple))


def _parse(
    path: Path,
    header: list[str],
    options: dict[str, Any],
    block_bytes: int,
    *,
    start: int = 0,
    end: int | None = None,
) -> Iterator[Columns | None]:
    """The columns of the file's blocks that begin in ``[start, end)`` (bytes).

    Records are not counted on the way (that would cost every child a pass over its part):
    only when a block fails is it parsed again, numbered from the records before it.
    """
    from bot.reports import CsvError

    parser = _Parser(path, header, **options)
    for n, (offset, data) in enumerate(_blocks(path, block_bytes)):
        if offset < start:
            continue
        if end is not None and offset >= end:
            return
        try:
            yield parser.columns(_decode(data), 0)
        except (CsvError, UnicodeDecodeError):
            before = 1  # the header
            for _, earlier in itertools.islice(_blocks(path, block_bytes), n):
                before += _record_count(earlier.decode("utf-8"))
            try:
                text = _decode(data)
            except UnicodeDecodeError as e:
                row = before + _record_count(data[: e.start].decode("utf-8"))
                raise CsvError(
                    f"report file {path}: row {row}: not UTF-8 text; the file is kept for "
                    "inspection"
                ) from e
            parser.slow(text, before)  # raises, naming the row
            raise


def _parse_into(
    send: Any,
    scratch: str,
    path: str,
    header: list[str],
    options: dict[str, Any],
    block_bytes: int,
    *,
    start: int,
    end: int | None,
) -> None:
    """Child process: parse one part of the file into a :class:`ReportScratch` file, then send
    ``R`` and the number of rows (or ``E`` and the error message)."""
    from bot.reports import CsvError

    try:
        rows = 0
        out = ReportScratch(Path(scratch))
        for columns in _parse(Path(path), header, options, block_bytes, start=start, end=end):
            if columns is not None:
                out.add(column_rows(columns))
                rows += _column_count(columns)
        out.close()
        send.send_bytes(b"R%d" % rows)
    except CsvError as e:
        send.send_bytes(b"E" + str(e).encode())
    finally:
        send.close()


class _Children:
    """Child processes parsing byte ranges of the file, each into its own scratch file."""

    def __init__(
        self,
        path: Path,
        header: list[str],
        options: dict[str, Any],
        block_bytes: int,
        ranges: list[tuple[int, int | None]],
        scratch_dir: Path,
    ) -> None:
        import multiprocessing

        mp = multiprocessing.get_context("spawn")  # no fork of a process that has threads
        self.path = path
        self.files = [scratch_dir / f"part{k}.sqlite" for k in range(len(ranges))]
        self.pipes: list[Any] = []
        self.processes: list[Any] = []
        for k, (start, end) in enumerate(ranges):
            receive, send = mp.Pipe(duplex=False)
            child = mp.Process(
                target=_parse_into,
                args=(send, str(self.files[k]), str(path), header, options, block_bytes),
                kwargs={"start": start, "end": end},
                daemon=True,
                name=f"ingest-parser-{k}",
            )
            child.start()
            send.close()
            self.pipes.append(receive)
            self.processes.append(child)

    def wait(self) -> int:
        """The number of rows the children parsed; the first error in file order, if any."""
        from bot.reports import CsvError

        rows = 0
        for receive in self.pipes:
            try:
                frame = receive.recv_bytes()
            except EOFError as e:
                raise ServiceError(f"the process reading {self.path} stopped unexpectedly") from e
            if frame[:1] == b"E":
                raise CsvError(frame[1:].decode())
            rows += int(frame[1:])
        return rows

    def close(self) -> None:
        for receive in self.pipes:
            receive.close()
        for child in self.processes:
            if child.is_alive():
                child.terminate()
            child.join(timeout=10)


def _bulk_pays(ledger: Ledger, path: Path, size: int, interval: tuple[int, int] | None) -> bool:
    """Whether rebuilding the indexes beats updating them: the file brings at least as many
    rows as the ledger has, and few of them can already be there."""
    with open(path, "rb") as fh:
        sample = fh.read(1 << 16)
    rows = size * max(1, sample.count(b"\n")) // max(1, len(sample))
    held = ledger.row_estimate()
    present = held if interval is None else min(held, ledger.created_count(*interval))
    return rows >= held and present <= rows // 20


def ingest_itemized(
    ledger: Ledger,
    path: Path,
    *,
    livemode: bool | None,
    now: datetime,
    interval: tuple[int, int] | None = None,
    block_bytes: int = BLOCK_BYTES,
    parallel: bool | None = None,
    bulk: bool | None = None,
    fast: bool = True,
) -> IngestStats:
    """Stream a ``balance_change_from_activity.itemized.3`` CSV into the ledger.

    Columns are found by header name; money comes from ``gross`` and ``net`` (fee = gross -
    net). ``interval`` (unix seconds, the report's) helps to decide on a bulk load. ``parallel``
    (default: for a file of 16 MiB or more) parses in child processes; ``bulk`` (default:
    decided from the sizes) rebuilds the indexes at the end; ``fast=False`` sends every row
    through the validating row-by-row path. Each way stores the same rows.
    """
    started = time.monotonic()
    header = read_header(path)
    size = path.stat().st_size
    options: dict[str, Any] = {"fast": fast}
    constants = ReportConstants(
        livemode=None if livemode is None else int(livemode),
        now=int(now.timestamp()),
        changed_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if parallel is None:
        parallel = size >= PARALLEL_MIN_BYTES
    if bulk is None:
        bulk = _bulk_pays(ledger, path, size, interval)
    parts = min(MAX_PARTS, os.cpu_count() or 1) if parallel else 1
    # This process parses the first part straight into the ledger; children parse the others
    # into scratch files next to the ledger, copied in afterwards, in file order.
    cuts = [size * k // parts for k in range(1, parts)]
    own_end = cuts[0] if cuts else None
    ranges: list[tuple[int, int | None]] = list(zip(cuts, [*cuts[1:], None], strict=False))
    rows = 0
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(_scratch_dir(ledger))) if ranges else None
        children = None
        if scratch is not None:
            children = _Children(path, header, options, block_bytes, ranges, scratch)
            stack.callback(children.close)
        with ledger.bulk_transaction(cache_mb=INGEST_CACHE_MB) as conn:
            load = ReportLoad(conn, constants, bulk=bulk)
            for columns in _parse(path, header, options, block_bytes, end=own_end):
                if columns is not None:
                    load.add(column_rows(columns))
                    rows += _column_count(columns)
            if children is not None:
                rows += children.wait()
                for k, file in enumerate(children.files):
                    stack.enter_context(ledger.attached(file, f"part{k}"))
                    load.add_scratch(f"part{k}")
            inserted, changed = load.finish()
    return IngestStats(
        rows=rows, inserted=inserted, changed=changed, seconds=time.monotonic() - started
    )


@contextlib.contextmanager
def _scratch_dir(ledger: Ledger) -> Iterator[str]:
    """A temporary directory next to the ledger (its disk, not a RAM-backed /tmp); one that a
    killed ingest left behind is removed first (ingests are serialised by the run lock)."""
    for stale in ledger.path.parent.glob(".ingest-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=".ingest-", dir=ledger.path.parent) as tmp:
        yield tmp
