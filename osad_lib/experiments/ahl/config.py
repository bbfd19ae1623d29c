"""The settings of ``05_ahl``: the profile's AHL settings and grid keys, and how a run's settings
depart from the paper's."""

from __future__ import annotations

from typing import Any


from osad_lib.experiments import devnet as xdevnet
from osad_lib.experiments import dra as xdra
from osad_lib.methods.ahl.config import BASES, AHLConfig
from osad_lib.methods.devnet.model import DevNetConfig
from osad_lib.methods.dra import DRAConfig
from osad_lib.profiles import GRID_OPTIONS, NotebookConfig
from osad_lib.settings import config_diff
from osad_lib.validate import choose



NOTEBOOK = "05_ahl"
PAPER = "ahl"
TABLES = {"general": "table1", "hard": "table2"}
#: ``variant`` of the base-model rows (the paper tables' DevNet/DRA columns, here trained by us).
BASE_VARIANT = "ahl_base"
#: Paper variants (Table 5, Table 10, Fig. 4) → AHLConfig overrides, for ``variants`` lists.
PAPER_VARIANTS: dict[str, dict[str, Any]] = {
    "hadg": {"variant": "hadg"}, "ramhadg": {"variant": "ramhadg"}, "ramfull": {"variant": "ramfull"},
    "ramhadg+devnet": {"variant": "ramhadg+devnet"}, "cdl_minus": {"variant": "cdl_minus"},
    "overlap=s_to_q": {"overlap": "s_to_q"}, "overlap=q_to_s": {"overlap": "q_to_s"},
    "overlap=both": {"overlap": "both"}, "wo_aug": {"pseudo": False}, "faithful": {"mode": "faithful"},
}




def grid_option(cfg: NotebookConfig, key: str) -> Any:
    """A grid option of the profile's AHL settings (``GRID_OPTIONS["ahl"]``), with its default. The
    splits are 02_dra's (its datasets, ``extra_hard`` and seen-class limit), restricted by
    ``general_n_shots`` / ``hard_n_shots`` (default: the profile's shots) and ``settings``
    (default: the profile's); ``bases`` (default both), ``variants`` (AHL variants run beside the
    full model, as ``AHLConfig`` overrides keyed by a label; default none), ``max_test_images`` (0 =
    the whole test set, else a seeded class-stratified subsample), ``max_normals`` (0 = every
    training normal enters HADG, else a seeded subset of that size)."""
    defaults = {"general_n_shots": cfg.profile.n_shots, "hard_n_shots": cfg.profile.n_shots,
                "settings": cfg.profile.settings, "bases": BASES, "variants": (), "max_test_images": 0, "max_normals": 0}
    value = cfg.profile.method("ahl").grid.get(choose("grid option", key, GRID_OPTIONS["ahl"]), defaults[key])
    return tuple(value) if isinstance(value, (list, tuple)) else value


def variant_options(variant: str) -> dict[str, Any]:
    """AHLConfig overrides of a variant label: a :data:`PAPER_VARIANTS` name, ``C=<n>`` /
    ``K=<n>`` (Fig. 3 sweeps of the cluster count and ψ's sequence length), ``init=fresh``, or
    several joined by ``;``."""
    options: dict[str, Any] = {}
    for part in filter(None, variant.split(";")):
        key, _, value = part.partition("=")
        if key in ("C", "K") and value.isdigit():
            options["n_clusters" if key == "C" else "sequence_length"] = int(value)
        elif part == "init=fresh":
            options["init"] = "fresh"
        else:
            allowed = (*PAPER_VARIANTS, "C=<n>", "K=<n>", "init=fresh")
            options.update(PAPER_VARIANTS[choose("AHL variant", part, allowed)])
    return options


def ahl_config(cfg: NotebookConfig, base: str, variant: str = "") -> AHLConfig:
    """AHL's paper defaults ← the DRA base's composite-head width (g has the base's architecture)
    ← the profile's AHL ``config``, then that of its part ``base`` (settings for that base model
    only, e.g. more epochs where they are cheap) ← the variant's options
    (:func:`variant_options`; ``faithful`` = :meth:`AHLConfig.faithful` with the code's numbers)."""
    settings = cfg.profile.method("ahl")
    options = variant_options(variant)
    faithful = options.pop("mode", "") == "faithful"
    inherited = {"composite_channels": xdra.dra_config(cfg).composite_channels} if base == "dra" else {}
    merged = {**inherited, **settings.config, **settings.part(base).config, **options, "base": base}
    return AHLConfig.faithful(**merged) if faithful else AHLConfig(**merged)


def base_config(cfg: NotebookConfig, base: str) -> DevNetConfig | DRAConfig:
    """The base model's settings under the profile, exactly as its own notebook trains it."""
    return xdevnet.devnet_config(cfg) if choose("base", base, BASES) == "devnet" else xdra.dra_config(cfg)


def row_mode(cfg: NotebookConfig, base: str, config: AHLConfig | None) -> str:
    """The ``mode`` of a row: AHL's own (``config``) on an AHL row, DRA's on a DRA base row, none
    on a DevNet base row (DevNet has no faithful/clean variant)."""
    if config is not None:
        return config.mode
    return base_config(cfg, base).mode if base == "dra" else ""


def _ahl_deviations(config: AHLConfig) -> list[str]:
    reference = AHLConfig.faithful(base=config.base) if config.faithful_mode else AHLConfig(base=config.base)
    label_fields = {"variant", "overlap", "pseudo", "n_clusters", "sequence_length", "init", "mode", "base"}
    return config_diff(config, reference, "paper", skip=label_fields, shown=AHLConfig())


def deviations(cfg: NotebookConfig, dataset: str, base: str, config: AHLConfig | None) -> str:
    """How a row's run differs from the paper: the base model's deviations (its notebook's; on an
    AHL row the mode of a DRA base too, since the row's ``mode`` column is AHL's), then AHL's mode
    and settings, the HADG normal subset and the test subsample."""
    base_text = (xdevnet.devnet_deviations(cfg, dataset, base_config(cfg, base)) if base == "devnet"
                 else xdra.config_deviations(base_config(cfg, base), dataset))
    parts = [f"base: {base_text}" if base_text else ""]
    if base == "dra":
        parts.append("DRA scored with its fixed reference normals")
        if config is not None:
            parts.insert(0, f"base mode={base_config(cfg, base).mode}")
    if config is not None:
        parts.append(f"ahl mode={config.mode}")
        parts += _ahl_deviations(config)
    if grid_option(cfg, "max_normals"):
        parts.append(f"HADG on a seeded subset of {grid_option(cfg, 'max_normals')} training normals")
    if grid_option(cfg, "max_test_images"):
        limit = grid_option(cfg, "max_test_images")
        parts.append(f"test set: seeded class-stratified subsample of at most {limit} images")
    return "; ".join(p for p in parts if p)
