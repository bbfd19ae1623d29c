"""Rules every settings dataclass shares, each written once (``docs/architecture.md``).

* :func:`check_known`: override keys that name no setting fail in one line that names them, the
  closest setting and the known ones.
* :func:`apply_overrides`: a settings object with overrides applied (checked by
  :func:`check_known`; lists become tuples, as TOML and YAML profile files give lists).
* :func:`require_at_least`: integer settings with a lower bound, one line naming the field.
* :func:`changed_fields`: the fields a settings object changes against a reference (a variant's
  ``params`` in its result rows).
* :func:`config_diff`: how a settings object differs from a reference, as
  ``name=value (label: reference value)`` parts. Every method builds the ``deviations`` column of
  its result rows from it, so the rows of all notebooks say the same thing the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeVar

from osad_lib.validate import ConfigError, closest

T = TypeVar("T")


def field_names(settings: Any) -> list[str]:
    """The field names of a settings dataclass (class or instance), in declaration order."""
    return [f.name for f in dataclasses.fields(settings)]


def check_known(keys: Iterable[str], known: Collection[str], what: str) -> None:
    """Raise :class:`ConfigError` when ``keys`` hold a name not in ``known`` (``what``: whose settings)."""
    unknown = sorted(set(keys) - set(known))
    if unknown:
        hint = closest(unknown[0], known)
        suggestion = f" (did you mean {hint!r}?)" if hint else ""
        raise ConfigError(f"unknown {what} setting(s) {unknown}{suggestion}; known: {sorted(known)}")


def apply_overrides(settings: T | type[T], overrides: Mapping[str, Any], what: str) -> T:
    """``settings`` (an instance, or a class for its defaults) with ``overrides`` applied; unknown
    keys fail through :func:`check_known`, lists become tuples."""
    check_known(overrides, field_names(settings), what)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    if isinstance(settings, type):
        return settings(**values)
    return dataclasses.replace(settings, **values)  # type: ignore[type-var]


def require_at_least(settings: Any, names: Iterable[str], minimum: int = 1) -> None:
    """Raise :class:`ConfigError` naming the first of ``names`` whose value is below ``minimum``."""
    for name in names:
        value = getattr(settings, name)
        if value < minimum:
            raise ConfigError(f"{type(settings).__name__}.{name} must be >= {minimum}, got {value}")


def changed_fields(settings: Any, reference: Any, skip: Collection[str] = ()) -> dict[str, Any]:
    """The fields of ``settings`` whose value differs from ``reference``'s (same dataclass), in
    declaration order, except those in ``skip``: what a variant changes (a row's ``params``)."""
    return {name: getattr(settings, name) for name in field_names(settings)
            if name not in skip and getattr(settings, name) != getattr(reference, name)}


def config_diff(settings: Any, reference: Any, label: str, skip: Collection[str] = (),
                shown: Any = None, notes: Mapping[tuple[str, Any], str] | None = None) -> list[str]:
    """``name=value (label: reference value)`` for every field of ``settings`` that differs from
    ``reference`` (same dataclass), in declaration order, except the fields in ``skip``.

    ``shown`` (default: ``reference``) is the object whose values the parts name, for a comparison
    against one reference that reports another's values (e.g. compared with the official code's
    mode, reported against the paper). ``notes`` maps ``(name, value)`` to where that value comes
    from, added inside the parentheses (``(label: reference; note)``).
    """
    shown = reference if shown is None else shown
    notes = notes or {}
    parts = []
    for name, value in changed_fields(settings, reference, skip).items():
        note = notes.get((name, value), "")
        parts.append(f"{name}={value} ({label}: {getattr(shown, name)}{'; ' + note if note else ''})")
    return parts


__all__ = ["apply_overrides", "changed_fields", "check_known", "config_diff", "field_names", "require_at_least"]
