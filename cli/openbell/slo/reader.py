"""A strict reader over parsed YAML: every access names its path, unknown fields are refused.

Loaders walk a document through `Node`s so that each error says which file, which field and what
was expected, e.g. ``slo/gateway.yaml: spec.objective: expected a number in (0, 100), got 100.5``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from openbell.durations import parse_duration_s
from openbell.errors import SpecError

_MISSING = object()


class Node:
    """A mapping in a document, at `path`, read field by field; `done()` rejects leftovers."""

    def __init__(self, source: str, path: str, value: Any) -> None:
        self.source = source
        self.path = path
        if not isinstance(value, dict):
            raise SpecError(source, path or "(document)", f"expected a mapping, got {_kind(value)}")
        self._value: dict[str, Any] = value
        self._read: set[str] = set()

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, expected: str) -> SpecError:
        return SpecError(self.source, self.field(key), expected)

    def has(self, key: str) -> bool:
        return key in self._value

    def keys(self) -> list[str]:
        return list(self._value)

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._read.add(key)
        if key not in self._value or self._value[key] is None:
            if default is _MISSING:
                raise self.error(key, "is required")
            return default
        return self._value[key]

    def text(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a non-empty string, got {_kind(value)}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_kind(value)}")
        return value

    def number(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {_kind(value)}")
        return float(value)

    def duration_s(self, key: str, default: Any = _MISSING, bare_seconds: bool = True) -> Any:
        """A duration; with bare_seconds False a number without a unit is refused (is 30 days or seconds?)."""
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        try:
            return parse_duration_s(value, bare_seconds=bare_seconds)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def node(self, key: str, default: Any = _MISSING) -> Node | None:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return None if value is None else Node(self.source, self.field(key), value)
        return Node(self.source, self.field(key), value)

    def str_map(self, key: str) -> dict[str, str]:
        value = self.raw(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping of strings, got {_kind(value)}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str) or isinstance(v, dict | list) or v is None:
                raise SpecError(self.source, f"{self.field(key)}.{k}", "expected a string value")
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
        return out

    def str_list(self, key: str) -> list[str]:
        value = self.raw(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, f"expected a list of strings, got {_kind(value)}")
        return list(value)

    def items(self, key: str, default: Any = _MISSING) -> Iterator[tuple[str, Any]]:
        value = self.raw(key, default)
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {_kind(value)}")
        for i, item in enumerate(value):
            yield f"{self.field(key)}[{i}]", item

    def done(self) -> None:
        """Refuse fields nobody read: a typo must not silently change an SLO."""
        unknown = [k for k in self._value if k not in self._read]
        if unknown:
            known = ", ".join(sorted(self._read)) or "none"
            raise SpecError(self.source, self.field(str(unknown[0])),
                            f"unknown field (known fields here: {known})")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, int | float):
        return f"{value}"
    if isinstance(value, str):
        return repr(value) if len(value) < 60 else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
