"""Pseudo-anomaly generators of DRA, AHL and BGAD, on float images in [0, 1].

Every generator has the signature ``fn(image [3,H,W], generator: torch.Generator, **params)
-> (image [3,H,W], mask [1,H,W])``: the mask is float 0/1 and never empty, pixels outside the
mask are unchanged, and all randomness comes from ``generator`` (same seed, same output).
``apply_batch(name, images, seed)`` runs one on a batch; ``GENERATORS`` lists them for
galleries and widgets.

===================  =========================================================================
name                 what it does (source)
===================  =========================================================================
cutpaste_same_image  DRA's code "CutMix": a colour-jittered box of the same image pasted
                     elsewhere (DRA Eq. 4; ``docs/official_code/dra.md`` "Training pipeline");
                     AHL's "CutPaste"
cutmix_cross_image   the same box cut from *another* normal image (AHL's "CutMix",
                     ``docs/official_code/ahl.md`` "Pseudo-anomaly generators for the features")
cutpaste_scar        a thin, long, rotated box of the same image (CutPaste-Scar, Li et al. 2021)
cutpaste_mix         per image one of the two above, p = 1/2 (DRA §4.6: "CutPaste-Mix utilizes
                     both CutMix and CP-Scar")
draem_perlin         thresholded, rotated Perlin noise blended with a texture (DRAEM;
                     ``docs/official_code/ahl.md`` "Pseudo-anomaly generators for the features")
randaug_cutpaste     a real defect, RandAugmented jointly with its mask, pasted into a normal
                     image (BGAD §3.4; ``docs/official_code/bgad.md``
                     "Data and RandAugmented CutPaste")
===================  =========================================================================

Augmentations that the official pipelines apply to the whole image afterwards (DRA/AHL's
RandomRotation(180), DRAEM's rotation of the base image with p = 0.3) are not part of these
generators: they would change pixels outside the mask. Apply them in the data pipeline.

Modules: :mod:`.draws`, :mod:`.cutpaste`, :mod:`.draem`, :mod:`.bgad`, :mod:`.generators`; everything
is re-exported here.
"""

from osad_lib.data.pseudo.draws import MAX_TRIES, check_image, color_jitter, draw_image, draw_int, draw_uniform, Result
from osad_lib.data.pseudo.cutpaste import cutmix_cross_image, cutpaste_mix, cutpaste_same_image, cutpaste_scar
from osad_lib.data.pseudo.draem import (
    augment_texture, draem_perlin, generated_texture, load_textures, perlin_mask, perlin_noise,
)
from osad_lib.data.pseudo.bgad import RANDAUG_OP_SETS, foreground_mask, Op, otsu_threshold, randaug_cutpaste
from osad_lib.data.pseudo.generators import GENERATORS, apply_batch, PseudoGenerator

__all__ = [
    "GENERATORS", "MAX_TRIES", "Op", "PseudoGenerator", "RANDAUG_OP_SETS", "Result", "apply_batch",
    "augment_texture", "check_image", "color_jitter", "cutmix_cross_image", "cutpaste_mix", "cutpaste_same_image",
    "cutpaste_scar", "draem_perlin", "draw_image", "draw_int", "draw_uniform", "foreground_mask",
    "generated_texture", "load_textures", "otsu_threshold", "perlin_mask", "perlin_noise", "randaug_cutpaste",
]
