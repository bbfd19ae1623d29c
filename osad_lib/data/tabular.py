"""ADBench embeddings (the inputs of AnoOnly's experiments) and the ADBench data generator.

AnoOnly (Zhou et al., §4.1, appendix B) trains small anomaly-detection heads on pre-extracted
embeddings from ADBench (Han et al., NeurIPS 2022): ResNet-18 image embeddings of CIFAR10, SVHN,
FashionMNIST, MNIST-C and MVTec AD, BERT text embeddings of 20news, Agnews, Amazon, Imdb and
Yelp. Every file is an ``.npz`` with ``X`` (float32 ``[n, d]``) and ``y`` (1 = anomaly). A
dataset *group* (``mvtecad``, ``cifar10``, …) is the mean over its files (one file per MVTec
category / per normal class); a group computed from fewer files than ADBench ships is
*partial* (:func:`group_files`).

:func:`adbench_split` is the data generator, with two independent axes (see
``docs/official_code/anoonly.md``):

**Data organisation** (``organisation``; the paper's §3.1 and §4.6) — what the training set holds:

* ``"clean"`` (default; the paper's Tables 1, 3, 4 and the ablations of §4.3–4.5): D = D_N ∪ D_A,
  i.e. the normal training rows and the labelled anomalies; the training anomalies left
  unlabelled are dropped (the official code's ``--normal_clean``).
* ``"contaminated"`` (the label-noise experiment of §4.6 / Fig. 8; the official code's default):
  the unlabelled training anomalies stay in the training set labelled 0 (D_U = normals +
  90 % of the anomalies at γ_la = 10 %).

**Split** (``split``) — how the file's rows become train and test rows:

* ``"paper"`` (default; ADBench/AnoOnly's generator): a set with fewer than 1,000 rows is
  resampled **with replacement** to 1,000 rows, a set with more than 10,000 is subsampled to
  10,000, and only then split 70/30 (stratified). With MVTec's ~300-row files, copies of the same
  embedding land on both sides of the split (:func:`leakage`) — the paper's numbers are measured
  that way.
* ``"no_leak"`` (beyond the paper): the original rows are split 70/30 (stratified) first; the
  training part alone is then resampled with replacement to the size it has under the paper's
  split (700 rows for a small set, so batch composition and the number of labelled anomalies
  match) — or kept as it is with ``resample_train=False``. No test row has a copy in training.

Then, in all four combinations: ``MinMaxScaler`` fitted on the training rows and applied to
both; a ratio ``la`` (γ_la) of the training anomalies is labelled (``ceil``, at least one);
``normal_ratio`` (γ_n, Fig. 6) keeps that fraction of the unlabelled training rows.

The 15 MVTec AD files (ResNet-18 embeddings, 3.9 MB) ship with the package
(``embedded/adbench``, with licences and SHA-256 in ``PROVENANCE.md``), so Table 1's MVTec column
runs from a fresh clone; the other groups are read from the user's ADBench folder
(:func:`adbench_roots`), and :func:`download_adbench` fetches official files for users who are online.
"""

from __future__ import annotations

import hashlib
import math
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

from osad_lib import paths
from osad_lib.validate import ConfigError, choose

#: Environment variable naming the ADBench ``datasets`` directory.
ADBENCH_ENV = "OSAD_ADBENCH"
#: Where ADBench keeps its embedding files (``download_adbench``).
ADBENCH_URL = "https://github.com/Minqi824/ADBench/raw/main/adbench/datasets/{folder}/{name}.npz"
#: The split axis: ADBench's resample-then-split (``paper``) or split-first (``no_leak``).
SPLITS = ("paper", "no_leak")
#: The data-organisation axis: unlabelled training anomalies dropped (``clean``, the paper's main
#: tables) or kept as label-0 rows (``contaminated``, the label-noise experiment of §4.6).
ORGANISATIONS = ("clean", "contaminated")


@dataclass(frozen=True)
class AdbenchGroup:
    """One dataset group of AnoOnly's Table 1: the files that make up its column."""

    name: str
    title: str
    folder: str
    stems: tuple[str, ...]
    backbone: str
    modality: str


_MVTEC = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
          "screw", "tile", "toothbrush", "transistor", "wood", "zipper")
_MNISTC = ("brightness", "canny_edges", "dotted_line", "fog", "glass_blur", "identity", "impulse_noise",
           "motion_blur", "rotate", "scale", "shear", "shot_noise", "spatter", "stripe", "translate", "zigzag")

