"""The registry of generators (:data:`GENERATORS`) and :func:`apply_batch`, which runs one on a batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from osad_lib.seeding import torch_generator
from osad_lib.validate import choose
from osad_lib.data.pseudo.draws import Result
from osad_lib.data.pseudo.cutpaste import cutmix_cross_image, cutpaste_mix, cutpaste_same_image, cutpaste_scar
from osad_lib.data.pseudo.draem import draem_perlin
from osad_lib.data.pseudo.bgad import randaug_cutpaste



@dataclass(frozen=True)
class PseudoGenerator:
    """A generator in ``GENERATORS``: its function, a one-line description, the keyword inputs it
    needs, and those that ``apply_batch`` indexes per image."""

    fn: Callable[..., Result]
    description: str
    needs: tuple[str, ...] = ()
    per_image: tuple[str, ...] = ()


GENERATORS: dict[str, PseudoGenerator] = {
    "cutpaste_same_image": PseudoGenerator(
        cutpaste_same_image, "DRA 'CutMix' / AHL 'CutPaste': jittered box pasted within the same image"),
    "cutmix_cross_image": PseudoGenerator(
        cutmix_cross_image, "AHL 'CutMix': jittered box from another normal image", needs=("sources",)),
    "cutpaste_scar": PseudoGenerator(cutpaste_scar, "CutPaste-Scar: thin rotated box of the same image"),
    "cutpaste_mix": PseudoGenerator(cutpaste_mix, "DRA CP-Mix: same-image box or scar, 50/50 per image"),
    "draem_perlin": PseudoGenerator(draem_perlin, "DRAEM: Perlin-shaped region blended with a texture"),
    "randaug_cutpaste": PseudoGenerator(
        randaug_cutpaste, "BGAD: a real defect RandAugmented and pasted into a normal image",
        needs=("anomalies", "anomaly_masks"), per_image=("foreground",)),
}


def apply_batch(name: str, images: torch.Tensor, seed: int | torch.Generator, **params: object) -> Result:
    """Run generator ``name`` on every image of ``images`` [B,3,H,W] -> (images, masks [B,1,H,W]).

    ``seed``: an int (a fresh generator, so the result depends only on it) or a torch Generator.
    ``cutmix_cross_image`` without ``sources`` takes each image's patch from another image of
    the batch; parameters listed in ``per_image`` (e.g. ``foreground`` [B,1,H,W]) are indexed.
    """
    spec = GENERATORS[choose("generator", name, tuple(GENERATORS))]
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (B, 3, H, W), got shape {tuple(images.shape)}")
    cross_batch = name == "cutmix_cross_image" and "sources" not in params
    if cross_batch and images.shape[0] < 2:
        raise ValueError("cutmix_cross_image needs sources= or a batch of at least 2 images")
    missing = [key for key in spec.needs if key not in params and not (cross_batch and key == "sources")]
    if missing:
        raise ValueError(f"generator {name!r} needs {', '.join(missing)}=")
    generator = torch_generator(seed) if isinstance(seed, int) else seed
    outputs, masks = [], []
    for index, image in enumerate(images):
        kwargs = {k: (v[index] if k in spec.per_image and v is not None else v) for k, v in params.items()}
        if cross_batch:
            kwargs["sources"] = torch.cat([images[:index], images[index + 1:]])
        out, mask = spec.fn(image, generator, **kwargs)
        outputs.append(out)
        masks.append(mask)
    return torch.stack(outputs), torch.stack(masks)
