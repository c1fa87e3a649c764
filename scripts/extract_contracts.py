"""Extract, from the providers' published API schemas, the parts revbot's tests validate against.

Usage: ``python scripts/extract_contracts.py [--source ../shared/contracts] [--out DIR]``
(``--out`` defaults to ``tests/contracts``).

The providers' full documents (Stripe's OpenAPI spec, Google's Sheets discovery document,
Resend's and Xero's OpenAPI specs) live outside the repository. The tests need only a few paths
of each and the component schemas those paths reference, directly or through other schemas.
This script copies exactly that into ``tests/contracts/`` (see its README.md for provenance and
licenses) so that the test suite needs nothing beside the repository.

The output is deterministic: JSON and YAML are written with sorted keys and fixed formatting,
so running the script twice on the same source gives byte-identical files
(``tests/test_contracts.py`` checks this when the source folder is present).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

# Stripe paths kept from spec3.json (whole path items: every method of each path).
STRIPE_PATHS: tuple[str, ...] = (
    # The Stripe sandbox (bot/sandbox) and tests/test_sandbox.py, through tests/stripe_contract.py.
    "/v1/account",
    "/v1/balance_transactions",
    "/v1/balance_transactions/{id}",
    "/v1/files/{file}",
    "/v1/reporting/report_runs",
    "/v1/reporting/report_runs/{report_run}",
    "/v1/reporting/report_types",
    "/v1/reporting/report_types/{report_type}",
    # Issues 16/17 (subscriptions, invoices and payouts), extracted ahead of that work.
    "/v1/invoices",
    "/v1/invoices/{invoice}",
    "/v1/invoices/{invoice}/lines",
    "/v1/payouts",
    "/v1/payouts/{payout}",
    "/v1/subscriptions",
    # The billing sync re-reads by id a subscription that left the list of live ones.
    "/v1/subscriptions/{subscription_exposed_id}",
)

# Resend: the fake server (tests/fakes/resend_server.py) validates request bodies against
# SendEmailRequest; the two paths it serves are kept for their documented responses.
RESEND_PATHS: tuple[str, ...] = ("/emails", "/emails/batch")
RESEND_SCHEMAS: tuple[str, ...] = ("SendEmailRequest",)

# Xero (for the fake Xero API): manual journals, the chart of accounts, and the connections
# that give a token's tenant id.
XERO_ACCOUNTING_PATHS: tuple[str, ...] = (
    "/Accounts",
    "/ManualJournals",
    "/ManualJournals/{ManualJournalID}",
)
XERO_IDENTITY_PATHS: tuple[str, ...] = ("/Connections", "/Connections/{id}")

# Top-level OpenAPI fields kept beside ``paths`` and ``components``.
OPENAPI_HEADER: tuple[str, ...] = ("openapi", "info", "servers", "security")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "contracts"
DEFAULT_OUT = REPO_ROOT / "tests" / "contracts"

YAML_HEADER = (
    "# Extracted from {source} by scripts/extract_contracts.py: do not edit.\n"
    "# Provenance and license: tests/contracts/README.md.\n"
)

Json = Any


class ExtractionError(Exception):
    """The source does not contain what the tests need."""


# ---------------------------------------------------------------------- reading


def _timestamp_as_text(loader: Any, node: Any) -> str:
    """Keep a YAML timestamp as the text it is written as.

    OpenAPI documents are JSON data: ``2019-02-22T00:00:00`` in an example is a string, not a
    ``datetime`` (which neither JSON nor a sorted, stable dump would keep as written).
    """
    return str(loader.construct_scalar(node))


@functools.cache
def _loader_class() -> Any:
    """A safe YAML loader (libyaml's when available: Xero's spec is 0.9 MB), timestamps as text."""
    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader: Any = type("ContractLoader", (base,), {})
    loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
    return loader


def _check_keys(value: Json, where: str) -> None:
    """Raise unless every mapping key is a string (a JSON document, whatever its syntax)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ExtractionError(f"{where}: non-string key {key!r}")
            _check_keys(item, f"{where}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_keys(item, f"{where}/{i}")


def read_json(path: Path) -> Json:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def read_yaml(path: Path) -> Json:
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader_class())
    _check_keys(document, str(path))
    return document


# ---------------------------------------------------------------------- pruning


