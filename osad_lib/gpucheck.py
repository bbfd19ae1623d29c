"""The GPU check in one command: ``make gpu-check`` = ``python -m osad_lib.gpucheck``.

Everything this project can only verify on a CUDA GPU, run in one go on one GPU (target: under
8 minutes on one H100), with one summary, ``runs/gpu-check/summary.md`` and ``summary.csv``
(device name, check outcomes, throughput ratios, peak memory):

1. ``tests`` — the CUDA-only tests (``pytest -m gpu``): the README's repeatability tolerance,
   bf16 autocast and ``channels_last`` in the shared training loop, the advice on a real CUDA
   out-of-memory error, pinned host copies, DevNet/DRA/KDAD training and scoring at the paper's
   settings (``tests/integration/test_gpu.py``, ``tests/unit/test_training.py``);
2. ``bench`` — ``python -m osad_lib.bench --device cuda`` at the demo and paper settings: model-only,
   data-pipeline-only, end-to-end and naive per-sample PIL throughput side by side, peak memory;
3. ``notebook`` — one demo notebook (default ``01_devnet``) through ``run_all.py --profile demo
   --device cuda`` into ``runs/gpu-check/notebook``, with the device's peak memory in use.

Its needs beyond torch and torchvision are the two files :data:`REQUIREMENTS` (README "GPU
check"); they install offline from a folder of wheels (``make wheels`` fills it on a machine that
is online, ``pip install --no-index --find-links wheels -r ...`` installs it). Missing ones are
named before anything runs (exit code :data:`EXIT_MISSING_NEEDS`).

Without a CUDA device nothing is measured: the command says so, lists what it would have run,
writes the summary with every check ``not run`` and exits with :data:`EXIT_NO_GPU`. A check that
fails or runs past its time limit exits with 1; all passed: 0.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from osad_lib import paths
from osad_lib.paths import atomic_write_text

ROOT = paths.PROJECT_ROOT
#: What the check needs beyond torch/torchvision: installed with their dependencies, and (second
#: file) packages whose only dependency is torch, downloaded without dependencies by ``make wheels``.
REQUIREMENTS = (ROOT / "env" / "requirements-gpu-check.txt", ROOT / "env" / "requirements-gpu-check-nodeps.txt")
#: Test files holding the ``gpu``-marked tests.
GPU_TEST_FILES = ("tests/unit/test_training.py", "tests/integration/test_gpu.py")
DEFAULT_NOTEBOOK = "01_devnet"
#: The whole check should take less than this on one H100 (reported beside the measured total).
TARGET_SECONDS = 480
EXIT_FAILED, EXIT_MISSING_NEEDS, EXIT_NO_GPU = 1, 2, 3
NOT_RUN_NO_GPU = "not run: no CUDA GPU"


@dataclass(frozen=True)
class Step:
    """One check: a command run in the checkout, with a time limit."""

    name: str
    description: str
    command: tuple[str, ...]
    timeout_s: int

    def shell(self) -> str:
        return " ".join(self.command).replace(sys.executable, "python")


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # ok | failed: ... | timed out ... | not run: ...
    seconds: float
    peak_memory_mb: float
    detail: str


# --------------------------------------------------------------------------------------------
# needs


def requirement_names(files: Sequence[Path] = REQUIREMENTS) -> list[str]:
    """Distribution names listed in requirement files (pins, comments and blank lines dropped)."""
    names = []
    for file in files:
        for line in file.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                names.append(re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0])
    return names


def missing_needs(files: Sequence[Path] = REQUIREMENTS) -> list[str]:
    """The distributions of ``files`` that are not installed."""
    missing = []
    for name in requirement_names(files):
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def install_hint(missing: Sequence[str]) -> str:
    """One line: what is missing and how to install it offline from a folder of wheels."""
    files = " ".join(f"-r {f.relative_to(ROOT)}" for f in REQUIREMENTS)
    return (f"gpu-check needs {', '.join(missing)} (beyond torch/torchvision): "
            f"python -m pip install --no-index --find-links WHEELS {files} "
            "(fill WHEELS with `make wheels` on a machine online; README 'GPU check')")


# --------------------------------------------------------------------------------------------
# the plan


def check_dir(output_root: Path) -> Path:
    """``<output root>/runs/gpu-check``: the summary, the step logs and the notebook run."""
    return output_root / "runs" / "gpu-check"


def bench_file(output_root: Path) -> Path:
    """Where the bench step writes its table: ``make bench``'s place, so that ``run_all.py --plan``
    estimates hours from these GPU rates afterwards."""
    return output_root / "runs" / "bench" / "bench.csv"


def plan(output_root: Path, notebook: str = DEFAULT_NOTEBOOK, bench_steps: int = 5) -> list[Step]:
    """The checks, in order (module docstring), writing under ``output_root``."""
    python, out = sys.executable, check_dir(output_root)
    return [
        Step("tests", "CUDA-only tests (repeatability, bf16/channels_last, OOM advice, pinned copies, paper-size training)",
             (python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *GPU_TEST_FILES,
              f"--junitxml={out / 'pytest.xml'}"), 300),
        Step("bench", "python -m osad_lib.bench on CUDA: DevNet and DRA at the demo and paper settings, naive PIL beside",
             (python, "-m", "osad_lib.bench", "--device", "cuda", "--steps", str(bench_steps),
              "--output-dir", str(output_root)), 400),
        Step("notebook", f"demo notebook {notebook} on CUDA through run_all.py",
             (python, "run_all.py", "--profile", "demo", "--only", notebook, "--device", "cuda", "--no-resume",
              "--output-dir", str(out / "notebook")), 600),
    ]


# --------------------------------------------------------------------------------------------
# running


class DeviceMemoryPeak:
    """Polls the device's memory in use (all processes, ``torch.cuda.mem_get_info``) while a step
    runs; ``peak_mb`` is the largest value above the level when polling started."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s, self.peak_mb, self._stop = interval_s, 0.0, threading.Event()
        self._idle = self._used_mb()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def _used_mb() -> float:
        free, total = torch.cuda.mem_get_info()
        return (total - free) / 2**20

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, self._used_mb() - self._idle)

    def __enter__(self) -> DeviceMemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _environment() -> dict[str, str]:
    """The children's environment: this checkout first on PYTHONPATH (works uninstalled)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def run_step(step: Step, log_dir: Path) -> Outcome:
    """Run ``step`` in the checkout, in its own process group (a time-out ends its notebook kernels
    too); its output goes to ``<log_dir>/<name>.log``."""
    log = log_dir / f"{step.name}.log"
    start = time.perf_counter()
    with open(log, "w") as handle, DeviceMemoryPeak() as memory:
        process = subprocess.Popen(step.command, cwd=ROOT, env=_environment(), stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=step.timeout_s)
            status = "ok" if code == 0 else f"failed: exit code {code} (see {log})"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = f"timed out after {step.timeout_s} s (see {log})"
    return Outcome(step.name, status, time.perf_counter() - start, memory.peak_mb, "")


def tests_detail(junit: Path) -> tuple[str, bool]:
    """("N passed, F failed, E errors, S skipped", whether any ran) from pytest's JUnit XML."""
    if not junit.is_file():
        return "no test report written", False
    suite = ElementTree.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    passed = total - failed - errors - skipped
    return f"{passed} passed, {failed} failed, {errors} errors, {skipped} skipped", passed > 0


