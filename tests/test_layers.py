"""layers.py and convnet.py: part slicing in the original's orientation, merging, maxout, untied biases,
the tree-normalised output layer, max-norm, and the best model's size."""
import math
import numpy as np
import pytest
import torch
from torch import nn

from galaxyzoo import convnet
from galaxyzoo import decision_tree
import layers


def reference_parts(views, part_size):
    """Independent numpy slicing, written from the original solution's definition.

    views (B, V, C, S, S) -> (16B, C, ps, ps): for each view, for [regular, mirrored along the width]:
    the four corners, taken with reversed slices and axis swaps, stacked along the batch axis."""
    ps = part_size
    parts = []
    for v in range(views.shape[1]):
        view = views[:, v]
        for rep in (view, view[:, :, :, ::-1]):
            parts.append(rep[:, :, :ps, :ps])
            parts.append(rep[:, :, :ps, :-ps - 1:-1].transpose(0, 1, 3, 2))
            parts.append(rep[:, :, :-ps - 1:-1, :-ps - 1:-1])
            parts.append(rep[:, :, :-ps - 1:-1, :ps].transpose(0, 1, 3, 2))
    return np.concatenate(parts, axis=0)


def random_views(batch=3, num_views=2, size=69, seed=0):
    return torch.rand(batch, num_views, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_multi_rot_slice_matches_reference():
    views = random_views()
    parts = layers.MultiRotSlice(part_size=45)(views)
    assert parts.shape == (16 * 3, 3, 45, 45)
    np.testing.assert_array_equal(parts.numpy(), reference_parts(views.numpy(), 45))


def test_multi_rot_slice_parts_are_rotations_of_the_first_corner():
    """Part k of a view is the top-left corner of the view turned k x 90 degrees counter-clockwise, so
    each view corner lands at (0, 0) of its part and the view centre in the same place in every part."""
    views = random_views(batch=2, num_views=1)
    parts = layers.MultiRotSlice(part_size=45, include_flip=False)(views).reshape(4, 2, 3, 45, 45)
    for k in range(4):
        turned = torch.rot90(views[:, 0], k, dims=(-2, -1))
        torch.testing.assert_close(parts[k], turned[..., :45, :45], rtol=0, atol=0)
    assert torch.equal(parts[:, :, :, 34, 34], views[:, 0, :, 34, 34].expand(4, -1, -1))


def test_multi_rot_merge_gathers_each_images_parts_in_order():
    num_parts, batch, channels, size = 16, 3, 2, 2
    p_index = torch.arange(num_parts).repeat_interleave(batch)  # part-major, as MultiRotSlice emits
    b_index = torch.arange(batch).repeat(num_parts)
    features = (100 * b_index + p_index).float()[:, None, None, None].expand(-1, channels, size, size)
    features = features + torch.arange(channels * size * size).reshape(1, channels, size, size) / 10
    merged = layers.MultiRotMerge(num_parts)(features)
    per_part = channels * size * size
    assert merged.shape == (batch, num_parts * per_part)
    for b in range(batch):
        for p in range(num_parts):
            torch.testing.assert_close(merged[b, p * per_part:(p + 1) * per_part],
                                       features[p * batch + b].flatten(), rtol=0, atol=0)


def test_multi_rot_merge_rejects_a_batch_that_is_not_whole_images():
    with pytest.raises(ValueError, match="multiple of 16"):
        layers.MultiRotMerge(16)(torch.zeros(20, 4))


def test_slice_then_merge_keeps_each_image_to_itself():
    views = random_views(batch=4)
    parts = layers.MultiRotSlice()(views)
    merged = layers.MultiRotMerge(16)(parts.sum(dim=(1, 2, 3), keepdim=True))  # (4, 16): one number per part
    expected = torch.from_numpy(reference_parts(views.numpy(), 45).sum(axis=(1, 2, 3))).reshape(16, 4).t()
    torch.testing.assert_close(merged, expected)


def test_maxout_takes_the_maximum_of_consecutive_pairs():
    x = torch.tensor([[1.0, -2.0, 3.0, 5.0, -1.0, -4.0]])
    assert torch.equal(layers.Maxout(2)(x), torch.tensor([[1.0, 5.0, -1.0]]))
    assert layers.Maxout(3)(torch.randn(4, 12)).shape == (4, 4)


def test_conv_untied_bias_shapes_and_per_position_bias():
    conv = layers.ConvUntiedBias(3, 32, 6, input_size=45)
    assert conv.weight.shape == (32, 3, 6, 6) and conv.bias.shape == (32, 40, 40)
    assert conv(torch.rand(5, 3, 45, 45)).shape == (5, 32, 40, 40)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.randn(32, 40, 40))
    torch.testing.assert_close(conv(torch.rand(2, 3, 45, 45)), torch.relu(conv.bias).expand(2, -1, -1, -1))


