"""Group convolutions over p4m: a network whose 37 outputs are exactly invariant to the 8 symmetries of the square
(rotations by multiples of 90 degrees, each with or without a mirror flip) of its input view.

A galaxy has no preferred orientation, which the 2014 members learn from rotated copies (and their views). Here the
symmetry is built in instead: every feature map exists once per group element g (a group axis of 8), and turning
or flipping the input turns or flips every map and permutes the group axis; pooling over the group axis and over
space then leaves features that the 8 symmetries do not change at all.

    model = P4MNet()                      # forward(views (B, 1, 3, S, S) in [0, 1]) -> (B, 37), S a multiple of 8

Group element g = 4 * m + r: flip the last (width) axis when m = 1, then turn by r quarter turns (torch.rot90 over
the last two axes). The group's multiplication comes from applying the transforms to a test pattern.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

import layers

GROUP_ORDER = 8


def transform(x, g):
    """Element g of the group applied to the last two (square) axes of x: flip the width axis when g >= 4, then
    g % 4 quarter turns. Same shape out."""
    if g >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, g % 4, dims=(-2, -1))


def _multiplication_table():
    """table[g][h]: the element whose transform is transform(g) after transform(h), found on a 3x3 pattern whose
    8 images are all different."""
    pattern = torch.arange(9.0).view(3, 3)
    images = [transform(pattern, g) for g in range(GROUP_ORDER)]
    return [[next(k for k, image in enumerate(images) if torch.equal(image, transform(transform(pattern, h), g)))
             for h in range(GROUP_ORDER)] for g in range(GROUP_ORDER)]


PRODUCT = _multiplication_table()
INVERSE = [next(h for h in range(GROUP_ORDER) if PRODUCT[g][h] == 0) for g in range(GROUP_ORDER)]


def _he_normal(*shape, fan_in):
    return nn.Parameter(torch.randn(*shape) * math.sqrt(2.0 / fan_in))


class LiftingConv(nn.Module):
    """Image to group feature maps: (B, C, H, W) -> (B, O, 8, H, W), map g the correlation with the filter turned
    and flipped by g ('same' padding, odd kernel), so that transforming the input by k transforms every map by k
    and moves map g to k g."""

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (symmetric padding keeps the symmetry), got {kernel_size}")
        self.weight = _he_normal(out_channels, in_channels, kernel_size, kernel_size,
                                 fan_in=in_channels * kernel_size ** 2)

    def forward(self, x):
        out_channels = self.weight.shape[0]
        filters = torch.stack([transform(self.weight, g) for g in range(GROUP_ORDER)], dim=1)  # (O, 8, C, k, k)
        y = F.conv2d(x, filters.flatten(0, 1), padding=self.weight.shape[-1] // 2)
        return y.view(x.shape[0], out_channels, GROUP_ORDER, *y.shape[-2:])


class GroupConv(nn.Module):
    """Group feature maps to group feature maps: (B, C, 8, H, W) -> (B, O, 8, H, W). Map g sums, over the input
    maps h, their correlation with filter g^-1 h turned and flipped by g ('same' padding, odd kernel)."""

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (symmetric padding keeps the symmetry), got {kernel_size}")
        self.weight = _he_normal(out_channels, in_channels, GROUP_ORDER, kernel_size, kernel_size,
                                 fan_in=in_channels * GROUP_ORDER * kernel_size ** 2)

    def forward(self, x):
        batch, out_channels = x.shape[0], self.weight.shape[0]
        filters = torch.stack([transform(self.weight[:, :, [PRODUCT[INVERSE[g]][h] for h in range(GROUP_ORDER)]], g)
                               for g in range(GROUP_ORDER)], dim=1)  # (O, 8, C, 8, k, k)
        y = F.conv2d(x.flatten(1, 2), filters.flatten(0, 1).flatten(1, 2), padding=self.weight.shape[-1] // 2)
        return y.view(batch, out_channels, GROUP_ORDER, *y.shape[-2:])


class GroupBatchNorm(nn.BatchNorm3d):
    """Batch normalisation with one mean, variance, scale and shift per channel, shared by its 8 maps (so that
    permuting them changes nothing): (B, C, 8, H, W) -> the same shape."""


class GroupMaxPool(nn.Module):
    """2x2 max pooling of every map: (B, C, 8, H, W) -> (B, C, 8, H/2, W/2); H and W must be even (an odd size
    would drop a last row that a turned input drops elsewhere)."""

    def forward(self, x):
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"GroupMaxPool needs even map sizes, got {tuple(x.shape[-2:])}")
        return F.max_pool2d(x.flatten(1, 2), 2).view(*x.shape[:3], x.shape[-2] // 2, x.shape[-1] // 2)


class GroupPool(nn.Module):
    """Max over the group axis: (B, C, 8, H, W) -> (B, C, H, W), maps that the symmetries only turn and flip."""

    def forward(self, x):
        return x.amax(dim=2)


class SpatialPool(nn.Module):
    """Mean and max over space, side by side: (B, C, H, W) -> (B, 2C), unchanged by any turn or flip of the maps."""

    def forward(self, x):
        return torch.cat([x.mean(dim=(-2, -1)), x.amax(dim=(-2, -1))], dim=1)


def group_block(in_channels, out_channels, kernel_size, lifting=False, pool=True):
    """Convolution (lifting or group), batch norm, ReLU and, when pool, 2x2 max pooling:
    (B, C, [8,] H, W) -> (B, O, 8, H', W')."""
    conv = (LiftingConv if lifting else GroupConv)(in_channels, out_channels, kernel_size)
    return nn.Sequential(conv, GroupBatchNorm(out_channels), nn.ReLU(), *([GroupMaxPool()] if pool else []))


class P4MNet(nn.Module):
    """forward(views (B, 1, 3, S, S) in [0, 1], normalise=True) -> (B, 37), the same for the 8 turned and flipped
    copies of the view. Four blocks (lifting, then group convolutions; 2x2 pooling after the first three, so S must
    be a multiple of 8), max over the group axis, mean and max over space, then a dense layer with dropout and the
    decision-tree output layer (layers.GalaxyOutput). widths: channels per block (each channel is 8 maps)."""

    # Test-time averaging over quarter turns or flips would repeat the same outputs: predict_augmented_npy.py's set
    # for this network turns by angles in between and zooms instead.
    test_transform_set = "p4m"

    def __init__(self, widths=(8, 16, 32, 32), kernel_sizes=(5, 3, 3, 3), dense_units=256, dropout=0.5):
        super().__init__()
        channels = (3, *widths)
        self.blocks = nn.ModuleList([
            group_block(channels[i], channels[i + 1], kernel_sizes[i], lifting=i == 0, pool=i < len(widths) - 1)
            for i in range(len(widths))])
        self.num_pools = len(widths) - 1
        self.pool = nn.Sequential(GroupPool(), SpatialPool())
        self.dense = nn.Sequential(nn.Linear(2 * widths[-1], dense_units), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dense_units, 37)
        self.output = layers.GalaxyOutput()

    def features(self, images):
        """The invariant features: images (B, 3, S, S) -> (B, 2 * widths[-1])."""
        x = images
        for block in self.blocks:
            x = block(x)
        return self.pool(x)

    def forward(self, views, normalise=True):
        z = self.head(self.dropout(self.dense(self.features(views[:, 0]))))
        return self.output(z, normalise=normalise)

    def set_dropout(self, p):
        """stages.StagedModel: the dropout before the last linear layer."""
        self.dropout.p = p

    def check_input(self, views):
        """stages.StagedModel: one square view whose size halves evenly at every pooling."""
        if views.num_views != 1:
            raise ValueError(f"the p4m network takes one view per image, the recipe's INPUT gives {views.num_views}")
        if views.size % 2 ** self.num_pools:
            raise ValueError(f"the p4m network needs a view size that is a multiple of {2 ** self.num_pools} (its "
                             f"{self.num_pools} poolings must halve even sizes), the recipe's INPUT gives {views.size}")

    def layer_groups(self):
        """stages.StagedModel: the first half of the blocks, the second half, the dense layers (the head)."""
        half = len(self.blocks) // 2
        return [[p for block in blocks for p in block.parameters()]
                for blocks in (self.blocks[:half], self.blocks[half:])] + \
            [[*self.dense.parameters(), *self.head.parameters()]]
