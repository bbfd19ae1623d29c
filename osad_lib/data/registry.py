"""Dataset names, where each dataset lives, and what the papers say about it.

Names: ``mvtecad/<category>`` (15), ``aitex``, ``sdd``, ``elpv``, ``optical``, ``mastcam``,
``brainmri``, ``headct``, ``hyperkvasir``, ``btad/<01|02|03>``, ``synthetic/<weave|grain|object>``
(``synthetic`` alone = ``synthetic/weave``). :func:`resolve` maps a name to its folder in the
MVTec layout:

* **embedded** (no data root needed): ``elpv`` (the ``elpv-dataset`` package, converted once into
  ``cache_dir()/embedded/elpv``) and ``synthetic/*`` (generated once into ``cache_dir()/synthetic``);
* **your data**, one convention: ``<data_root>/<name>`` with the name exactly as above, e.g.
  ``<data_root>/mvtecad/carpet``, ``<data_root>/aitex``, ``<data_root>/btad/01``. The official
  converters' folder names (``AITEX``, ``optical_class``, ``mvtec_anomaly_detection/…``,
  ``docs/official_code/shared.md`` "Conversion scripts") are recognised only to tell you what to
  rename.

:data:`DATASETS` holds per dataset its subsets, anomaly classes, hard-setting seen classes
(``docs/official_code/dra.md`` "Data protocol"), whether masks exist and the paper statistics
(DevNet Table 1 = DRA Table 5; AHL Table 6), so planners and tables work without any data present.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from osad_lib import paths
from osad_lib.data.elpv import elpv_root
from osad_lib.data.synthetic import (
    DEFAULT_SUBSET,
    DEFECT_CLASSES,
    SUBSETS,
    synthetic_root,
)
from osad_lib.validate import ConfigError, closest


class DataNotFoundError(ConfigError):
    """A dataset that is neither embedded nor under the data root (:func:`resolve`): experiments
    on it are skipped, never crash midway (:func:`osad_lib.experiments.runnable`)."""


@dataclass(frozen=True)
class PaperCounts:
    """Statistics of a (sub)dataset as printed in the papers (DevNet Table 1 / AHL Table 6)."""

    train_normal: int
    test_normal: int
    anomalies: int
    n_classes: int
    source: str = "DevNet Table 1 / DRA Table 5 / AHL Table 6"
    note: str = ""


@dataclass(frozen=True)
class SubsetInfo:
    """One resolvable dataset: registry ``name``, the ``dataset``/``subset`` used in result rows
    (``subset`` is ``""`` for single-subset datasets, as in the paper tables)."""

    name: str
    dataset: str
    subset: str
    kind: str
    anomaly_classes: tuple[str, ...]
    hard_seen_classes: tuple[str, ...]
    has_masks: bool
    paper: PaperCounts | None
    class_counts: dict[str, int] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset: its title, subsets (keyed by subset name), paper total and where it lives."""

    name: str
    title: str
    subsets: dict[str, SubsetInfo]
    embedded: bool
    paper_total: PaperCounts | None
    default_subset: str | None = None
    folder_aliases: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """Registry names of all subsets, in table order."""
        return [info.name for info in self.subsets.values()]


