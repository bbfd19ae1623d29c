"""Throughput benchmarks: ``python -m osad_lib.bench`` (``make bench``).

For each image method trained end to end on images — DevNet (backbone + top-K MIL head, two-scale
pyramid) and DRA (the same backbone and pyramid, four heads and ``n_ref`` reference images in
every step) — at the demo and paper settings, on the CPU and on CUDA when present:

* ``model_train`` / ``model_infer``: images/s of the model alone on synthetic tensors already on
  the device (the upper bound);
* ``pipeline``: images/s of the data path alone — batch indices → uint8 tensor cache → device →
  float → random rotation (on the device) — with no model;
* ``end_to_end_train``: the pipeline and the model together, as training runs;
* ``naive_end_to_end_train``: the reference pipeline of the official repositories — a
  ``DataLoader`` over a dataset that opens each file with PIL, ``Resize``, ``RandomRotation``,
  ``ToTensor`` per sample — feeding the same model.

Each row also records the peak memory. Data: the embedded ELPV images (real files on disk), or
the generated synthetic dataset (``--dataset synthetic``) where ELPV is not installed.
Results go to ``runs/bench/bench.csv`` / ``.json`` and a Markdown table.

Not benchmarked here: BGAD and AHL train on frozen features computed once per dataset
(:func:`osad_lib.components.features.cached_dataset_features`, :func:`osad_lib.components.features.cached_features`),
so no image pipeline runs in their training loops; their notebooks record train and feature
times per run (BGAD: ``feature_cache_mb``, ``train_time_s``).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from osad_lib import paths
from osad_lib.data.images import load_rgb
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.registry import resolve
from osad_lib.data.tensors import load_images
from osad_lib.losses.deviation import criterion as make_criterion
from osad_lib.methods.devnet.model import DevNet, DevNetConfig
from osad_lib.methods.dra import NORMAL, PSEUDO, SEEN, DRAConfig, build_dra, dra_loss
from osad_lib.components.stems import random_rotation, to_float_images
from osad_lib.paths import atomic_write_text
from osad_lib.profiles import get_profile, resolve_device
from osad_lib.seeding import seed_everything
from osad_lib.training import autocast
from osad_lib.validate import choose

#: Image methods benchmarked (see the module docstring).
METHODS = ("devnet", "dra")


@dataclass(frozen=True)
class BenchSetting:
    name: str
    backbone: str
    image_size: int
    batch_size: int


def settings(tiny: bool = False) -> list[BenchSetting]:
    """The demo and paper settings of the profiles (or one tiny setting for CI)."""
    if tiny:
        return [BenchSetting("tiny", "resnet18", 64, 8)]
    demo, paper = get_profile("demo"), get_profile("paper")
    return [BenchSetting("demo", demo.backbone, demo.image_size, 16),
            BenchSetting("paper", paper.backbone, paper.image_size, paper.batch_size)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rate(step: Callable[[], int], device: str, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    start, images = time.perf_counter(), 0
    for _ in range(steps):
        images += step()
    _sync(device)
    return images / (time.perf_counter() - start)


class NaiveImageDataset(Dataset):
    """Per-sample PIL loading and transforms, as the official DevNet/DRA/AHL repositories do."""

    def __init__(self, root: Path, paths_: list[str], labels: list[int], size: int):
        from torchvision import transforms

        self.root, self.paths, self.labels, self.load = root, paths_, labels, load_rgb
        self.transform = transforms.Compose([transforms.Resize((size, size)), transforms.RandomRotation(180),
                                             transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.load(self.root / self.paths[i])), self.labels[i]


def _devnet(setting: BenchSetting, device: str) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """DevNet and its loss on a batch (half normal, half anomaly targets, as the code's sampler:
    ``docs/official_code/shared.md`` "Balanced batch sampler")."""
    model = DevNet(DevNetConfig(backbone=setting.backbone, weights="random", image_size=setting.image_size,
                                batch_size=setting.batch_size)).to(device)
    b = setting.batch_size
    targets = torch.cat([torch.zeros(b // 2), torch.ones(b - b // 2)]).to(device)
    return model, lambda images: model.loss(images, targets[: len(images)])


def _dra(setting: BenchSetting, device: str) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """DRA and its summed head losses on a batch of the code's composition (2B/3 normal or pseudo,
    B/3 seen; ``docs/official_code/dra.md`` "Training pipeline") against ``n_ref`` reference images
    passed through the network at every step."""
    config = DRAConfig(backbone=setting.backbone, weights="random", image_size=setting.image_size,
                       batch_size=setting.batch_size)
    model = build_dra(config).to(device)
    b, normal_slots = setting.batch_size, config.n_normal_slots
    labels = torch.tensor([NORMAL, PSEUDO] * (normal_slots // 2) + [NORMAL] * (normal_slots % 2)
                          + [SEEN] * (b - normal_slots), device=device)
    references = torch.rand(config.n_ref, 3, setting.image_size, setting.image_size, device=device)
    criterion = make_criterion(config.loss)

    def loss(images: torch.Tensor) -> torch.Tensor:
        batch_labels = labels[: len(images)]
        return dra_loss(model(images, references, batch_labels), batch_labels, criterion)[0]

    return model, loss


BUILDERS = {"devnet": _devnet, "dra": _dra}


def bench_setting(setting: BenchSetting, device: str, steps: int, warmup: int, workers: int,
                  dataset: str = "elpv", method: str = "devnet") -> dict:
    """Every measurement of one method and setting on one device (see the module docstring)."""
    seed_everything(0)
    model, loss_of = BUILDERS[method](setting, device)
    model.to(memory_format=torch.channels_last)  # as the training loop does, on CUDA and the CPU
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    b = setting.batch_size

    def train_step(images: torch.Tensor) -> int:
        with autocast(device):
            loss = loss_of(images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(images)

    root = resolve(dataset)
    samples = read_mvtec_layout(root)
    cache = load_images(root, samples, setting.image_size)
    n = len(cache)
    gen = torch.Generator().manual_seed(0)

    def pipeline_batch() -> torch.Tensor:
        idx = torch.randint(0, n, (b,), generator=gen)
        images = to_float_images(cache.images[idx].pin_memory() if device.startswith("cuda") else cache.images[idx],
                                 device)
        return random_rotation(images, 180.0)

    fixed = torch.rand(b, 3, setting.image_size, setting.image_size, device=device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    row = {"method": method, **asdict(setting), "dataset": dataset, "device": device}
    model.train()
    row["model_train"] = _rate(lambda: train_step(fixed), device, warmup, steps)
    row["pipeline"] = _rate(lambda: len(pipeline_batch()), device, warmup, steps)
    row["end_to_end_train"] = _rate(lambda: train_step(pipeline_batch()), device, warmup, steps)
    loader = DataLoader(NaiveImageDataset(root, [s.path for s in samples], [s.label for s in samples],
                                          setting.image_size),
                        batch_size=b, shuffle=True, num_workers=workers, drop_last=True,
                        pin_memory=device.startswith("cuda"))
    batches = iter(loader)
    row["naive_end_to_end_train"] = _rate(lambda: train_step(next(batches)[0].to(device, non_blocking=True)),
                                          device, warmup, steps)
    model.eval()
    with torch.no_grad():
        row["model_infer"] = _rate(lambda: (loss_of(fixed), b)[1], device, warmup, steps)
    row["end_to_end_vs_model"] = row["end_to_end_train"] / row["model_train"]
    row["end_to_end_vs_naive"] = row["end_to_end_train"] / row["naive_end_to_end_train"]
    row["peak_memory_mb"] = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
                             else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return row


def run(devices: list[str], tiny: bool, steps: int, warmup: int, workers: int, output: Path,
        dataset: str = "elpv", methods: tuple[str, ...] = METHODS) -> pd.DataFrame:
    rows = [bench_setting(s, d, steps, warmup, workers, dataset, m)
            for d in devices for m in methods for s in settings(tiny)]
    table = pd.DataFrame(rows)
    name = "bench_tiny" if tiny else "bench"
    atomic_write_text(output / f"{name}.csv", table.to_csv(index=False))
    atomic_write_text(output / f"{name}.json", json.dumps(rows, indent=2))
    atomic_write_text(output / f"{name}.md", table.to_markdown(index=False, floatfmt=".2f") + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Throughput of the image methods' training and data paths.")
    parser.add_argument("--device", default="auto", help="auto (CPU, plus CUDA when present) | cpu | cuda")
    parser.add_argument("--tiny", action="store_true", help="one 64-px setting, a step or two (CI smoke test)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    parser.add_argument("--dataset", default="elpv", help="files the pipelines read (default elpv; synthetic where ELPV is not installed)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the naive pipeline")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--output-dir", default="", help="parent of runs/ (default: OSAD_OUTPUT or the checkout)")
    args = parser.parse_args(argv)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "auto" \
        else [resolve_device(args.device)]
    steps = args.steps or (2 if args.tiny else 5)
    output = paths.output_root(args.output_dir) / "runs" / "bench"
    methods = tuple(choose("--methods", m.strip(), METHODS) for m in args.methods.split(",") if m.strip())
    table = run(devices, args.tiny, steps, warmup=1 if args.tiny else 2, workers=args.workers, output=output,
                dataset=args.dataset, methods=methods)
    print(table.to_markdown(index=False, floatfmt=".2f"))
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
