"""Ablation studies of DRA (Ding, Pang & Shen, CVPR 2022, §4.5–4.6) for notebook ``06_ablations``.

* **Table 3** (§4.5) — importance of each abnormality head: DRA1A (seen head only), DRA2A (+ pseudo),
  DRA3Ar (+ latent residual), DRA3An (+ holistic normality) and the full DRA
  (:data:`osad_lib.methods.dra.config.VARIANT_HEADS`), ten anomalies, general setting on the nine datasets
  and hard setting on Carpet, AITEX, ELPV and Hyper-Kvasir (every seen class).
* **Table 4** (§4.6) — source of the pseudo anomalies, hard setting: augmentation (CP-Scar, CP-Mix,
  CutMix = DRA's default) or outlier exposure with external images (MVTec AD without the target's
  category, LAG). An outlier set is used as the official code's ``--outlier_root``: every
  ``<data_root>/<source>/<class>/train/good`` image except the target's class; a source whose
  folder is not there is not run and the table says why on its paper rows.
* **Fig. 3** (§4.5–4.6) — left: non-disentangled (one multi-class head over normal, seen and pseudo
  classes: SAOE's head without outlier exposure, :mod:`osad_lib.methods.baselines.dra_baselines`), partially
  disentangled (DRA2A) and fully disentangled (DRA) abnormality learning, general setting; right:
  AUC w.r.t. the reference-set size nRef of the latent-residual head (the text names 1, 5 — the
  default — and 10). The paper prints no numbers for Fig. 3; its table shows, as reference, the
  Table 3 value of DRA2A and DRA (= nRef 5) for the same dataset.

Every run is :func:`osad_lib.experiments.dra.run_dra` with :func:`osad_lib.experiments.dra.dra_config`
plus the ablated option, so the profile's DRA settings apply (the demo's cached frozen-stem features
are shared with notebooks 01/02). Settings per profile: ``METHOD_OVERRIDES["ablations"][profile]
["options"]["dra_<element>"]`` (keys in :data:`OPTION_KEYS`); defaults are the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from osad_lib import paper as paper_tables
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.registry import hard_subset_label, subset_info
from osad_lib.data.tensors import ImageSet, load_images
from osad_lib.experiments import GridItem
from osad_lib.experiments import dra as dr
from osad_lib.experiments.protocol import PaperElement
from osad_lib.experiments.ablations.base import (NOTEBOOK, beside_paper, measured_summary, present_datasets,
                                                 study_options, study_rows, study_seeds)
from osad_lib.methods.dra import VARIANT_HEADS, DRAConfig
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.settings import changed_fields
from osad_lib.validate import ConfigError, choose
from osad_lib.viz import paper_vs_measured_bars
from osad_lib.paper.means import with_subset_means

PAPER = "dra"
#: Labelled anomalies of Tables 3–4 and Fig. 3 ("ten training anomaly examples").
PAPER_SHOTS = 10
#: The nine datasets of the general setting and the four hard-setting datasets of Tables 3–4.
GENERAL_DATASETS = ("mvtecad", "aitex", "sdd", "elpv", "optical", "mastcam", "brainmri", "headct", "hyperkvasir")
HARD_DATASETS = ("mvtecad/carpet", "aitex", "elpv", "hyperkvasir")
#: Table 3's variants in the paper's column order ("" = the full DRA).
TABLE3_VARIANTS = ("dra1a", "dra2a", "dra3ar", "dra3an", "")
#: Table 4's pseudo-anomaly sources: label (paper ``variant`` ``pseudo=<label>``) → DRAConfig.pseudo_source.
SOURCES = {"cp_scar": "cp_scar", "cp_mix": "cp_mix", "cutmix": "cutmix", "mvtecad": "external", "lag": "external"}
SOURCE_TITLES = {"cp_scar": "CP-Scar", "cp_mix": "CP-Mix", "cutmix": "CutMix", "mvtecad": "MVTec AD", "lag": "LAG"}
#: Fig. 3 right: reference-set sizes (the text names 1, 5 and 10).
NREFS = (1, 5, 10)
#: Fig. 3 left: (method, variant) → label of the disentanglement level.
DISENTANGLEMENT = {("saoe", ""): "non-disentangled (multi-class head)", ("dra", "dra2a"): "partially (DRA2A)",
                   ("dra", ""): "fully (DRA)"}
#: Settings each study runs in.
SETTINGS = {"table3": ("general", "hard"), "table4": ("hard",), "fig3": ("general",)}
#: Option keys a profile may set per study.
OPTION_KEYS: dict[str, tuple[str, ...]] = {
    "table3": ("general_datasets", "hard_datasets", "variants", "max_seen_classes", "max_seeds", "max_test_images"),
    "table4": ("hard_datasets", "sources", "max_seen_classes", "max_seeds", "max_test_images"),
    "fig3": ("general_datasets", "nrefs", "max_seeds", "max_test_images"),
}


# --------------------------------------------------------------------------------------------
# options and data


def options(cfg: NotebookConfig, element: str) -> dict[str, Any]:
    """Study ``dra_<element>``'s settings under the profile, with the paper's defaults."""
    given = study_options(cfg, f"{PAPER}_{element}")
    unknown = sorted(set(given) - set(OPTION_KEYS[element]))
    if unknown:
        raise ConfigError(f"ablation options of dra_{element}: unknown key(s) {unknown}; "
                          f"known: {list(OPTION_KEYS[element])}")
    defaults = {"general_datasets": GENERAL_DATASETS, "hard_datasets": HARD_DATASETS, "variants": TABLE3_VARIANTS,
                "sources": tuple(SOURCES), "nrefs": NREFS, "max_seen_classes": 0, "max_seeds": 0, "max_test_images": 0}
    return {k: given.get(k, defaults[k]) for k in OPTION_KEYS[element]}


def shots(cfg: NotebookConfig) -> int:
    """Ten labelled anomalies, or the profile's largest shot count when smaller (smoke)."""
    return min(PAPER_SHOTS, max(cfg.profile.n_shots))


