"""The Sheets API v4 contract, read from Google's discovery document, as request validators.

The discovery document (``tests/contracts/google/sheets.v4.json``) is not JSON Schema but
converts mechanically (reference sheets-and-resend.md §5): ``$ref`` -> ``#/definitions/X``,
``type: any`` -> ``{}``, and every object gets ``additionalProperties: false`` so an unknown or
misspelt field is an error, as it is for Google ("Unknown name ... Cannot find field").

:func:`to_json_schema` produces that JSON Schema (usable with ``jsonschema``). The fake server
validates with :class:`SheetsContract`, which compiles the same schema into plain Python
closures: ``jsonschema`` needs ~20 s for the body of a 20,000-row backfill, the closures well
under a second, and a test checks that both agree. Two sets of closures: one that only says
whether a value is valid (no path strings built, so a 300,000-row write is validated in
seconds), and one that names every violation, run only on a value the first one refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DISCOVERY_PATH = REPO_ROOT / "tests" / "contracts" / "google" / "sheets.v4.json"


def strip_nulls(value: Any) -> Any:
    """``value`` without JSON nulls: Google treats ``"field": null`` as absent (§0.6)."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


@cache
def load_discovery(path: Path = DISCOVERY_PATH) -> dict[str, Any]:
    """The discovery document as a dict (read once per process)."""
    with path.open(encoding="utf-8") as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc


def _convert(schema: Mapping[str, Any]) -> dict[str, Any]:
    """One discovery schema -> JSON Schema (draft 7)."""
    if "$ref" in schema:
        return {"$ref": f"#/definitions/{schema['$ref']}"}
    kind = schema.get("type")
    if kind == "any" or (kind is None and "properties" not in schema):
        return {}
    if kind == "object" or "properties" in schema:
        out: dict[str, Any] = {"type": "object"}
        if "properties" in schema:
            out["properties"] = {k: _convert(v) for k, v in schema["properties"].items()}
        if "additionalProperties" in schema:
            out["additionalProperties"] = _convert(schema["additionalProperties"])
        else:
            out["additionalProperties"] = False
        return out
    if kind == "array":
        return {"type": "array", "items": _convert(schema.get("items", {}))}
    if kind == "string" and schema.get("format") in ("int64", "uint64"):
        # proto3 JSON: 64-bit integers are strings on output but numbers are accepted on input.
        return {"type": ["string", "integer"]}
    out = {"type": kind}
    if "enum" in schema:
        out["enum"] = list(schema["enum"])
    return out


def to_json_schema(discovery: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """All discovery schemas as one JSON Schema document with ``definitions``."""
    doc = discovery if discovery is not None else load_discovery()
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {name: _convert(s) for name, s in doc["schemas"].items()},
    }


# --- fast validation ------------------------------------------------------------------------

Check = Callable[[Any, str, list[str]], None]

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def _type_name(value: Any) -> str:
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if _JSON_TYPES[name](value):
            return name
    return "null" if value is None else type(value).__name__


