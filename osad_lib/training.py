"""The one training loop every image method uses: epochs × steps of balanced batches.

The official DevNet/DRA/AHL code all share the same skeleton (``docs/official_code/shared.md``
"Training loop skeleton", "Balanced batch sampler"): an infinite balanced sampler that re-permutes
each group of indices when it is exhausted, ``steps_per_epoch`` batches per epoch, Adam with a
StepLR schedule, gradient-norm clipping at 1.0. Methods plug in a
``loss_fn(model, batch_indices) -> loss``; everything else (optimiser, schedule, clipping, mixed
precision, progress, checkpoint/resume) lives here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import pickle
import random
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from tqdm.auto import tqdm

from osad_lib import limits
from osad_lib.errors import CudaOutOfMemoryError, NonFiniteLossError
from osad_lib.paths import atomic_write, atomic_write_text, format_size
from osad_lib.validate import notice


@contextlib.contextmanager
def oom_advice(stage: str, batch_size: int, setting: str = "batch_size") -> Iterator[None]:
    """Turn a CUDA out-of-memory error in the block into :class:`CudaOutOfMemoryError` whose
    message says at which ``batch_size`` it happened and suggests half of it for ``setting``."""
    try:
        yield
    except torch.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        smaller = max(1, batch_size // 2)
        raise CudaOutOfMemoryError(
            f"CUDA ran out of memory in {stage} at batch size {batch_size}; set {setting}={smaller} in the "
            f"method's profile overrides (osad_lib.profiles.METHOD_OVERRIDES) or run with device='cpu'"
        ) from None


class BalancedBatchSampler:
    """Infinite batches with a fixed number of slots per group (``docs/official_code/shared.md``
    "Balanced batch sampler").

    ``groups`` maps a group name (e.g. ``"normal"``, ``"anomaly"``) to the dataset indices of
    that group; ``slots`` maps the same names to how many of each go into a batch. A batch
    lists the slots group by group in ``slots`` order. Each group is drawn from a seeded
    permutation that is renewed when exhausted. A group with no indices cannot have slots.
    Under a dry run's batch cap the slots shrink in proportion (:func:`osad_lib.limits.batch_slots`).
    """

    def __init__(self, groups: Mapping[str, Sequence[int]], slots: Mapping[str, int], seed: int):
        for name, count in slots.items():
            if count > 0 and len(groups.get(name, ())) == 0:
                raise ValueError(f"batch slot group {name!r} has {count} slots but no samples")
        self.groups = {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}
        self.slots = {k: int(v) for k, v in limits.batch_slots(slots).items() if v > 0}
        self.rng = np.random.default_rng(seed)
        self._perm: dict[str, np.ndarray] = {}
        self._pos: dict[str, int] = {}

    def _take(self, name: str, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            if self._pos.get(name, 0) >= len(self._perm.get(name, ())):
                self._perm[name] = self.rng.permutation(self.groups[name])
                self._pos[name] = 0
            take = min(count - len(out), len(self._perm[name]) - self._pos[name])
            out.extend(self._perm[name][self._pos[name]:self._pos[name] + take].tolist())
            self._pos[name] += take
        return out

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            yield [i for name, count in self.slots.items() for i in self._take(name, count)]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "perm": {k: v.copy() for k, v in self._perm.items()},
                "pos": dict(self._pos)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._perm = {k: np.asarray(v).copy() for k, v in state["perm"].items()}
        self._pos = dict(state["pos"])


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Defaults are DevNet/DRA's (Adam 2e-4, wd 1e-5, StepLR(10, 0.1), clip 1).

    ``scheduler_step_at``: ``"epoch_end"`` (DevNet code, the usual order) or ``"epoch_start"`` (DRA
    code: ``scheduler.step()`` before the epoch's first optimiser step, which moves the decays to
    epochs 9/19/29 — ``docs/official_code/dra.md`` "Training pipeline"). ``checkpoint_every_s``:
    with a checkpoint file, the state is saved after the first and the last epoch and after any
    epoch that ends at least this many seconds after the previous save (a short CPU run writes its
    model twice, not once per epoch).
    """

    epochs: int = 50
    steps_per_epoch: int = 20
    lr: float = 2e-4
    weight_decay: float = 1e-5
    lr_step_size: int = 10
    lr_gamma: float = 0.1
    scheduler_step_at: str = "epoch_end"
    grad_clip: float | None = 1.0
    amp: bool = True
    channels_last: bool = True
    progress: bool = True
    desc: str = "train"
    checkpoint_every_s: float = 60.0