def device_description() -> dict[str, str]:
    """Device name, memory, capability and the software stack (CUDA entries only with a GPU)."""
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "torch CUDA build": str(torch.version.cuda), "host": platform.node()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update({"device": props.name, "device memory (GiB)": f"{props.total_memory / 2**30:.1f}",
                     "compute capability": f"{props.major}.{props.minor}",
                     "cuDNN": str(torch.backends.cudnn.version()), "GPUs visible": str(torch.cuda.device_count())})
    else:
        info["device"] = "none (no CUDA device visible to torch)"
    return info


# --------------------------------------------------------------------------------------------
# summary

BENCH_COLUMNS = {
    "method": "method", "name": "setting", "backbone": "backbone", "image_size": "px", "batch_size": "batch",
    "model_train": "model only (train)", "pipeline": "data pipeline only", "end_to_end_train": "end to end (train)",
    "naive_end_to_end_train": "naive PIL pipeline (train)", "model_infer": "inference",
    "end_to_end_vs_model": "end-to-end / model", "end_to_end_vs_naive": "end-to-end / naive",
    "peak_memory_mb": "peak memory (MB)",
}


def summary_frame(device: dict[str, str], outcomes: Sequence[Outcome], bench: pd.DataFrame) -> pd.DataFrame:
    """One table: a row per check (``part="check"``) and per benchmark row (``part="bench"``)."""
    checks = pd.DataFrame([{"part": "check", "device": device["device"], "name": o.name, "status": o.status,
                            "seconds": round(o.seconds, 1), "peak_device_memory_mb": round(o.peak_memory_mb),
                            "detail": o.detail} for o in outcomes])
    if bench.empty:
        return checks
    rows = bench[[c for c in BENCH_COLUMNS if c in bench]].assign(part="bench", device=device["device"])
    return pd.concat([checks, rows.rename(columns={"name": "setting"})], ignore_index=True)