#: AnoOnly's ten dataset groups (Table 1 column order) and the ADBench files of each.
GROUPS: dict[str, AdbenchGroup] = {g.name: g for g in (
    AdbenchGroup("cifar10", "Cifar10", "CV_by_ResNet18", tuple(f"CIFAR10_{i}" for i in range(10)), "resnet18", "cv"),
    AdbenchGroup("fashionmnist", "FMnist", "CV_by_ResNet18", tuple(f"FashionMNIST_{i}" for i in range(10)), "resnet18", "cv"),
    AdbenchGroup("mnistc", "MnistC", "CV_by_ResNet18", tuple(f"MNIST-C_{c}" for c in _MNISTC), "resnet18", "cv"),
    AdbenchGroup("mvtecad", "MVTec", "CV_by_ResNet18", tuple(f"MVTec-AD_{c}" for c in _MVTEC), "resnet18", "cv"),
    AdbenchGroup("svhn", "SVHN", "CV_by_ResNet18", tuple(f"SVHN_{i}" for i in range(10)), "resnet18", "cv"),
    AdbenchGroup("20news", "20news", "NLP_by_BERT", tuple(f"20news_{i}" for i in range(6)), "bert", "nlp"),
    AdbenchGroup("agnews", "Agnews", "NLP_by_BERT", tuple(f"agnews_{i}" for i in range(4)), "bert", "nlp"),
    AdbenchGroup("amazon", "Amazon", "NLP_by_BERT", ("amazon",), "bert", "nlp"),
    AdbenchGroup("imdb", "Imdb", "NLP_by_BERT", ("imdb",), "bert", "nlp"),
    AdbenchGroup("yelp", "Yelp", "NLP_by_BERT", ("yelp",), "bert", "nlp"),
)}

#: SHA-256 of the official ADBench files we could check (the embedded ones among them).
#: Files not listed here are downloaded unverified and their hash is reported.
SHA256: dict[str, str] = {
    "CV_by_ResNet18/CIFAR10_0": "f0e89be5576c37e5c2f7393f7a478d8ec0cc348559fc177c273ff076ef10db00",
    "CV_by_ResNet18/CIFAR10_4": "13fe6ac27684cadd0b223a48dcb532474e4eb69592b159d21d8f6d195ec48512",
    "CV_by_ResNet18/CIFAR10_6": "f38334eec73be985612685b3efb99c58faaba7b154ecb5ed9b809acdc4cae9c9",
    "CV_by_ResNet18/MVTec-AD_bottle": "9eb7a78f1f6ecfcd00391ea01fe06f998e3fb7b8e89a34c06d69786ee38a8059",
    "CV_by_ResNet18/MVTec-AD_cable": "65f36182cf75ba1b2629af7bee3eec87ed9b050796e0b7c06493993e0ba4cee1",
    "CV_by_ResNet18/MVTec-AD_capsule": "b5d97c3b3c08b0c25fdb3b0fd50e9b9fd24bd75b4e36956d47159e715d52470d",
    "CV_by_ResNet18/MVTec-AD_carpet": "7c9e1f06b185baae2c72b922aa29cb219d2b8d6a9fe1b03f86ccf1fd34a0b6c0",
    "CV_by_ResNet18/MVTec-AD_grid": "376fe5d7568fb3c1b9056a03aef6c0c350476a11b4f4579e6b7d8f8e5405f837",
    "CV_by_ResNet18/MVTec-AD_hazelnut": "3c40cf88d6c16827c9609c5ef4f0c7d81f8b8509905c9c4c68a79d8ba1696bdf",
    "CV_by_ResNet18/MVTec-AD_leather": "c4615f05409b0ae785a007889b4521cf3c3a43ce5b7ff7623f2255c121ef1e29",
    "CV_by_ResNet18/MVTec-AD_metal_nut": "c00f29018bbf304c8e50d366fccc635ded7da90dea7e4a2fd41afb1a62609796",
    "CV_by_ResNet18/MVTec-AD_pill": "878407b2700e3414dec26f2bae153f28d9b8e9e2367a0775b082efe641531188",
    "CV_by_ResNet18/MVTec-AD_screw": "a143cbb84cb2a8bbd5b86065bf56fffbc5c9a52d5da4ba9826c844fe35ef68fa",
    "CV_by_ResNet18/MVTec-AD_tile": "6d4564cd2844ff91274612b0dba39c3cfbabedf4535ec3573889bbd575075086",
    "CV_by_ResNet18/MVTec-AD_toothbrush": "798a5edef4291e0466d2a7234101ee496927ddd96d0cbb620da008f4ed06753e",
    "CV_by_ResNet18/MVTec-AD_transistor": "4c045fa018a2f4ffd828683b1d35580533662b2336c356e7e579c04da899b98e",
    "CV_by_ResNet18/MVTec-AD_wood": "5fb9b4b57f6d66ab06ca3575d51359b0110943d4df4a20b495b1583730fc8d98",
    "CV_by_ResNet18/MVTec-AD_zipper": "d60591ab34dced348b32574c4c0ff680068bbf5017d06d2bc5f9b15521f38bb8",
    "CV_by_ResNet18/SVHN_0": "3526704c19ae4c62337a37f1f9294e3ec065d9f7a8e21f9e7c881b5acab13579",
    "CV_by_ResNet18/SVHN_8": "92ea43b44af4876466e840cdcef7fe9cba294cd3be9907a05c9bad1fa5f41e97",
    "CV_by_ResNet18/SVHN_9": "a0b16b76c29aa70a7eef0c266635f83f0be2fdb06ee6a0fbe1c76841f2f8f7ce",
    "NLP_by_BERT/20news_3": "b5a1d572cac7c81ebc3cf485649c45b7580cb326edf07a1681679984d016831d",
}


