"""The ADBench loader and data generator (osad_lib.data.tabular; docs/official_code/anoonly.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from osad_lib.data import tabular
from osad_lib.data.tabular import (
    EMBEDDED_ADBENCH, SHA256, adbench_file, adbench_root, adbench_split, available_groups, group_files, leakage,
    load_npz,
)
from osad_lib.validate import ConfigError



def _table(n: int, n_anomalies: int, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n distinct rows (row i starts with i), the first ``n_anomalies`` labelled anomalies."""
    rng = np.random.default_rng(seed)
    X = np.hstack([np.arange(n, dtype=np.float32)[:, None], rng.random((n, d - 1), dtype=np.float32)])
    y = np.zeros(n, dtype=np.int64)
    y[:n_anomalies] = 1
    return X, y


def test_small_set_is_resampled_to_1000_then_split_70_30_stratified():
    X, y = _table(300, 60)
    split = adbench_split(X, y, seed=0, organisation="contaminated")  # every training row kept
    assert len(split.y_train) == 700 and len(split.y_test) == 300
    # stratified on the resampled rows: the test anomaly share equals the training one within a row
    assert abs(split.y_test.mean() - split.anomaly_train.mean()) < 2 / 300
    # rows come from the file (with replacement: repeats exist)
    assert len(np.unique(split.source_train)) < 700


def test_large_set_is_subsampled_to_10000_without_replacement():
    X, y = _table(12000, 600, d=3)
    split = adbench_split(X, y, seed=1, organisation="contaminated")
    rows = np.concatenate([split.source_train, split.source_test])
    assert len(rows) == 10000 and len(np.unique(rows)) == 10000


def test_middle_sized_set_is_kept_and_minmax_fitted_on_train():
    X, y = _table(2000, 100)
    split = adbench_split(X, y, seed=2, organisation="contaminated")
    assert len(split.y_train) + len(split.y_test) == 2000
    assert np.allclose(split.X_train.min(axis=0), 0) and np.allclose(split.X_train.max(axis=0), 1)
    # the test set is scaled with the training range, so it need not stay in [0, 1] (column 0 is the row id)
    expected = (X[split.source_test, 0] - X[split.source_train, 0].min()) / np.ptp(X[split.source_train, 0])
    assert np.allclose(split.X_test[:, 0], expected, atol=1e-6)


@pytest.mark.parametrize("la", [0.01, 0.1, 0.25, 1.0])
def test_labelled_anomalies_are_ceil_of_la_and_at_least_one(la):
    X, y = _table(2000, 100)
    split = adbench_split(X, y, seed=3, la=la, organisation="contaminated")  # keeps every training anomaly
    n_train_anomalies = int(split.anomaly_train.sum())
    assert len(split.labeled) == max(1, math.ceil(la * n_train_anomalies))
    assert set(split.labeled) <= set(np.flatnonzero(split.anomaly_train))


def test_at_least_one_labelled_anomaly_even_when_la_rounds_to_zero():
    X, y = _table(2000, 10)  # 7 training anomalies: 0.01 * 7 = 0.07
    assert len(adbench_split(X, y, seed=0, la=0.01).labeled) == 1
    assert len(adbench_split(X, y, seed=0, la=0.01, at_least_one_labeled=False).labeled) == 0


