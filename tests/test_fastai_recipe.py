"""The 2019 fastai recipe, piece by piece, against expectations worked out by hand from that library's definitions
(../shared/SPEC.md, "Later systems"): its head, one-cycle rates and momenta, decoupled weight decay on every
parameter, freezing that keeps batch norm training, slice(a, b) / slice(b) rates, and the input (the centre 224 square,
squished to 112)."""
import math

import cv2
import numpy as np
import pytest
import torch

from galaxyzoo import backbones
from galaxyzoo import checkpoints
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import stages
from galaxyzoo import train
from helpers import PROJECT_DIR

FASTAI = "try_resnet50_fastai"


@pytest.fixture(scope="module")
def recipe():
    return train.config_of(vars(checkpoints.import_try_script(FASTAI, PROJECT_DIR / f"{FASTAI}.py")))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return backbones.create_model("resnet50", dropout=0.1, head="fastai")


def test_the_head_is_the_library_s_head_with_ps_0_1(model):
    head = model.head
    assert [type(m).__name__ for m in head.children()] == ["ConcatPool", "BatchNorm1d", "Dropout", "Linear",
                                                            "BatchNorm1d", "Dropout", "Linear"]
    assert head.norm1.num_features == 4096 and (head.hidden.in_features, head.hidden.out_features) == (4096, 512)
    assert head.norm2.num_features == 512 and (head.out.in_features, head.out.out_features) == (512, 37)
    assert (head.drop1.p, head.drop2.p) == (0.05, 0.1)  # ps / 2, ps
    model.set_dropout(0.2)
    assert (head.drop1.p, head.drop2.p) == (0.1, 0.2)
    model.set_dropout(0.1)
    # He-normal weights (fan in, gain sqrt 2) and zero biases: std sqrt(2 / 4096) = 0.0221, sqrt(2 / 512) = 0.0625
    assert head.hidden.weight.std().item() == pytest.approx(math.sqrt(2 / 4096), rel=0.01)
    assert head.out.weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.05)
    assert not head.hidden.bias.any() and not head.out.bias.any()


def test_the_head_computes_max_and_mean_pooling_then_the_layers_in_order(model):
    """The same outputs by hand from the backbone's last feature map, in evaluation mode."""
    model.eval()
    views = torch.rand(2, 1, 3, 64, 64)
    head = model.head
    with torch.no_grad():
        maps = model.backbone(pixel_values=(views[:, 0] - model.mean) / model.std).last_hidden_state  # (2, 2048, 2, 2)
        pooled = torch.cat([maps.flatten(2).max(dim=2).values, maps.flatten(2).mean(dim=2)], dim=1)
        normed = (pooled - head.norm1.running_mean) / torch.sqrt(head.norm1.running_var + head.norm1.eps)
        hidden = torch.relu((normed * head.norm1.weight + head.norm1.bias) @ head.hidden.weight.T + head.hidden.bias)
        normed = (hidden - head.norm2.running_mean) / torch.sqrt(head.norm2.running_var + head.norm2.eps)
        z = (normed * head.norm2.weight + head.norm2.bias) @ head.out.weight.T + head.out.bias
        torch.testing.assert_close(model(views), model.output(z))
    model.train()


def test_one_cycle_rates_and_momenta_at_the_library_s_steps():
    """10 steps: int(0.3 * 10) = 3 rise, from lr / 25 by cos annealing; step 3 is the peak; 6 more fall towards
    lr / 250,000. Momentum goes 0.95 -> 0.85 -> 0.95 against the rate.
    anneal(a, b, f) = b + (a - b)(1 + cos(pi f)) / 2."""
    stage = stages.Stage(chunks=1, lr=1.0, schedule="one_cycle")
    lrs = [stages.lr_factor(stage, step, 10) for step in range(10)]
    moms = [stages.momentum_at(stage, step, 10) for step in range(10)]
    # step 1: f = 1/3, cos = 0.5: 1 + (0.04 - 1) * 0.75 = 0.28; momentum 0.85 + 0.1 * 0.75 = 0.925
    # step 2: f = 2/3, cos = -0.5: 1 - 0.96 * 0.25 = 0.76; momentum 0.85 + 0.1 * 0.25 = 0.875
    # step 6: f = 3/7 of the fall: end + (1 - end)(1 + cos(3 pi / 7)) / 2, cos(3 pi / 7) = 0.2225209340
    end = 1 / 250_000
    assert lrs[:4] == pytest.approx([0.04, 0.28, 0.76, 1.0])
    assert moms[:4] == pytest.approx([0.95, 0.925, 0.875, 0.85])
    assert lrs[6] == pytest.approx(end + (1 - end) * (1 + 0.2225209340) / 2)
    assert moms[6] == pytest.approx(0.95 + (0.85 - 0.95) * (1 + 0.2225209340) / 2)
    assert lrs[9] == pytest.approx(end + (1 - end) * (1 + math.cos(6 * math.pi / 7)) / 2)  # 6/7 of the fall
    assert stages.momentum_at(stages.Stage(chunks=1, lr=1.0, schedule="cosine"), 3, 10) is None


def test_adam_betas_and_decoupled_weight_decay_on_every_parameter(recipe, model):
    """With no gradient, one AdamW step only decays: every parameter, batch norm included, becomes p (1 - lr wd)."""
    assert recipe["OPTIMIZER"] == dict(name="adamw", betas=(0.9, 0.99), weight_decay=1e-4)
    stage = stages.Stage(chunks=1, lr=0.5, schedule="one_cycle")
    stages.enter(model, stage)
    optimizer = stages.make_optimizer(model, stage, recipe["OPTIMIZER"])
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(model.parameters()))
    stages.set_lr(optimizer, 1.0, stages.momentum_at(stage, 0, 10))
    assert optimizer.param_groups[0]["betas"] == (0.95, 0.99)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] * (1 - 0.5 * 1e-4), msg=name)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(before[name])
        model.zero_grad(set_to_none=True)