def _runs(cfg: NotebookConfig, opts: dict[str, Any], settings: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """(registry name, setting, seen class) of the datasets at hand: general runs, then every
    hard-setting seen class (the first ``max_seen_classes`` when set)."""
    runs: list[tuple[str, str, str | None]] = []
    if "general" in settings:
        runs += [(n, "general", None) for n in present_datasets(cfg, opts["general_datasets"])[0]]
    if "hard" in settings:
        limit = opts["max_seen_classes"]
        for name in present_datasets(cfg, opts["hard_datasets"])[0]:
            seen = subset_info(name).hard_seen_classes
            runs += [(name, "hard", c) for c in (seen[:limit] if limit else seen)]
    return runs


def outlier_folder(cfg: NotebookConfig, source: str) -> Path | None:
    """``<data_root>/<source>`` when it exists (the external pseudo-anomaly set of Table 4), else None."""
    if cfg.data_root is None or not (Path(cfg.data_root) / source).is_dir():
        return None
    return Path(cfg.data_root) / source


def outlier_images(cfg: NotebookConfig, source: str, target: str, image_size: int) -> ImageSet:
    """The outlier-exposure pool of ``source`` for target dataset ``target``: the training normals of
    every class folder of ``<data_root>/<source>`` except the target's category (code ``get_ood_data``)."""
    folder = outlier_folder(cfg, source)
    if folder is None:
        raise ConfigError(f"pseudo source {source!r}: {source_missing(cfg, source)}")
    exclude = subset_info(target).subset
    parts = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != exclude):
        normals = [s for s in read_mvtec_layout(sub) if s.split == "train" and s.label == 0]
        if normals:
            parts.append(load_images(sub, normals, image_size))
    if not parts:
        raise ConfigError(f"pseudo source {source!r}: no <class>/train/good images under {folder}")
    return ImageSet(images=torch.cat([p.images for p in parts]), labels=torch.cat([p.labels for p in parts]),
                    classes=[c for p in parts for c in p.classes], masks=None,
                    paths=[x for p in parts for x in p.paths])


def source_missing(cfg: NotebookConfig, source: str) -> str:
    """Why Table 4's ``source`` cannot run here ("" when it can)."""
    if SOURCES[choose("source", source, SOURCES)] != "external" or outlier_folder(cfg, source) is not None:
        return ""
    return (f"{SOURCE_TITLES[source]} outlier images not available: put them in the MVTec layout under "
            f"<data_root>/{source}/<class>/train/good (the official code's --outlier_root)")


# --------------------------------------------------------------------------------------------
# configurations and experiments


