"""Convert the benchmark datasets from their original downloads into the MVTec layout.

    python -m osad_lib.data.prepare NAME SOURCE_DIR DATA_ROOT [--seed 42] [--force] [--dedupe]

``NAME`` is one of :data:`CONVERTERS` (mvtecad, aitex, sdd, elpv, optical, mastcam, brainmri,
headct, hyperkvasir, btad); ``SOURCE_DIR`` is the folder the dataset's home-page download was
unpacked into; the result goes to ``DATA_ROOT/<registry name>`` (``aitex``, ``mvtecad/carpet``,
``btad/01``, … — the folders :func:`osad_lib.data.registry.resolve` reads), in the MVTec layout
(``docs/official_code/shared.md`` "Dataset layout on disk")::

    train/good/*.png   test/good/*.png   test/<class>/*.png   ground_truth/<class>/<stem>_mask.png

The conversion rules are those of the official DRA/DevNet/AHL ``convert_*.py`` scripts
(``docs/official_code/shared.md`` "Conversion scripts"; BTAD: ``docs/official_code/bgad.md``
"Data and RandAugmented CutPaste") with the quirks of the real files (``docs/datasets.md``
"Quirks of the real files"), except that every listing is **sorted** and the 3:1 normal
split is :func:`~osad_lib.data.protocols.seeded_normal_split` (seed 42 by default), so a
conversion is reproducible on any filesystem:

* images are decoded with :func:`~osad_lib.data.images.load_rgb` (any mode: L, LA, P, RGBA,
  16-bit, .npy) and written as PNG — 8-bit grey when the three channels are equal, RGB otherwise;
  masks are binary 0/255 grey PNG named ``<stem>_mask.png``. Output names are the source stems
  (whitespace → ``_``); a name that would clash gets a ``_2``, ``_3`` … suffix;
* **mvtecad** is used as is: each category is validated with
  :func:`~osad_lib.data.mvtec.read_mvtec_layout` and its files are hard-linked (copied when the
  source is on another filesystem), so the output costs no disk space and keeps MVTec's names;
* **elpv** reuses :func:`osad_lib.data.elpv.convert_elpv` (files copied byte for byte).

Each output folder is built in a temporary sibling folder and renamed into place
(:func:`~osad_lib.data.mvtec.build_folder_once`), together with a manifest ``osad_layout.json``
(:data:`MANIFEST`: dataset, source, seed, counts per folder, conversion notes and the SHA-1 of
every file). Running the command again on an existing output **verifies** it against its
manifest instead of converting again, and reports missing, changed or unexpected files
(``--force`` rebuilds).

**Exact duplicates.** Some downloads hold identical images under two names (BrainMRI: two
images end up in both train and test, twenty pairs within one split; HeadCT one pair). The
papers used these files, so their counts include every copy, and so do ours by default; the
manifest records each group of identical images (``duplicates``: same decoded pixels,
:func:`duplicate_groups`), which :mod:`osad_lib.data.check` reports as a warning and the split
manifests count (:class:`osad_lib.data.protocols.Split`). ``--dedupe`` drops all but the first
image of each group by sorted path (a group with two labels is left for the check to report)
and records the dropped files (``dropped``); it is part of the manifest's key.

Modules: :mod:`.layout`, :mod:`.converters`, :mod:`.sources`, :mod:`.duplicates`,
:mod:`.manifest` (with the command); everything is re-exported here.
"""

from osad_lib.data.prepare.layout import (
    AITEX_DEFECT_CODES, CONVERTER_VERSION, DEFAULT_SEED, MANIFEST, images_in, LayoutWriter, link_or_copy, save_mask,
    save_png, split_pooled_normals, subfolders, tree_files, with_progress,
)
from osad_lib.data.prepare.converters import (
    aitex_class, convert_aitex, convert_brainmri, convert_btad, convert_elpv_download, convert_headct,
    convert_hyperkvasir, convert_mastcam, convert_mvtec_category, convert_optical, convert_sdd, optical_classes,
    read_dagm_labels, read_headct_labels, segment_spans, tile_spans,
)
from osad_lib.data.prepare.sources import CONVERTERS, Converter, source_folder, writable_root
from osad_lib.data.prepare.duplicates import drop_duplicates, duplicate_groups
from osad_lib.data.prepare.manifest import folder_counts, hash_files, main, prepare, PrepareReport, verify_manifest

__all__ = [
    "AITEX_DEFECT_CODES", "CONVERTERS", "CONVERTER_VERSION", "Converter", "DEFAULT_SEED", "LayoutWriter",
    "MANIFEST", "PrepareReport", "aitex_class", "convert_aitex", "convert_brainmri", "convert_btad",
    "convert_elpv_download", "convert_headct", "convert_hyperkvasir", "convert_mastcam", "convert_mvtec_category",
    "convert_optical", "convert_sdd", "drop_duplicates", "duplicate_groups", "folder_counts", "hash_files",
    "images_in", "link_or_copy", "main", "optical_classes", "prepare", "read_dagm_labels", "read_headct_labels",
    "save_mask", "save_png", "segment_spans", "source_folder", "split_pooled_normals", "subfolders", "tile_spans",
    "tree_files", "verify_manifest", "with_progress", "writable_root",
]
