"""osad_lib.viz: how figures are saved."""

import matplotlib.pyplot as plt
import numpy as np

from osad_lib import viz


def test_charts_are_saved_as_png_and_pdf_and_image_figures_as_png_only(tmp_path):
    chart, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    images, (left, right) = plt.subplots(1, 2)
    left.imshow(np.random.default_rng(0).random((32, 32, 3)))
    right.plot([0, 1], [1, 0])  # one panel of images is enough
    assert [p.name for p in viz.savefig(chart, "chart", tmp_path)] == ["chart.png", "chart.pdf"]
    assert [p.name for p in viz.savefig(images, "images", tmp_path)] == ["images.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.pdf", "chart.png", "images.png"]
    assert (tmp_path / "images.png").read_bytes().startswith(b"\x89PNG")
    plt.close(chart)
    plt.close(images)