def study_config(cfg: NotebookConfig, element: str, variant: str) -> DRAConfig:
    """:func:`dra_config` with the ablated option of one study row: a Table 3 variant (``dra1a`` …),
    a Table 4 source (``pseudo=cp_scar`` …) or a Fig. 3 setting (``dra2a``, ``nref=1``, "")."""
    if element == "table4":
        source = choose("source", variant.removeprefix("pseudo="), SOURCES)
        external = SOURCES[source] == "external"
        return dr.dra_config(cfg, pseudo_source=SOURCES[source], outlier_name=source if external else "",
                             **({"cache_stems": False} if external else {}))
    if variant.startswith("nref="):
        return dr.dra_config(cfg, n_ref=int(variant.removeprefix("nref=")))
    return dr.dra_config(cfg, heads=VARIANT_HEADS[choose("variant", variant, VARIANT_HEADS)])


def _row_variant(element: str, config: DRAConfig, source: str = "") -> str:
    """The row's ``variant``: the config's label (``dra1a``, ``nref=1``); Table 4 always names its
    source (``pseudo=cutmix`` too, as the paper's columns); ``;clean`` in clean mode."""
    if element == "table4":
        return f"pseudo={source}" + (";clean" if config.mode == "clean" else "")
    return dr.variant_label(config)


#: The settings each study varies, stored in every row's ``params`` (also where a row runs the default).
STUDY_FIELDS = {"table3": ("heads",), "table4": ("pseudo_source",), "fig3": ("heads", "n_ref")}


def study_params(element: str, config: DRAConfig, reference: DRAConfig) -> dict[str, Any]:
    """A row's ``params``: the settings its study varies and every other setting its variant
    changes against ``reference``, the notebook's DRA (e.g. the clean mode's)."""
    studied = {name: getattr(config, name) for name in STUDY_FIELDS[element]}
    return {**studied, **changed_fields(config, reference)}


def _item(cfg: NotebookConfig, element: str, name: str, setting: str, seen: str | None, seed: int,
          method: str, config: DRAConfig, variant: str, max_test_images: int, params: dict[str, Any]) -> GridItem:
    info = subset_info(name)
    n_shots = shots(cfg)
    try:
        manifest = dr.make_dataset_split(cfg, name, setting, n_shots, seed, seen)[0].manifest_id
    except ConfigError:
        manifest = ""
    e = Experiment(notebook=NOTEBOOK, paper=PAPER, table=element, dataset=info.dataset,
                   subset=hard_subset_label(name, seen) if seen else info.subset, setting=setting, n_shots=n_shots,
                   method=method, variant=variant, backbone=config.backbone, seed=seed, profile=cfg.profile.name,
                   manifest_id=manifest, deviations=dr.config_deviations(config, info.dataset, max_test_images),
                   mode=config.mode, device=cfg.device_label, extra_key={"name": name, "seen_class": seen or ""},
                   params=params)
    n_ref = config.n_ref if "composite" in config.heads else 0
    train = config.epochs * config.steps_per_epoch * (config.batch_size + n_ref) * config.n_scales
    counts = info.paper
    test = 0 if counts is None else (counts.test_normal + counts.anomalies) * config.n_scales
    return GridItem(e, train, min(test, max_test_images * config.n_scales) if max_test_images else test)


def _runs_of(cfg: NotebookConfig, element: str) -> list[tuple[str, str]]:
    """(method, variant) of every configuration a study runs, before datasets and seeds."""
    opts = options(cfg, element)
    if element == "table3":
        return [("dra", v) for v in opts["variants"]]
    if element == "table4":
        return [("dra", f"pseudo={s}") for s in opts["sources"] if not source_missing(cfg, s)]
    nrefs = [f"nref={n}" for n in opts["nrefs"] if int(n) != 5]
    return [*DISENTANGLEMENT, *[("dra", v) for v in nrefs]]


