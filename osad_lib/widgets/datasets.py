"""The dataset browser (a split's training and test images per class) and the pseudo-anomaly
playground (every generator on the same normal images)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from osad_lib import paths, plots
from osad_lib.data import pseudo
from osad_lib.data.mvtec import anomaly_classes
from osad_lib.data.protocols import SETTINGS
from osad_lib.data.pseudo import GENERATORS
from osad_lib.data.registry import DATASETS, dataset_names, local_folder, subset_info
from osad_lib.experiments.datasets import read_datasets
from osad_lib.widgets.display import ON_RELEASE, CONTROL_STYLE, widget_box, figure_output, Panel



def available_datasets(data_root: str | os.PathLike | None = None) -> list[str]:
    """Registry names whose data are at hand: the synthetic subsets and ELPV (embedded) and every
    dataset found as ``<data_root>/<name>`` (``data_root`` or ``OSAD_DATA``)."""
    names = dataset_names(["synthetic/*", "elpv"])
    root = paths.data_root(data_root)
    if root is not None:
        local = [n for info in DATASETS.values() if not info.embedded for n in info.names]
        names += [n for n in local if local_folder(n, root).is_dir()]
    return names


class _Datasets:
    """(folder, samples) per registry name, read once (embedded data are built on first use)."""

    def __init__(self, data_root: str | os.PathLike | None):
        self.data_root, self.read = data_root, {}

    def __call__(self, name: str) -> tuple[Path, list]:
        if name not in self.read:
            self.read[name] = read_datasets([name], self.data_root)[name]
        return self.read[name]


def _max_shots(samples: list, setting: str, seen_class: str) -> int:
    """The most labelled anomalies a split can take (general: all but one anomaly stays in the
    test set; hard: the seen class's size; :mod:`osad_lib.data.protocols`)."""
    sizes = Counter(s.anomaly_class for s in samples if s.label == 1)
    bound = sizes[seen_class] if setting == "hard" and seen_class in sizes else sum(sizes.values()) - 1
    return max(bound, 1)


def _browser_defaults(name: str, samples: list) -> dict[str, Any]:
    """Default controls of the dataset browser: general setting, training part, shots
    min(10, smallest class), seen class = the paper's first hard-setting class (else the first)."""
    classes = anomaly_classes(samples)
    seen = next((c for c in subset_info(name).hard_seen_classes if c in classes), classes[0])
    smallest = min(Counter(s.anomaly_class for s in samples if s.label == 1).values())
    return {"setting": "general", "seen_class": seen, "n_shots": min(10, smallest), "part": "train", "per_class": 3}


def dataset_browser(data_root: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                    seed: int = 0, image_size: int = 64) -> Any:
    """Browse what a protocol puts into training and test: dataset, setting (general / hard
    with a seen class), n-shot, seed and part → example images per class with masks and
    labels, and images per class (:func:`osad_lib.plots.split_overview`).

    ``names``: registry names to offer (default :func:`available_datasets`; the first is shown).
    Children: controls row (dataset, setting, seen class), row (shots, seed, part, images per
    class), Output.
    """
    import ipywidgets as w

    names = list(names or available_datasets(data_root))
    data = _Datasets(data_root)
    first = _browser_defaults(names[0], data(names[0])[1])
    dataset = w.Dropdown(options=names, value=names[0], description="dataset")
    setting = w.ToggleButtons(options=SETTINGS, value=first["setting"], description="setting",
                              style={**CONTROL_STYLE, "button_width": "70px"})
    seen = w.Dropdown(options=[first["seen_class"]], value=first["seen_class"], description="seen class", style=CONTROL_STYLE)
    shots = w.IntSlider(value=first["n_shots"], min=1, max=max(first["n_shots"], 1), description="n-shot", **ON_RELEASE)
    seed_box = w.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed", layout={"width": "160px"})
    part = w.ToggleButtons(options=plots.SPLIT_PARTS, value=first["part"], description="part",
                           style={**CONTROL_STYLE, "button_width": "60px"})
    per_class = w.IntSlider(value=first["per_class"], min=1, max=6, description="images/class", style=CONTROL_STYLE, **ON_RELEASE)

    def draw() -> list[dict]:
        folder, samples = data(dataset.value)
        return [figure_output(plots.split_overview(
            dataset.value, folder, samples, setting.value, shots.value, seed_box.value, seen.value, part.value,
            per_class.value, image_size))]

    panel = Panel(draw)

    def adjust(change: dict) -> None:
        samples = data(dataset.value)[1]
        with panel.hold():
            if change["owner"] is dataset:
                seen.options = anomaly_classes(samples)
                seen.value = _browser_defaults(dataset.value, samples)["seen_class"]
            seen.disabled = setting.value != "hard" or len(seen.options) < 2
            shots.max = _max_shots(samples, setting.value, seen.value)

    for control in (dataset, setting, seen):
        control.observe(adjust, names="value")
    adjust({"owner": dataset})
    panel.watch(dataset, setting, seen, shots, seed_box, part, per_class)
    panel.redraw()
    return widget_box([(dataset, setting, seen), (shots, seed_box, part, per_class)], panel)


def static_dataset_browser(data_root: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                           seed: int = 0, image_size: int = 64) -> plt.Figure:
    """:func:`dataset_browser`'s figure at its default controls (first dataset of ``names``)."""
    name = list(names or available_datasets(data_root))[0]
    folder, samples = _Datasets(data_root)(name)
    d = _browser_defaults(name, samples)
    return plots.split_overview(name, folder, samples, d["setting"], d["n_shots"], seed, d["seen_class"], d["part"],
                                d["per_class"], image_size)


# --------------------------------------------------------------------------------------------
# pseudo anomalies

#: Playground controls per generator: parameter → (kind, min, max, step) or ("choice", options)
#: or ("bool",). Defaults are the generators' own keyword defaults (:func:`generator_defaults`).
PARAMETER_CONTROLS: dict[str, dict[str, tuple]] = {
    "cutpaste_same_image": {"area_range": ("range", 0.005, 0.5, 0.005), "aspect_ratio": ("float", 0.1, 1.0, 0.05),
                            "jitter": ("float", 0.0, 0.5, 0.05)},
    "cutmix_cross_image": {"area_range": ("range", 0.005, 0.5, 0.005), "aspect_ratio": ("float", 0.1, 1.0, 0.05),
                           "jitter": ("float", 0.0, 0.5, 0.05)},
    "cutpaste_scar": {"width_range": ("range", 1.0, 40.0, 1.0), "length_range": ("range", 4.0, 80.0, 1.0),
                      "max_rotation": ("float", 0.0, 90.0, 5.0)},
    "cutpaste_mix": {"area_range": ("range", 0.005, 0.5, 0.005), "width_range": ("range", 1.0, 40.0, 1.0)},
    "draem_perlin": {"beta_max": ("float", 0.0, 1.0, 0.05), "threshold": ("float", 0.0, 0.9, 0.05),
                     "max_scale_exp": ("int", 0, 6, 1), "augment": ("bool",)},
    "randaug_cutpaste": {"n_ops": ("int", 0, 9, 1), "op_set": ("choice", ("paper", "code")),
                         "random_location": ("bool",), "on_foreground": ("bool",)},
}


def generator_defaults(generator: str) -> dict[str, Any]:
    """Default values of the playground parameters of ``generator``: its keyword defaults
    (``cutpaste_mix`` forwards to ``cutpaste_same_image``/``cutpaste_scar``: theirs), and
    ``on_foreground=False`` (paste anywhere, as the BGAD paper; True: BGAD's code)."""
    spec = pseudo.GENERATORS[generator]
    defaults = {**pseudo.cutpaste_same_image.__kwdefaults__, **pseudo.cutpaste_scar.__kwdefaults__,
                **(spec.fn.__kwdefaults__ or {}), "on_foreground": False}
    return {name: defaults[name] for name in PARAMETER_CONTROLS[generator]}


def _parameter_control(name: str, spec: tuple, value: Any) -> Any:
    import ipywidgets as w

    kind = spec[0]
    if kind == "range":
        return w.FloatRangeSlider(value=tuple(value), min=spec[1], max=spec[2], step=spec[3], description=name, style=CONTROL_STYLE,
                                  **ON_RELEASE)
    if kind == "float":
        return w.FloatSlider(value=value, min=spec[1], max=spec[2], step=spec[3], description=name, style=CONTROL_STYLE, **ON_RELEASE)
    if kind == "int":
        return w.IntSlider(value=value, min=spec[1], max=spec[2], step=spec[3], description=name, style=CONTROL_STYLE, **ON_RELEASE)
    if kind == "choice":
        return w.Dropdown(options=spec[1], value=value, description=name, style=CONTROL_STYLE)
    return w.Checkbox(value=value, description=name, style=CONTROL_STYLE, indent=False)


def _playground_dataset(names: Sequence[str]) -> str:
    """An object dataset with masks if offered (BGAD's generator pastes real defects), else any
    with masks, else the first (as :func:`osad_lib.experiments.datasets.gallery_dataset`)."""
    with_masks = [n for n in names if subset_info(n).has_masks]
    objects = [n for n in with_masks if subset_info(n).kind == "object"]
    return (objects or with_masks or list(names))[0]


def _n_normals(samples: list) -> int:
    return sum(s.split == "train" and s.label == 0 for s in samples)


def pseudo_playground(data_root: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                      seed: int = 0, image_size: int = 96) -> Any:
    """Try every pseudo-anomaly generator (:data:`osad_lib.data.pseudo.GENERATORS`) live:
    dataset, training image, generator, seed and the generator's main parameters (e.g.
    ``area_range`` of CutPaste, ``beta_max``/``threshold`` of DRAEM's Perlin anomalies) →
    original, pseudo anomaly and mask (:func:`osad_lib.plots.pseudo_anomaly_example`).

    Children: row (dataset, generator), row (seed, image), row of the generator's parameters
    (replaced when the generator changes), Output.
    """
    import ipywidgets as w

    names = list(names or available_datasets(data_root))
    data = _Datasets(data_root)
    start = _playground_dataset(names)
    dataset = w.Dropdown(options=names, value=start, description="dataset")
    generator = w.Dropdown(options=list(GENERATORS), value="cutpaste_same_image", description="generator", style=CONTROL_STYLE)
    seed_slider = w.IntSlider(value=seed, min=0, max=max(99, seed), description="seed", **ON_RELEASE)
    image = w.IntSlider(value=0, min=0, max=_n_normals(data(start)[1]) - 1, description="image", **ON_RELEASE)
    parameters = w.HBox([], layout={"flex_flow": "row wrap"})

    def draw() -> list[dict]:
        folder, samples = data(dataset.value)
        values = {c.description: tuple(c.value) if isinstance(c.value, tuple) else c.value for c in parameters.children}
        return [figure_output(plots.pseudo_anomaly_example(
            dataset.value, folder, samples, generator.value, seed_slider.value, image.value, image_size, **values))]

    panel = Panel(draw)

    def use_generator(_: Any = None) -> None:
        specs, defaults = PARAMETER_CONTROLS[generator.value], generator_defaults(generator.value)
        parameters.children = [_parameter_control(n, specs[n], defaults[n]) for n in specs]
        panel.watch(*parameters.children)

    def use_dataset(_: Any) -> None:
        with panel.hold():
            image.max = _n_normals(data(dataset.value)[1]) - 1

    use_generator()
    generator.observe(use_generator, names="value")
    dataset.observe(use_dataset, names="value")
    panel.watch(dataset, generator, seed_slider, image)
    panel.redraw()
    return widget_box([(dataset, generator), (seed_slider, image), parameters], panel)


def static_pseudo_playground(data_root: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                             seed: int = 0, image_size: int = 96) -> plt.Figure:
    """:func:`pseudo_playground`'s figure at its default controls (``cutpaste_same_image``,
    first training image)."""
    name = _playground_dataset(list(names or available_datasets(data_root)))
    folder, samples = _Datasets(data_root)(name)
    return plots.pseudo_anomaly_example(name, folder, samples, "cutpaste_same_image", seed, 0, image_size,
                                        **generator_defaults("cutpaste_same_image"))
