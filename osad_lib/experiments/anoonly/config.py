"""What the notebook runs (:class:`AnoOnlyConfig`, the profile's ``METHOD_OVERRIDES["anoonly"]``), the
data settings, the fidelity factors and how a head's settings depart from the paper's method."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


from osad_lib.data.tabular import (
    GROUPS,
    ORGANISATIONS,
    user_adbench_dir,
)
from osad_lib.methods.anoonly import (
    CODE_BEHAVIOUR,
    DEFAULT_NOT_PAPER,
    HEAD_DEFAULTS,
    HEADS,
    SSADConfig,
)
from osad_lib.profiles import NotebookConfig
from osad_lib.settings import apply_overrides
from osad_lib.validate import ConfigError, choose



NOTEBOOK = "04_anoonly"
PAPER = "anoonly"
#: Where each measured metric appears in the paper.
TABLE_OF_METRIC = {"auroc": "table1", "aupr": "table3", "aupr_normal": "table4"}
#: ``setting`` of a result row for each (organisation, split); only the paper's own —
#: clean organisation, paper split — joins the paper's tables.
SETTINGS: dict[tuple[str, str], str] = {
    ("clean", "paper"): "semi_supervised",
    ("clean", "no_leak"): "semi_supervised_no_leak",
    ("contaminated", "paper"): "label_noise",
    ("contaminated", "no_leak"): "label_noise_no_leak",
}
#: (organisation, split) of each ``setting`` value.
SETTING_AXES: dict[str, tuple[str, str]] = {v: k for k, v in SETTINGS.items()}
#: Readable name of each data setting (fidelity table rows, figure panels).
SETTING_LABELS: dict[str, str] = {
    "semi_supervised": "default", "semi_supervised_no_leak": "split=no_leak",
    "label_noise": "organisation=contaminated", "label_noise_no_leak": "organisation=contaminated, split=no_leak",
}
#: Column titles of the two splits in the comparison tables (clean organisation).
SPLIT_TITLES = {"paper": "paper split", "no_leak": "no-leak split"}
#: ``table`` of the beyond-the-paper image DevNet ± AnoOnly experiments.
IMAGE_TABLE = "image_devnet"
#: Open-set settings of the image experiments (DevNet notebook protocols).
IMAGE_SETTINGS = ("general", "hard")


def _same(heads: Sequence[str], options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {h: dict(options) for h in heads}


#: Fidelity factors: name → {head: SSADConfig changes}. Each reruns the MVTec column with one
#: departure from the defaults (the paper's method); ``code`` = every official-code behaviour of
#: the head at once (:data:`~osad_lib.methods.anoonly.config.CODE_BEHAVIOUR`).
FACTORS: dict[str, dict[str, dict[str, Any]]] = {
    "code": {h: dict(o) for h, o in CODE_BEHAVIOUR.items()},
    "loss_form=code": _same(("devnet",), {"loss_form": "code"}),
    "loss_form=paper": _same(("feawad",), {"loss_form": "paper"}),
    "l2=0": _same(("devnet",), {"l2": 0.0}),
    "select_best_loss=off": _same(("devnet", "feawad"), {"select_best_loss": False}),
    "keras=off": _same(("devnet", "feawad"), {"keras": False}),
    "balanced=off": _same(("devnet",), {"balanced": False}),
    "base_bn=on": _same(("devnet", "feawad", "prenet"), {"base_bn": True}),
    "fixed_batches=on": _same(("feawad",), {"fixed_batches": True}),
    "epochs=50": _same(("prenet",), {"epochs": 50}),
    "distinct_anomaly_pairs=off": _same(("prenet",), {"distinct_anomaly_pairs": False}),
    "score_refs=shared": _same(("prenet",), {"score_refs": "shared"}),
    "lr=1e-4": _same(("deepsad",), {"lr": 1e-4}),
    "norm=bn_no_affine": _same(("deepsad",), {"norm": "bn_no_affine"}),
    "pretrain_epochs=100": _same(("deepsad",), {"pretrain_epochs": 100}),
    "center=batch": _same(("deepsad",), {"center": "batch"}),
}

#: Table 2 of the paper: variant label (without "anoonly,") → Deep SAD ``norm``.
TABLE2_NORMS = {"norm=none": "none", "norm=ln": "ln", "norm=bn_no_affine": "bn_no_affine", "": "bn",
                "norm=bn_dagger": "bn_dagger"}
#: The swept values of the paper's ablation figures (§4.4–4.6, C.2).
ABLATION_VALUES: dict[str, tuple[Any, ...]] = {
    "fig5": (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0),              # γ_la
    "fig6": (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0),                # γ_n
    "fig7": (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6),           # λ_n (0 = AnoOnly itself)
    "fig8": ORGANISATIONS,                                        # clean vs contaminated (label noise)
    "fig9": (1, 2, 4, 8, 16, 32, 64, 128),                        # batch size
}


@dataclass(frozen=True)
class AnoOnlyConfig:
    """What the notebook runs; profiles override fields through ``METHOD_OVERRIDES["anoonly"]``.

    ``groups``: dataset groups (files present are used). ``files``: explicit file stems instead.
    ``max_files``: per group (0 = all). ``settings``: the data settings of the Tables 1/3/4 grid
    (values of :data:`SETTINGS`; default: the paper's, the no-leak split and the contaminated
    organisation; the no-leak split runs only on files the paper's split resamples).
    ``schedule``: fraction of each head's epochs (also the AE pre-training), 1.0 = the paper's
    schedule. ``head_options``: SSADConfig overrides per head. ``factors``: fidelity factors to
    run (names of :data:`FACTORS`), ``factor_group`` where, ``factor_seeds`` with how many seeds
    (0 = all) and ``factor_heads`` on which heads (each factor runs on those of its heads that are
    listed). ``max_seeds``: run only the first that many of the configured seeds (0 = all; the
    demo profile uses 1). ``threads``: torch and BLAS threads while a head trains or t-SNE runs
    (these small problems run fastest single-threaded; the previous counts are restored).
    ``adbench_dir``: the ADBench folder searched before the embedded copy (default:
    ``$OSAD_ADBENCH``, else ``<data_root>/adbench``; :func:`osad_lib.data.tabular.user_adbench_dir`).

    Beyond the paper, image DevNet ± AnoOnly: ``image_datasets`` (registry names),
    ``image_settings`` (general/hard), ``image_max_seen_classes`` (hard-setting seen classes per
    dataset, 0 = all) and ``image_seeds`` (the first that many seeds, 0 = all); the DevNet
    settings are ``METHOD_OVERRIDES["devnet"]`` of the profile (:func:`image_devnet_config`).
    """

    groups: tuple[str, ...] = tuple(GROUPS)
    files: tuple[str, ...] = ()
    max_files: int = 0
    heads: tuple[str, ...] = HEADS
    settings: tuple[str, ...] = ("semi_supervised", "semi_supervised_no_leak", "label_noise")
    la: float = 0.1
    schedule: float = 1.0
    head_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    factors: tuple[str, ...] = tuple(FACTORS)
    factor_group: str = "mvtecad"
    factor_seeds: int = 0
    factor_heads: tuple[str, ...] = HEADS
    max_seeds: int = 0
    threads: int | None = 1
    adbench_dir: str = ""
    tsne_file: str = "MVTec-AD_bottle"
    image_datasets: tuple[str, ...] = ("elpv",)
    image_settings: tuple[str, ...] = IMAGE_SETTINGS
    image_max_seen_classes: int = 0
    image_seeds: int = 0

    def __post_init__(self) -> None:
        for s in self.image_settings:
            choose("image setting", s, IMAGE_SETTINGS)
        for g in self.groups:
            choose("group", g, GROUPS)
        for h in (*self.heads, *self.factor_heads):
            choose("head", h, HEADS)
        for s in self.settings:
            choose("data setting", s, SETTING_AXES)
        for f in self.factors:
            choose("factor", f, FACTORS)
        if not 0 < self.schedule <= 1:
            raise ConfigError(f"schedule must lie in (0, 1], got {self.schedule}")


def anoonly_config(cfg: NotebookConfig, **changes: Any) -> AnoOnlyConfig:
    """:class:`AnoOnlyConfig` ← the profile's AnoOnly ``config`` ← ``changes``."""
    settings = {**cfg.profile.method("anoonly").config, **changes}
    settings["adbench_dir"] = user_adbench_dir(settings.get("adbench_dir"), cfg.data_root)
    return apply_overrides(AnoOnlyConfig, settings, "AnoOnly")


def head_options(ac: AnoOnlyConfig, head: str, **changes: Any) -> dict[str, Any]:
    """SSADConfig overrides of ``head``: the schedule fraction of the default epochs (and AE
    pre-training), the profile's ``head_options`` (absolute values), then ``changes`` (a factor's
    or an ablation's; their epochs are scaled by the schedule too)."""
    opts: dict[str, Any] = {}
    scaled = ("epochs", "pretrain_epochs")
    if ac.schedule < 1:
        d = HEAD_DEFAULTS[head]
        opts.update({k: _scaled(d[k], ac.schedule) for k in scaled if d.get(k)})
    opts.update(ac.head_options.get(head, {}))
    opts.update({k: _scaled(v, ac.schedule) if k in scaled and ac.schedule < 1 else v for k, v in changes.items()})
    return opts


def paper_deviations(config: SSADConfig, schedule: float = 1.0) -> list[str]:
    """How ``config`` departs from the paper's method (appendix B), one ``name=value (paper: …)``
    part per field; ``, official code`` marks the official code's own value
    (:data:`~osad_lib.methods.anoonly.config.CODE_BEHAVIOUR`), and a default that departs from the paper's
    text says why (:data:`~osad_lib.methods.anoonly.config.DEFAULT_NOT_PAPER`). ``base_bn`` is left out for
    AnoOnly heads (they have the BN either way); epochs shortened by ``schedule`` are one
    ``schedule`` part."""
    return list(_paper_deviations(config, schedule))


@functools.lru_cache(maxsize=4096)
def _paper_deviations(config: SSADConfig, schedule: float) -> tuple[str, ...]:
    """:func:`paper_deviations`, once per distinct (config, schedule): a paper grid lists ~10^5 items."""
    default = SSADConfig(config.head, anomaly_only=config.anomaly_only).resolved()
    code = CODE_BEHAVIOUR.get(config.head, {})
    mine = config.resolved()
    out = []
    if schedule < 1:
        out.append(f"schedule x{schedule:g} of the paper's epochs")
    for f in dataclasses.fields(SSADConfig):
        value = getattr(mine, f.name)
        text_value, why = DEFAULT_NOT_PAPER.get((config.head, f.name), (getattr(default, f.name), ""))
        if value == text_value or (f.name == "base_bn" and mine.anomaly_only):
            continue
        if schedule < 1 and f.name in ("epochs", "pretrain_epochs") and _scaled(text_value, schedule) == value:
            continue
        note = ", official code" if f.name in code and code[f.name] == value else ""
        note += f", our default: {why}" if why and value == getattr(default, f.name) else ""
        out.append(f"{f.name}={value} (paper: {text_value}{note})")
    return tuple(out)


def _scaled(epochs: int | None, schedule: float) -> int | None:
    """``epochs`` × ``schedule``, at least 1 (0 and None stay as they are)."""
    return max(1, round(epochs * schedule)) if epochs else epochs