@pytest.mark.parametrize("split", ["paper", "no_leak"])
def test_organisation_clean_drops_the_unlabelled_anomalies_contaminated_keeps_exactly_them(split):
    """The paper's §3.1 (clean, Tables 1/3/4: D = D_N ∪ D_A) against §4.6 (contaminated, Fig. 8:
    the 90 % unlabelled training anomalies blended into the normal set as label 0)."""
    X, y = _table(2000, 100)
    clean = adbench_split(X, y, seed=4, split=split)  # the default organisation
    noisy = adbench_split(X, y, seed=4, split=split, organisation="contaminated")
    assert (clean.organisation, noisy.organisation) == ("clean", "contaminated")
    # clean: no unlabelled anomaly in training; every anomaly there is labelled
    assert ((clean.anomaly_train == 1) & (clean.y_train == 0)).sum() == 0
    assert np.array_equal(np.flatnonzero(clean.anomaly_train), clean.labeled)
    # contaminated: the same labelled anomalies and normals, plus exactly the unlabelled training anomalies
    n_train_anomalies = int(noisy.anomaly_train.sum())
    contamination = (noisy.anomaly_train == 1) & (noisy.y_train == 0)
    assert len(noisy.labeled) == len(clean.labeled) == math.ceil(0.1 * n_train_anomalies)
    assert contamination.sum() == n_train_anomalies - len(noisy.labeled) > 0.85 * n_train_anomalies
    assert np.array_equal(np.sort(noisy.source_train[~contamination]), np.sort(clean.source_train))
    assert len(clean.y_train) == len(noisy.y_train) - contamination.sum()
    # the test set does not depend on the organisation
    assert np.array_equal(clean.source_test, noisy.source_test) and np.array_equal(clean.X_test, noisy.X_test)


def test_normal_ratio_keeps_that_share_of_unlabelled_rows():
    X, y = _table(2000, 100)
    full = adbench_split(X, y, seed=5)
    part = adbench_split(X, y, seed=5, normal_ratio=0.2)
    assert len(part.unlabeled) == round(0.2 * len(full.unlabeled))
    assert len(part.labeled) == len(full.labeled)


def test_same_seed_same_split_and_other_seed_other_split():
    X, y = _table(500, 80)
    a, b, c = adbench_split(X, y, 7), adbench_split(X, y, 7), adbench_split(X, y, 8)
    assert np.array_equal(a.source_test, b.source_test) and np.array_equal(a.labeled, b.labeled)
    assert not np.array_equal(a.source_test, c.source_test)


def test_paper_split_leaks_test_rows_into_training_and_no_leak_does_not():
    """The finding of the paper's split: resampling a 300-row set to 1,000 with replacement
    before the split puts copies of most test rows (and of labelled anomalies) into training."""
    X, y = _table(300, 60)
    leaky = adbench_split(X, y, seed=0, split="paper", organisation="contaminated")
    no_leak = adbench_split(X, y, seed=0, split="no_leak", organisation="contaminated")
    leak = leakage(leaky)
    # each of the 300 rows appears ~3.3 times; a test copy has a training twin with prob ≈ 1 − e^{−700/300} ≈ 0.90
    assert leak["shared_rows"] > 0.8 * len(leaky.y_test)
    assert leak["shared_anomalies"] > 0 and leak["shared_labeled"] > 0
    assert leakage(no_leak) == {"shared_rows": 0, "shared_anomalies": 0, "shared_labeled": 0}
    assert not set(no_leak.source_train) & set(no_leak.source_test)
    # no_leak resamples the training part to the paper split's size; resample_train=False keeps it as is
    assert len(no_leak.y_train) == 700
    assert len(adbench_split(X, y, seed=0, split="no_leak", organisation="contaminated",
                             resample_train=False).y_train) == 210
    # the clean organisation leaks too under the paper's split (test rows copy training normals and labelled anomalies)
    assert leakage(adbench_split(X, y, seed=0))["shared_labeled"] > 0


def test_leakage_counts_identical_rows_by_value():
    X, y = _table(300, 60)
    split = adbench_split(X, y, seed=1, split="no_leak")
    # plant one exact copy of a labelled training row into the test set
    X_test = split.X_test.copy()
    X_test[0] = split.X_train[split.labeled[0]]
    planted = tabular.TabularSplit(split.X_train, split.y_train, split.anomaly_train, X_test, split.y_test,
                                   split.source_train, split.source_test, "no_leak", "clean")
    assert leakage(planted)["shared_rows"] == 1 and leakage(planted)["shared_labeled"] == 1


