"""The extracted provider contracts in tests/contracts/ (see its README.md).

- They are exactly what ``scripts/extract_contracts.py`` makes from the providers' files, when
  those are at hand (``../shared/contracts``, beside the repository; not in a user's clone).
- Each one is self-contained: every ``$ref`` resolves inside the same file.
"""

from __future__ import annotations

import filecmp
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / "tests" / "contracts"
SCRIPT = REPO / "scripts" / "extract_contracts.py"

OPENAPI_FILES = (
    "stripe/spec3.json",
    "resend/resend.yaml",
    "xero/xero_accounting.yaml",
    "xero/xero-identity.yaml",
)
DISCOVERY_FILES = ("google/sheets.v4.json",)
DATA_FILES = (*OPENAPI_FILES, *DISCOVERY_FILES, "xero/LICENSE")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("extract_contracts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(relative: str) -> Any:
    path = CONTRACTS / relative
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)


def _refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    """``(location, target)`` of every ``$ref`` inside ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from _refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{where}/{i}")


def _resolve_pointer(document: Any, ref: str) -> bool:
    """Whether a local JSON Reference (``#/a/b~1c``) points at something in ``document``."""
    if not ref.startswith("#/"):
        return False
    node = document
    for raw in ref[2:].split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def dangling_openapi(document: Any) -> list[str]:
    return [f"{at} -> {ref}" for at, ref in _refs(document) if not _resolve_pointer(document, ref)]


def dangling_discovery(document: Any) -> list[str]:
    """Discovery documents refer to schemas by bare name (``"$ref": "Spreadsheet"``)."""
    schemas = document.get("schemas", {})
    return [f"{at} -> {ref}" for at, ref in _refs(document) if ref not in schemas]


# ---------------------------------------------------------------------- reproducible


def test_extraction_reproduces_the_committed_files(tmp_path: Path) -> None:
    source = _script().DEFAULT_SOURCE
    if not source.is_dir():
        pytest.skip(
            f"the providers' original files are not here ({source}): they sit beside the "
            "project's own checkout only, not in a user's clone"
        )
    out = tmp_path / "contracts"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--source", str(source), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert made == sorted(DATA_FILES)
    committed = sorted(
        str(p.relative_to(CONTRACTS))
        for p in CONTRACTS.rglob("*")
        if p.is_file() and p.name != "README.md"
    )
    assert committed == made, "tests/contracts/ has files the script does not make, or lacks some"
    differ = [name for name in made if not filecmp.cmp(out / name, CONTRACTS / name, shallow=False)]
    assert not differ, (
        f"{differ} differ from a fresh extraction: run python scripts/extract_contracts.py"
    )


# ---------------------------------------------------------------------- self-contained


@pytest.mark.parametrize("relative", OPENAPI_FILES)
def test_every_openapi_ref_resolves_in_its_file(relative: str) -> None:
    document = _load(relative)
    refs = list(_refs(document))
    assert refs, f"{relative} has no $ref at all: the check would prove nothing"
    assert dangling_openapi(document) == []


@pytest.mark.parametrize("relative", DISCOVERY_FILES)
def test_every_discovery_ref_resolves_in_its_file(relative: str) -> None:
    document = _load(relative)
    assert list(_refs(document))
    assert dangling_discovery(document) == []


def test_the_closure_check_finds_dangling_refs() -> None:
    document = {
        "paths": {"/x": {"get": {"schema": {"$ref": "#/components/schemas/A"}}}},
        "components": {
            "schemas": {
                "A": {"properties": {"b": {"$ref": "#/components/schemas/B"}}},
                "C~/": {"items": {"$ref": "other.yaml#/C"}},
                "D": {"$ref": "#/components/schemas/C~0~1"},
            }
        },
    }
    assert dangling_openapi(document) == [
        "#/components/schemas/A/properties/b -> #/components/schemas/B",
        "#/components/schemas/C~//items -> other.yaml#/C",
    ]
    assert dangling_discovery({"schemas": {"A": {"$ref": "A"}}, "m": {"$ref": "Z"}}) == ["#/m -> Z"]


def test_the_paths_and_schemas_the_tests_need_are_kept() -> None:
    script = _script()
    stripe = _load("stripe/spec3.json")
    assert sorted(stripe["paths"]) == sorted(script.STRIPE_PATHS)
    assert "balance_transaction" in stripe["components"]["schemas"]
    assert "error" in stripe["components"]["schemas"]
    resend = _load("resend/resend.yaml")
    assert set(script.RESEND_SCHEMAS) <= set(resend["components"]["schemas"])
    assert sorted(resend["paths"]) == sorted(script.RESEND_PATHS)
    accounting = _load("xero/xero_accounting.yaml")
    assert sorted(accounting["paths"]) == sorted(script.XERO_ACCOUNTING_PATHS)
    identity = _load("xero/xero-identity.yaml")
    assert sorted(identity["paths"]) == sorted(script.XERO_IDENTITY_PATHS)
    assert "MIT License" in (CONTRACTS / "xero" / "LICENSE").read_text(encoding="utf-8")