def summary_markdown(device: dict[str, str], outcomes: Sequence[Outcome], bench: pd.DataFrame, total_s: float) -> str:
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [f"# GPU check: {device['device']}", "",
             f"{stamp}; " + "; ".join(f"{k} {v}" for k, v in device.items() if k != "device"), "",
             (f"Total {total_s:.0f} s (target: under {TARGET_SECONDS} s on one H100)." if total_s
              else "Nothing was measured."), "",
             "| check | status | time (s) | peak device memory in use (MB) | detail |", "|---|---|---:|---:|---|"]
    lines += [f"| {o.name} | {o.status} | {o.seconds:.1f} | {o.peak_memory_mb:.0f} | {o.detail} |" for o in outcomes]
    if not bench.empty:
        table = bench[[c for c in BENCH_COLUMNS if c in bench]].rename(columns=BENCH_COLUMNS)
        lines += ["", "## Throughput (images/s) and peak memory, `python -m osad_lib.bench --device cuda`", "",
                  table.to_markdown(index=False, floatfmt=".2f"), "",
                  "Targets (README 'Performance'): end-to-end training at >= 0.8x the model-only rate, and >= 3x "
                  "the naive per-sample PIL pipeline."]
    return "\n".join(lines) + "\n"


def write_summary(output: Path, device: dict[str, str], outcomes: Sequence[Outcome], bench: pd.DataFrame,
                  total_s: float) -> tuple[Path, Path]:
    """``summary.md`` and ``summary.csv`` in ``output`` (atomically)."""
    md, csv = output / "summary.md", output / "summary.csv"
    atomic_write_text(md, summary_markdown(device, outcomes, bench, total_s))
    atomic_write_text(csv, summary_frame(device, outcomes, bench).to_csv(index=False))
    return md, csv


# --------------------------------------------------------------------------------------------
# command line


def no_gpu_report(steps: Sequence[Step], output: Path) -> int:
    """The CPU fallback: say that no GPU was found and what would have run; summary marked not run."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    print(f"gpu-check: no CUDA GPU found: torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no CUDA "
          f"device (CUDA_VISIBLE_DEVICES={visible}); nothing was measured.")
    print("On a CUDA machine it would run:")
    for i, step in enumerate(steps, 1):
        print(f"  {i}. {step.name}: {step.description}\n     {step.shell()}")
    missing = missing_needs()
    if missing:
        print(install_hint(missing))
    outcomes = [Outcome(s.name, NOT_RUN_NO_GPU, 0.0, 0.0, s.shell()) for s in steps]
    md, csv = write_summary(output, device_description(), outcomes, pd.DataFrame(), 0.0)
    print(f"summary (every check {NOT_RUN_NO_GPU!r}): {md}, {csv}")
    return EXIT_NO_GPU


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="", help="parent of runs/ (default: OSAD_OUTPUT or the checkout)")
    parser.add_argument("--notebook", default=DEFAULT_NOTEBOOK, help=f"demo notebook to run (default {DEFAULT_NOTEBOOK})")
    parser.add_argument("--bench-steps", type=int, default=5, help="timed steps per benchmark measurement (default 5)")
    args = parser.parse_args(argv)
    output_root = paths.output_root(args.output_dir)
    output = check_dir(output_root)
    output.mkdir(parents=True, exist_ok=True)
    steps = plan(output_root, args.notebook, args.bench_steps)
    if not torch.cuda.is_available():
        return no_gpu_report(steps, output)
    missing = missing_needs()
    if missing:
        print(install_hint(missing), file=sys.stderr)
        return EXIT_MISSING_NEEDS
    device = device_description()
    print(f"gpu-check on {device['device']} ({device['device memory (GiB)']} GiB); logs and summary in {output}")
    start, started_at, outcomes = time.perf_counter(), time.time(), []
    for step in steps:
        print(f"[gpu-check] {step.name}: {step.description}", flush=True)
        outcome = run_step(step, output)
        if step.name == "tests":
            detail, ran = tests_detail(output / "pytest.xml")
            status = outcome.status if ran or outcome.status != "ok" else "failed: every CUDA test was skipped"
            outcome = Outcome(outcome.name, status, outcome.seconds, outcome.peak_memory_mb, detail)
        print(f"[gpu-check] {step.name}: {outcome.status} in {outcome.seconds:.0f} s {outcome.detail}", flush=True)
        outcomes.append(outcome)
    fresh = bench_file(output_root).is_file() and bench_file(output_root).stat().st_mtime >= started_at
    bench = pd.read_csv(bench_file(output_root)) if fresh else pd.DataFrame()  # never an older run's table
    bench = bench[bench["device"] == "cuda"] if not bench.empty else bench
    md, csv = write_summary(output, device, outcomes, bench, time.perf_counter() - start)
    print(md.read_text())
    print(f"summary: {md}, {csv}")
    return 0 if all(o.status == "ok" for o in outcomes) else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