# --------------------------------------------------------------------------- files
#: The 15 MVTec AD ResNet-18 files shipped with the package (``embedded/adbench/PROVENANCE.md``).
EMBEDDED_ADBENCH = Path(__file__).resolve().parent / "embedded" / "adbench"


def user_adbench_dir(explicit: str | os.PathLike | None = None,
                     data_root: str | os.PathLike | None = None) -> str:
    """The user's ADBench folder, or ``""``: ``explicit``, else ``$OSAD_ADBENCH``, else
    ``<data root>/adbench`` when that folder exists."""
    if explicit not in (None, ""):
        return str(explicit)
    if os.environ.get(ADBENCH_ENV):
        return os.environ[ADBENCH_ENV]
    root = paths.data_root(data_root)
    return str(root / "adbench") if root is not None and (root / "adbench").is_dir() else ""


def adbench_roots(explicit: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for ADBench files, in order (the first that holds a file wins): the
    user's folder (``explicit``, else ``$OSAD_ADBENCH``) and the copy embedded in the package (the
    MVTec AD column). A named folder that does not exist is a one-line error."""
    value = str(explicit) if explicit not in (None, "") else os.environ.get(ADBENCH_ENV, "")
    if not value:
        return [EMBEDDED_ADBENCH]
    root = Path(value).expanduser()
    if not root.is_dir():
        raise ConfigError(f"ADBench directory {root} does not exist; pass the folder that holds CV_by_ResNet18/ (or set {ADBENCH_ENV})")
    return [root, EMBEDDED_ADBENCH]


def adbench_root(explicit: str | os.PathLike | None = None) -> Path:
    """The first folder of :func:`adbench_roots`: the user's ADBench folder, else the embedded copy."""
    return adbench_roots(explicit)[0]


def use_adbench_root(explicit: str | os.PathLike | None) -> Path:
    """Validate ``explicit`` and, when given, export it as ``$OSAD_ADBENCH`` for this process, so
    that every later look-up (grid, runs) searches the same folders; returns :func:`adbench_root`."""
    root = adbench_root(explicit)
    if explicit not in (None, ""):
        os.environ[ADBENCH_ENV] = str(root)
    return root


def adbench_file(stem: str, explicit: str | os.PathLike | None = None) -> Path | None:
    """The file of ``stem`` (``MVTec-AD_bottle``) in the first of :func:`adbench_roots` that has it, else None."""
    group = group_of(stem)
    return next((p for root in adbench_roots(explicit) if (p := root / group.folder / f"{stem}.npz").is_file()), None)


def group_of(stem: str) -> AdbenchGroup:
    """The group a file stem belongs to (``MVTec-AD_bottle`` → ``mvtecad``)."""
    for group in GROUPS.values():
        if stem in group.stems:
            return group
    raise ConfigError(f"{stem!r} is not an ADBench file of AnoOnly's groups; e.g. 'MVTec-AD_bottle', 'CIFAR10_0'")


def group_files(group: str, explicit: str | os.PathLike | None = None) -> list[Path]:
    """The files of ``group`` found by :func:`adbench_file`, in ADBench order (possibly none)."""
    g = GROUPS[choose("dataset group", group, GROUPS)]
    return [p for s in g.stems if (p := adbench_file(s, explicit)) is not None]