_MVTEC = {  # category: (kind, train normal, test normal, anomalies, classes) — DevNet Table 1
    "carpet": ("texture", 280, 28, 89, ("color", "cut", "hole", "metal_contamination", "thread")),
    "grid": ("texture", 264, 21, 57, ("bent", "broken", "glue", "metal_contamination", "thread")),
    "leather": ("texture", 245, 32, 92, ("color", "cut", "fold", "glue", "poke")),
    "tile": ("texture", 230, 33, 84, ("crack", "glue_strip", "gray_stroke", "oil", "rough")),
    "wood": ("texture", 247, 19, 60, ("color", "combined", "hole", "liquid", "scratch")),
    "bottle": ("object", 209, 20, 63, ("broken_large", "broken_small", "contamination")),
    "capsule": ("object", 219, 23, 109, ("crack", "faulty_imprint", "poke", "scratch", "squeeze")),
    "pill": ("object", 267, 26, 141, ("color", "combined", "contamination", "crack", "faulty_imprint", "pill_type", "scratch")),
    "transistor": ("object", 213, 60, 40, ("bent_lead", "cut_lead", "damaged_case", "misplaced")),
    "zipper": ("object", 240, 32, 119, ("broken_teeth", "combined", "fabric_border", "fabric_interior", "rough", "split_teeth", "squeezed_teeth")),
    "cable": ("object", 224, 58, 92, ("bent_wire", "cable_swap", "combined", "cut_inner_insulation", "cut_outer_insulation", "missing_cable", "missing_wire", "poke_insulation")),
    "hazelnut": ("object", 391, 40, 70, ("crack", "cut", "hole", "print")),
    "metal_nut": ("object", 220, 22, 93, ("bent", "color", "flip", "scratch")),
    "screw": ("object", 320, 41, 119, ("manipulated_front", "scratch_head", "scratch_neck", "thread_side", "thread_top")),
    "toothbrush": ("object", 60, 12, 30, ("defective",)),
}
_MVTEC_HARD = {"carpet": ("color", "cut", "hole", "metal_contamination", "thread"), "metal_nut": ("bent", "color", "flip", "scratch")}
_MVTEC_NOTES = {"tile": "AHL Table 6 prints 83 anomalies; DevNet Table 1 and DRA Table 5 print 84 (the MVTec AD release has 84)"}

_AITEX_CLASSES = (
    "Broken_end", "Broken_pick", "Broken_yarn", "Contamination", "Crease", "Cut_selvage",
    "Fuzzyball", "Knots", "Nep", "Warp_ball", "Weft_crack", "Weft_curling",
)
_MASTCAM_CLASSES = ("bedrock", "broken-rock", "drill-hole", "drt", "dump-pile", "float", "meteorite", "scuff", "veins")
_KVASIR_CLASSES = ("barretts", "barretts-short-segment", "esophagitis-a", "esophagitis-b-d")


def _single(name: str, kind: str, classes: tuple[str, ...], hard: tuple[str, ...], masks: bool,
            paper: PaperCounts | None, class_counts: dict[str, int] | None = None, note: str = "") -> dict[str, SubsetInfo]:
    return {"": SubsetInfo(name, name, "", kind, classes, hard, masks, paper, class_counts or {}, note)}


