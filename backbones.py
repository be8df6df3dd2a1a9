"""ImageNet-style backbones for the newer ensemble members: a backbone is a name and a few arguments.

    model = backbones.create_model("resnet50", dropout=0.1)            # random weights
    record = backbones.load_weights(model, "hub")                      # or a local .safetensors / state-dict file

create_model() builds backbone -> pooled features -> dropout -> linear 37 -> the decision-tree output layer
(layers.GalaxyOutput, as in the 2014 members) or a sigmoid. The ImageNet mean and standard deviation are part of
the model, so it takes views in [0, 1] like every other member: forward(views (B, 1, 3, S, S), normalise=True)
-> (B, 37); S is any size the backbone accepts (224 and 112 for the ResNet, multiples of 14 for DINOv2).

The backbones come from Hugging Face `transformers`, which imports and runs on the CPU build of PyTorch (torchvision,
and timm through it, need the CUDA build to import), and whose hub holds the ImageNet weights of both.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import layers
import load_data

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """hub_name: the weights' repository on the Hugging Face hub; features: the pooled feature width."""
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
    # DINOv2 ViT-B/14 with 4 register tokens (86,583,552 parameters)
    "dinov2_vitb14_reg": Backbone("facebook/dinov2-with-registers-base", 768, "Dinov2WithRegistersModel",
                                  "Dinov2WithRegistersConfig",
                                  dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, patch_size=14,
                                       image_size=518, num_register_tokens=4)),
}


def _transformers_class(name):
    import transformers  # imported on first use: the 2014 members never need it
    return getattr(transformers, name)


class PretrainedNet(nn.Module):
    """forward(views (B, 1, 3, S, S) in [0, 1], normalise=True) -> (B, 37).

    output "tree": linear 37 -> layers.GalaxyOutput (normalise as in the 2014 members); "sigmoid": linear 37 ->
    sigmoid (normalise is ignored)."""

    def __init__(self, name, dropout=0.0, output="tree"):
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
        if output not in ("tree", "sigmoid"):
            raise ValueError(f"output must be 'tree' or 'sigmoid', got {output!r}")
        spec = BACKBONES[name]
        self.name = name
        self.backbone = _transformers_class(spec.model_class)(_transformers_class(spec.config_class)(**spec.config))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(spec.features, 37)
        self.output_kind = output
        self.output = layers.GalaxyOutput()

    def forward(self, views, normalise=True):
        images = (views[:, 0] - self.mean) / self.std
        features = self.backbone(pixel_values=images).pooler_output.flatten(1)
        z = self.head(self.dropout(features))
        if self.output_kind == "sigmoid":
            return torch.sigmoid(z)
        return self.output(z, normalise=normalise)

    def set_dropout(self, p):
        """stages.StagedModel: the dropout before the head."""
        self.dropout.p = p

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
        if self.name == "resnet50":
            early, late = [backbone.embedder, *backbone.encoder.stages[:2]], list(backbone.encoder.stages[2:])
        else:
            half = len(backbone.encoder.layer) // 2
            early = [backbone.embeddings, *backbone.encoder.layer[:half]]
            late = [*backbone.encoder.layer[half:], backbone.layernorm]
        return [[p for module in modules for p in module.parameters()] for modules in (early, late, [self.head])]


def create_model(name, dropout=0.0, output="tree"):
    """A PretrainedNet with random weights (load_weights puts the pretrained ones in)."""
    return PretrainedNet(name, dropout, output)


def _backbone_state(state, backbone):
    """The backbone's entries of a state dict saved from the backbone itself, from a model built around it
    (keys prefixed with the library's base-model prefix, e.g. 'resnet.'), or from a PretrainedNet ('backbone.')."""
    expected = backbone.state_dict().keys()
    for prefix in ("", "backbone.", backbone.base_model_prefix + "."):
        picked = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        if expected <= picked.keys():
            return {key: picked[key] for key in expected}
    missing = sorted(expected - state.keys())
    raise load_data.DataError(f"the weights hold no complete {type(backbone).__name__}: {len(missing)} of its "
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
        raise load_data.DataError(f"{path}: weights file missing")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the readers raise many types for a corrupt file
        raise load_data.DataError(f"{path}: cannot read as safetensors or a state dict ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else 'no details'})") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise load_data.DataError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


def download_weights(model):
    """The ImageNet weights of model's backbone from the Hugging Face hub (cached by the library)."""
    spec = BACKBONES[model.name]
    try:
        pretrained = _transformers_class(spec.model_class).from_pretrained(spec.hub_name)
    except OSError as exc:
        raise load_data.DataError(
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
        raise load_data.DataError(f"{weights}: does not fit the {model.name} backbone: "
                                  f"{str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}") from None
    source = BACKBONES[model.name].hub_name if weights == "hub" else str(Path(weights).resolve())
    return {"source": source, "sha256": fingerprint(state)}