def iter_refs(node: Json) -> Iterator[str]:
    """Every ``$ref`` string anywhere inside ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from iter_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from iter_refs(value)


def _pointer(ref: str) -> list[str]:
    """The unescaped JSON Pointer parts of a local reference ``#/a/b~1c``."""
    if not ref.startswith("#/"):
        raise ExtractionError(f"unsupported $ref {ref!r} (only local references are handled)")
    return [unquote(p).replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/")]


def _component(document: Json, ref: str) -> tuple[str, str, Json]:
    """``(kind, name, value)`` of a ``#/components/<kind>/<name>`` reference."""
    parts = _pointer(ref)
    if len(parts) != 3 or parts[0] != "components":
        raise ExtractionError(f"$ref {ref!r} does not name a component")
    kind, name = parts[1], parts[2]
    try:
        return kind, name, document["components"][kind][name]
    except KeyError:
        raise ExtractionError(f"$ref {ref!r} does not resolve in the source") from None


def prune_openapi(
    document: Json, paths: Iterable[str], schemas: Iterable[str] = (), *, label: str
) -> Json:
    """The given path items and named schemas of an OpenAPI document, with every component
    they reference (transitively), and the document's header fields and security schemes."""
    out: dict[str, Json] = {key: document[key] for key in OPENAPI_HEADER if key in document}
    out["paths"] = {}
    for path in paths:
        if path not in document.get("paths", {}):
            raise ExtractionError(f"{label}: path {path} is not in the source")
        out["paths"][path] = document["paths"][path]
    pending = list(iter_refs(out["paths"]))
    pending += [f"#/components/schemas/{name}" for name in schemas]
    components: dict[str, dict[str, Json]] = {}
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        kind, name, value = _component(document, ref)
        components.setdefault(kind, {})[name] = value
        pending.extend(iter_refs(value))
    schemes = document.get("components", {}).get("securitySchemes")
    if schemes:
        components["securitySchemes"] = schemes
    out["components"] = components
    return out


# ---------------------------------------------------------------------- writing


def dump_json(document: Json) -> bytes:
    return (json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def dump_yaml(document: Json, source: str) -> bytes:
    body: str = yaml.dump(
        document,
        Dumper=yaml.SafeDumper,  # pure Python on purpose: the same bytes with or without libyaml
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return (YAML_HEADER.format(source=source) + body).encode()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def extract(source: Path, out: Path) -> list[Path]:
    """Write every extracted file under ``out``; returns them, relative to ``out``."""
    written: list[tuple[str, bytes]] = []

    stripe = read_json(source / "stripe" / "spec3.json")
    written.append(
        ("stripe/spec3.json", dump_json(prune_openapi(stripe, STRIPE_PATHS, label="stripe")))
    )

    # Every one of the discovery document's 273 schemas is reachable from its 17 methods
    # (BatchUpdateSpreadsheetRequest alone reaches almost all), so it is copied whole, as is.
    google = source / "google" / "sheets.v4.json"
    read_json(google)  # fail here, not in a test, if it is not JSON
    written.append(("google/sheets.v4.json", google.read_bytes()))

    resend = read_yaml(source / "resend" / "resend.yaml")
    pruned = prune_openapi(resend, RESEND_PATHS, RESEND_SCHEMAS, label="resend")
    written.append(("resend/resend.yaml", dump_yaml(pruned, "resend/resend.yaml")))

    for name, paths in (
        ("xero_accounting.yaml", XERO_ACCOUNTING_PATHS),
        ("xero-identity.yaml", XERO_IDENTITY_PATHS),
    ):
        document = read_yaml(source / "xero" / name)
        pruned = prune_openapi(document, paths, label=f"xero/{name}")
        written.append((f"xero/{name}", dump_yaml(pruned, f"xero/{name}")))
    written.append(("xero/LICENSE", (source / "xero" / "LICENSE").read_bytes()))

    for relative, data in written:
        _write(out / relative, data)
    return [Path(relative) for relative, _ in written]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--source",
        type=Path,
        default=DEFAULT_SOURCE,
        help="the providers' files (stripe/, google/, resend/, xero/); default: %(default)s",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where to write; default: %(default)s"
    )
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        print(f"extract_contracts: no source folder {args.source}", file=sys.stderr)
        return 2
    try:
        files = extract(args.source, args.out)
    except (ExtractionError, OSError) as exc:
        print(f"extract_contracts: {exc}", file=sys.stderr)
        return 1
    for relative in files:
        print(f"{args.out / relative}  {(args.out / relative).stat().st_size:>9,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
