"""The rotation-aware convnet shared by every try_*.py model; each model is a short set of arguments.

    views (B, 2, 3, 69, 69) -> MultiRotSlice -> 16 parts (16B, 3, 45, 45)
    -> 4 convolutions with untied biases and ReLU, 2x2 max-pooling after the 1st, 2nd and 4th
    -> [optional: a dense maxout layer per part, shared by all parts]
    -> MultiRotMerge (B, 16 * features per part)
    -> dense layers (maxout over pairs, or ReLU), each with dropout 0.5 on its input
    -> dropout 0.5 -> dense 37 -> GalaxyOutput (B, 37)
"""
import math

from torch import nn

import decision_tree
import layers

# Initialisation as in the original solution: (weight std, bias value).
CONV_INIT = (0.01, 0.1)
TOP_CONV_INIT = (0.1, 0.1)
PART_DENSE_INIT = (0.01, 0.1)
DENSE_INIT = (0.001, 0.01)
OUTPUT_INIT = (0.01, 0.1)
DROPOUT = 0.5
MAXOUT_POOL = 2


class GalaxyConvNet(nn.Module):
    """forward(views (B, num_views, 3, view_size, view_size), normalise=True) -> (B, 37).

    filter_sizes, num_filters: the four convolutions (the best model: 6/5/3/3 and 32/64/128/128).
    num_dense: dense layers after the merge; dense_units: outputs of each of their linear maps
    (halved by maxout when dense_activation is "maxout", kept with "relu").
    part_dense_units: None, or the linear outputs of a maxout dense layer applied to each part before the merge.
    max_norm: None, or one limit per dense layer after the merge on the root-mean-square of each unit's
    incoming weights, enforced by apply_max_norm() (the training loop calls it every few updates).
    """

    def __init__(self, filter_sizes=(6, 5, 3, 3), num_filters=(32, 64, 128, 128), num_dense=2, dense_units=4096,
                 dense_activation="maxout", part_dense_units=None, max_norm=None,
                 num_views=2, view_size=69, part_size=45, in_channels=3):
        super().__init__()
        if dense_activation not in ("maxout", "relu"):
            raise ValueError(f"dense_activation must be 'maxout' or 'relu', got {dense_activation!r}")
        if max_norm is not None and len(max_norm) != num_dense:
            raise ValueError(f"max_norm needs one limit per dense layer ({num_dense}), got {max_norm}")
        self.num_views, self.view_size = num_views, view_size
        self.max_norm = None if max_norm is None else tuple(max_norm)

        self.slice = layers.MultiRotSlice(part_size, include_flip=True)
        num_parts = self.slice.num_parts(num_views)
        self.convs, channels, size = self._conv_stack(filter_sizes, num_filters, in_channels, part_size)
        features = channels * size * size

        self.part_dense = nn.Identity()
        if part_dense_units is not None:
            self.part_dense = nn.Sequential(nn.Flatten(), layers.dense(features, part_dense_units, *PART_DENSE_INIT, DROPOUT),
                                            layers.Maxout(MAXOUT_POOL))
            features = part_dense_units // MAXOUT_POOL
        self.merge = layers.MultiRotMerge(num_parts)
        features *= num_parts

        dense_stack = []
        for _ in range(num_dense):
            dense_stack.append(layers.dense(features, dense_units, *DENSE_INIT, DROPOUT))
            if dense_activation == "maxout":
                dense_stack.append(layers.Maxout(MAXOUT_POOL))
                features = dense_units // MAXOUT_POOL
            else:
                dense_stack.append(nn.ReLU())
                features = dense_units
        self.dense = nn.Sequential(*dense_stack)
        self.output_dense = layers.dense(features, decision_tree.NUM_OUTPUTS, *OUTPUT_INIT, DROPOUT)
        self.output = layers.GalaxyOutput()

    @staticmethod
    def _conv_stack(filter_sizes, num_filters, in_channels, size):
        """The convolutions with pooling after the 1st, 2nd and last; returns (module, channels, output size)."""
        stack = []
        for i, (k, n) in enumerate(zip(filter_sizes, num_filters)):
            is_top = i == len(filter_sizes) - 1
            stack.append(layers.ConvUntiedBias(in_channels, n, k, size, *(TOP_CONV_INIT if is_top else CONV_INIT)))
            in_channels, size = n, size - k + 1
            if i in (0, 1) or is_top:
                # Partial windows at the border are kept, as with cuda-convnet's pooling.
                stack.append(nn.MaxPool2d(2, ceil_mode=True))
                size = math.ceil(size / 2)
        return nn.Sequential(*stack), in_channels, size

    def dense_linears(self):
        """The nn.Linear of each dense layer after the merge, in order."""
        return [m for m in self.dense.modules() if isinstance(m, nn.Linear)]

    def apply_max_norm(self):
        """Enforce the max-norm limits (no-op without them)."""
        if self.max_norm is not None:
            for linear, limit in zip(self.dense_linears(), self.max_norm):
                layers.apply_max_norm(linear, limit)

    def layer_groups(self):
        """stages.StagedModel: the convolutions (with the dense layer per part), the dense layers, the output layer."""
        early = [*self.convs.parameters(), *self.part_dense.parameters()]
        return [early, list(self.dense.parameters()), list(self.output_dense.parameters())]

    def set_dropout(self, p):
        """stages.StagedModel: the dropout on the input of every dense layer."""
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p

    def check_input(self, views):
        """stages.StagedModel: ValueError unless views (realtime_augmentation.InputViews) are what this network was
        built for (num_views views of view_size pixels)."""
        if (views.num_views, views.size) != (self.num_views, self.view_size):
            raise ValueError(f"the network takes {self.num_views} view(s) of {self.view_size}x{self.view_size} pixels, "
                             f"the recipe's INPUT gives {views.num_views} of {views.size}x{views.size}")

    def forward(self, views, normalise=True):
        parts = self.slice(views)
        features = self.part_dense(self.convs(parts))
        z = self.output_dense(self.dense(self.merge(features)))
        return self.output(z, normalise=normalise)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