def test_bad_inputs_are_one_line_errors(tmp_path):
    X, y = _table(300, 60)
    with pytest.raises(ConfigError, match="split"):
        adbench_split(X, y, 0, split="faithful")
    with pytest.raises(ConfigError, match="organisation"):
        adbench_split(X, y, 0, organisation="noisy")
    with pytest.raises(ConfigError, match="la="):
        adbench_split(X, y, 0, la=0.0)
    with pytest.raises(ConfigError, match="no anomaly"):
        adbench_split(X, np.zeros_like(y), 0)
    np.savez(tmp_path / "bad.npz", features=X)
    with pytest.raises(ConfigError, match="needs 'X' and 'y'"):
        load_npz(tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match="does not exist"):
        adbench_root(tmp_path / "missing")


def test_loader_groups_and_partial_marking(tmp_path, monkeypatch):
    folder = tmp_path / "CV_by_ResNet18"
    folder.mkdir()
    X, y = _table(120, 20)
    for stem in ("MVTec-AD_bottle", "MVTec-AD_zipper", "CIFAR10_3"):
        np.savez(folder / f"{stem}.npz", X=X, y=y)
    monkeypatch.setenv(tabular.ADBENCH_ENV, str(tmp_path))
    assert adbench_root() == tmp_path
    # the user's folder wins file by file; the embedded copy fills in the other MVTec categories
    mvtec = group_files("mvtecad")
    assert len(mvtec) == 15 and mvtec[0] == folder / "MVTec-AD_bottle.npz"
    assert mvtec[1] == EMBEDDED_ADBENCH / "CV_by_ResNet18" / "MVTec-AD_cable.npz"
    groups = available_groups().set_index("group")
    assert groups.loc["mvtecad", "files"] == 15 and not groups.loc["mvtecad", "partial"]
    assert groups.loc["cifar10", "files"] == 1 and groups.loc["cifar10", "partial"]
    assert groups.loc["svhn", "files"] == 0 and not groups.loc["svhn", "partial"]
    Xl, yl = load_npz(folder / "CIFAR10_3.npz")
    assert Xl.dtype == np.float32 and yl.sum() == 20


def test_download_helper_fails_in_one_line_offline(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ConfigError, match="cannot download") as err:
        tabular.download_adbench(["MVTec-AD_bottle"], tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="no checksum"):
        tabular.download_adbench(["CIFAR10_1"], tmp_path)


def test_the_embedded_mvtec_files_are_the_official_ones(monkeypatch):
    """The 15 MVTec AD ResNet-18 files ship with the package, byte-identical to ADBench's (SHA-256),
    and are found with no ADBench folder and no data root configured."""
    monkeypatch.delenv(tabular.ADBENCH_ENV, raising=False)
    monkeypatch.delenv("OSAD_DATA", raising=False)
    files = group_files("mvtecad")
    assert [p.parent for p in files] == [EMBEDDED_ADBENCH / "CV_by_ResNet18"] * 15
    for path in files:
        assert tabular._sha256(path.read_bytes()) == SHA256[f"CV_by_ResNet18/{path.stem}"], path.name
    assert adbench_file("CIFAR10_0") is None
    provenance = (EMBEDDED_ADBENCH / "PROVENANCE.md").read_text()
    assert all(SHA256[f"CV_by_ResNet18/{p.stem}"] in provenance for p in files)
    assert (EMBEDDED_ADBENCH / "LICENSE-ADBench").is_file() and (EMBEDDED_ADBENCH / "LICENSE-MVTec-AD").is_file()


def test_real_mvtec_file_leaks_under_the_paper_split():
    X, y = load_npz(adbench_file("MVTec-AD_bottle"))
    assert X.shape == (292, 512) and y.sum() == 63
    leak = leakage(adbench_split(X, y, seed=0, organisation="contaminated"))
    assert leak["shared_rows"] > 240 and leak["shared_labeled"] > 0
    assert leakage(adbench_split(X, y, seed=0, split="no_leak"))["shared_rows"] == 0
