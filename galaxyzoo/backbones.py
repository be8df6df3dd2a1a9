"""ImageNet-style backbones for the newer ensemble members: a backbone is a name and a few arguments.

    model = backbones.create_model("resnet50", dropout=0.1)            # for pretrained weights (train.py --weights)
    record = backbones.load_weights(model, "hub")                      # or a local .safetensors / state-dict file
    model = backbones.create_model("resnet18", pretrained=False)       # a network trained from random weights

create_model() builds backbone -> head -> the decision-tree output layer (layers.GalaxyOutput, as in the 2014
members) or a sigmoid. Heads: "linear" (pooled features -> dropout -> linear 37) or "fastai" (the head of the 2019
recipe's library: average and max pooling side by side -> batch norm -> dropout p/2 -> linear 512 -> ReLU -> batch
norm -> dropout p -> linear 37; ResNets only). The ImageNet mean and standard deviation are part of the model, so it
takes views in [0, 1] like every other member: forward(views (B, 1, 3, S, S), normalise=True) -> (B, 37); S is any
size the backbone accepts (112 and 224 for the ResNets, multiples of 14 for DINOv2).

The backbones come from Hugging Face `transformers`, which imports and runs on the CPU build of PyTorch (torchvision,
and timm through it, need the CUDA build to import), and whose hub holds the ImageNet weights of both.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import layers
from galaxyzoo import convnet
from galaxyzoo import errors

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FASTAI_HIDDEN = 512  # the 2019 recipe's head: one hidden layer of 512 units


@dataclass(frozen=True)
class Backbone:
    """hub_name: the weights' repository on the Hugging Face hub; features: the width of its last feature map."""
    hub_name: str
    features: int
    model_class: str
    config_class: str
    config: dict


BACKBONES = {
    # ResNet-50 as in torchvision (23,508,032 parameters), ImageNet-1k weights
    "resnet50": Backbone("microsoft/resnet-50", 2048, "ResNetModel", "ResNetConfig",
                         dict(embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3],
                              layer_type="bottleneck")),
    # ResNet-18 as in torchvision (11,176,512 parameters)
    "resnet18": Backbone("microsoft/resnet-18", 512, "ResNetModel", "ResNetConfig",
                         dict(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2],
                              layer_type="basic")),
    # DINOv2 ViT-B/14 with 4 register tokens (86,583,552 parameters)
    "dinov2_vitb14_reg": Backbone("facebook/dinov2-with-registers-base", 768, "Dinov2WithRegistersModel",
                                  "Dinov2WithRegistersConfig",
                                  dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, patch_size=14,
                                       image_size=518, num_register_tokens=4)),
}
HEADS = ("linear", "fastai")
OUTPUTS = ("tree", "sigmoid")


def _transformers_class(name):
    import transformers  # imported on first use: the 2014 members never need it
    return getattr(transformers, name)


class ConcatPool(nn.Module):
    """(B, C, H, W) -> (B, 2C): the maximum over each map, then its mean (the 2019 library's order)."""

    def forward(self, maps):
        return torch.cat([maps.amax(dim=(2, 3)), maps.mean(dim=(2, 3))], dim=1)


class FastaiHead(nn.Module):
    """(B, C, H, W) feature maps -> (B, 37): concat pooling -> BatchNorm1d(2C) -> dropout p/2 -> linear 512 -> ReLU
    -> BatchNorm1d(512) -> dropout p -> linear 37. The linear layers start as the library started them: He-normal
    weights (fan in), zero biases."""

    def __init__(self, channels, dropout):
        super().__init__()
        self.pool = ConcatPool()
        self.norm1, self.drop1 = nn.BatchNorm1d(2 * channels), nn.Dropout(dropout / 2)
        self.hidden = nn.Linear(2 * channels, FASTAI_HIDDEN)
        self.norm2, self.drop2 = nn.BatchNorm1d(FASTAI_HIDDEN), nn.Dropout(dropout)
        self.out = nn.Linear(FASTAI_HIDDEN, 37)
        for linear in (self.hidden, self.out):
            nn.init.kaiming_normal_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, maps):
        hidden = torch.relu(self.hidden(self.drop1(self.norm1(self.pool(maps)))))
        return self.out(self.drop2(self.norm2(hidden)))

    def set_dropout(self, p):
        self.drop1.p, self.drop2.p = p / 2, p


class LinearHead(nn.Module):
    """(B, C, H, W) feature maps, or (B, C) pooled features -> (B, 37): average pooling -> dropout -> linear 37.
    alive_start: the linear layer starts with zero weights and the 2014 output layer's biases (0.1), so that the
    decision-tree layer starts at equal answers to every question, each positive and receiving gradients; else
    PyTorch's default start, under which about half of the answers start at exactly zero, where its ReLU passes no
    gradient."""

    def __init__(self, channels, dropout, alive_start=False):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(channels, 37)
        if alive_start:
            with torch.no_grad():
                self.out.weight.zero_()
                self.out.bias.fill_(convnet.OUTPUT_INIT[1])

    def forward(self, features):
        if features.dim() == 4:
            features = features.mean(dim=(2, 3))
        return self.out(self.dropout(features))

    def set_dropout(self, p):
        self.dropout.p = p


