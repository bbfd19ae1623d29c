"""A small, deterministic dataset in the MVTec layout, with pixel masks, for smoke runs and tests.

Three subsets imitate the kinds of MVTec AD categories (``docs/official_code/shared.md``
"Dataset layout on disk"): two textures (``weave``: a woven fabric, ``grain``: wood-like rings) and
one object (``object``: a nut-like ring on a plain background, defects only on the object). Every
subset has the five defect classes of :data:`DEFECT_CLASSES`, each visually distinct, with an exact
pixel mask in ``ground_truth/<class>/<stem>_mask.png`` (pixels outside the mask are never changed).
Results on it are labelled ``dataset="synthetic"``, ``subset=<subset>``.

Every image is drawn from its own seeded generator ``(seed, subset, folder, index)``, so the
data do not depend on generation order; a folder is written once per parameter set into
``cache_dir()/synthetic/<key>/<subset>`` and reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from osad_lib import paths
from osad_lib.data.mvtec import build_folder_once
from osad_lib.validate import ConfigError, choose

SUBSETS = ("weave", "grain", "object")
#: The subset the bare name ``synthetic`` stands for.
DEFAULT_SUBSET = "weave"
DEFECT_CLASSES = ("scratch", "hole", "stain", "crack", "contamination")
#: Bump when the drawing code changes, so cached folders are regenerated.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SyntheticConfig:
    """Size of a generated subset: training normals, test normals, anomalies per class, pixels."""

    n_train: int = 40
    n_test_normal: int = 20
    n_per_class: int = 8
    image_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test_normal", "n_per_class"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"synthetic parameter {name!r}: {getattr(self, name)!r} must be a positive integer")
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise ConfigError(f"synthetic parameter 'image_size': {self.image_size!r} must be an integer >= 32")

    @property
    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------ normal images
def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a ``cells``² random grid upsampled bicubically."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.BICUBIC))


def _weave(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    period = size / rng.uniform(9, 12)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    u, v = (x + rng.uniform(0, period)) / period, (y + rng.uniform(0, period)) / period
    over = (np.floor(u) + np.floor(v)) % 2 == 0
    profile = np.where(over, np.sin(np.pi * (u % 1)), np.sin(np.pi * (v % 1)))
    intensity = 0.35 + 0.5 * np.sqrt(np.clip(profile, 0, 1)) + 0.03 * _smooth_noise(rng, size, 6)
    colour = np.array([0.85, 0.78, 0.62]) * rng.uniform(0.93, 1.07, 3)
    return intensity[..., None] * colour, np.ones((size, size), bool)


def _grain(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(-0.3, 0.3)
    across = x * np.cos(angle) + y * np.sin(angle) + 0.08 * size * _smooth_noise(rng, size, 4)
    rings = np.sin(2 * np.pi * across / (size / rng.uniform(7, 10))) ** 2
    intensity = 0.55 + 0.3 * rings + 0.05 * _smooth_noise(rng, size, 16)
    colour = np.array([0.78, 0.52, 0.28]) * rng.uniform(0.93, 1.07, 3)
    return intensity[..., None] * colour, np.ones((size, size), bool)


def _object(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size / 2 + rng.uniform(-0.04, 0.04, 2) * size
    r = np.hypot(y - cy, x - cx)
    outer, inner = 0.34 * size, 0.13 * size
    ring = (r <= outer) & (r >= inner)
    notch_angle = rng.uniform(0, 2 * np.pi)  # a notch on the rim gives each object an orientation
    notch = np.hypot(y - (cy + outer * np.sin(notch_angle)), x - (cx + outer * np.cos(notch_angle))) < 0.06 * size
    foreground = ring & ~notch
    image = np.full((size, size, 3), 0.86, np.float32) + 0.015 * _smooth_noise(rng, size, 8)[..., None]
    shade = 0.75 + 0.25 * np.cos(np.pi * (r - inner) / (outer - inner) - np.pi / 2)
    colour = np.array([0.32, 0.45, 0.68]) * rng.uniform(0.92, 1.08, 3)
    image[foreground] = shade[foreground, None] * colour
    return image, foreground


_NORMALS = {"weave": _weave, "grain": _grain, "object": _object}


def normal_image(subset: str, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A defect-free image (float [S, S, 3] in [0, 1]) and the region where defects may appear."""
    image, region = _NORMALS[choose("synthetic subset", subset, SUBSETS)](rng, size)
    noise = rng.normal(0, 0.012, image.shape)
    return np.clip(image + noise, 0, 1).astype(np.float32), region


# ------------------------------------------------------------------ defects
def _point_in(region: np.ndarray, rng: np.random.Generator, margin: int) -> tuple[int, int]:
    ys, xs = np.nonzero(region[margin:-margin, margin:-margin])
    k = rng.integers(len(ys))
    return int(xs[k]) + margin, int(ys[k]) + margin


