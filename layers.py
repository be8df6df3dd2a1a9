"""The network's building blocks: small modules with one job each.

Shapes use B for images in the minibatch, V for views per image (2: plain and rotated 45 degrees),
P for parts per image (16 = 4 corners x 2 flips x V), C/H/W for channels, height and width.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from galaxyzoo import decision_tree

NUM_CORNERS = 4


def multi_rot_slice(views, part_size=45, include_flip=True):
    """Cut each view into its four overlapping corner parts, turned so that the view's centre lies in the
    same corner of every part (part k of a view is part 0 of the view rotated by k x 90 degrees
    counter-clockwise); with include_flip, also the parts of each view mirrored along its width.

    views: (B, V, C, S, S) -> (P*B, C, part_size, part_size) with P = 4 * V * (2 if include_flip else 1),
    part-major: all images' part 0, then all images' part 1, ...; parts ordered
    for view: for [regular, flipped]: [top-left, top-right, bottom-right, bottom-left], as in the original solution.
    """
    if views.dim() != 5 or views.shape[-1] != views.shape[-2]:
        raise ValueError(f"expected views of shape (B, V, C, S, S), got {tuple(views.shape)}")
    ps = part_size
    reps = torch.stack([views, views.flip(-1)], dim=2) if include_flip else views.unsqueeze(2)  # (B, V, F, C, S, S)
    corners = [
        reps[..., :ps, :ps],
        reps[..., :ps, -ps:].flip(-1).transpose(-1, -2),
        reps[..., -ps:, -ps:].flip(-1).flip(-2),
        reps[..., -ps:, :ps].flip(-2).transpose(-1, -2),
    ]
    parts = torch.stack(corners, dim=3)  # (B, V, F, 4, C, ps, ps)
    batch = parts.shape[0]
    parts = parts.reshape(batch, -1, *parts.shape[-3:])  # (B, P, C, ps, ps), P ordered (view, flip, corner)
    return parts.transpose(0, 1).reshape(-1, *parts.shape[-3:])


class MultiRotSlice(nn.Module):
    """(B, V, C, S, S) views -> (P*B, C, part_size, part_size) parts; see multi_rot_slice."""

    def __init__(self, part_size=45, include_flip=True):
        super().__init__()
        self.part_size = part_size
        self.include_flip = include_flip

    def num_parts(self, num_views):
        return NUM_CORNERS * num_views * (2 if self.include_flip else 1)

    def forward(self, views):
        return multi_rot_slice(views, self.part_size, self.include_flip)

    def extra_repr(self):
        return f"part_size={self.part_size}, include_flip={self.include_flip}"


class MultiRotMerge(nn.Module):
    """Gather each image's part features back into one row: (P*B, C, H, W) or (P*B, F) -> (B, P*F),
    F = C*H*W flattened in (C, H, W) order, the image's parts concatenated in part order."""

    def __init__(self, num_parts):
        super().__init__()
        self.num_parts = num_parts

    def forward(self, x):
        if x.shape[0] % self.num_parts:
            raise ValueError(f"batch of {x.shape[0]} parts is not a multiple of {self.num_parts} parts per image")
        per_part = x.reshape(self.num_parts, x.shape[0] // self.num_parts, -1)  # (P, B, F)
        return per_part.transpose(0, 1).reshape(per_part.shape[1], -1)

    def extra_repr(self):
        return f"num_parts={self.num_parts}"


class ConvUntiedBias(nn.Module):
    """Valid convolution, stride 1, with one bias per (filter, y, x) of the output map, then ReLU.

    (N, in_channels, H, W) -> (N, out_channels, H - k + 1, W - k + 1); H, W must equal input_size.
    """

    def __init__(self, in_channels, out_channels, kernel_size, input_size, weight_std=0.01, bias_value=0.1):
        super().__init__()
        out_size = input_size - kernel_size + 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) * weight_std)
        self.bias = nn.Parameter(torch.full((out_channels, out_size, out_size), float(bias_value)))

    def forward(self, x):
        return F.relu(F.conv2d(x, self.weight) + self.bias)

    def extra_repr(self):
        out_channels, in_channels, k, _ = self.weight.shape
        return f"{in_channels}, {out_channels}, kernel_size={k}, output_size={self.bias.shape[-1]}"


