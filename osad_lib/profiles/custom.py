"""Custom profiles: a TOML file naming a built-in base, overrides of its fields and per-method
settings (:func:`load_profile_file`), named ``<name>@<settings hash>``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any


from osad_lib.validate import ConfigError, closest, parse_seeds
from osad_lib.data.registry import dataset_names
from osad_lib.profiles.builtin import BASE_PROFILES, METHOD_OVERRIDES, PROFILES, Profile
from osad_lib.profiles.methods import method_settings



#: Custom profiles loaded in this process (:func:`load_profile_file`), by their ``name@hash``.
CUSTOM_PROFILES: dict[str, Profile] = {}
#: Profile fields that say what a profile is, not how it runs: a profile file cannot set them.
_IDENTITY_FIELDS = ("name", "base", "source", "settings_hash", "method_settings")
#: Fields left out of the settings hash: its identity, text, how its grids run (not what they
#: compute), and what every result row's key already holds (its dataset and seed), so more datasets
#: or seeds under one profile belong together.
_UNHASHED_FIELDS = (*_IDENTITY_FIELDS, "description", "deviations", "grid_workers", "image_datasets", "seeds")
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def merge_settings(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied key by key; nested mappings merge recursively (a file's
    ``[methods.ahl.devnet] epochs = 3`` keeps the base's other AHL(DevNet) settings). Both are in the
    flat form of a profile file (:meth:`osad_lib.profiles.methods.MethodSettings.flat`)."""
    merged = dict(base)
    for key, value in overrides.items():
        nested = isinstance(value, Mapping) and isinstance(merged.get(key), Mapping)
        merged[key] = merge_settings(merged[key], value) if nested else value
    return merged


def _frozen(value: Any) -> Any:
    """A TOML/YAML value as the profiles write theirs: lists become tuples (also nested)."""
    if isinstance(value, Mapping):
        return {str(k): _frozen(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _type_name(value: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(value), type(value).__name__)


def _field_value(where: str, name: str, value: Any, current: Any) -> Any:
    """``value`` for profile field ``name`` checked against the type of the base's ``current``."""
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {name} must be a list, e.g. {name} = {json.dumps(list(current))}")
        if current and any(type(v) is not type(current[0]) for v in value):
            raise ConfigError(f"{where}: every entry of {name} must be {_type_name(current[0])}, e.g. "
                              f"{name} = {json.dumps(list(current))}")
        return tuple(value)
    if type(value) is not type(current) and not (type(current) is float and type(value) is int):
        raise ConfigError(f"{where}: {name} must be {_type_name(current)}, got {value!r} (e.g. {name} = "
                          f"{json.dumps(current)})")
    return value


def _describe_changes(changes: Mapping[str, Any], methods: Mapping[str, Mapping[str, Any]]) -> str:
    parts = [f"{k}={v}" for k, v in changes.items() if k != "description"]
    parts += [f"{m}.{k}={v}" for m, settings in methods.items() for k, v in settings.items()]
    return ", ".join(parts) or "no overrides"


def settings_hash(profile: Profile) -> str:
    """8 hex digits of the SHA-1 of everything that shapes a run under ``profile``: its fields but
    the unhashed ones (:data:`_UNHASHED_FIELDS`) and every method's settings."""
    content: dict[str, Any] = {f.name: getattr(profile, f.name) for f in fields(Profile) if f.name not in _UNHASHED_FIELDS}
    content["methods"] = {m: profile.method(m).flat(m) for m in METHOD_OVERRIDES}
    return hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:8]


def derive_profile(base: Profile, name: str, changes: Mapping[str, Any] | None = None,
                   methods: Mapping[str, Mapping[str, Any]] | None = None, source: str = "") -> Profile:
    """The one rule of profile inheritance: ``base`` with the profile fields of ``changes``
    replaced and, per method, ``base``'s settings merged with those of ``methods``
    (:func:`merge_settings`). The result is named ``<name>@<settings hash>`` (:func:`settings_hash`)
    and records its base, its file (``source``) and the overrides in ``deviations``.
    """
    changes, methods = dict(changes or {}), {m: dict(s) for m, s in (methods or {}).items()}
    where = f"profile file {source}" if source else f"profile {name!r}"
    if not _PROFILE_NAME.fullmatch(str(name)):
        raise ConfigError(f"{where}: name {name!r} must be letters, digits, '_', '.' or '-' (e.g. name = \"headct-demo\")")
    settable = [f.name for f in fields(Profile) if f.name not in _IDENTITY_FIELDS]
    for key in changes:
        if key not in settable:
            raise ConfigError(f"{where}: unknown key {key!r}" + _did_you_mean(key, [*settable, "methods"])
                              + f"; profile fields: {', '.join(settable)}; per-method settings go in [methods.<method>]")
    for method, settings in methods.items():
        if method not in METHOD_OVERRIDES:
            raise ConfigError(f"{where}: unknown method [methods.{method}]" + _did_you_mean(method, METHOD_OVERRIDES)
                              + f"; methods: {', '.join(METHOD_OVERRIDES)}")
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{where}: [methods.{method}] must be a table of settings (e.g. [methods.{method}] then epochs = 3)")
    resolved = {k: _field_value(where, k, _frozen(v), getattr(base, k)) for k, v in changes.items()}
    if "image_datasets" in resolved:
        resolved["image_datasets"] = with_datasets(base, resolved["image_datasets"], label=f"{where}: image_datasets").image_datasets
    if "seeds" in resolved:
        resolved["seeds"] = parse_seeds(f"{where}: seeds", resolved["seeds"])
    overrides = _describe_changes(changes, methods)
    resolved.setdefault("description", f"{base.description}; custom ({overrides})")
    resolved["deviations"] = "; ".join(p for p in (base.deviations, f"custom profile {name} (base {base.builtin}): {overrides}") if p)
    settings = {m: method_settings(m, merge_settings(base.method(m).flat(m), _frozen(methods.get(m, {}))),
                                   where=f"{where}: [methods.{m}]") for m in METHOD_OVERRIDES}
    profile = replace(base, **resolved, base=base.builtin, source=source, method_settings=settings)
    digest = settings_hash(profile)
    return replace(profile, name=f"{name}@{digest}", settings_hash=digest)


def _did_you_mean(value: str, allowed: Sequence[str] | Mapping[str, Any]) -> str:
    hint = closest(value, list(allowed))
    return f"; did you mean {hint!r}?" if hint else ""


def _read_profile_data(file: Path) -> dict[str, Any]:
    """The mapping a TOML (or, with PyYAML, YAML) profile file holds; one-line errors."""
    suffix = file.suffix.lower()
    text = file.read_text()
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"profile file {file} is not valid TOML: {' '.join(str(exc).split())}") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"profile file {file}: reading YAML needs PyYAML, which is not installed; write it as "
                              "TOML (.toml)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"profile file {file} is not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"profile file {file} holds no mapping of settings; start it with base: demo")
        return data
    raise ConfigError(f"profile file {file}: unknown format {file.suffix!r}; write it as TOML (.toml) or YAML (.yaml)")