class _Compiler:
    """Compiles converted JSON Schema definitions into closures ``check(value, path, errors)``."""

    def __init__(self, definitions: Mapping[str, Any]) -> None:
        self._definitions = definitions
        self._compiled: dict[str, Check] = {}

    def ref(self, name: str) -> Check:
        if name not in self._compiled:
            # Register a trampoline first: the schemas are recursive (CellData -> PivotTable ...).
            holder: list[Check] = []
            self._compiled[name] = lambda v, p, e: holder[0](v, p, e)
            holder.append(self.compile(self._definitions[name]))
        return self._compiled[name]

    def compile(self, schema: Mapping[str, Any]) -> Check:
        if "$ref" in schema:
            return self.ref(schema["$ref"].rsplit("/", 1)[1])
        kind = schema.get("type")
        if kind is None:
            return lambda v, p, e: None
        kinds = kind if isinstance(kind, list) else [kind]
        tests = [_JSON_TYPES[k] for k in kinds]
        expected = " or ".join(kinds)
        enum = schema.get("enum")
        if "object" in kinds:
            props = {k: self.compile(s) for k, s in schema.get("properties", {}).items()}
            extra = schema.get("additionalProperties", True)
            extra_check = self.compile(extra) if isinstance(extra, dict) else None

            def check_object(v: Any, p: str, e: list[str]) -> None:
                if not isinstance(v, dict):
                    e.append(f"{p or '<body>'}: expected object, got {_type_name(v)}")
                    return
                for key, item in v.items():
                    sub = props.get(key)
                    where = f"{p}.{key}" if p else key
                    if sub is not None:
                        sub(item, where, e)
                    elif extra_check is not None:
                        extra_check(item, where, e)
                    elif extra is False:
                        e.append(f"{where}: unknown field {key!r}")

            return check_object
        if "array" in kinds:
            item_check = self.compile(schema.get("items", {}))

            def check_array(v: Any, p: str, e: list[str]) -> None:
                if not isinstance(v, list):
                    e.append(f"{p}: expected array, got {_type_name(v)}")
                    return
                for i, item in enumerate(v):
                    item_check(item, f"{p}[{i}]", e)

            return check_array

        def check_scalar(v: Any, p: str, e: list[str]) -> None:
            if not any(t(v) for t in tests):
                e.append(f"{p}: expected {expected}, got {_type_name(v)} {v!r:.60}")
            elif enum is not None and v not in enum:
                e.append(f"{p}: {v!r} is not one of {enum}")

        return check_scalar


Ok = Callable[[Any], bool]


def _always(value: Any) -> bool:
    return True