class Maxout(nn.Module):
    """Maximum over consecutive groups of pool_size features: (B, k*pool_size) -> (B, k)."""

    def __init__(self, pool_size=2):
        super().__init__()
        self.pool_size = pool_size

    def forward(self, x):
        return x.reshape(x.shape[0], -1, self.pool_size).amax(dim=-1)

    def extra_repr(self):
        return f"pool_size={self.pool_size}"


def dense(in_features, out_features, weight_std, bias_value, dropout=0.5):
    """Dropout on the input (inverted: kept units scaled by 1/(1-p) during training), then a linear map
    with N(0, weight_std) weights and constant biases: (B, in_features) -> (B, out_features)."""
    linear = nn.Linear(in_features, out_features)
    with torch.no_grad():
        linear.weight.normal_(0.0, weight_std)
        linear.bias.fill_(bias_value)
    return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else linear


@torch.no_grad()
def reinitialise_standard(model):
    """Re-draw, in place, the weights of every ConvUntiedBias and nn.Linear in `model` with today's usual
    scaling instead of the original's fixed small standard deviations: convolutions He-normal
    (std sqrt(2 / fan_in), biases 0), linear maps PyTorch's default (uniform, bound 1 / sqrt(fan_in)).
    Not the original recipe: a departure for short runs (see train.py's --init)."""
    for module in model.modules():
        if isinstance(module, ConvUntiedBias):
            fan_in = module.weight[0].numel()
            module.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
            module.bias.zero_()
        elif isinstance(module, nn.Linear):
            module.reset_parameters()


@torch.no_grad()
def apply_max_norm(linear, max_norm):
    """Shrink, in place, each output unit's incoming weights whose root-mean-square exceeds max_norm down to
    max_norm (the original's "norm" is this RMS over the inputs). linear.weight: (out, in)."""
    # The mean of squares in float64: a float32 reduction over thousands of inputs is off by up to 1e-4 in some
    # process states on the CPU (its summation order varies), which let a unit end above its limit.
    rms = linear.weight.double().pow(2).mean(dim=1, keepdim=True).sqrt()
    linear.weight.mul_(torch.clamp(max_norm / rms, max=1.0).to(linear.weight.dtype))


class GalaxyOutput(nn.Module):
    """Turn 37 raw outputs into answers that respect the decision tree: (B, 37) -> (B, 37).

    normalise=True: ReLU, each question's answers divided by their sum (+1e-12), then each question
    multiplied by the answer that leads to it. Questions are processed in tree order (every parent
    question comes first), so each factor has already been scaled itself: Q3 ends up scaled by
    A1.2 x A2.2. normalise=False: the raw outputs clipped to [0, 1] (used for the first chunk(s)).
    """

    def __init__(self):
        super().__init__()
        membership = torch.zeros(decision_tree.NUM_OUTPUTS, len(decision_tree.QUESTION_SLICES))
        for q, columns in enumerate(decision_tree.QUESTION_SLICES):
            membership[columns, q] = 1.0
        self.register_buffer("membership", membership, persistent=False)  # (37, 11) column -> question

    def forward(self, z, normalise=True):
        if not normalise:
            return z.clamp(0.0, 1.0)
        positive = F.relu(z)
        sums = positive @ self.membership  # (B, 11)
        answers = positive / (sums @ self.membership.t() + 1e-12)
        columns = list(answers.unbind(dim=1))
        for columns_q, parent in zip(decision_tree.QUESTION_SLICES, decision_tree.PARENT_INDEX):
            if parent is not None:
                for c in range(columns_q.start, columns_q.stop):
                    columns[c] = columns[c] * columns[parent]
        return torch.stack(columns, dim=1)