def available_groups(explicit: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per group: ``group``, ``files`` present, ``expected`` files, ``partial`` (fewer than expected)."""
    rows = []
    for name, g in GROUPS.items():
        n = len(group_files(name, explicit))
        rows.append({"group": name, "title": g.title, "files": n, "expected": len(g.stems),
                     "partial": 0 < n < len(g.stems)})
    return pd.DataFrame(rows)


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(X float32 [n, d], y int64 [n])`` of one ADBench file, validated (one-line errors)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ADBench file {path} not found; check the directory or fetch it with download_adbench")
    with np.load(path, allow_pickle=False) as data:
        if "X" not in data or "y" not in data:
            raise ConfigError(f"{path} has keys {sorted(data.files)}; an ADBench file needs 'X' and 'y'")
        X, y = np.asarray(data["X"], dtype=np.float32), np.asarray(data["y"]).astype(np.int64).reshape(-1)
    if X.ndim != 2 or len(X) != len(y) or not set(np.unique(y)) <= {0, 1}:
        raise ConfigError(f"{path}: X {X.shape} and y {y.shape} (values {np.unique(y)[:5]}) are not an [n, d] table with 0/1 labels")
    return X, y


# --------------------------------------------------------------------------- generator
@dataclass(frozen=True)
class TabularSplit:
    """One generated train/test split.

    ``y_train``: 1 = labelled anomaly, 0 = unlabelled (normal, or contamination under the
    ``contaminated`` organisation); ``anomaly_train``: the true labels of the training rows;
    ``source_train`` / ``source_test``: the row of the original file each row copies (for
    :func:`leakage`); ``split`` and ``organisation``: the two axes it was made with.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    anomaly_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    source_train: np.ndarray
    source_test: np.ndarray
    split: str
    organisation: str

    @property
    def labeled(self) -> np.ndarray:
        return np.flatnonzero(self.y_train == 1)

    @property
    def unlabeled(self) -> np.ndarray:
        return np.flatnonzero(self.y_train == 0)

    def describe(self) -> dict[str, int]:
        return {"train": len(self.y_train), "labeled": len(self.labeled),
                "contamination": int(((self.anomaly_train == 1) & (self.y_train == 0)).sum()),
                "test": len(self.y_test), "test_anomalies": int(self.y_test.sum()),
                **leakage(self)}


def _resample(n: int, rng: np.random.Generator, min_size: int, max_size: int) -> np.ndarray:
    """Row indices after ADBench's size rule: < min_size → min_size with replacement; > max_size → max_size without."""
    if n < min_size:
        return rng.choice(n, min_size, replace=True)
    if n > max_size:
        return rng.choice(n, max_size, replace=False)
    return np.arange(n)


def adbench_split(
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    split: str = "paper",
    organisation: str = "clean",
    la: float = 0.1,
    at_least_one_labeled: bool = True,
    normal_ratio: float = 1.0,
    resample_train: bool = True,
    test_size: float = 0.3,
    min_size: int = 1000,
    max_size: int = 10000,
) -> TabularSplit:
    """The ADBench/AnoOnly data generator (paper §3.1, §4.1, §4.6, Figs. 5/6/8).

    ``split`` (``paper`` | ``no_leak``) and ``organisation`` (``clean`` | ``contaminated``): the
    two axes of the module docstring. ``la`` = γ_la (labelled share of the training anomalies,
    ``ceil``, at least one with ``at_least_one_labeled``); ``normal_ratio`` = γ_n keeps that
    fraction of the unlabelled training rows. Everything is drawn from ``seed``.
    """
    split = choose("split", split, SPLITS)
    organisation = choose("organisation", organisation, ORGANISATIONS)
    if not 0.0 < la <= 1.0 or not 0.0 < normal_ratio <= 1.0:
        raise ConfigError(f"la={la} and normal_ratio={normal_ratio} must lie in (0, 1]")
    rng = np.random.default_rng(seed)
    n = len(y)
    if split == "paper":
        rows = _resample(n, rng, min_size, max_size)
        tr, te = train_test_split(rows, test_size=test_size, stratify=y[rows], shuffle=True,
                                  random_state=int(rng.integers(2**31 - 1)))
    else:
        tr, te = train_test_split(np.arange(n), test_size=test_size, stratify=y, shuffle=True,
                                  random_state=int(rng.integers(2**31 - 1)))
        if resample_train:
            size = len(_resample(n, rng, min_size, max_size))
            target = size - math.ceil(size * test_size)
            tr = tr[rng.choice(len(tr), target, replace=target > len(tr))] if target != len(tr) else tr
    scaler = MinMaxScaler().fit(X[tr])
    X_train, X_test = scaler.transform(X[tr]).astype(np.float32), scaler.transform(X[te]).astype(np.float32)
    truth = y[tr].copy()
    anomalies = np.flatnonzero(truth == 1)
    if len(anomalies) == 0:
        raise ConfigError(f"the training split has no anomaly (file has {int(y.sum())}); this file cannot be used with labelled anomalies")
    n_labeled = math.ceil(la * len(anomalies)) if at_least_one_labeled else int(la * len(anomalies))
    labeled = rng.choice(anomalies, max(n_labeled, 0), replace=False)
    y_train = np.zeros(len(tr), dtype=np.int64)
    y_train[labeled] = 1
    keep = np.ones(len(tr), dtype=bool)
    if organisation == "clean":
        keep &= ~((truth == 1) & (y_train == 0))
    if normal_ratio < 1.0:
        pool = np.flatnonzero(keep & (y_train == 0))
        drop = rng.choice(pool, len(pool) - max(1, round(normal_ratio * len(pool))), replace=False)
        keep[drop] = False
    return TabularSplit(
        X_train=X_train[keep], y_train=y_train[keep], anomaly_train=truth[keep],
        X_test=X_test, y_test=y[te].astype(np.int64), source_train=tr[keep], source_test=te,
        split=split, organisation=organisation,
    )


def leakage(split: TabularSplit) -> dict[str, int]:
    """How much of the test set also sits in training, counted on the generated rows.

    ``shared_rows``: test rows identical (every feature, after scaling) to some training row;
    ``shared_anomalies``: those that are anomalies; ``shared_labeled``: test rows identical to a
    *labelled* training anomaly. Row identity is checked on the values, not on indices, so a
    duplicate file row would count too.
    """
    train = {row.tobytes(): lab for row, lab in zip(split.X_train, split.y_train)}
    labeled = {row.tobytes() for row, lab in zip(split.X_train, split.y_train) if lab == 1}
    shared = np.array([row.tobytes() in train for row in split.X_test], dtype=bool)
    shared_lab = np.array([row.tobytes() in labeled for row in split.X_test], dtype=bool)
    return {"shared_rows": int(shared.sum()), "shared_anomalies": int((shared & (split.y_test == 1)).sum()),
            "shared_labeled": int(shared_lab.sum())}


# --------------------------------------------------------------------------- download
def download_adbench(
    stems: Iterable[str],
    root: str | os.PathLike,
    allow_unverified: bool = False,
    timeout_s: float = 60.0,
) -> list[Path]:
    """Fetch official ADBench embedding files (``MVTec-AD_bottle``, ``CIFAR10_3``, …) into ``root``.

    For online users who lack the files; tests never call it. Files land in
    ``root/<folder>/<stem>.npz`` (the layout :func:`adbench_root` expects), are written
    atomically and checked against :data:`SHA256`. A file without a known hash is refused
    unless ``allow_unverified`` (then its hash is printed so you can pin it). Existing files
    with the right hash are kept. Any network failure is one line.
    """
    out = []
    root = Path(root)
    for stem in stems:
        group = group_of(stem)
        key = f"{group.folder}/{stem}"
        target = root / group.folder / f"{stem}.npz"
        expected = SHA256.get(key)
        if target.is_file() and expected and _sha256(target.read_bytes()) == expected:
            out.append(target)
            continue
        if expected is None and not allow_unverified:
            raise ConfigError(f"no checksum is known for {key}; pass allow_unverified=True to fetch it anyway")
        url = ADBENCH_URL.format(folder=group.folder, name=stem)
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                blob = response.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ConfigError(f"cannot download {url} ({exc}); check your connection or copy the ADBench files into {root}") from None
        digest = _sha256(blob)
        if expected and digest != expected:
            raise ConfigError(f"{url} has sha256 {digest}, expected {expected}; the upstream file changed — do not use it for the paper tables")
        if expected is None:
            print(f"{key}: downloaded unverified, sha256 {digest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, target)
        out.append(target)
    return out


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


__all__ = [
    "ADBENCH_ENV", "ADBENCH_URL", "EMBEDDED_ADBENCH", "GROUPS", "ORGANISATIONS", "SHA256", "SPLITS", "AdbenchGroup", "TabularSplit",
    "adbench_file", "adbench_root", "adbench_roots", "adbench_split", "available_groups", "download_adbench", "group_files", "group_of",
    "leakage", "load_npz", "use_adbench_root", "user_adbench_dir",
]
