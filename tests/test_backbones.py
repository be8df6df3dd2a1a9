"""backbones.py: the models' sizes and outputs, and pretrained weights read from files (no test needs the network)."""
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from galaxyzoo import backbones
from galaxyzoo import decision_tree
from galaxyzoo import errors


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return backbones.create_model("resnet50", dropout=0.1).eval()


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_backbone_sizes_are_the_published_ones(resnet):
    assert count(resnet.backbone) == 23_508_032  # torchvision's 25,557,032 less the 2,049,000 of its classifier
    assert count(backbones.create_model("resnet18", pretrained=False).backbone) == 11_176_512  # 11,689,512 - 513,000
    assert count(backbones.create_model("dinov2_vitb14_reg").backbone) == 86_583_552


@pytest.mark.parametrize("size", [112, 224])
def test_tree_outputs_at_both_input_sizes(resnet, size):
    views = torch.rand(2, 1, 3, size, size)
    with torch.no_grad():
        outputs = resnet(views)
    assert outputs.shape == (2, 37)
    violations = decision_tree.tree_violations(outputs.double().numpy(), tol=1e-4)
    assert not np.any(violations), violations


def test_normalisation_is_part_of_the_model(resnet):
    """The model sees (x - ImageNet mean) / std: the same as the backbone fed the normalised image by hand."""
    views = torch.rand(1, 1, 3, 112, 112)
    mean, std = torch.tensor(backbones.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(backbones.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        by_hand = resnet.backbone(pixel_values=(views[:, 0] - mean) / std).pooler_output.flatten(1)
        raw = resnet.head(by_hand)
        torch.testing.assert_close(resnet(views), resnet.output(raw))


def test_sigmoid_head():
    model = backbones.create_model("resnet50", output="sigmoid").eval()
    views = torch.rand(1, 1, 3, 112, 112)
    with torch.no_grad():
        outputs = model(views)
        features = model.backbone(pixel_values=(views[:, 0] - model.mean) / model.std).pooler_output.flatten(1)
        torch.testing.assert_close(outputs, torch.sigmoid(model.head(features)))
    assert ((outputs >= 0) & (outputs <= 1)).all()


@pytest.mark.parametrize("layout", ["backbone.safetensors", "prefixed.safetensors", "model.pt"])
def test_weights_file_round_trip(resnet, tmp_path, layout):
    """A randomly initialised backbone saved the ways weights come (the backbone alone, inside a model that
    prefixes its keys as the hub's classification models do, a whole BackboneNet's state dict) loads back
    equal, and the record names the file and the weights' fingerprint."""
    state = {key: value.clone() for key, value in resnet.backbone.state_dict().items()}
    path = tmp_path / layout
    if layout == "backbone.safetensors":
        save_file(state, str(path))
    elif layout == "prefixed.safetensors":
        save_file({**{f"resnet.{k}": v for k, v in state.items()}, "classifier.1.weight": torch.zeros(1000, 2048)},
                  str(path))
    else:
        torch.save(resnet.state_dict(), path)
    torch.manual_seed(1)
    fresh = backbones.create_model("resnet50")
    assert not torch.equal(fresh.backbone.embedder.embedder.convolution.weight,
                           resnet.backbone.embedder.embedder.convolution.weight)
    record = backbones.load_weights(fresh, path)
    for key, value in fresh.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert record == {"source": str(path.resolve()), "sha256": backbones.fingerprint(state)}
    assert record["sha256"] != backbones.fingerprint(backbones.create_model("resnet50").backbone.state_dict())


def test_bad_weights_are_refused(resnet, tmp_path):
    incomplete = tmp_path / "incomplete.safetensors"
    state = dict(resnet.backbone.state_dict())
    state.pop(next(iter(state)))
    save_file(state, str(incomplete))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(1000))
    reshaped = tmp_path / "reshaped.safetensors"
    save_file({k: torch.zeros(v.numel() + 1) if k.endswith("convolution.weight") else v
               for k, v in resnet.backbone.state_dict().items()}, str(reshaped))
    for path, message in ((incomplete, "tensors missing"), (garbage, "cannot read"), (tmp_path / "none.pt", "missing"),
                          (reshaped, "does not fit")):
        with pytest.raises(errors.DataError, match=message):
            backbones.load_weights(backbones.create_model("resnet50"), path)


def test_hub_offline_says_what_to_do(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(errors.DataError, match="download model.safetensors .* --weights PATH"):
        backbones.load_weights(backbones.create_model("resnet50"), "hub")