class _FastCompiler:
    """The same schemas as :class:`_Compiler`, compiled into ``ok(value) -> bool``.

    Each compiled schema is a one-item list holding its closure, so a recursive ``$ref`` is
    bound before its closure exists and costs one list index at run time, not a call."""

    def __init__(self, definitions: Mapping[str, Any]) -> None:
        self._definitions = definitions
        self._refs: dict[str, list[Ok]] = {}

    def ref(self, name: str) -> list[Ok]:
        holder = self._refs.get(name)
        if holder is None:
            holder = self._refs[name] = []
            holder.append(self.compile(self._definitions[name])[0])
        return holder

    def compile(self, schema: Mapping[str, Any]) -> list[Ok]:
        if "$ref" in schema:
            return self.ref(schema["$ref"].rsplit("/", 1)[1])
        kind = schema.get("type")
        if kind is None:
            return [_always]
        kinds = kind if isinstance(kind, list) else [kind]
        if "object" in kinds:
            return [self._object(schema)]
        if "array" in kinds:
            item = self.compile(schema.get("items", {}))

            def ok_array(v: Any) -> bool:
                if not isinstance(v, list):
                    return False
                check = item[0]
                for x in v:  # noqa: SIM110 - all() over a generator is slower, per cell
                    if not check(x):
                        return False
                return True

            return [ok_array]
        tests = [_JSON_TYPES[k] for k in kinds]
        enum = schema.get("enum")
        allowed = frozenset(enum) if enum is not None else None
        if len(tests) == 1 and allowed is None:
            return [tests[0]]

        def ok_scalar(v: Any) -> bool:
            if not any(t(v) for t in tests):
                return False
            return allowed is None or v in allowed

        return [ok_scalar]

    def _object(self, schema: Mapping[str, Any]) -> Ok:
        props = {k: self.compile(s) for k, s in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties", True)
        extra_check = self.compile(extra) if isinstance(extra, dict) else None
        closed = extra is False

        def ok_object(v: Any) -> bool:
            if not isinstance(v, dict):
                return False
            for key, item in v.items():
                sub = props.get(key)
                if sub is None:
                    if extra_check is not None:
                        if not extra_check[0](item):
                            return False
                    elif closed:
                        return False
                elif not sub[0](item):
                    return False
            return True

        return ok_object


@dataclass(frozen=True, slots=True)
class Method:
    """One REST method of the discovery document."""

    id: str  # e.g. "sheets.spreadsheets.values.append"
    http_method: str
    pattern: re.Pattern[str]
    path_params: tuple[str, ...]
    request_ref: str | None
    parameters: Mapping[str, Any]

    @property
    def kind(self) -> str:
        """Short name used in request counts: ``values.append``, ``spreadsheets.batchUpdate``."""
        parts = self.id.split(".")[1:]  # drop "sheets"
        return ".".join(parts[1:] if len(parts) > 2 else parts)


def _iter_methods(resources: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for resource in resources.values():
        yield from resource.get("methods", {}).values()
        yield from _iter_methods(resource.get("resources", {}))


def _path_regex(flat_path: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    names: list[str] = []
    out = ""
    for part in re.split(r"(\{[^}]+\})", flat_path):
        if part.startswith("{"):
            names.append(part[1:-1])
            # A range may contain ':' and '!' but a path parameter never contains '/'.
            out += "([^/]+?)" if part == "{range}" else "([^/:]+)"
        else:
            out += re.escape(part)
    return re.compile(f"^/{out}$"), tuple(names)


class SheetsContract:
    """Request validation for the Sheets API v4 methods of the discovery document."""

    def __init__(self, discovery: Mapping[str, Any] | None = None) -> None:
        doc = discovery if discovery is not None else load_discovery()
        self.json_schema = to_json_schema(doc)
        self._compiler = _Compiler(self.json_schema["definitions"])
        self._fast = _FastCompiler(self.json_schema["definitions"])
        self._global_params: Mapping[str, Any] = doc.get("parameters", {})
        methods = []
        for m in _iter_methods(doc["resources"]):
            pattern, names = _path_regex(m["flatPath"])
            methods.append(
                Method(
                    id=m["id"],
                    http_method=m["httpMethod"],
                    pattern=pattern,
                    path_params=names,
                    request_ref=(m.get("request") or {}).get("$ref"),
                    parameters=m.get("parameters", {}),
                )
            )
        # Longest flat paths first so ".../values:batchGet" wins over ".../values/{range}".
        self.methods = sorted(methods, key=lambda m: -len(m.pattern.pattern))

    def match(self, http_method: str, path: str) -> tuple[Method, dict[str, str]] | None:
        """The method serving ``http_method path`` (path unquoted) and its path parameters."""
        for method in self.methods:
            if method.http_method != http_method.upper():
                continue
            found = method.pattern.match(path)
            if found:
                return method, dict(zip(method.path_params, found.groups(), strict=True))
        return None

    def body_errors(self, method: Method, body: Any) -> list[str]:
        """Schema violations of ``body`` (nulls already dropped) for ``method``'s request."""
        errors: list[str] = []
        if method.request_ref is None:
            if body not in (None, {}):
                errors.append(f"{method.id} takes no request body")
            return errors
        return self.schema_errors(method.request_ref, body if body is not None else {})

    def schema_errors(self, ref: str, value: Any) -> list[str]:
        """Violations of ``value`` against the discovery schema named ``ref``."""
        errors: list[str] = []
        if not self.is_valid(ref, value):
            self._compiler.ref(ref)(value, "", errors)
        return errors

    def is_valid(self, ref: str, value: Any) -> bool:
        """Whether ``value`` is valid against the schema ``ref`` (the fast closures alone)."""
        return self._fast.ref(ref)[0](value)

    def detailed_errors(self, ref: str, value: Any) -> list[str]:
        """Violations found by the detailed closures alone (a test checks both agree)."""
        errors: list[str] = []
        self._compiler.ref(ref)(value, "", errors)
        return errors

    def query_errors(self, method: Method, query: Mapping[str, list[str]]) -> list[str]:
        """Unknown query parameters, repeated single ones, wrong enums and booleans."""
        errors: list[str] = []
        for name, values in query.items():
            spec = method.parameters.get(name) or self._global_params.get(name)
            if spec is None or spec.get("location") == "path":
                errors.append(f"unknown query parameter {name!r}")
                continue
            if len(values) > 1 and not spec.get("repeated"):
                errors.append(f"query parameter {name!r} given {len(values)} times")
            for value in values:
                if "enum" in spec and value not in spec["enum"]:
                    errors.append(f"query parameter {name}={value!r} is not one of {spec['enum']}")
                if spec.get("type") == "boolean" and value.lower() not in ("true", "false"):
                    errors.append(f"query parameter {name}={value!r} is not a boolean")
                if spec.get("type") == "integer" and not re.fullmatch(r"-?\d+", value):
                    errors.append(f"query parameter {name}={value!r} is not an integer")
        return errors
