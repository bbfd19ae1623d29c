"""The OSAD evaluation protocols: general and hard settings, one-shot ⊂ ten-shot, contamination.

A protocol turns the samples of one dataset (:func:`osad_lib.data.mvtec.read_mvtec_layout`)
into a :class:`Split` manifest: which files are training normals, labelled training anomalies,
unlabelled contamination, and the test set. Manifests are plain data with a content hash
(``manifest_id``) that goes into every results row, so every number can be traced to its files.

* **General setting** (DRA §4.1, DevNet §6; ``docs/official_code/dra.md`` "Data protocol",
  ``docs/official_code/devnet.md`` "Data protocol"): the labelled anomalies are drawn at random from
  all anomaly classes and removed from the test set.
* **Hard setting** (DRA §4.1; ``docs/official_code/dra.md`` "Data protocol", ``--know_class``): the
  labelled anomalies come from one seen class and that **whole** class is removed from the test set.
* **One-shot drawn from the ten-shot set** (DRA appendix A.2): ``nested_in=10`` makes the
  ``n_shots`` labelled anomalies the first ones of the ten-shot draw and removes all ten from the
  test, so 1-shot and 10-shot splits share one test set. Without ``nested_in`` only the
  ``n_shots`` drawn anomalies leave the test set, as in the official code.
* **Contamination** (DevNet §6 Q6, DRA ``cont_rate``): nPollution = int(N_normal/(1−rate)·rate)
  further anomalies join the training normals with label 0. Unlike the official code (which
  removes them from the test set only when ``test_rate`` is set) they always leave the test set.

Every draw sorts the candidate files first and uses ``numpy.random.default_rng(seed)``, so a
split depends on the seed and the file names only, never on the filesystem's listing order.

**Identical images.** Where the dataset records its groups of identical images
(:mod:`osad_lib.data.prepare`; BrainMRI and HeadCT have some), a manifest also counts the test
images that are identical to a labelled training anomaly or to a training normal
(:func:`with_test_copies`): the test then holds an image the model was trained on. The counts are
recorded beside the split, not part of its ``manifest_id``, and :attr:`Split.duplicate_note`
is what a result row's ``deviations`` say about them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from osad_lib.data.mvtec import Sample, anomaly_classes
from osad_lib.paths import atomic_write_text
from osad_lib.validate import ConfigError, choose

SETTINGS = ("general", "hard")


@dataclass(frozen=True)
class Split:
    """A protocol manifest: the files of one training/test split and how they were chosen.

    ``train_normal``: paths of training normals (label 0). ``train_anomaly``: (path, class) of
    the labelled anomalies (label 1). ``train_contamination``: (path, class) of anomalies added
    to the training normals with label 0. ``test``: (path, label, class). Paths are relative
    to the dataset root. ``nested_in``: size of the draw the labelled anomalies were taken from
    (DRA A.2), equal to ``n_shots`` when not nested.
    """

    dataset: str
    subset: str
    setting: str
    n_shots: int
    seed: int
    seen_class: str | None
    contamination: float
    nested_in: int
    train_normal: tuple[str, ...]
    train_anomaly: tuple[tuple[str, str], ...]
    train_contamination: tuple[tuple[str, str], ...]
    test: tuple[tuple[str, int, str], ...]
    manifest_id: str = field(default="", compare=False)
    #: Test images identical to a labelled training anomaly / to a training normal (None: the
    #: dataset records no duplicates); facts about the files, not part of ``manifest_id``.
    test_copies_of_labelled: int | None = field(default=None, compare=False)
    test_copies_of_normal: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "manifest_id", self._content_hash())

    def _content(self) -> dict[str, Any]:
        """The fields that define the split (its tuples are immutable: no deep copy needed)."""
        skip = ("manifest_id", *_RECORDED)
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    @property
    def duplicate_note(self) -> str:
        """What a result row on this split says about test images identical to training images
        (empty when there are none or the dataset records no duplicates)."""
        counts = ((self.test_copies_of_labelled, "a labelled training anomaly"), (self.test_copies_of_normal, "a training normal"))
        parts = [f"{n} test image(s) identical to {what}" for n, what in counts if n]
        if not parts:
            return ""
        return (f"{', '.join(parts)} (exact duplicates in the dataset, as in the papers' files; prepare --dedupe "
                "drops them)")

    def _content_hash(self) -> str:
        text = json.dumps(self._content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def seen_classes(self) -> tuple[str, ...]:
        """Classes of the labelled training anomalies."""
        return tuple(sorted({cls for _, cls in self.train_anomaly}))

    @property
    def unseen_classes(self) -> tuple[str, ...]:
        """Anomaly classes of the test set that no labelled training anomaly belongs to."""
        return tuple(sorted({cls for _, label, cls in self.test if label == 1} - set(self.seen_classes)))

    @property
    def test_anomaly_classes(self) -> tuple[str, ...]:
        return tuple(sorted({cls for _, label, cls in self.test if label == 1}))

    def describe(self) -> str:
        """One line for logs: what this split is and its sizes."""
        seen = f", seen={self.seen_class}" if self.seen_class else ""
        n_test_anomalies = sum(label for _, label, _ in self.test)
        return (
            f"{_name(self.dataset, self.subset)} {self.setting} {self.n_shots}-shot seed={self.seed}{seen}: "
            f"train {len(self.train_normal)} normal + {len(self.train_contamination)} unlabelled anomalies + "
            f"{len(self.train_anomaly)} labelled; test {len(self.test) - n_test_anomalies} normal + "
            f"{n_test_anomalies} anomalies [{self.manifest_id}]"
        )

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the manifest (with its ``manifest_id`` and the recorded duplicate counts) atomically;
        return the path."""
        path = Path(path)
        recorded = {k: getattr(self, k) for k in _RECORDED}
        atomic_write_text(path, json.dumps({**self._content(), "manifest_id": self.manifest_id, **recorded}, indent=1))
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Split:
        """Read a manifest written by :meth:`to_json`; its content must still match its id."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            stored = data.pop("manifest_id")
            recorded = {k: data.pop(k, None) for k in _RECORDED}
            split = cls(
                **{**data,
                   "train_normal": tuple(data["train_normal"]),
                   "train_anomaly": tuple(tuple(x) for x in data["train_anomaly"]),
                   "train_contamination": tuple(tuple(x) for x in data["train_contamination"]),
                   "test": tuple((p, int(label), c) for p, label, c in data["test"]), **recorded}
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read split manifest {path}: {exc}; regenerate it with general_split/hard_split") from None
        if split.manifest_id != stored:
            raise ConfigError(f"split manifest {path} was edited (content hash {split.manifest_id} != stored {stored}); regenerate it")
        return split


#: Fields of a :class:`Split` recorded beside its content (not hashed into ``manifest_id``).
_RECORDED = ("test_copies_of_labelled", "test_copies_of_normal")


def with_test_copies(split: Split, samples: Sequence[Sample]) -> Split:
    """``split`` with its counts of test images identical to a labelled training anomaly and to a
    training normal, from the samples' ``pixel_group`` (the dataset's duplicate record); unchanged
    when the dataset records none."""
    group = {s.path: s.pixel_group for s in samples}
    if not any(group.values()):
        return split
    labelled = {group[p] for p, _ in split.train_anomaly}
    normal = {group[p] for p in split.train_normal}
    tested = [group[p] for p, _, _ in split.test]
    return replace(split, test_copies_of_labelled=sum(g in labelled for g in tested),
                   test_copies_of_normal=sum(g in normal for g in tested))


def _by_path(samples: Sequence[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: s.path)


def _check_count(parameter: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"parameter {parameter!r}: {value!r} must be a positive integer")
    return int(value)


def _parts(samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(training normals, test normals, anomalies), each sorted by path."""
    ordered = _by_path(samples)
    train_normal = [s for s in ordered if s.label == 0 and s.split == "train"]
    test_normal = [s for s in ordered if s.label == 0 and s.split == "test"]
    anomalies = [s for s in ordered if s.label == 1]
    if not train_normal:
        raise ConfigError("the dataset has no training normals (train/good is empty); check the dataset folder")
    return train_normal, test_normal, anomalies