def _build() -> dict[str, DatasetInfo]:
    mvtec = {
        cat: SubsetInfo(f"mvtecad/{cat}", "mvtecad", cat, kind, classes, _MVTEC_HARD.get(cat, ()), True,
                        PaperCounts(train, test, anomalies, len(classes), note=_MVTEC_NOTES.get(cat, "")))
        for cat, (kind, train, test, anomalies, classes) in _MVTEC.items()
    }
    btad = {
        sub: SubsetInfo(f"btad/{sub}", "btad", sub, "object", ("ko",), (), True, None,
                        note=f"BGAD A.2: {n} training images; test counts not printed")
        for sub, n in (("01", 400), ("02", 1000), ("03", 399))
    }
    synthetic = {
        sub: SubsetInfo(f"synthetic/{sub}", "synthetic", sub, "object" if sub == "object" else "texture",
                        DEFECT_CLASSES, DEFECT_CLASSES, True, None, note="generated by osad_lib.data.synthetic; no paper row")
        for sub in SUBSETS
    }
    return {
        "mvtecad": DatasetInfo("mvtecad", "MVTec AD", mvtec, False, PaperCounts(3629, 467, 1258, 73),
                               folder_aliases=("mvtec_anomaly_detection", "mvtec_ad", "mvtec", "MVTec")),
        "aitex": DatasetInfo("aitex", "AITEX", _single(
            "aitex", "texture", _AITEX_CLASSES, ("Broken_end", "Broken_pick", "Cut_selvage", "Fuzzyball", "Nep", "Weft_crack"),
            True, PaperCounts(1692, 564, 183, 12)), False, PaperCounts(1692, 564, 183, 12),
            folder_aliases=("AITEX", "AITEX_anomaly_detection/AITEX")),
        "sdd": DatasetInfo("sdd", "KolektorSDD", _single(
            "sdd", "texture", ("defect",), (), True, PaperCounts(594, 286, 54, 1)), False, PaperCounts(594, 286, 54, 1),
            folder_aliases=("SDD", "SDD_anomaly_detection/SDD")),
        "elpv": DatasetInfo("elpv", "ELPV", _single(
            "elpv", "texture", ("mono", "poly"), ("mono", "poly"), False, PaperCounts(1131, 377, 715, 2),
            {"mono": 313, "poly": 403}, note="DevNet's text: mono 313 / poly 403 defects (716); the data have 313 / 402 (715)"),
            True, PaperCounts(1131, 377, 715, 2)),
        "optical": DatasetInfo("optical", "Optical (DAGM 2007)", _single(
            "optical", "object", tuple(f"Class{i}" for i in range(10)), (), True,
            PaperCounts(10500, 3500, 2100, 1, note="the papers count one class; the official converter writes ten folders Class0..Class9")),
            False, PaperCounts(10500, 3500, 2100, 1), folder_aliases=("optical_class", "Optical", "optical_anomaly_detection/optical_class")),
        "mastcam": DatasetInfo("mastcam", "Mastcam", _single(
            "mastcam", "object", _MASTCAM_CLASSES, _MASTCAM_CLASSES, False,
            PaperCounts(9302, 426, 451, 11, note="11 classes in the papers; folder names of 9 are known (used in the hard setting)"),
            note="classes listed: the 9 folder names of the official scripts"),
            False, PaperCounts(9302, 426, 451, 11), folder_aliases=("Mastcam", "mastcam_anomaly_detection/mastcam")),
        "brainmri": DatasetInfo("brainmri", "BrainMRI", _single(
            "brainmri", "medical", ("defect",), (), False, PaperCounts(73, 25, 155, 1)), False, PaperCounts(73, 25, 155, 1),
            folder_aliases=("BrainMRI", "brainMRI")),
        "headct": DatasetInfo("headct", "HeadCT", _single(
            "headct", "medical", ("defect",), (), False, PaperCounts(75, 25, 100, 1)), False, PaperCounts(75, 25, 100, 1),
            folder_aliases=("HeadCT", "head_ct")),
        "hyperkvasir": DatasetInfo("hyperkvasir", "Hyper-Kvasir", _single(
            "hyperkvasir", "medical", _KVASIR_CLASSES, _KVASIR_CLASSES, False, PaperCounts(2021, 674, 757, 4),
            {"barretts": 41, "barretts-short-segment": 53, "esophagitis-a": 403, "esophagitis-b-d": 260}),
            False, PaperCounts(2021, 674, 757, 4), folder_aliases=("hyper-kvasir", "Hyper-Kvasir", "hyperkvasir_anomaly_detection/hyperkvasir")),
        "btad": DatasetInfo("btad", "BTAD", btad, False, None, folder_aliases=("BTAD", "BTech_Dataset_transformed")),
        "synthetic": DatasetInfo("synthetic", "Synthetic (osad_lib)", synthetic, True, None, default_subset=DEFAULT_SUBSET),
    }


#: Metadata of every dataset, keyed by dataset name.
DATASETS: dict[str, DatasetInfo] = _build()


def _all_names() -> list[str]:
    names = [n for info in DATASETS.values() for n in info.names]
    return names + [d for d, info in DATASETS.items() if info.default_subset or len(info.subsets) > 1]


def canonical_name(name: str) -> str:
    """``synthetic`` → ``synthetic/weave``; other valid names unchanged; unknown → one-line error."""
    name = str(name).strip().strip("/")
    dataset, _, subset = name.partition("/")
    info = DATASETS.get(dataset)
    if info is not None:
        if not subset and info.default_subset:
            return f"{dataset}/{info.default_subset}"
        if subset in info.subsets:
            return info.subsets[subset].name
        if not subset and "" in info.subsets:
            return dataset
    if info is not None and not subset:
        first = next(iter(info.subsets))
        raise ConfigError(f"{dataset!r} has {len(info.subsets)} subsets: name one, e.g. '{dataset}/{first}' "
                          f"('{dataset}' alone expands to all of them only in dataset lists)")
    hint = closest(name, _all_names())
    raise ConfigError(
        f"unknown dataset {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
        + f" (datasets: {', '.join(DATASETS)}; subsets as <dataset>/<subset>)"
    )


