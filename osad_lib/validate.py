"""One-line, actionable errors for bad user input (parameters, options, paths)."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A user-facing configuration error; its message is one line that says how to fix it."""


def notice(message: str) -> None:
    """Say in one line on stderr what was found wrong and what was done about it (a damaged cache
    rebuilt, a malformed result row quarantined, a damaged checkpoint discarded); work goes on."""
    print(f"osad-companion: {' '.join(message.split())}", file=sys.stderr, flush=True)


def closest(value: str, allowed: Iterable[str]) -> str | None:
    """The allowed value most similar to ``value`` (None if nothing is close)."""
    matches = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.5)
    return matches[0] if matches else None


def choose(parameter: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``; otherwise raise a one-line ConfigError."""
    allowed = list(allowed)
    if value in allowed:
        return value
    hint = closest(str(value), [str(a) for a in allowed])
    did_you_mean = f"; did you mean {hint!r}?" if hint else ""
    raise ConfigError(
        f"parameter {parameter!r}: {value!r} is not one of {', '.join(map(str, allowed))}{did_you_mean}"
    )


def parse_int_list(parameter: str, value: str | int | Iterable[int]) -> tuple[int, ...]:
    """Parse ``"0,1,2"`` / ``3`` / ``[0, 1]`` into a tuple of ints, with a one-line error."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        return tuple(int(str(v).strip()) for v in items if str(v).strip() != "")
    except ValueError:
        raise ConfigError(
            f"parameter {parameter!r}: {value!r} is not a comma-separated list of integers, e.g. '0,1,2'"
        ) from None


def parse_seeds(parameter: str, value: str | int | Iterable[int]) -> tuple[int, ...]:
    """Seeds as a non-empty tuple of non-negative integers (numpy and torch refuse negative
    seeds), with a one-line error naming ``parameter``."""
    seeds = parse_int_list(parameter, value)
    if not seeds:
        raise ConfigError(f"parameter {parameter!r}: {value!r} names no seed; pass e.g. '0,1,2' or leave it out "
                          "for the profile's seeds")
    negative = [s for s in seeds if s < 0]
    if negative:
        raise ConfigError(f"parameter {parameter!r}: seeds must be non-negative integers, got {negative[0]}; "
                          "pass e.g. '0,1,2'")
    return seeds


def require_type(parameter: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    """Raise a one-line ConfigError unless ``value`` is an instance of ``expected``."""
    if isinstance(value, bool) and expected in (int, float):
        raise ConfigError(f"parameter {parameter!r}: expected {expected.__name__}, got a bool {value!r}")
    if not isinstance(value, expected):
        names = expected.__name__ if isinstance(expected, type) else "/".join(t.__name__ for t in expected)
        raise ConfigError(f"parameter {parameter!r}: expected {names}, got {type(value).__name__} {value!r}")
    return value
