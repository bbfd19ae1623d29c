"""Inputs of a dry run of the paper profile: generated stand-ins of every paper dataset and
random-weight backbone files, supplied the way a user supplies the real ones.

``run_all.py --profile paper --dry-run`` (:func:`prepare`) needs no download and no real data:

* **datasets** — every non-embedded registry dataset (all 15 MVTec AD categories, the three BTAD
  products, AITEX, SDD, Optical, Mastcam, BrainMRI, HeadCT, Hyper-Kvasir; the CI size: one per
  family, :data:`CI_DATASETS`) written in the MVTec
  layout under ``<dry-run data root>/<name>`` (:func:`write_dataset`): each with its registry
  anomaly classes, pixel masks where the real one has them, greyscale where it is greyscale, JPEG
  where its files are JPEG, SDD non-square. Counts are about the smallest every grid accepts:
  30 training normals in three looks (AHL clusters them), 4 test normals, 11 images of a
  hard-setting seen class (10 labelled + 1), and anomalies enough for the largest labelled draw
  on the dataset (DevNet Fig. 7: 40) (:func:`anomalies_per_class`). Pictures come from
  :mod:`osad_lib.data.synthetic` (textures or an object, drawn defects with exact masks). ELPV
  is the embedded real dataset, as in every profile. AnoOnly's ADBench groups other than the
  embedded MVTec AD files get small Gaussian stand-ins in ``<data root>/adbench`` (:func:`write_adbench`).
* **weights** — a random-weight state dict of every paper backbone (ResNet-18, AlexNet, ResNet-50,
  VGG-16, EfficientNet-B6) in its source's layout, under the official file name in a torch hub
  cache ``<torch home>/hub/checkpoints`` (:func:`write_weights`). The dry run points ``TORCH_HOME``
  there, so the backbones load through their normal ImageNet path (``weights="imagenet"``): a
  missing file fails as it would for a user; nothing falls back to anything silently.

Both are built once (atomically, keyed by a version and the software versions) under
``cache_dir()/dry-run`` and reused. Numbers measured on them mean nothing; the runs exist to
exercise the code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from osad_lib import paths
from osad_lib.data.mvtec import build_folder_once
from osad_lib.data.registry import DATASETS, SubsetInfo
from osad_lib.data.synthetic import DEFECT_CLASSES, add_defect, normal_image
from osad_lib.data.tabular import GROUPS
from osad_lib.experiments.ablations.devnet import FIG7_SHOTS, PAPER_DATASETS
from osad_lib.components.backbones import hub_file_name, source_model
from osad_lib.profiles import DATASET_FAMILY_REPRESENTATIVES
from osad_lib.validate import choose

#: Bump when the generated data change, so cached folders are rebuilt.
GENERATOR_VERSION = 4
#: The CI-sized dry run's datasets: its profile's (one per family) less the embedded ELPV, BGAD's
#: first BTAD product, and a second MVTec AD texture as the cross-domain notebook's target.
CI_DATASETS = tuple(n for n in DATASET_FAMILY_REPRESENTATIVES if not DATASETS[n.split("/")[0]].embedded) + (
    "mvtecad/grid", "btad/01")
#: The backbones the paper profile loads with ImageNet weights (Lite0 ships its own).
PAPER_BACKBONES = ("resnet18", "alexnet", "resnet50", "vgg16", "efficientnet_b6")
IMAGE_SIZE = 96
#: AHL's HADG clusters the training normals in three (k-means) and turns about half of each
#: cluster's into pseudo anomalies: normals come in three looks, ten of each, so that no cluster ends
#: up without normals.
TRAIN_NORMALS, TEST_NORMALS = 30, 4
LOOKS = ("weave", "grain", "object")
#: Labelled anomalies of the papers' 10-shot settings (a seen class needs one more), the most any
#: grid labels (DevNet Fig. 7, on its datasets only: 40), and what Fig. 8's 20 % contamination of
#: the training normals takes.
SHOTS, CONTAMINATED = 10, 7
GREYSCALE = ("aitex", "sdd", "optical", "brainmri", "headct")
JPEG = ("brainmri", "hyperkvasir")
#: (height, width) where the converted real images are not square.
SHAPES = {"sdd": (80, IMAGE_SIZE), "mastcam": (64, 64)}
#: Rows and features of an ADBench stand-in file (CV files hold 512-d ResNet-18, NLP 768-d BERT embeddings).
ADBENCH_ROWS, ADBENCH_ANOMALY_RATE = 300, 0.1
ADBENCH_DIMS = {"cv": 512, "nlp": 768}


def generated_names() -> list[str]:
    """Registry names of every dataset a user supplies (all but the embedded ELPV and synthetic)."""
    return [name for info in DATASETS.values() if not info.embedded for name in info.names]


def anomalies_per_class(info: SubsetInfo) -> dict[str, int]:
    """Images per anomaly class: an even share of ``shots + CONTAMINATED + classes`` anomalies, where
    ``shots`` is the largest labelled draw of any grid on the dataset (10, DevNet Fig. 7's 40), so
    that the draw still leaves test anomalies; at least 2, and ``SHOTS + 1`` for a hard-setting seen
    class (10 labelled, one held out)."""
    classes = info.anomaly_classes
    shots = max(FIG7_SHOTS) if info.dataset in PAPER_DATASETS["fig7"] else SHOTS
    share = max(2, math.ceil((shots + CONTAMINATED + len(classes)) / len(classes)))
    return {c: max(share, SHOTS + 1) if c in info.hard_seen_classes else share for c in classes}


def _picture(info: SubsetInfo, defect: str | None, seed: list[int]) -> tuple[Image.Image, Image.Image | None]:
    """One image (and its mask): one of :data:`LOOKS` by its index, with a drawn defect."""
    rng = np.random.default_rng(seed)
    height, width = SHAPES.get(info.dataset, (IMAGE_SIZE, IMAGE_SIZE))
    side = max(height, width)
    image, region = normal_image(LOOKS[seed[-1] % len(LOOKS)], rng, side)
    mask = None
    if defect is not None:
        image, mask = add_defect(image, defect, rng, region)
    picture = Image.fromarray(np.rint(image * 255).astype(np.uint8)).crop((0, 0, width, height))
    if info.dataset in GREYSCALE:
        picture = picture.convert("L")
    return picture, None if mask is None else Image.fromarray(mask * 255).crop((0, 0, width, height))


def write_dataset(out: Path, name: str) -> dict[str, int]:
    """Write registry dataset ``name`` in the MVTec layout into ``out``; return its counts."""
    info = next(i for d in DATASETS.values() for i in d.subsets.values() if i.name == name)
    index = generated_names().index(name)
    suffix = ".jpg" if info.dataset in JPEG else ".png"
    folders = [("train", "good", None, TRAIN_NORMALS), ("test", "good", None, TEST_NORMALS)]
    folders += [("test", cls, DEFECT_CLASSES[k % len(DEFECT_CLASSES)], n)
                for k, (cls, n) in enumerate(anomalies_per_class(info).items())]
    for f, (split, cls, defect, count) in enumerate(folders):
        (out / split / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, mask = _picture(info, defect, [GENERATOR_VERSION, index, f, i])
            image.save(out / split / cls / f"{i:03d}{suffix}")
            if mask is not None and info.has_masks:
                (out / "ground_truth" / cls).mkdir(parents=True, exist_ok=True)
                mask.save(out / "ground_truth" / cls / f"{i:03d}_mask.png")
    return {"train_normal": TRAIN_NORMALS, "test_normal": TEST_NORMALS,
            "anomalies": sum(anomalies_per_class(info).values())}


def write_adbench(out: Path) -> dict[str, int]:
    """Stand-ins of the ADBench files of AnoOnly's groups other than the embedded MVTec AD ones:
    ``X`` Gaussian features (anomalies shifted by one standard deviation), ``y`` 10 % anomalies."""
    files = 0
    for g, group in enumerate(GROUPS.values()):
        if group.name == "mvtecad":
            continue
        (out / group.folder).mkdir(parents=True, exist_ok=True)
        for s, stem in enumerate(group.stems):
            rng = np.random.default_rng([GENERATOR_VERSION, g, s])
            y = (rng.random(ADBENCH_ROWS) < ADBENCH_ANOMALY_RATE).astype(np.int64)
            x = rng.normal(size=(ADBENCH_ROWS, ADBENCH_DIMS[group.modality])).astype(np.float32) + y[:, None]
            np.savez_compressed(out / group.folder / f"{stem}.npz", X=x, y=y)
            files += 1
    return {"files": files}


def write_data(root: Path, names: Sequence[str]) -> Path:
    """The generated datasets ``names`` under ``root/<name>`` and the ADBench stand-ins under ``root/adbench``."""
    for name in names:
        dest = root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        build_folder_once(dest, {"dataset": name, "version": GENERATOR_VERSION},
                          lambda tmp, name=name: write_dataset(tmp, name))
    build_folder_once(root / "adbench", {"adbench": sorted(GROUPS), "version": GENERATOR_VERSION}, write_adbench)
    return root


def write_weights(torch_home: Path) -> Path:
    """A random-weight state dict of every :data:`PAPER_BACKBONES` under its official file name in
    ``<torch_home>/hub/checkpoints`` (seeded; written once, atomically)."""
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(PAPER_BACKBONES):
        target = folder / hub_file_name(name)
        if target.is_file():
            continue
        torch.manual_seed(i)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        torch.save(source_model(name).state_dict(), tmp)
        os.replace(tmp, target)
    return torch_home


def prepare(scope: str = "full", cache: Path | None = None) -> tuple[Path, Path]:
    """(data root, torch home) of a dry run — ``scope`` ``full``: every paper dataset, ``ci``:
    :data:`CI_DATASETS` — built once under ``cache_dir()/dry-run``."""
    names = {"full": generated_names(), "ci": list(CI_DATASETS)}[choose("dry-run scope", scope, ("full", "ci"))]
    base = (cache or paths.cache_dir()) / "dry-run"
    torch_home = base / "torch" / f"torch-{torch.__version__.split('+')[0]}"  # the layouts of this torch's models
    return write_data(base / "data" / f"v{GENERATOR_VERSION}-{scope}", names), write_weights(torch_home)


__all__ = ["CI_DATASETS", "PAPER_BACKBONES", "anomalies_per_class", "generated_names", "prepare", "write_adbench", "write_data",
           "write_dataset", "write_weights"]