def test_galaxy_output_obeys_the_decision_tree():
    z = torch.randn(500, decision_tree.NUM_OUTPUTS, generator=torch.Generator().manual_seed(1))
    out = layers.GalaxyOutput()(z).numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    # A question whose raw outputs are all <= 0 yields zeros; everywhere else it sums to its parent answer.
    all_silent = np.stack([(z[:, s] <= 0).all(dim=1).numpy() for s in decision_tree.QUESTION_SLICES], axis=1)
    for row, question, actual, expected in decision_tree.tree_violations(out, tol=1e-5):
        assert all_silent[row, question - 1] and actual == 0.0, (row, question, actual, expected)
    positive = layers.GalaxyOutput()(z.abs() + 0.01).numpy()
    assert decision_tree.tree_violations(positive, tol=1e-5) == []


def test_galaxy_output_scales_by_the_already_scaled_parent():
    """Q3 is scaled by A2.2, which itself was scaled by A1.2: with equal raw outputs Q3's answers are
    1/2 x (1/2 x 1/3)."""
    out = layers.GalaxyOutput()(torch.ones(1, decision_tree.NUM_OUTPUTS))[0]
    q3 = decision_tree.QUESTION_SLICES[2]
    torch.testing.assert_close(out[q3], torch.full((2,), 0.5 * 0.5 / 3))


def test_galaxy_output_without_normalisation_clips():
    z = torch.tensor([[-0.5, 0.25, 1.5] + [0.5] * 34])
    out = layers.GalaxyOutput()(z, normalise=False)
    assert torch.equal(out, z.clamp(0, 1))


def test_max_norm_limits_the_rms_of_each_units_weights():
    linear = nn.Linear(50, 6)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(6, 50) * torch.tensor([0.1, 1, 2, 0.1, 3, 0.2])[:, None])
    before = linear.weight.clone()
    layers.apply_max_norm(linear, 0.5)
    rms = linear.weight.pow(2).mean(dim=1).sqrt()
    assert (rms <= 0.5 + 1e-6).all()
    small = before.pow(2).mean(dim=1).sqrt() <= 0.5
    assert torch.equal(linear.weight[small], before[small])
    torch.testing.assert_close(rms[~small], torch.full(((~small).sum(),), 0.5))


def test_model_max_norm_applies_per_dense_layer():
    model = convnet.GalaxyConvNet(num_filters=(4, 4, 4, 4), dense_units=16, max_norm=(0.01, 0.02))
    for linear in model.dense_linears():
        with torch.no_grad():
            linear.weight.mul_(100)
    model.apply_max_norm()
    for linear, limit in zip(model.dense_linears(), (0.01, 0.02)):
        assert linear.weight.pow(2).mean(dim=1).sqrt().max() <= limit * (1 + 1e-5)


def test_best_model_size_output_and_initialisation():
    torch.manual_seed(0)
    model = convnet.GalaxyConvNet()
    assert 42.0e6 <= convnet.count_parameters(model) <= 42.6e6
    model.eval()
    with torch.no_grad():
        out = model(random_views(batch=2))
    assert out.shape == (2, decision_tree.NUM_OUTPUTS)
    assert decision_tree.tree_violations(out.numpy(), tol=1e-5) == []
    first, *_, top = [m for m in model.convs if isinstance(m, layers.ConvUntiedBias)]
    assert abs(first.weight.std().item() - 0.01) < 0.001 and abs(top.weight.std().item() - 0.1) < 0.01
    dense = model.dense_linears()
    assert abs(dense[0].weight.std().item() - 0.001) < 1e-4 and torch.all(dense[0].bias == 0.01)


def test_standard_reinitialisation_rescales_every_layer():
    torch.manual_seed(0)
    model = convnet.GalaxyConvNet()
    layers.reinitialise_standard(model)
    for conv in (m for m in model.convs if isinstance(m, layers.ConvUntiedBias)):
        fan_in = conv.weight[0].numel()
        assert abs(conv.weight.std().item() / math.sqrt(2.0 / fan_in) - 1.0) < 0.05
        assert torch.all(conv.bias == 0.0)
    for linear in model.dense_linears() + [model.output_dense[-1]]:
        bound = 1.0 / math.sqrt(linear.in_features)
        assert linear.weight.abs().max().item() <= bound and linear.weight.std().item() > 0.5 * bound
    with torch.no_grad():
        out = model.eval()(random_views(batch=2))
    assert decision_tree.tree_violations(out.numpy(), tol=1e-5) == []