def subset_info(name: str) -> SubsetInfo:
    """Metadata of one resolvable dataset name (e.g. ``mvtecad/carpet``, ``elpv``, ``synthetic``)."""
    dataset, _, subset = canonical_name(name).partition("/")
    return DATASETS[dataset].subsets[subset]


def dataset_names(profile_datasets: Iterable[str]) -> list[str]:
    """Expand dataset names into resolvable names: ``mvtecad`` → its 15 subsets, ``btad`` → 3,
    ``synthetic`` → ``synthetic/weave`` (its default subset), ``synthetic/*`` → all its subsets.
    Order kept, duplicates dropped."""
    out: list[str] = []
    for raw in profile_datasets:
        name = str(raw).strip().strip("/")
        dataset, _, subset = name.partition("/")
        info = DATASETS.get(dataset)
        if info is not None and (subset == "*" or (not subset and not info.default_subset and "" not in info.subsets)):
            expanded = info.names
        else:
            expanded = [canonical_name(name)]
        out += [n for n in expanded if n not in out]
    return out


def hard_subset_label(name: str, seen_class: str) -> str:
    """The ``subset`` value of a hard-setting result row as the paper tables write it:
    ``mvtecad/carpet`` + ``metal_contamination`` → ``carpet/metal``; ``aitex`` + ``Broken_end``
    → ``broken_end``; ``elpv`` + ``mono`` → ``mono``."""
    info = subset_info(name)
    short = {"metal_contamination": "metal"}.get(seen_class, seen_class).lower()
    return f"{info.subset}/{short}" if info.subset else short


def local_folder(name: str, data_root: str | os.PathLike) -> Path:
    """``<data_root>/<name>`` — where a non-embedded dataset is expected."""
    return Path(data_root).expanduser() / canonical_name(name)


def _misplaced_hint(name: str, root: Path) -> str:
    info = subset_info(name)
    dataset_info = DATASETS[info.dataset]
    for alias in dataset_info.folder_aliases:
        candidate = root / alias / info.subset if info.subset else root / alias
        if candidate.is_dir():
            return f"; found {candidate}: rename or symlink it to {root / canonical_name(name)}"
    return ""


def resolve(name: str, data_root: str | os.PathLike | None = None) -> Path:
    """The folder (MVTec layout) of dataset ``name``; embedded data are built on first use.

    ``data_root`` (or ``OSAD_DATA``) is needed for every dataset except ``elpv`` and
    ``synthetic/*``; errors say which folder was expected and how to fix it.
    """
    name = canonical_name(name)
    info = subset_info(name)
    if info.dataset == "elpv":
        return elpv_root()
    if info.dataset == "synthetic":
        return synthetic_root(info.subset)
    root = paths.data_root(data_root)
    if root is None:
        raise DataNotFoundError(
            f"dataset {name!r} is not embedded: pass data_root (or set OSAD_DATA) to a folder that holds {name}/ "
            "in the MVTec layout; embedded datasets: elpv, synthetic"
        )
    if not root.is_dir():
        raise DataNotFoundError(f"data_root {root} does not exist; pass the folder that holds your datasets (e.g. {root / name})")
    folder = root / name
    if not folder.is_dir():
        empty = " (data_root is empty)" if not any(root.iterdir()) else ""
        raise DataNotFoundError(f"dataset {name!r} not found: expected the folder {folder}{empty}{_misplaced_hint(name, root)}")
    return folder


def is_present(name: str, data_root: str | os.PathLike | None = None) -> bool:
    """Whether dataset ``name``'s data are at hand: embedded (built on first use), or the folder
    ``<data_root>/<name>`` exists. Checks folders only; nothing is built or read."""
    if DATASETS[subset_info(name).dataset].embedded:
        return True
    root = paths.data_root(data_root)
    return root is not None and local_folder(name, root).is_dir()


def present_and_missing(names: Iterable[str], data_root: str | os.PathLike | None = None) -> tuple[list[str], list[str]]:
    """(registry names of ``names`` — expanded by :func:`dataset_names` — whose data are at hand,
    the others), each in order."""
    expanded = dataset_names(names)
    here = [n for n in expanded if is_present(n, data_root)]
    return here, [n for n in expanded if n not in here]