def _name(dataset: str, subset: str) -> str:
    return f"{dataset}/{subset}" if subset else dataset or "the dataset"


def pollution_count(n_train_normal: int, rate: float) -> int:
    """nPollution = int(N_normal / (1 − rate) · rate) (DRA ``cont_rate``;
    ``docs/official_code/dra.md`` "Data protocol")."""
    return int(n_train_normal / (1 - rate) * rate)


def general_split(
    samples: Sequence[Sample],
    n_shots: int,
    seed: int,
    contamination: float = 0.0,
    *,
    nested_in: int | None = None,
    dataset: str = "",
    subset: str = "",
) -> Split:
    """General setting: ``n_shots`` labelled anomalies drawn at random from all classes.

    The anomalies (sorted by path) are permuted with ``default_rng(seed)``; the first
    ``nested_in`` (default ``n_shots``) leave the test set and the first ``n_shots`` of them are
    the labelled anomalies, so ``nested_in=10`` gives the DRA A.2 one-shot ⊂ ten-shot protocol.
    The next nPollution anomalies (:func:`pollution_count`) become contamination (label 0 in
    training) and leave the test set too.
    """
    n_shots = _check_count("n_shots", n_shots)
    nested = n_shots if nested_in is None else _check_count("nested_in", nested_in)
    if nested < n_shots:
        raise ConfigError(f"parameter 'nested_in': {nested} must be >= n_shots ({n_shots}): the labelled anomalies are drawn from that set")
    if not 0 <= contamination < 1:
        raise ConfigError(f"parameter 'contamination': {contamination!r} must be in [0, 1)")
    train_normal, test_normal, anomalies = _parts(samples)
    n_pollution = pollution_count(len(train_normal), contamination)
    needed = nested + n_pollution
    if needed >= len(anomalies):
        what = f"{nested} labelled" + (f" + {n_pollution} contamination" if n_pollution else "")
        raise ConfigError(
            f"{_name(dataset, subset)} has {len(anomalies)} anomalies, but {what} anomalies must leave the test set "
            f"and at least one must stay; use fewer shots (at most {len(anomalies) - 1 - n_pollution}) or less contamination"
        )
    order = np.random.default_rng(seed).permutation(len(anomalies))
    drawn = [anomalies[i] for i in order[:needed]]
    labelled, contaminating = drawn[:n_shots], drawn[nested:]
    removed = {s.path for s in drawn}
    test = test_normal + [s for s in anomalies if s.path not in removed]
    return with_test_copies(Split(
        dataset=dataset, subset=subset, setting="general", n_shots=n_shots, seed=int(seed), seen_class=None,
        contamination=float(contamination), nested_in=nested,
        train_normal=tuple(s.path for s in train_normal),
        train_anomaly=tuple(sorted((s.path, s.anomaly_class) for s in labelled)),
        train_contamination=tuple(sorted((s.path, s.anomaly_class) for s in contaminating)),
        test=tuple(sorted((s.path, s.label, s.anomaly_class) for s in test)),
    ), samples)