def load_profile_file(path: str | os.PathLike) -> Profile:
    """The custom profile of a TOML/YAML file (registered in :data:`CUSTOM_PROFILES`)::

        base = "demo"                 # smoke | demo | paper: every field and method setting not set here
        name = "headct-demo"          # optional (default: the file name)
        image_datasets = ["headct"]   # any Profile field, e.g. seeds, image_size, epochs
        [methods.devnet]              # per-method settings, merged into the base's
        epochs = 5

    Every error (a missing file or base, an unknown key, a wrong type) is one line naming the fix.
    """
    file = Path(path).expanduser().absolute()
    if not file.is_file():
        what = "is a folder" if file.is_dir() else "does not exist"
        raise ConfigError(f"profile file {file} {what}; pass a TOML file such as: base = \"demo\" plus overrides "
                          "(README, 'Run the methods on your own data')")
    data = _read_profile_data(file)
    where = f"profile file {file}"
    if "base" not in data:
        raise ConfigError(f"{where}: no base profile; add a first line base = \"demo\" (one of {', '.join(BASE_PROFILES)})")
    base = data.pop("base")
    if base not in BASE_PROFILES:
        raise ConfigError(f"{where}: base {base!r} is not one of {', '.join(BASE_PROFILES)}"
                          + _did_you_mean(str(base), BASE_PROFILES))
    name = data.pop("name", file.stem)
    methods = data.pop("methods", {})
    if not isinstance(methods, Mapping):
        raise ConfigError(f"{where}: methods must be tables such as [methods.devnet]")
    profile = derive_profile(PROFILES[base], str(name), data, methods, source=str(file))
    CUSTOM_PROFILES[profile.name] = profile
    return profile


def with_datasets(profile: Profile, datasets: str | Sequence[str], label: str = "parameter 'datasets'") -> Profile:
    """``profile`` on ``datasets`` (registry names, comma-separated or a list; ``mvtecad`` stands
    for its 15 categories) instead of its image datasets: naming fewer restricts it, others extend
    it. Name and settings hash stay: every result row's key holds its dataset."""
    names = [n.strip() for n in datasets.split(",")] if isinstance(datasets, str) else [str(n).strip() for n in datasets]
    if not names or not all(names):
        raise ConfigError(f"{label}: an empty dataset name in {datasets!r}; list registry names, e.g. headct,brainmri")
    for name in names:
        try:
            dataset_names([name])
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
    return replace(profile, image_datasets=tuple(names))
