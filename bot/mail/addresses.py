"""Email address settings: ``EMAIL_FROM`` (may carry a display name) and recipient lists. Pure."""

from __future__ import annotations

import re

from bot.errors import ConfigError

# Deliberately stricter than RFC 5322 (no quoted local parts, no IP literals, ASCII only):
# what we accept here, every provider accepts, and a typo fails before anything is sent.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*\.(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})"
_ADDR_RE = re.compile(rf"^{_LOCAL}@{_DOMAIN}$")
_NAMED_RE = re.compile(r"^(?P<name>[^<>]*?)\s*<(?P<addr>[^<>]*)>$")
_MAX_LEN = 254  # RFC 5321 path limit


def _fail(value: str, variable: str, why: str) -> ConfigError:
    return ConfigError(f"{variable}: {value!r} {why}")


def _check_bare(addr: str, *, original: str, variable: str) -> str:
    if len(addr) > _MAX_LEN or not _ADDR_RE.match(addr):
        raise _fail(original, variable, "is not an email address (expected name@domain.tld)")
    local, domain = addr.rsplit("@", 1)
    if len(local) > 64:
        raise _fail(original, variable, "has a local part longer than 64 characters")
    return f"{local}@{domain.lower()}"


def validate_address(value: str, *, variable: str, allow_display_name: bool = False) -> str:
    """Check one address and return it normalised (stripped, domain lower-cased).

    With ``allow_display_name`` (for ``EMAIL_FROM``), ``Acme Finance <finance@acme.com>`` is
    accepted too and returned as ``Acme Finance <finance@acme.com>``. Raises
    :class:`~bot.errors.ConfigError` naming the bad value and the variable.
    """
    text = value.strip()
    if not text:
        raise ConfigError(f"{variable} is empty; expected an email address")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise _fail(value, variable, "contains control characters")
    named = _NAMED_RE.match(text)
    if named:
        if not allow_display_name:
            raise _fail(value, variable, "must be a bare address, without a display name")
        name = named.group("name").strip()
        if name.startswith('"') and name.endswith('"') and len(name) >= 2:
            name = name[1:-1].strip()
        if '"' in name or "\\" in name:
            raise _fail(value, variable, "has quotes or backslashes in its display name")
        if "=?" in name:
            # An RFC 2047 encoded word (=?utf-8?q?...?=): the email library encodes the name
            # itself, and refuses one that is already encoded, at send time.
            raise _fail(
                value,
                variable,
                "has an encoded display name (=?...?=); write the name as plain text",
            )
        addr = _check_bare(named.group("addr").strip(), original=value, variable=variable)
        return f"{name} <{addr}>" if name else addr
    return _check_bare(text, original=value, variable=variable)


def parse_address_list(value: str, *, variable: str = "INVESTOR_EMAILS") -> tuple[str, ...]:
    """Split a comma-separated list of bare addresses, validate each, drop duplicates.

    Addresses are lower-cased so that a change of spelling between runs does not look like a
    new investor (the ledger keys sends by recipient). Returns ``()`` for a blank value; the
    caller decides whether the setting is required.
    """
    out: list[str] = []
    for part in value.split(","):
        if not part.strip():
            continue
        addr = validate_address(part.strip(), variable=variable).lower()
        if addr not in out:
            out.append(addr)
    return tuple(out)


__all__ = ["parse_address_list", "validate_address"]