def test_a_head_stage_freezes_the_backbone_but_its_batch_norm_layers():
    torch.manual_seed(0)
    model = backbones.create_model("resnet18", dropout=0.1, head="fastai")
    stage = stages.Stage(chunks=1, lr=1e-3, train="head")
    stages.enter(model, stage)
    *body, _ = model.layer_groups()
    norms = stages.batch_norm_parameters(model)
    assert norms and all(p.requires_grad == (id(p) in norms) for group in body for p in group)
    conv = model.backbone.embedder.embedder.convolution.weight
    norm = model.backbone.embedder.embedder.normalization
    before = conv.detach().clone(), norm.weight.detach().clone(), norm.running_mean.clone()
    optimizer = stages.make_optimizer(model, stage, dict(name="adamw", weight_decay=1e-4))
    model.train()
    loss = model(torch.rand(4, 1, 3, 64, 64)).square().mean()
    loss.backward()
    optimizer.step()
    assert torch.equal(conv.detach(), before[0])  # frozen
    assert not torch.equal(norm.weight.detach(), before[1])  # its scale trains
    assert not torch.equal(norm.running_mean, before[2])  # and its statistics follow this task's images
    stages.enter(model, stages.Stage(chunks=1, lr=1e-3))
    assert all(p.requires_grad for p in model.parameters())


def test_slice_rates_over_the_three_layer_groups():
    """slice(a, b): a, a (b/a)^(1/2), b; slice(b): b / 10, b / 10, b (the library's lr_range)."""
    model = backbones.create_model("resnet18", head="fastai")
    spread, tenth = stages.parse([dict(chunks=1, lr=slice(1e-6, 5e-6)), dict(chunks=1, lr=slice(1e-4))], (112, 224))
    assert (spread.lr, tenth.lr) == ((1e-6, 5e-6), (None, 1e-4))
    assert [peak for _, peak in stages.peak_rates(model, spread)] == pytest.approx([1e-6, 2.2360680e-6, 5e-6])
    assert [peak for _, peak in stages.peak_rates(model, tenth)] == pytest.approx([1e-5, 1e-5, 1e-4])
    one = stages.parse([dict(chunks=1, lr=1e-4)], (112, 224))[0]
    assert [peak for _, peak in stages.peak_rates(model, one)] == [1e-4]  # a number: one rate for all
    for bad in (slice(1e-6, 5e-6, 2), slice(None, None), slice(-1.0, 1e-3)):
        with pytest.raises(ValueError, match="STAGES"):
            stages.parse([dict(chunks=1, lr=bad)], (112, 224))


def test_the_recipe_s_stages_and_input(recipe):
    parsed = [stages.Stage(**stage) for stage in recipe["STAGES"]]
    assert [stage.chunks for stage in parsed] == [2, 10, 2, 6, 6, 6, 8, 6]
    assert [stage.lr for stage in parsed] == [5e-2, 1e-4, 1e-2, 1e-4, 1e-4, 1e-4, 2e-5, (1e-6, 5e-6)]
    assert [stage.train for stage in parsed] == ["head", "all", "head"] + ["all"] * 5
    assert [stage.input for stage in parsed] == [(112, 224)] * 2 + [(224, 224)] * 6
    assert {stage.schedule for stage in parsed} == {"one_cycle"} and recipe["BATCH_SIZE"] == 64
    assert recipe["AUGMENTATION"] == dict(zoom_range=(1.0, 1.05), rotation_range=(0, 360), translation_range=(0, 0),
                                          do_flip=True)


def test_the_input_is_the_centre_224_square_squished_to_112():
    """At 112 px each view pixel is the mean of a 2x2 block of image[100:324, 100:324] (bilinear sampling halfway
    between pixel centres); at 224 px the crop itself."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (424, 424, 3), dtype=np.uint8)
    crop = image[100:324, 100:324].astype(np.float64)
    small = ra.warp_uint8(image, ra.view_matrices(np.eye(3), views=ra.input_views((112, 224))), 112)[0]
    block_means = crop.reshape(112, 2, 112, 2, 3).mean(axis=(1, 3)).transpose(2, 0, 1)
    assert np.abs(small - block_means).max() <= 1.0  # uint8 rounding
    full = ra.warp_uint8(image, ra.view_matrices(np.eye(3), views=ra.input_views((224, 224))), 224)[0]
    np.testing.assert_array_equal(full, crop.transpose(2, 0, 1))


def test_turns_never_reach_the_border_that_reflection_pads():
    """Rotations pad by reflection (the warp's border mode), but the centre 224 square turned by any angle and
    zoomed by at most 1.05 stays inside the 424 image: its corner is 112 sqrt 2 = 158.4 px from the centre < 212."""
    assert ra.CV2_BORDER == cv2.BORDER_REFLECT_101
    views = ra.input_views((224, 224))
    for angle in np.arange(0, 360, 5):
        for zoom in (1.0, 1.05):
            matrix = ra.view_matrices(ra.augmentation_transform(zoom=zoom, rotation=angle), views=views)[0]
            corners = matrix @ np.array([[0, 0, 1], [223, 0, 1], [0, 223, 1], [223, 223, 1]], dtype=float).T
            assert (corners[:2] >= 0).all() and (corners[:2] <= 423).all(), (angle, zoom)
