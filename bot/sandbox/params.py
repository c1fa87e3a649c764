"""What every sandbox endpoint shares: Stripe's error shape and the reading of request
parameters (nested form keys, integers, ``limit``, ``created`` ranges, cursors).

Its own module so that the server and the Billing routes (which the server mounts) both build
on it without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """An error answered in Stripe's shape: ``{"error": {"type": ..., "message": ...}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        return {"error": error}


def decode_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Rails-style nested form keys (``a[b]``, ``a[0]``, ``a[]``) into dicts and lists.

    Raises ApiError on a key that mixes list and object syntax.
    """
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", raw_key)
        if not match:
            raise ApiError(400, f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # `a[]`: append, as an index one past the last
                part = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ApiError(400, f"Invalid parameter name: {raw_key}", param=raw_key)
                node = child
    return {k: _listify(v) for k, v in root.items()}  # the top level is always a hash


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _int(value: Any, param: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise ApiError(400, f"Invalid integer: {value}", param=param)


def _string(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    raise ApiError(400, f"Invalid string: {param} must be a string", param=param)


def _only(params: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    for name in params:
        if name not in allowed:
            full = f"{prefix}[{name}]" if prefix else name
            raise ApiError(400, f"Received unknown parameter: {full}", param=full)


def _no_expand(params: Mapping[str, Any]) -> None:
    expand = params.get("expand")
    if expand is None or expand == [] or expand == "":
        return
    if not isinstance(expand, list):
        raise ApiError(400, "Invalid array", param="expand")
    raise ApiError(
        400,
        f"This property cannot be expanded in the sandbox ({', '.join(map(str, expand))}).",
        param="expand",
    )


def _limit(params: Mapping[str, Any]) -> int:
    if "limit" not in params:
        return 10
    limit = _int(params["limit"], "limit")
    if not 1 <= limit <= 100:
        raise ApiError(
            400, f"Invalid limit: must be between 1 and 100 (got {limit})", param="limit"
        )
    return limit


def _created_range(params: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """``created`` (int or ``{gt,gte,lt,lte}``) as a half-open ``[gte, lt)``."""
    if "created" not in params:
        return None, None
    created = params["created"]
    if isinstance(created, str):
        exact = _int(created, "created")
        return exact, exact + 1
    if not isinstance(created, dict):
        raise ApiError(400, "Invalid created: an integer or a hash", param="created")
    _only(created, {"gt", "gte", "lt", "lte"}, "created")
    lower: list[int] = []
    upper: list[int] = []
    if "gt" in created:
        lower.append(_int(created["gt"], "created[gt]") + 1)
    if "gte" in created:
        lower.append(_int(created["gte"], "created[gte]"))
    if "lt" in created:
        upper.append(_int(created["lt"], "created[lt]"))
    if "lte" in created:
        upper.append(_int(created["lte"], "created[lte]") + 1)
    return (max(lower) if lower else None), (min(upper) if upper else None)


def _cursors(params: Mapping[str, Any]) -> tuple[str | None, str | None]:
    after = params.get("starting_after")
    before = params.get("ending_before")
    if after is not None and before is not None:
        raise ApiError(
            400,
            "You may only specify one of these parameters: ending_before, starting_after.",
            param="starting_after",
        )
    return (
        None if after is None else _string(after, "starting_after"),
        None if before is None else _string(before, "ending_before"),
    )
