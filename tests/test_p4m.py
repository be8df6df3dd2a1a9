"""The p4m member (galaxyzoo/p4m.py, try_p4m_gcnn72.py): its 37 outputs are the same for the 8 turned and flipped
copies of a view (and a plain CNN's are not, so the check can fail), its layers are equivariant, it refuses views it
cannot keep the symmetry on, and it trains, predicts over its own transform set and blends through the shared
scripts at tiny size."""
import numpy as np
import pytest
import torch
from torch import nn

import blend_predictions
import layers
import load_data
import predict_augmented_npy
from galaxyzoo import checkpoints
from galaxyzoo import decision_tree
from galaxyzoo import p4m
from galaxyzoo import paths
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import records
from galaxyzoo import train
from helpers import PROJECT_DIR, make_tiny_root, tiny_recipe, try_file_source

TOLERANCE = 1e-5


def invariance_error(model, views):
    """The largest difference between the model's outputs for views (B, 1, 3, S, S) and for each of their 8 turned
    and flipped copies (one forward pass each, in eval mode)."""
    model.eval()
    with torch.no_grad():
        reference = model(views)
        return max((model(p4m.transform(views, g)) - reference).abs().max().item() for g in range(p4m.GROUP_ORDER))


class PlainCNN(nn.Module):
    """The same shape of network with ordinary convolutions: (B, 1, 3, S, S) -> (B, 37)."""

    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), p4m.SpatialPool())
        self.head = nn.Linear(32, 37)
        self.output = layers.GalaxyOutput()

    def forward(self, views):
        return self.output(self.head(self.convs(views[:, 0])))


