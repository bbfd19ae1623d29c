"""One method's settings under one profile, typed by what each setting shapes (:class:`MethodSettings`).

A profile holds one :class:`MethodSettings` per method (the built-in ones in
:data:`osad_lib.profiles.builtin.METHOD_OVERRIDES`):

* ``config``: overrides of the method's settings dataclass (``DevNetConfig``, ``DRAConfig``,
  ``BGADConfig``, ``AnoOnlyConfig``, ``AHLConfig``, ``PatchCoreConfig``, ``KDADConfig``), checked
  field by field when the notebook builds that config (:func:`osad_lib.settings.apply_overrides`);
* ``grid``: options that shape the method's notebook grid rather than a run, named in
  :data:`GRID_OPTIONS` (each notebook's ``grid_option``/``option`` gives their defaults);
* ``parts``: named sub-blocks (:data:`PART_NAMES`): AHL's per-base settings (``devnet``, ``dra``),
  the cross-domain notebook's AHL settings (``ahl``), and one block of options per ablation study.

A profile file's ``[methods.<method>]`` table writes the same settings side by side (its *flat*
form, :meth:`MethodSettings.flat`); :func:`method_settings` reads that form back, sorting each
key into its kind and refusing, in one line, a grid option or part that the method does not have.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from osad_lib.validate import ConfigError, closest

#: Per method, the names of its grid options (every other flat key is a config field).
#:
#: * ``devnet`` (01_devnet): ``methods`` (default: every registered method), ``max_seen_classes``
#:   (0: all), ``method_tables`` (method → the tables it runs on), ``method_seeds`` (method → how
#:   many of the profile's seeds it runs, the first ones), ``table_seeds`` (table → the same limit
#:   for every method of that table).
#: * ``dra`` (02_dra): shots, methods, seen classes, test subsample, the appendix tables' shots, the
#:   clean-mode runs, the extra hard datasets and the per-method seed limits
#:   (:func:`osad_lib.experiments.dra.config.grid_option`).
#: * ``bgad`` (03_bgad): the datasets of Tables 1–3, the shots of BGAD-FAS and of Table 3, and
#:   ``max_train_normals``.
#: * ``ahl`` (05_ahl): the splits' shots and settings, ``bases``, ``variants``, ``max_test_images``,
#:   ``max_normals`` (:mod:`osad_lib.experiments.ahl.config`).
#: * ``cross_domain`` (07_cross_domain): every option of :data:`osad_lib.experiments.cross_domain.DEFAULTS`.
#: * ``ablations`` (06_ablations): ``studies``, the study keys run by default (empty: all).
GRID_OPTIONS: dict[str, tuple[str, ...]] = {
    "devnet": ("methods", "max_seen_classes", "method_tables", "method_seeds", "table_seeds"),
    "dra": ("general_n_shots", "hard_n_shots", "methods", "max_seen_classes", "max_test_images", "appendix_n_shots",
            "clean_runs", "extra_hard", "method_seeds", "one_shot_seeds", "clean_seeds"),
    "bgad": ("table1_datasets", "table2_datasets", "table3_datasets", "fas_n_shots", "table3_n_shots",
             "max_train_normals"),
    "anoonly": (),
    "ahl": ("general_n_shots", "hard_n_shots", "settings", "bases", "variants", "max_test_images", "max_normals"),
    "cross_domain": ("domains", "methods", "n_shots", "same_domain", "max_seeds", "finetune_epochs", "finetune_steps",
                     "max_test_images"),
    "ablations": ("studies",),
    "patchcore": (),
}
#: Per method, its named parts: AHL's base models, the cross-domain notebook's AHL. The ablation
#: studies are parts too, under the flat key :data:`STUDY_PARTS_KEY`, one per study key.
PART_NAMES: dict[str, tuple[str, ...]] = {"ahl": ("devnet", "dra"), "cross_domain": ("ahl",)}
#: The flat key under which the ablations' per-study options sit (``[methods.ablations.options.<study>]``).
STUDY_PARTS_KEY = "options"


@dataclass(frozen=True)
class MethodSettings:
    """A method's settings under one profile: ``config`` (its settings dataclass's fields),
    ``grid`` (its notebook's grid options) and ``parts`` (named sub-blocks); see the module."""

    config: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Any] = field(default_factory=dict)
    parts: Mapping[str, MethodSettings] = field(default_factory=dict)

    def part(self, name: str) -> MethodSettings:
        """The sub-block ``name`` (empty when the profile sets none)."""
        return self.parts.get(name, EMPTY)

    def flat(self, method: str) -> dict[str, Any]:
        """The profile-file form: config and grid keys side by side, parts as nested tables (the
        ablations' under ``options``); what a custom profile's settings hash covers."""
        parts = {name: part.flat("") for name, part in self.parts.items()}
        nested = {STUDY_PARTS_KEY: parts} if method == "ablations" else parts
        return {**self.config, **self.grid, **nested}


#: The settings of a method a profile leaves at its defaults.
EMPTY = MethodSettings()


def method_settings(method: str, flat: Mapping[str, Any], where: str = "") -> MethodSettings:
    """``flat`` (a ``[methods.<method>]`` table) as typed settings: grid options by
    :data:`GRID_OPTIONS`, parts by :data:`PART_NAMES` (the ablations' studies under
    ``options``), the rest config fields. A part that is not a table fails in one line."""
    where = where or f"[methods.{method}]"
    if method == "ablations":
        studies = flat.get(STUDY_PARTS_KEY, {})
        _require_table(f"{where}.{STUDY_PARTS_KEY}", studies)
        unknown = sorted(set(flat) - {*GRID_OPTIONS[method], STUDY_PARTS_KEY})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; 'studies' lists study keys, '{STUDY_PARTS_KEY}' "
                              "holds settings per study key")
        parts = {}
        for key, options in studies.items():
            _require_table(f"{where}.{STUDY_PARTS_KEY}.{key}", options)
            parts[key] = MethodSettings(grid=dict(options))
        return MethodSettings(grid={k: flat[k] for k in GRID_OPTIONS[method] if k in flat}, parts=parts)
    grid_names, part_names = GRID_OPTIONS[method], PART_NAMES.get(method, ())
    parts = {}
    for name in part_names:
        if name in flat:
            _require_table(f"{where}.{name}", flat[name])
            parts[name] = MethodSettings(config=dict(flat[name]))
    misplaced = [k for k, v in flat.items() if isinstance(v, Mapping) and k not in part_names and k not in grid_names]
    if misplaced and method in PART_NAMES:
        hint = closest(misplaced[0], part_names)
        raise ConfigError(f"{where}: {misplaced[0]!r} is not a part of {method}"
                          + (f" (did you mean {hint!r}?)" if hint else "") + f"; its parts: {', '.join(part_names)}")
    return MethodSettings(config={k: v for k, v in flat.items() if k not in grid_names and k not in part_names},
                          grid={k: v for k, v in flat.items() if k in grid_names}, parts=parts)


def _require_table(where: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of settings, got {value!r}")


__all__ = ["EMPTY", "GRID_OPTIONS", "MethodSettings", "PART_NAMES", "STUDY_PARTS_KEY", "method_settings"]