def hard_split(
    samples: Sequence[Sample],
    seen_class: str,
    n_shots: int,
    seed: int,
    *,
    nested_in: int | None = None,
    dataset: str = "",
    subset: str = "",
) -> Split:
    """Hard setting: ``n_shots`` labelled anomalies from ``seen_class`` only; that whole class
    leaves the test set, which then holds only unseen classes (DRA §4.1; code ``--know_class``).

    The seen class's files (sorted) are permuted with ``default_rng(seed)`` and the first
    ``n_shots`` are labelled; ``nested_in`` only checks that the class has enough files for the
    larger draw (the test set is the same for every ``n_shots``). No contamination (as in code).
    """
    n_shots = _check_count("n_shots", n_shots)
    nested = n_shots if nested_in is None else _check_count("nested_in", nested_in)
    if nested < n_shots:
        raise ConfigError(f"parameter 'nested_in': {nested} must be >= n_shots ({n_shots})")
    train_normal, test_normal, anomalies = _parts(samples)
    classes = anomaly_classes(anomalies)
    if len(classes) < 2:
        raise ConfigError(
            f"the hard setting needs at least two anomaly classes, but {_name(dataset, subset)} has only "
            f"{classes[0] if classes else 'none'!r}; use setting='general' for it"
        )
    seen_class = choose("seen_class", seen_class, classes)
    members = [s for s in anomalies if s.anomaly_class == seen_class]
    if nested > len(members):
        raise ConfigError(
            f"seen class {seen_class!r} of {_name(dataset, subset)} has {len(members)} anomalies, fewer than the "
            f"{nested} requested; use at most {len(members)} shots or another seen class"
        )
    order = np.random.default_rng(seed).permutation(len(members))
    labelled = [members[i] for i in order[:n_shots]]
    test = test_normal + [s for s in anomalies if s.anomaly_class != seen_class]
    return with_test_copies(Split(
        dataset=dataset, subset=subset, setting="hard", n_shots=n_shots, seed=int(seed), seen_class=seen_class,
        contamination=0.0, nested_in=nested,
        train_normal=tuple(s.path for s in train_normal),
        train_anomaly=tuple(sorted((s.path, s.anomaly_class) for s in labelled)),
        train_contamination=(),
        test=tuple(sorted((s.path, s.label, s.anomaly_class) for s in test)),
    ), samples)