def random_views(size=32, seed=0, count=3):
    return torch.rand(count, 1, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_the_eight_symmetries_form_the_group_of_the_square():
    pattern = torch.arange(9.0).view(3, 3)
    images = [p4m.transform(pattern, g) for g in range(p4m.GROUP_ORDER)]
    assert len({tuple(image.flatten().tolist()) for image in images}) == 8  # all different
    assert p4m.PRODUCT[1][1] == 2 and p4m.PRODUCT[4][4] == 0 and p4m.INVERSE[1] == 3 and p4m.INVERSE[5] == 5
    for g in range(8):
        for h in range(8):
            assert torch.equal(p4m.transform(p4m.transform(pattern, h), g), images[p4m.PRODUCT[g][h]])


@pytest.mark.parametrize("seed", [0, 1])
def test_outputs_are_the_same_for_the_eight_turned_and_flipped_views(seed):
    torch.manual_seed(seed)
    model = p4m.P4MNet().double()
    views = random_views(size=64, seed=seed)
    assert invariance_error(model, views) < TOLERANCE
    outputs = model(views)
    assert outputs.shape == (3, decision_tree.NUM_OUTPUTS)
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3  # the outputs do depend on the image


def test_outputs_stay_invariant_in_float32_after_training_steps():
    torch.manual_seed(2)
    model = p4m.P4MNet(widths=(4, 8, 8, 8), dense_units=16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    views = random_views(size=32).float()
    for _ in range(3):  # batch norm running statistics and weights away from their start
        model.train()
        loss = (model(views) - 0.3).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert invariance_error(model, views) < TOLERANCE


def test_a_plain_cnn_fails_the_invariance_check():
    torch.manual_seed(0)
    assert invariance_error(PlainCNN().double(), random_views()) > 1e-3


def test_group_layers_are_equivariant():
    """Turning the input by k turns every map by k and moves map g to k^-1 g's place: out(k x)[g] = k out(x)[k^-1 g]."""
    torch.manual_seed(0)
    layer = nn.Sequential(p4m.LiftingConv(3, 4, 5), p4m.GroupConv(4, 5, 3)).double()
    images = random_views(size=16)[:, 0]
    maps = layer(images)
    assert maps.shape == (3, 5, 8, 16, 16)
    for k in range(8):
        expected = torch.stack([p4m.transform(maps[:, :, p4m.PRODUCT[p4m.INVERSE[k]][g]], k) for g in range(8)], dim=2)
        torch.testing.assert_close(layer(p4m.transform(images, k)), expected, rtol=0, atol=1e-10)


def test_views_the_network_cannot_keep_symmetric_are_refused():
    model = p4m.P4MNet()
    model.check_input(ra.input_views((72, 216)))
    with pytest.raises(ValueError, match="multiple of 8"):
        model.check_input(ra.input_views((69, 207)))
    with pytest.raises(ValueError, match="one view"):
        model.check_input(ra.input_views("original"))
    with pytest.raises(ValueError, match="odd"):
        p4m.GroupConv(2, 2, 4)
    with pytest.raises(ValueError, match="even map sizes"):
        p4m.GroupMaxPool()(torch.zeros(1, 1, 8, 5, 5))


def test_staged_model_protocol():
    model = p4m.P4MNet()
    groups = [{id(p) for p in group} for group in model.layer_groups()]
    assert len(groups) == 3 and all(groups) and not (groups[0] & groups[1] or groups[1] & groups[2])
    assert set().union(*groups) == {id(p) for p in model.parameters()}
    assert {id(p) for p in model.head.parameters()} <= groups[-1]
    model.set_dropout(0.25)
    assert model.dropout.p == 0.25


def test_its_transform_set_holds_no_quarter_turn_or_flip():
    matrices = predict_augmented_npy.selected_transforms(transform_set="p4m")
    assert len(matrices) == predict_augmented_npy.TRANSFORM_SETS["p4m"] == 12
    np.testing.assert_allclose(matrices[0], np.eye(3), atol=1e-12)
    linear = matrices[:, :2, :2]
    assert (np.linalg.det(linear) > 0).all()  # no flip
    angles = np.degrees(np.arctan2(linear[:, 1, 0], linear[:, 0, 0])) % 90
    scales = np.sqrt(np.abs(np.linalg.det(linear)))
    # 4 angles x 3 zooms, all different: no two views differ by a quarter turn only
    assert len({(round(a, 6), round(s, 6)) for a, s in zip(angles, scales)}) == 12
    assert predict_augmented_npy.model_transform_set(p4m.P4MNet(), None, 6) == "p4m"
    assert predict_augmented_npy.model_transform_set(nn.Linear(1, 1), None, None) == "original"


P4M_MODEL_SOURCE = '''from galaxyzoo import p4m


def build_model():
    return p4m.P4MNet(widths=(2, 4, 4, 4), dense_units=8)
'''
P4M_SETTINGS = dict(BATCH_SIZE=2, CHUNK_SIZE=4, VALIDATE_EVERY=1, NUM_CHUNKS_NONORM=0, SEED=3, INPUT=(16, 208),
                    OPTIMIZER=dict(name="adamw", weight_decay=1e-2),
                    STAGES=[dict(chunks=1, lr=3e-3, schedule="one_cycle"), dict(chunks=1, lr=1e-3)])


@pytest.mark.slow
def test_the_member_trains_predicts_over_its_own_set_and_blends(isolated, capsys):
    root = make_tiny_root(isolated / "root", num_train=12, num_test=2)
    paths.set_root(root)
    recipe = tiny_recipe(root, try_file_source(P4M_SETTINGS, P4M_MODEL_SOURCE), "try_p4m_tiny")
    train.main(recipe, ["--root", str(root), "--workers", "0"])
    state = checkpoints.load_checkpoint(checkpoints.checkpoint_path("try_p4m_tiny"))
    assert len(state["losses_train"]) == 2 and np.isfinite(state["valid_rmse"])
    script = recipe["__file__"]
    assert predict_augmented_npy.main(["try_p4m_tiny", "--root", str(root), "--num-transforms", "3", "--workers",
                                       "0", "--device", "cpu", "--script", script]) == 0
    assert "3 transforms of the set p4m" in capsys.readouterr().out
    path = paths.augmented_predictions_path("try_p4m_tiny", "valid")
    assert records.read_record(path, "")["inputs"]["transforms"] == {"set": "p4m", "count": 3}
    averaged = records.load_gz(path)
    assert averaged.shape == (len(load_data.labelled_split().valid_ids), decision_tree.NUM_OUTPUTS)
    assert np.isfinite(averaged).all()
    assert blend_predictions.main(["--root", str(root), "--models", "try_p4m_tiny"]) == 0
    assert (paths.predictions_dir() / "blended" / blend_predictions.BLEND_FILES["uniform"]).exists()


def test_the_try_file_declares_a_recipe_its_network_takes():
    recipe = vars(checkpoints.import_try_script("try_p4m_gcnn72", PROJECT_DIR / "try_p4m_gcnn72.py"))
    model = recipe["build_model"]()
    assert isinstance(model, p4m.P4MNet) and recipe["OPTIMIZER"]["name"] == "adamw"
    for stage in recipe["STAGES"]:
        model.check_input(ra.input_views(stage.get("input") or recipe["INPUT"]))
    views = torch.rand(2, 1, 3, *recipe["INPUT"][:1] * 2)
    assert invariance_error(model, views) < TOLERANCE
