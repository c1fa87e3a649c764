"""Check JSON responses and request parameters against Stripe's OpenAPI spec.

Reads ``tests/contracts/stripe/spec3.json``: the paths revbot uses, extracted from Stripe's
published spec by ``scripts/extract_contracts.py`` (see ``tests/contracts/README.md``). A small
OpenAPI 3.0 validator: ``$ref``, ``nullable``, ``anyOf``/``oneOf``/``allOf``, ``enum``,
``type``, ``required``, ``properties``, ``additionalProperties``, ``items``, ``maxLength`` and
``pattern``. Unknown (newer) properties are accepted unless a schema forbids them; required
ones must be present and well typed. Expandable fields are ``anyOf`` id-or-object in the spec,
so they need no special case. Failures raise AssertionError naming the JSON path.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = REPO_ROOT / "tests" / "contracts" / "stripe" / "spec3.json"

Schema = dict[str, Any]


@functools.cache
def spec() -> dict[str, Any]:
    """The parsed OpenAPI document (loaded once)."""
    with SPEC_PATH.open(encoding="utf-8") as f:
        return json.load(f)


def _resolve(schema: Schema) -> Schema:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise AssertionError(f"unsupported $ref {ref}")
        node: Any = spec()
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


def _operation(method: str, path_template: str) -> dict[str, Any]:
    paths = spec()["paths"]
    if path_template not in paths:
        raise AssertionError(f"{path_template} is not a path of the Stripe spec")
    op = paths[path_template].get(method.lower())
    if op is None:
        raise AssertionError(f"{method.upper()} {path_template} is not in the Stripe spec")
    return op


def response_schema(method: str, path_template: str, status: int) -> Schema:
    """The JSON schema of one response (``default`` = the ``error`` schema for non-2xx)."""
    responses = _operation(method, path_template)["responses"]
    entry = responses.get(str(status)) or responses.get("default")
    if entry is None:
        raise AssertionError(f"{method} {path_template} documents no {status} response")
    return entry["content"]["application/json"]["schema"]


def validate_response(method: str, path_template: str, status: int, body: Any) -> None:
    """Raise AssertionError unless ``body`` fits the spec's response for that operation."""
    schema = response_schema(method, path_template, status)
    errors = _check(schema, body, "$", depth=0)
    if errors:
        listed = "; ".join(errors[:5])
        raise AssertionError(
            f"{method.upper()} {path_template} {status}: response does not match the spec: {listed}"
        )


def validate(schema_name: str, value: Any) -> None:
    """Validate ``value`` against ``#/components/schemas/<schema_name>``."""
    errors = _check({"$ref": f"#/components/schemas/{schema_name}"}, value, "$", depth=0)
    if errors:
        raise AssertionError(f"{schema_name}: " + "; ".join(errors[:5]))


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def _check(schema: Schema, value: Any, where: str, *, depth: int) -> list[str]:
    """Every mismatch between ``value`` and ``schema``, as ``path: problem`` strings."""
    if depth > 60:
        return [f"{where}: nesting too deep"]
    schema = _resolve(schema)
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null but not nullable"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branch_errors: list[str] = []
            for option in schema[key]:
                found = _check(option, value, where, depth=depth + 1)
                if not found:
                    break
                branch_errors.extend(found)
            else:
                return [f"{where}: matches none of {key} ({'; '.join(branch_errors[:3])})"]
    errors: list[str] = []
    for part in schema.get("allOf", []):
        errors.extend(_check(part, value, where, depth=depth + 1))
    expected = schema.get("type")
    if expected is not None and not _TYPES[expected](value):
        return [*errors, f"{where}: expected {expected}, got {type(value).__name__} {value!r:.60}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in enum {schema['enum'][:8]}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: missing required field {name!r}")
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if name in properties:
                errors.extend(_check(properties[name], item, f"{where}.{name}", depth=depth + 1))
            elif extra is False:
                errors.append(f"{where}: unexpected field {name!r}")
            elif isinstance(extra, dict):
                errors.extend(_check(extra, item, f"{where}.{name}", depth=depth + 1))
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors.extend(_check(schema["items"], item, f"{where}[{i}]", depth=depth + 1))
    return errors


# ---------------------------------------------------------------------- requests


def _nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Form keys ``a[b][0]`` into nested dicts (list indexes stay dict keys)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, *rest = re.split(r"\[", key.replace("]", ""))
        parts = [head, *rest]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


def _coerce(schema: Schema, value: Any, where: str) -> list[str]:
    """Check a form-encoded value (strings all the way down) against a request schema."""
    schema = _resolve(schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            if any(not _coerce(o, value, where) for o in schema[key]):
                return []
            return [f"{where}: {value!r} matches none of {key}"]
    expected = schema.get("type")
    if expected == "object" or (expected is None and "properties" in schema):
        if not isinstance(value, dict):
            return [f"{where}: expected a hash"]
        errors = []
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                errors.extend(_coerce(properties[name], item, f"{where}[{name}]"))
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: unknown parameter {name!r}")
        return errors
    if expected == "array":
        if not isinstance(value, dict) or not all(k.isdigit() or k == "" for k in value):
            return [f"{where}: expected an array (indexed keys)"]
        errors = []
        for k, item in value.items():
            errors.extend(_coerce(schema.get("items", {}), item, f"{where}[{k}]"))
        return errors
    if isinstance(value, dict):
        return [f"{where}: expected a scalar, got a hash"]
    if expected == "integer" and not re.fullmatch(r"-?\d+", value):
        return [f"{where}: {value!r} is not an integer"]
    if expected == "boolean" and value not in ("true", "false"):
        return [f"{where}: {value!r} is not a boolean"]
    if (
        "enum" in schema
        and value not in schema["enum"]
        and not schema.get("x-stripeBypassValidation")
    ):
        return [f"{where}: {value!r} not in enum"]
    return []


def validate_query(method: str, path_template: str, params: Any) -> None:
    """Raise AssertionError unless form parameters are declared by the operation.

    ``params``: a query/body string, a list of pairs or a flat dict of raw form keys such as
    ``{"created[gte]": "1", "limit": "10"}``. GET checks the operation's query parameters,
    POST its form-encoded request body.
    """
    if isinstance(params, str):
        pairs = parse_qsl(params, keep_blank_values=True)
    elif isinstance(params, dict):
        pairs = [(str(k), str(v)) for k, v in params.items()]
    else:
        pairs = [(str(k), str(v)) for k, v in params]
    values = _nested(pairs)
    op = _operation(method, path_template)
    if method.upper() == "GET":
        declared = {p["name"]: p["schema"] for p in op.get("parameters", []) if p["in"] == "query"}
        schema: Schema = {"type": "object", "properties": declared, "additionalProperties": False}
    else:
        body = op.get("requestBody", {}).get("content", {})
        form = body.get("application/x-www-form-urlencoded")
        if form is None:
            raise AssertionError(f"{method} {path_template} takes no form body")
        schema = form["schema"]
    errors = _coerce(schema, values, "params")
    for name in _resolve(schema).get("required", []):
        if name not in values:
            errors.append(f"params: missing required {name!r}")
    if errors:
        raise AssertionError(
            f"{method.upper()} {path_template}: parameters do not match the spec: "
            + "; ".join(errors[:5])
        )