class BackboneNet(nn.Module):
    """forward(views (B, 1, 3, S, S) in [0, 1], normalise=True) -> (B, 37).

    pretrained: the recipe starts from pretrained backbone weights (train.py's --weights puts them in) or, False, from
    random weights. output "tree": head -> layers.GalaxyOutput (normalise as in the 2014 members); "sigmoid": head ->
    sigmoid (normalise is ignored)."""

    def __init__(self, name, dropout=0.0, output="tree", head="linear", pretrained=True):
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
        if output not in OUTPUTS or head not in HEADS:
            raise ValueError(f"output must be one of {OUTPUTS} and head one of {HEADS}, got {output!r}, {head!r}")
        spec = BACKBONES[name]
        self.name, self.pretrained = name, pretrained
        self.backbone = _transformers_class(spec.model_class)(_transformers_class(spec.config_class)(**spec.config))
        if head == "fastai" and not self.is_resnet:
            raise ValueError(f"the fastai head pools a ResNet's feature maps; {name} has none")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.head = (FastaiHead(spec.features, dropout) if head == "fastai"
                     else LinearHead(spec.features, dropout, alive_start=output == "tree"))
        self.output_kind = output
        self.output = layers.GalaxyOutput()
        self.register_load_state_dict_pre_hook(_rename_former_linear_head)

    def forward(self, views, normalise=True):
        images = (views[:, 0] - self.mean) / self.std
        out = self.backbone(pixel_values=images)
        # a ResNet's last feature map, or a transformer's pooled token
        features = out.last_hidden_state if self.is_resnet else out.pooler_output
        z = self.head(features)
        if self.output_kind == "sigmoid":
            return torch.sigmoid(z)
        return self.output(z, normalise=normalise)

    @property
    def is_resnet(self):
        """A ResNet (its output: a last feature map, and stages) rather than a transformer (a pooled token, layers)."""
        return self.backbone.config.model_type == "resnet"

    def set_dropout(self, p):
        """stages.StagedModel: the head's dropout (the fastai head: p/2 before its hidden layer, p after)."""
        self.head.set_dropout(p)

    def check_input(self, views):
        """stages.StagedModel: one square view of any size."""
        if views.num_views != 1:
            raise ValueError(f"a backbone takes one view per image, the recipe's INPUT gives {views.num_views}")

    def load_pretrained(self, weights):
        """Put pretrained backbone weights in (load_weights); returns the record a checkpoint keeps."""
        return load_weights(self, weights)

    def layer_groups(self):
        """stages.StagedModel: the parameters in three lists, earliest first: the first half of
        the backbone's blocks (with its stem), the second half (with its last norm), the head."""
        backbone = self.backbone
        if self.is_resnet:
            early, late = [backbone.embedder, *backbone.encoder.stages[:2]], list(backbone.encoder.stages[2:])
        else:
            half = len(backbone.encoder.layer) // 2
            early = [backbone.embeddings, *backbone.encoder.layer[:half]]
            late = [*backbone.encoder.layer[half:], backbone.layernorm]
        return [[p for module in modules for p in module.parameters()] for modules in (early, late, [self.head])]


def _rename_former_linear_head(module, state, prefix, *args):
    """Checkpoints made before the heads were modules of their own name the linear head's tensors head.weight and
    head.bias; they are head.out's now."""
    if isinstance(module.head, LinearHead):
        for name in ("weight", "bias"):
            if prefix + "head." + name in state:
                state[prefix + "head.out." + name] = state.pop(prefix + "head." + name)


def create_model(name, dropout=0.0, output="tree", head="linear", pretrained=True):
    """A BackboneNet with random weights; for a pretrained recipe, load_weights puts the pretrained ones in."""
    return BackboneNet(name, dropout, output, head, pretrained)


def _backbone_state(state, backbone):
    """The backbone's entries of a state dict saved from the backbone itself, from a model built around it
    (keys prefixed with the library's base-model prefix, e.g. 'resnet.'), or from a BackboneNet ('backbone.')."""
    expected = backbone.state_dict().keys()
    for prefix in ("", "backbone.", backbone.base_model_prefix + "."):
        picked = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        if expected <= picked.keys():
            return {key: picked[key] for key in expected}
    missing = sorted(expected - state.keys())
    raise errors.DataError(f"the weights hold no complete {type(backbone).__name__}: {len(missing)} of its "
                              f"{len(expected)} tensors missing (e.g. {missing[0]})")


def fingerprint(state):
    """sha256 of a state dict's names, shapes, dtypes and values, in name order (16 hex digits)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def read_weights_file(path):
    """A state dict from a .safetensors file or a torch state-dict file; DataError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise errors.DataError(f"{path}: weights file missing")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the readers raise many types for a corrupt file
        raise errors.DataError(f"{path}: cannot read as safetensors or a state dict ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else 'no details'})") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise errors.DataError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


def download_weights(model):
    """The ImageNet weights of model's backbone from the Hugging Face hub (cached by the library)."""
    spec = BACKBONES[model.name]
    try:
        pretrained = _transformers_class(spec.model_class).from_pretrained(spec.hub_name)
    except OSError as exc:
        raise errors.DataError(
            f"could not get the weights of {spec.hub_name} from the Hugging Face hub ({str(exc).splitlines()[0]}). "
            f"Without internet access: on a machine with it, download model.safetensors from "
            f"https://huggingface.co/{spec.hub_name} and pass --weights PATH") from None
    return pretrained.state_dict()


def load_weights(model, weights):
    """Put pretrained weights into model's backbone: weights is "hub" or a file path. Every backbone tensor must
    be found, with its shape. Returns the record a checkpoint keeps: {"source", "sha256"}."""
    state = download_weights(model) if weights == "hub" else read_weights_file(weights)
    state = _backbone_state(state, model.backbone)
    try:
        model.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise errors.DataError(f"{weights}: does not fit the {model.name} backbone: "
                                  f"{str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}") from None
    source = BACKBONES[model.name].hub_name if weights == "hub" else str(Path(weights).resolve())
    return {"source": source, "sha256": fingerprint(state)}