def grid(cfg: NotebookConfig, element: str) -> list[GridItem]:
    """The experiments of study ``dra_<element>`` on the datasets at hand, seed by seed (the cached
    pseudo-anomaly pools of :func:`osad_lib.experiments.dra.run_dra` are per dataset and seed)."""
    opts = options(cfg, element)
    reference = dr.dra_config(cfg)
    items = []
    for seed in study_seeds(cfg, opts):
        for name, setting, seen in _runs(cfg, opts, SETTINGS[element]):
            for method, variant in _runs_of(cfg, element):
                config = study_config(cfg, element, variant)
                label = _row_variant(element, config, variant.removeprefix("pseudo="))
                items.append(_item(cfg, element, name, setting, seen, seed, method, config, label,
                                   opts["max_test_images"], study_params(element, config, reference)))
    return items


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Train and test one configuration of a DRA study (image AUROC and AUPR)."""
    e = item.experiment
    name, seen = e.extra_key["name"], e.extra_key["seen_class"] or None
    split, root = dr.make_dataset_split(cfg, name, e.setting, e.n_shots, e.seed, seen)
    variant = e.variant.removesuffix(";clean")
    config = study_config(cfg, e.table, variant)
    outliers = None
    if config.pseudo_source == "external":
        outliers = outlier_images(cfg, config.outlier_name, name, config.image_size)
    return dr.run_dra(cfg, split, root, config, method=e.method, outliers=outliers,
                      max_test_images=options(cfg, e.table)["max_test_images"])


# --------------------------------------------------------------------------------------------
# tables and figures


def paper_table(cfg: NotebookConfig, element: str) -> pd.DataFrame:
    """Table 3 or 4: measured AUROC (with the per-dataset means over MVTec categories / seen
    classes, :func:`osad_lib.paper.means.with_subset_means`) beside the paper, deltas;
    ``not run because`` on the paper rows of Table 4 sources missing here."""
    rows = with_subset_means(study_rows(cfg, PAPER, element))
    out = beside_paper(cfg, PAPER, element, measured=rows[rows["metric"] == "auroc"])
    reasons = {f"pseudo={s}": source_missing(cfg, s) for s in SOURCES} if element == "table4" else {}
    out["not run because"] = [reasons.get(v, "") if n == 0 else "" for v, n in zip(out["variant"], out["n_seeds"])]
    return out


def paper_figure(cfg: NotebookConfig, element: str):
    """Measured vs paper bars of the Table 3 or 4 rows that ran."""
    what = {"table3": "abnormality heads", "table4": "pseudo-anomaly source"}[element]
    return paper_vs_measured_bars(paper_table(cfg, element),
                                  f"DRA Table {element[-1]} ablation ({what}): AUC ({cfg.profile.name} profile)")


def fig3_table(cfg: NotebookConfig) -> pd.DataFrame:
    """Fig. 3 as measured: per dataset, the three disentanglement levels (left) and the nRef sweep
    (right, nRef 5 = the full DRA), AUROC mean ± std over seeds, with the paper's Table 3 value of
    DRA2A and DRA (general setting, ten anomalies) as reference (``paper_table3``)."""
    rows = study_rows(cfg, PAPER, "fig3")
    rows = rows[rows["metric"] == "auroc"]
    out = measured_summary(rows, ["dataset", "subset", "n_shots", "method", "variant"])
    table3 = paper_tables.load_table("dra_table3")
    table3 = table3[(table3["setting"] == "general") & (table3["metric"] == "auroc")]
    reference = {(r.dataset, r.subset, int(r.n_shots), r.variant): r.mean for r in table3.itertuples()}
    frames = []
    for _, row in out.iterrows():
        key = (row["method"], row["variant"])
        ref = reference.get((row["dataset"], row["subset"], int(row["n_shots"]), row["variant"]), np.nan)
        ref = ref if row["method"] == "dra" else np.nan
        if key in DISENTANGLEMENT:
            frames.append({**row, "panel": "left: disentanglement", "setting": DISENTANGLEMENT[key],
                           "paper_table3": ref})
        if row["method"] == "dra" and (row["variant"] == "" or row["variant"].startswith("nref=")):
            n_ref = int(row["variant"].removeprefix("nref=")) if row["variant"] else 5
            frames.append({**row, "panel": "right: nRef", "setting": f"nRef={n_ref}", "n_ref": n_ref,
                           "paper_table3": ref})
    columns = ["panel", "dataset", "subset", "n_shots", "setting", "n_ref", "method", "variant", "measured_mean",
               "measured_std", "n_seeds", "paper_table3"]
    table = pd.DataFrame(frames).reindex(columns=columns)
    order = {label: i for i, label in enumerate(DISENTANGLEMENT.values())}
    rank = [order.get(s, len(order) + (n if n == n else 0)) for s, n in zip(table["setting"], table["n_ref"])]
    return table.assign(_rank=rank).sort_values(["panel", "dataset", "subset", "_rank"]).drop(columns="_rank") \
        .reset_index(drop=True)


def fig3_figure(cfg: NotebookConfig):
    """Left: AUC of the three disentanglement levels per dataset (bars; paper Table 3 values as
    stars). Right: AUC w.r.t. nRef per dataset (lines)."""
    import matplotlib.pyplot as plt

    data = fig3_table(cfg)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    levels = list(DISENTANGLEMENT.values())
    part = data[data["panel"] == "left: disentanglement"]
    datasets = list(dict.fromkeys(part["dataset"] + part["subset"].map(lambda s: f"/{s}" if s else "")))
    width = 0.8 / len(levels)
    for i, level in enumerate(levels):
        rows = part[part["setting"] == level]
        names = list(rows["dataset"] + rows["subset"].map(lambda s: f"/{s}" if s else ""))
        x = np.array([datasets.index(n) for n in names], dtype=float) + (i - 1) * width
        left.bar(x, rows["measured_mean"], width, yerr=rows["measured_std"].fillna(0), capsize=3, label=level)
        if rows["paper_table3"].notna().any():
            left.scatter(x, rows["paper_table3"], marker="*", s=90, color="black", zorder=3,
                         label="paper Table 3" if level == levels[-1] else None)
    left.set_xticks(range(len(datasets)), datasets)
    left.set_ylabel("AUC-ROC")
    left.set_xlabel("dataset (general setting)")
    left.set_title("disentangled abnormality learning")
    left.set_ylim(0, 1.25)
    left.legend(fontsize=7, loc="upper center", ncol=2)
    part = data[data["panel"] == "right: nRef"]
    for (dataset, subset), line in part.groupby(["dataset", "subset"], sort=False):
        line = line.sort_values("n_ref")
        right.errorbar(line["n_ref"], line["measured_mean"], yerr=line["measured_std"].fillna(0), marker="o",
                       capsize=3, label=f"{dataset}/{subset}" if subset else dataset)
    right.set_xlabel("reference-set size nRef")
    right.set_ylabel("AUC-ROC")
    right.set_title("sensitivity to nRef")
    right.legend(fontsize=7)
    fig.suptitle(f"DRA Fig. 3 ({cfg.profile.name} profile)", fontsize=10)
    fig.tight_layout()
    return fig


def _unavailable(element: str):
    def why_not(cfg: NotebookConfig) -> str:
        opts = options(cfg, element)
        if not _runs(cfg, opts, SETTINGS[element]):
            wanted = [*opts.get("general_datasets", ()), *opts.get("hard_datasets", ())]
            return f"none of its datasets is at hand ({', '.join(dict.fromkeys(wanted))}); pass data_root"
        if not _runs_of(cfg, element):
            return "none of its pseudo-anomaly sources can run here: " + "; ".join(
                filter(None, (source_missing(cfg, s) for s in opts["sources"])))
        return ""

    return why_not


STUDIES: list[PaperElement] = [
    PaperElement(PAPER, "table3", "Table 3", "importance of each abnormality head",
          "Adding the pseudo head to the seen head (DRA2A) helps on most datasets; adding the latent-residual "
          "(DRA3Ar) or the holistic normality head (DRA3An) helps further, but only the full DRA, which fuses "
          "both, is clearly best, especially in the hard setting.",
          lambda cfg: grid(cfg, "table3"), run_one, lambda cfg: paper_table(cfg, "table3"),
          lambda cfg: paper_figure(cfg, "table3"), _unavailable("table3")),
    PaperElement(PAPER, "table4", "Table 4", "source of the pseudo anomalies",
          "Augmentation-based pseudo anomalies (CutMix best overall) are more stable and much better than "
          "external outliers on non-medical data; external data (LAG) is more effective on medical data "
          "(best on Hyper-Kvasir).",
          lambda cfg: grid(cfg, "table4"), run_one, lambda cfg: paper_table(cfg, "table4"),
          lambda cfg: paper_figure(cfg, "table4"), _unavailable("table4")),
    PaperElement(PAPER, "fig3", "Fig. 3", "disentangled abnormalities and reference-set size",
          "Disentangled abnormality learning (DRA) clearly beats partially disentangled (seen + pseudo heads) and "
          "non-disentangled (one multi-class head) learning; one reference image is generally enough, five helps "
          "further (the default), ten is not consistently better.",
          lambda cfg: grid(cfg, "fig3"), run_one, fig3_table, fig3_figure, _unavailable("fig3")),
]
