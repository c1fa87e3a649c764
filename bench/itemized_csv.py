"""A large ``balance_change_from_activity.itemized.3`` CSV, written fast, for B2.

Rows look like the sandbox's (and Stripe's) default columns: ids, UTC and local timestamps,
money in major units with the currency's decimals, a category, a source id and a description.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

COLUMNS = (
    "balance_transaction_id", "created_utc", "created", "available_on_utc", "available_on",
    "currency", "gross", "fee", "net", "reporting_category", "source_id", "description",
)  # fmt: skip

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TABLE = bytes(ord(_ALPHABET[b % 62]) for b in range(256))


def _ids(rng: random.Random, prefix: str, n: int) -> list[str]:
    raw = rng.randbytes(24 * n).translate(_TABLE).decode("ascii")
    return [prefix + raw[i * 24 : (i + 1) * 24] for i in range(n)]


def write(path: Path, *, rows: int, start: int, days: int = 365, seed: int = 7) -> int:
    """Write ``rows`` rows created over ``days`` days from unix time ``start``; returns bytes."""
    import datetime as dt

    rng = random.Random(seed)
    # (currency, decimals, gross in minor units): charges mostly, a few refunds and fees.
    plans = [("usd", 2, g) for g in (900, 1900, 2900, 4900, 9900)] + [
        ("eur", 2, 2900),
        ("jpy", 0, 4980),
    ]
    span = days * 86_400
    stamps: dict[int, str] = {}

    def stamp(ts: int) -> str:
        day, sec = divmod(ts, 86_400)
        base = stamps.get(day)
        if base is None:
            base = dt.datetime.fromtimestamp(day * 86_400, dt.UTC).strftime("%Y-%m-%d")
            stamps[day] = base
        return f"{base} {sec // 3600:02d}:{sec % 3600 // 60:02d}:{sec % 60:02d}"

    def money(minor: int, exp: int) -> str:
        if exp == 0:
            return str(minor)
        sign = "-" if minor < 0 else ""
        whole, frac = divmod(abs(minor), 100)
        return f"{sign}{whole}.{frac:02d}"

    chunk = 50_000
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        done = 0
        while done < rows:
            n = min(chunk, rows - done)
            ids = _ids(rng, "txn_", n)
            sources = _ids(rng, "ch_", n)
            out = []
            for i in range(n):
                created = start + (done + i) * span // rows
                currency, exp, gross = plans[rng.randrange(len(plans))]
                kind = rng.random()
                if kind < 0.03:
                    category, gross, fee = "refund", -gross, 0
                elif kind < 0.035:
                    category, gross, fee = "fee", -(gross // 10), 0
                else:
                    category, fee = "charge", gross * 29 // 1000 + (30 if exp else 0)
                available = (created // 86_400 + 2) * 86_400
                c, a = stamp(created), stamp(available)
                out.append(
                    (ids[i], c, c, a, a, currency, money(gross, exp), money(fee, exp),
                     money(gross - fee, exp), category, sources[i], f"Invoice {done + i:07d}")
                )  # fmt: skip
            writer.writerows(out)
            done += n
    return path.stat().st_size
