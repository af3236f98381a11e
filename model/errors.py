"""User-facing errors. The CLI prints them as one line (``simgr: error: ...``) and exits with code 2."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_UNKNOWN = frozenset({"extra_forbidden", "unexpected_keyword_argument"})
_MISSING = frozenset({"missing", "missing_keyword_argument", "missing_positional_argument"})
# container type errors in the words of the JSON the value came from
_EXPECTED = {"dict_type": "a JSON object", "model_type": "a JSON object", "dataclass_type": "a JSON object",
             "model_attributes_type": "a JSON object", "list_type": "a JSON array", "tuple_type": "a JSON array"}


class SimGRError(Exception):
    """Bad input or state a user can fix: the message names the file or value and the problem."""


def describe_errors(errors: Sequence[Mapping[str, Any]], *, what: str) -> str:
    """pydantic's first error as ``field.path: problem``, with ``(+N more)`` when there are others.

    ``what`` names the format in the message for a field the format does not have, e.g.
    ``train.epoch: unknown run config field``.
    """
    if not errors:
        return "invalid"
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
    kind = first.get("type")
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    if kind == "json_invalid":
        return f"malformed JSON: {first.get('ctx', {}).get('error', 'decode error')}"
    if kind == "value_error":  # a config's cross-field rule (__post_init__): its message says it all
        rule = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        return (f"{loc}: {rule}" if first.get("loc") else rule) + more
    if kind in _UNKNOWN:
        problem = f"unknown {what} field"
    elif kind in _MISSING:
        problem = "required field missing"
    elif kind in _EXPECTED:
        problem = f"expected {_EXPECTED[kind]}, got {_shown(first.get('input'))}"
    else:
        problem = f"{first.get('msg', 'invalid')} (got {_shown(first.get('input'))})"
    return f"{loc}: {problem}{more}"


def _shown(value: Any) -> str:
    """A value for an error message: scalars as written, containers by their JSON kind."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"{value!r:.60}"