def _draw_scratch(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, x: int, y: int) -> None:
    points, angle = [(x, y)], rng.uniform(0, 2 * np.pi)
    for _ in range(3):
        angle += rng.uniform(-0.4, 0.4)
        step = rng.uniform(0.1, 0.2) * size
        x, y = x + step * np.cos(angle), y + step * np.sin(angle)
        points.append((x, y))
    draw.line(points, fill=1, width=max(1, size // 64))


def _draw_hole(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, x: int, y: int) -> None:
    rx, ry = rng.uniform(0.035, 0.07, 2) * size
    draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=1)


def _draw_stain(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, x: int, y: int) -> None:
    for _ in range(rng.integers(3, 6)):
        dx, dy = rng.normal(0, 0.04, 2) * size
        rx, ry = rng.uniform(0.04, 0.08, 2) * size
        draw.ellipse([x + dx - rx, y + dy - ry, x + dx + rx, y + dy + ry], fill=1)


def _draw_crack(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, x: int, y: int) -> None:
    for branch in range(2):
        px, py, angle = float(x), float(y), rng.uniform(0, 2 * np.pi)
        points = [(px, py)]
        for _ in range(int(rng.uniform(0.15, 0.3) * size / (1 + branch)) // 2):
            angle += rng.uniform(-0.7, 0.7)
            px, py = px + 2 * np.cos(angle), py + 2 * np.sin(angle)
            points.append((px, py))
        draw.line(points, fill=1, width=1 + size // 128)


def _draw_contamination(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, x: int, y: int) -> None:
    for _ in range(rng.integers(5, 12)):
        dx, dy = rng.normal(0, 0.06, 2) * size
        r = rng.uniform(0.008, 0.022) * size + 0.5
        draw.ellipse([x + dx - r, y + dy - r, x + dx + r, y + dy + r], fill=1)


_SHAPES = {
    "scratch": _draw_scratch, "hole": _draw_hole, "stain": _draw_stain,
    "crack": _draw_crack, "contamination": _draw_contamination,
}


def _paint(image: np.ndarray, mask: np.ndarray, defect: str, rng: np.random.Generator) -> np.ndarray:
    """Colour the masked pixels the way ``defect`` looks; pixels outside ``mask`` stay unchanged."""
    out, m = image.copy(), mask.astype(bool)
    mean = image[m].mean(axis=0)
    if defect == "scratch":  # a thin line brighter (or darker) than its surroundings
        out[m] = 0.97 if mean.mean() < 0.55 else 0.08
    elif defect == "hole":  # dark, almost black, with slight variation
        out[m] = rng.uniform(0.02, 0.08)
    elif defect == "stain":  # translucent blot of the complementary colour
        colour = np.clip(1.0 - mean, 0.05, 0.95)
        out[m] = 0.25 * image[m] + 0.75 * colour
    elif defect == "crack":  # thin dark jagged line
        out[m] = 0.12 * image[m]
    else:  # contamination: saturated coloured specks
        out[m] = rng.choice([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.95, 0.85, 0.05]])
    return out


def add_defect(
    image: np.ndarray, defect: str, rng: np.random.Generator, region: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one ``defect`` into a float [S, S, 3] image; return (image, uint8 mask, 1 = defect).

    The defect lies inside ``region`` (default: the whole image) and changes only mask pixels.
    """
    choose("synthetic defect class", defect, DEFECT_CLASSES)
    size = image.shape[0]
    region = np.ones(image.shape[:2], bool) if region is None else region
    for _ in range(20):
        canvas = Image.new("L", (size, size), 0)
        _SHAPES[defect](ImageDraw.Draw(canvas), rng, size, *_point_in(region, rng, max(2, size // 16)))
        mask = (np.asarray(canvas) > 0) & region
        if mask.sum() >= max(4, size * size // 2000):
            return _paint(image, mask, defect, rng), mask.astype(np.uint8)
    raise RuntimeError(f"could not place a {defect} defect inside the region")


def synthetic_sample(
    subset: str, defect: str | None, index: int, config: SyntheticConfig, folder: str = "test"
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Sample ``index`` of one folder: (clean image, image as written, mask or None).

    ``folder`` is ``"train"`` or ``"test"``; ``defect`` None means a normal image. Its seed is
    ``(config.seed, subset, folder/defect, index)``, independent of any other sample.
    """
    role = 0 if folder == "train" else 1 if defect is None else 2 + DEFECT_CLASSES.index(defect)
    rng = np.random.default_rng([config.seed, SUBSETS.index(subset), role, index])
    clean, region = normal_image(subset, rng, config.image_size)
    if defect is None:
        return clean, clean, None
    image, mask = add_defect(clean, defect, rng, region)
    return clean, image, mask


def _save(array: np.ndarray, path: Path) -> None:
    Image.fromarray(np.rint(np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path, compress_level=1)


def write_synthetic(out: Path, subset: str, config: SyntheticConfig) -> dict[str, int]:
    """Write one subset in the MVTec layout into ``out``; return its counts."""
    choose("synthetic subset", subset, SUBSETS)
    folders = [("train", None, config.n_train), ("test", None, config.n_test_normal)]
    folders += [("test", d, config.n_per_class) for d in DEFECT_CLASSES]
    for folder, defect, count in folders:
        image_dir = out / folder / (defect or "good")
        image_dir.mkdir(parents=True, exist_ok=True)
        if defect:
            (out / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            _, image, mask = synthetic_sample(subset, defect, i, config, folder)
            _save(image, image_dir / f"{i:03d}.png")
            if mask is not None:
                Image.fromarray(mask * 255).save(out / "ground_truth" / defect / f"{i:03d}_mask.png")
    return {
        "train_normal": config.n_train, "test_normal": config.n_test_normal,
        "anomalies": config.n_per_class * len(DEFECT_CLASSES), "classes": len(DEFECT_CLASSES),
    }


def synthetic_root(subset: str = DEFAULT_SUBSET, config: SyntheticConfig | None = None) -> Path:
    """The folder of a generated subset, written on first use under ``cache_dir()/synthetic``."""
    config = config or SyntheticConfig()
    subset = choose("synthetic subset", subset, SUBSETS)
    dest = paths.cache_dir() / "synthetic" / config.key / subset
    key = {"subset": subset, **asdict(config), "version": GENERATOR_VERSION}
    return build_folder_once(dest, key, lambda tmp: write_synthetic(tmp, subset, config))