def make_split(
    samples: Sequence[Sample],
    setting: str,
    n_shots: int,
    seed: int,
    *,
    seen_class: str | None = None,
    contamination: float = 0.0,
    nested_in: int | None = None,
    dataset: str = "",
    subset: str = "",
) -> Split:
    """Dispatch to :func:`general_split` or :func:`hard_split` by ``setting``."""
    setting = choose("setting", setting, SETTINGS)
    if setting == "hard":
        if seen_class is None:
            raise ConfigError("the hard setting needs seen_class (one anomaly class name of the dataset)")
        if contamination:
            raise ConfigError("contamination is only defined for the general setting (as in the official code)")
        return hard_split(samples, seen_class, n_shots, seed, nested_in=nested_in, dataset=dataset, subset=subset)
    return general_split(samples, n_shots, seed, contamination, nested_in=nested_in, dataset=dataset, subset=subset)


def seeded_normal_split(files: Sequence[str], seed: int, test_fraction: float = 0.25) -> tuple[list[str], list[str]]:
    """Split normal files 3:1 into (train, test), both sorted (AHL A.1;
    ``docs/official_code/shared.md`` "Conversion scripts").

    The official converters use ``sklearn.train_test_split(test_size=0.25, random_state=42)`` on
    an unsorted listing; here the files are sorted first and permuted with
    ``default_rng(seed)``. The test size is ceil(fraction · n), as in sklearn (1508 → 377).
    """
    if not 0 < test_fraction < 1:
        raise ConfigError(f"parameter 'test_fraction': {test_fraction!r} must be in (0, 1)")
    ordered = sorted(files)
    n_test = math.ceil(test_fraction * len(ordered))
    order = np.random.default_rng(seed).permutation(len(ordered))
    test = sorted(ordered[i] for i in order[:n_test])
    train = sorted(ordered[i] for i in order[n_test:])
    return train, test