def autocast(device: str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (when enabled); a no-op on CPU."""
    if enabled and str(device).startswith("cuda"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _rng_states() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_states(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _digest_file(path: Path) -> Path:
    """The size and SHA-256 written beside a checkpoint (``<name>.sha256``)."""
    return path.with_name(f"{path.name}.sha256")


def _file_facts(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return {"size": path.stat().st_size, "sha256": hashlib.file_digest(handle, "sha256").hexdigest()}


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """Write a checkpoint (or any torch-saved cache) atomically (:func:`osad_lib.paths.atomic_write`:
    a failed write, e.g. on a full disk, leaves no temporary file and ``path`` as it was), with
    its size and SHA-256 beside it. The old digest is removed before the new file replaces the
    old one, so a crash in between leaves a file without a digest (checked by loading it), never
    a file with a wrong one."""
    _digest_file(path).unlink(missing_ok=True)
    atomic_write(path, lambda handle: _torch_save(dict(payload), handle))
    atomic_write_text(_digest_file(path), json.dumps(_file_facts(path)))


class _WriteErrors:
    """A file handle for ``torch.save`` that keeps the first write error: torch reports a full
    disk only as ``unexpected pos …``, so the original ``OSError`` is raised instead."""

    def __init__(self, handle: BinaryIO):
        self.handle, self.error = handle, None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def _torch_save(payload: dict, handle: BinaryIO) -> None:
    writer = _WriteErrors(handle)
    try:
        torch.save(payload, writer)
    except RuntimeError:
        if writer.error is not None:
            raise writer.error from None
        raise


def _damage(path: Path) -> str:
    """Why the checkpoint at ``path`` cannot be trusted ('' when its digest matches; '' also when
    it has none, e.g. written by an older version: then loading it is the check)."""
    try:
        expected = json.loads(_digest_file(path).read_text())
        size, digest = int(expected["size"]), str(expected["sha256"])
    except FileNotFoundError:
        return ""
    except (OSError, ValueError, KeyError, TypeError):
        return f"its digest {_digest_file(path).name} is unreadable"
    actual = path.stat().st_size
    if actual != size:
        return f"{format_size(actual)} where {format_size(size)} were written"
    return "" if _file_facts(path)["sha256"] == digest else "its SHA-256 differs from the one written"


def load_checkpoint(path: Path, map_location: Any = None, weights_only: bool = False,
                    what: str = "checkpoint", consequence: str = "starting again") -> Any:
    """The payload saved by :func:`save_checkpoint` at ``path``, or None when there is none or
    it is damaged (size or SHA-256 differ, or it cannot be read): then the file is deleted and
    one line on stderr names it, ``what`` it was and the ``consequence``."""
    if not path.is_file():
        return None
    problem = _damage(path)
    if not problem:
        try:
            return torch.load(path, map_location=map_location, weights_only=weights_only)
        except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
            if _digest_file(path).is_file():
                raise  # the file is intact: the error is not damage
            problem = f"unreadable: {type(exc).__name__} {str(exc)[:60]}".strip()
    notice(f"{what} {path} is damaged ({problem}); discarded, {consequence}")
    path.unlink(missing_ok=True)
    _digest_file(path).unlink(missing_ok=True)
    return None


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, list[int]], torch.Tensor],
    sampler: BalancedBatchSampler,
    config: TrainConfig,
    device: str = "cpu",
    parameters: Sequence[torch.nn.Parameter] | None = None,
    checkpoint: Path | None = None,
    on_epoch_end: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` for ``config.epochs × config.steps_per_epoch`` steps; return mean loss per epoch.

    With ``checkpoint``, the model, optimiser, scheduler, sampler and every RNG state are saved
    after epochs (``config.checkpoint_every_s``), and a later call with the same path continues
    where the last save stopped
    (the continued run matches an uninterrupted one on the same machine). A NaN/inf loss
    raises :class:`NonFiniteLossError`; CUDA running out of memory in a step raises
    :class:`CudaOutOfMemoryError` naming the batch size to try (the last epoch's checkpoint is kept).
    A dry run's limits (:mod:`osad_lib.limits`) cut the schedule to its first epoch's first steps.
    With ``config.channels_last`` the model trains in that layout and leaves in the default one.
    """
    params = list(parameters) if parameters is not None else [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_size, gamma=config.lr_gamma)
    start_epoch, history = 0, []
    state = None if checkpoint is None else load_checkpoint(
        checkpoint, map_location=device, consequence="the experiment restarts from its first epoch")
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        _set_rng_states(state["rng"])
        start_epoch, history = state["epoch"] + 1, list(state["history"])
    if config.channels_last:  # faster convolutions on CUDA and with oneDNN on the CPU (DevNet's demo step: -30 %)
        model.to(memory_format=torch.channels_last)
    batches = iter(sampler)
    last_save = time.monotonic()
    n_epochs, n_steps = limits.epochs(config.epochs), limits.steps(config.steps_per_epoch)
    for epoch in range(start_epoch, n_epochs):
        model.train()
        if config.scheduler_step_at == "epoch_start":
            with _quiet_scheduler_warning():
                scheduler.step()
        losses = []
        steps = tqdm(range(n_steps), desc=f"{config.desc} epoch {epoch + 1}/{n_epochs}",
                     leave=False, disable=not config.progress)
        for _ in steps:
            indices = next(batches)
            with oom_advice("training", len(indices)):
                with autocast(device, config.amp):
                    loss = loss_fn(model, indices)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"loss is {loss.item()} at epoch {epoch + 1}; lower the learning rate or check the data")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
            losses.append(float(loss.detach()))
        if config.scheduler_step_at == "epoch_end":
            scheduler.step()
        history.append(float(np.mean(losses)) if losses else math.nan)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history[-1])
        due = epoch in (0, n_epochs - 1) or time.monotonic() - last_save >= config.checkpoint_every_s
        if checkpoint is not None and due:
            last_save = time.monotonic()
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "sampler": sampler.state_dict(),
                "rng": _rng_states(), "epoch": epoch, "history": history,
            })
    if config.channels_last:
        # back to the layout of the same weights loaded from a checkpoint: the CPU kernels round
        # differently by memory layout, so a model scored right after training and one loaded
        # from its file would give different bits (and results would depend on which happened)
        model.to(memory_format=torch.contiguous_format)
    return history


@contextlib.contextmanager
def _quiet_scheduler_warning() -> Iterator[None]:
    """DRA's order (scheduler before optimiser) is deliberate; silence torch's warning about it."""
    import re
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
        yield
