"""CUDA-only paths: bf16 autocast, channels_last, real out-of-memory advice, pinned host copies, and
DevNet/DRA/KDAD training and scoring at the paper's settings on the GPU.

Marked ``gpu`` and skipped without a CUDA device; ``make gpu-check`` (``python -m osad_lib.gpucheck``)
runs them with ``-m gpu`` together with ``test_training.py``'s repeatability test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osad_lib.data.tensors import ImageSet
from osad_lib.results import Experiment, ResultsStore
from osad_lib.errors import CudaOutOfMemoryError
from osad_lib.training import BalancedBatchSampler, TrainConfig, fit

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

IMPOSSIBLE_BYTES = 1 << 50  # one pebibyte: no GPU has it


def _config(**changes) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "steps_per_epoch": 2, "lr": 1e-3, "progress": False, **changes})


def _conv_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 1)).cuda()


def _image_set(n_normal: int, n_anomaly: int, size: int, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    n = n_normal + n_anomaly
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = [0] * n_normal + [1] * n_anomaly
    return ImageSet(images, torch.tensor(labels), ["good" if y == 0 else "defect" for y in labels], None,
                    [f"{i:03d}.png" for i in range(n)])


@pytest.mark.parametrize("amp", [True, False])
def test_fit_trains_under_bf16_autocast_on_cuda_only_when_amp_is_on(amp):
    model, dtypes = _conv_model(), []
    x = torch.rand(16, 3, 16, 16, device="cuda")

    def loss_fn(m, idx):
        out = m(x[idx])
        dtypes.append(out.dtype)
        return out.float().pow(2).mean()

    history = fit(model, loss_fn, BalancedBatchSampler({"all": range(16)}, {"all": 4}, 0), _config(amp=amp), "cuda")
    assert np.isfinite(history).all()
    assert set(dtypes) == {torch.bfloat16 if amp else torch.float32}


def test_fit_puts_the_model_in_channels_last_on_cuda():
    model = _conv_model()
    x = torch.rand(8, 3, 16, 16, device="cuda")
    fit(model, lambda m, idx: m(x[idx]).float().mean(), BalancedBatchSampler({"all": range(8)}, {"all": 4}, 0),
        _config(), "cuda")
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = _conv_model()
    fit(plain, lambda m, idx: m(x[idx]).float().mean(), BalancedBatchSampler({"all": range(8)}, {"all": 4}, 0),
        _config(channels_last=False), "cuda")
    assert not plain[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_a_real_cuda_out_of_memory_names_the_batch_size_to_try_and_frees_the_cache(tmp_path):
    model = _conv_model()
    before = torch.cuda.memory_allocated()

    def greedy(m, idx):
        torch.empty(IMPOSSIBLE_BYTES, dtype=torch.uint8, device="cuda")
        return m(torch.rand(len(idx), 3, 8, 8, device="cuda")).mean()

    with pytest.raises(CudaOutOfMemoryError, match=r"at batch size 6; set batch_size=3") as info:
        fit(model, greedy, BalancedBatchSampler({"a": range(6)}, {"a": 6}, 0), _config(), "cuda",
            checkpoint=tmp_path / "ckpt.pt")
    assert "\n" not in str(info.value)
    assert torch.cuda.memory_allocated() <= before + (1 << 20)  # nothing of the failed step is kept


def test_an_out_of_memory_outside_fit_stops_the_grid_with_advice_and_stores_nothing(tmp_path):
    store = ResultsStore(tmp_path / "results.csv")
    done = Experiment(notebook="nb", paper="devnet", table="table2", dataset="synthetic", method="devnet", seed=0,
                      profile="smoke")
    store.run_experiment(done, lambda: {"auroc": 0.8})
    failing = Experiment(**{**done.__dict__, "seed": 1})
    with pytest.raises(CudaOutOfMemoryError, match="outside osad_lib.training.fit") as info:
        store.run_experiment(failing, lambda: {"auroc": float(torch.empty(IMPOSSIBLE_BYTES, device="cuda").sum())})
    assert "the 1 rows stored earlier are kept" in str(info.value)
    assert list(store.read()["seed"]) == [0]


def test_pinned_host_batches_reach_the_gpu_in_the_benchmark_pipeline():
    from osad_lib.bench import BenchSetting, bench_setting

    row = bench_setting(BenchSetting("tiny", "resnet18", 64, 8), "cuda", steps=1, warmup=1, workers=0,
                        dataset="synthetic", method="devnet")
    for key in ("model_train", "pipeline", "end_to_end_train", "naive_end_to_end_train", "model_infer"):
        assert row[key] > 0, key
    assert row["device"] == "cuda" and row["peak_memory_mb"] > 0


def test_devnet_trains_and_scores_at_the_paper_settings_on_cuda():
    """ResNet-18 at 448 px, batches of 48 (24 + 24), the two-scale pyramid, bf16 and channels_last."""
    from osad_lib.methods.devnet.model import DevNetConfig, score_images, train_devnet

    torch.cuda.reset_peak_memory_stats()
    config = DevNetConfig(weights="random", epochs=1, steps_per_epoch=2)
    model, history = train_devnet(config, _image_set(48, 10, 448), seed=0, device="cuda", progress=False)
    scores = score_images(model, _image_set(20, 4, 448, seed=1).images, 48, "cuda", amp=True)
    assert np.isfinite(history).all() and scores.shape == (24,) and np.isfinite(scores).all()
    assert torch.cuda.max_memory_allocated() < torch.cuda.get_device_properties(0).total_memory


def test_dra_trains_and_scores_at_the_paper_settings_on_cuda():
    from osad_lib.methods.dra import DRAConfig, train_dra

    config = DRAConfig(weights="random", epochs=1, steps_per_epoch=2)
    trained = train_dra(_image_set(48, 10, 448), config, seed=0, device="cuda", progress=False)
    scores = trained.score(_image_set(12, 4, 448, seed=1).images)
    assert np.isfinite(trained.history).all() and np.isfinite(scores["score"]).all() and len(scores["score"]) == 16


def test_kdad_trains_scores_and_localizes_on_cuda():
    from osad_lib.methods.devnet.model import score_images
    from osad_lib.methods.baselines.kdad import KDADConfig, anomaly_maps, train_kdad

    config = KDADConfig(weights="random", epochs=1, steps_per_epoch=2)
    model, history = train_kdad(config, _image_set(64, 0, 128), seed=0, device="cuda", progress=False)
    test = _image_set(8, 4, 128, seed=1)
    scores = score_images(model, test.images, 64, "cuda", amp=True)
    maps = anomaly_maps(model, test.images[8:], "cuda")
    assert np.isfinite(history).all() and np.isfinite(scores).all()
    assert maps.shape == (4, 128, 128) and 0.0 <= maps.min() and maps.max() <= 1.0
