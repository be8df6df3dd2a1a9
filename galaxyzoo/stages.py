"""The one schedule system: a recipe's optimiser and its stages, for every member.

A try_*.py file declares

    OPTIMIZER = dict(name="nesterov", momentum=0.9)          # or "adam" / "adamw" with their arguments
    STAGES = [dict(chunks=1800, lr=0.04),                    # the 2014 recipes: chunk-keyed rates
              dict(chunks=500, lr=0.004, restart=False),     # (the momentum carries over the boundary)
              dict(chunks=200, lr=0.0004, restart=False)]

or, for a member trained in stages as the 2019 recipe was,

    OPTIMIZER = dict(name="adamw", weight_decay=1e-4)
    STAGES = [dict(chunks=2, lr=5e-2, train="head", input=(112, 224), dropout=0.1, schedule="one_cycle"),
              dict(chunks=6, lr=(1e-6, 5e-6), schedule="one_cycle"), ...]

Each stage sets, for its chunks (one pass over the training images each when CHUNK_SIZE is "epoch"), which
parameters train, the input, the head's dropout and the learning rate of every minibatch from its schedule. A
stage starts a new optimiser (fresh moments, as each `fit` call of the 2019 recipe's library did) unless it says
restart=False. A stage's lr is one rate for every trained parameter, or, as the 2019 recipe's library wrote it,
slice(low, high): rates spread geometrically from the earliest layer group to the head (discriminative rates), or
slice(high): high / 10 for every group but the head, which gets high. A stage that trains only the head keeps the
batch-norm layers of the frozen groups training (their scale and shift, and their running statistics), as that
library's freeze does. A one-cycle stage also cycles the optimiser's momentum (Adam's beta1) against the rate. The
model side of this is the protocol `StagedModel` below.
"""
import math
from dataclasses import asdict, dataclass, fields
from typing import Protocol

import numpy as np
import torch

SCHEDULES = ("constant", "one_cycle", "cosine")
ONE_CYCLE_WARMUP = 0.3  # share of the steps rising to the peak (fastai 1's fit_one_cycle)
ONE_CYCLE_START_DIVISOR = 25.0  # the cycle starts at lr / 25 ...
ONE_CYCLE_END_DIVISOR = 25.0 * 1e4  # ... and ends at lr / 250,000
ONE_CYCLE_MOMENTUM = (0.95, 0.85)  # momentum (Adam's beta1) falls from the first to the second while the rate rises
BODY_RATE_DIVISOR = 10.0  # slice(high): every group but the head trains at high / 10


class StagedModel(Protocol):
    """What the stages need of a network; the 2014 convnet (convnet.GalaxyConvNet) and the pretrained backbones
    (backbones.BackboneNet) implement it."""

    def layer_groups(self):
        """The trainable parameters in lists, earliest layers first; the last list is the head (what a stage with
        train="head" trains). Optional: without it the network is one group (layer_groups below)."""

    def set_dropout(self, p):
        """Set the dropout rate of the head."""

    def check_input(self, views):
        """ValueError unless the network takes views (realtime_augmentation.InputViews)."""


class NesterovMomentum(torch.optim.Optimizer):
    """SGD with Nesterov momentum in the form of the original solution (no weight decay):
        v <- momentum * v - lr * g
        w <- w + momentum * v - lr * g
    lr: the default of groups that give none. The gradient is taken at the current parameters. (torch.optim.SGD(nesterov=True) stores lr-free
    velocities, which differs from this as soon as the learning rate changes.)"""

    def __init__(self, params, lr=None, momentum=0.9):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                v = state["velocity"]
                v.mul_(momentum).sub_(p.grad, alpha=lr)
                p.add_(v, alpha=momentum).sub_(p.grad, alpha=lr)


OPTIMIZERS = {"nesterov": NesterovMomentum, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@dataclass(frozen=True)
class Stage:
    """chunks: chunks in the stage; lr: peak learning rate, or a pair across layer groups: (low, high) for
    slice(low, high), (None, high) for slice(high) (parse turns the try file's slices into these); schedule: one of
    SCHEDULES; warmup: share of the stage's steps with a linear warm-up (cosine); train: "all" or "head" (the
    other layer groups frozen); input: the stage's INPUT declaration (None: the recipe's); dropout: the head's
    dropout from this stage on (None: as it was); restart: a new optimiser at the stage's start (False: the
    previous stage's optimiser and its state go on, at this stage's rate)."""
    chunks: int
    lr: object
    schedule: str = "constant"
    warmup: float = 0.0
    train: str = "all"
    input: object = None
    dropout: object = None
    restart: bool = True


STAGE_FIELDS = tuple(field.name for field in fields(Stage))


def check_stage(stage):
    """ValueError saying what is wrong with a Stage's values."""
    lr = stage.lr
    rates = lr if isinstance(lr, (list, tuple)) else (lr,)
    if isinstance(lr, (list, tuple)) and len(lr) != 2:
        raise ValueError(f"lr (low, high) needs two rates, got {lr!r}")
    if isinstance(lr, (list, tuple)) and lr[0] is None:
        rates = rates[1:]  # slice(high)
    if not all(isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0 for rate in rates):
        raise ValueError(f"lr must be a positive number, slice(low, high) or slice(high), got {lr!r}")
    if not isinstance(stage.chunks, int) or isinstance(stage.chunks, bool) or stage.chunks < 1:
        raise ValueError(f"chunks must be an integer of at least 1, got {stage.chunks!r}")
    if stage.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {stage.schedule!r}")
    if not (isinstance(stage.warmup, (int, float)) and 0.0 <= stage.warmup < 1.0):
        raise ValueError(f"warmup must be a share in [0, 1), got {stage.warmup!r}")
    if stage.train not in ("all", "head"):
        raise ValueError(f"train must be 'all' or 'head', got {stage.train!r}")
    if stage.dropout is not None and not (isinstance(stage.dropout, (int, float)) and 0.0 <= stage.dropout < 1.0):
        raise ValueError(f"dropout must be None or in [0, 1), got {stage.dropout!r}")
    if not isinstance(stage.restart, bool):
        raise ValueError(f"restart must be True or False, got {stage.restart!r}")


def parse(stages, recipe_input):
    """The recipe's STAGES (a list of dicts) as Stage objects with every input resolved; ValueError naming the stage
    when one is malformed."""
    if not isinstance(stages, (list, tuple)) or not stages:
        raise ValueError(f"must be a non-empty list of dicts, got {stages!r}")
    parsed = []
    for number, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise ValueError(f"STAGES[{number}] must be a dict, got {stage!r}")
        unknown = sorted(set(stage) - set(STAGE_FIELDS))
        if unknown or "chunks" not in stage or "lr" not in stage:
            raise ValueError(f"STAGES[{number}]: needs chunks and lr, may have {', '.join(STAGE_FIELDS)}; got "
                             f"{', '.join(sorted(stage))}")
        lr = stage.get("lr")
        if isinstance(lr, slice):
            if lr.step is not None:
                raise ValueError(f"STAGES[{number}]: lr {lr!r}: a slice of rates takes no step")
            lr = (lr.start, lr.stop)
        stage = Stage(**{**stage, "lr": lr, "input": stage.get("input") or recipe_input})
        try:
            check_stage(stage)
        except ValueError as exc:
            raise ValueError(f"STAGES[{number}]: {exc}") from None
        parsed.append(stage)
    return parsed


def as_config(stages):
    """Stages as plain data, for the checkpoint."""
    return [asdict(stage) for stage in stages]


def scaled(stages, num_chunks):
    """The stages with their boundaries scaled from their sum to num_chunks chunks (each rounded to the nearest
    chunk, as the original scaled its chunk-keyed rates), every stage keeping at least one chunk where num_chunks
    allows it; with fewer chunks than stages, the stages whose scaled span is empty are left out."""
    bounds = first_chunks(stages)
    total = bounds[-1]
    if num_chunks == total:
        return list(stages)
    scaled_bounds = [int(round(bound * num_chunks / total)) for bound in bounds]
    if num_chunks >= len(stages):  # every stage at least one chunk: push boundaries apart from both ends
        for i in range(1, len(stages)):
            scaled_bounds[i] = max(scaled_bounds[i], scaled_bounds[i - 1] + 1)
        for i in range(len(stages) - 1, 0, -1):
            scaled_bounds[i] = min(scaled_bounds[i], scaled_bounds[i + 1] - 1)
    return [Stage(**{**asdict(stage), "chunks": end - start})
            for stage, start, end in zip(stages, scaled_bounds[:-1], scaled_bounds[1:]) if end > start]


def first_chunks(stages):
    """The first chunk of each stage, and the total: [0, c0, c0 + c1, ..., sum]."""
    return [0] + list(np.cumsum([stage.chunks for stage in stages]).tolist())


def stage_at(stages, chunk):
    """Index of the stage that chunk `chunk` belongs to."""
    return int(np.searchsorted(first_chunks(stages)[1:], chunk, side="right"))


def _anneal_cos(start, end, fraction):
    """Cosine from start (fraction 0) to end (fraction 1)."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * fraction))


def _one_cycle_position(step, num_steps):
    """(phase, fraction) of step `step` of num_steps in a one-cycle schedule, placed as fastai 1's OneCycleScheduler
    places it: the first int(0.3 * num_steps) steps rise (phase 0), from fraction 0 at step 0; the step after them
    is the peak, from where the remaining m steps fall (phase 1), the last of them (m - 1) / m of the way down."""
    rising = int(num_steps * ONE_CYCLE_WARMUP)
    if step < rising:
        return 0, step / rising
    return 1, (step - rising) / max(num_steps - rising, 1)


def lr_factor(stage, step, num_steps):
    """The learning rate of step `step` (0-based) of num_steps in the stage, as a multiple of the stage's lr."""
    if stage.schedule == "constant":
        return 1.0
    if stage.schedule == "cosine":
        warmup_steps = stage.warmup * num_steps
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(num_steps - warmup_steps - 1, 1)
        return 0.5 * (1 + math.cos(math.pi * t))
    phase, fraction = _one_cycle_position(step, num_steps)
    if phase == 0:
        return _anneal_cos(1 / ONE_CYCLE_START_DIVISOR, 1.0, fraction)
    return _anneal_cos(1.0, 1 / ONE_CYCLE_END_DIVISOR, fraction)


def momentum_at(stage, step, num_steps):
    """The optimiser's momentum (Adam's beta1) at step `step` of a one-cycle stage, which cycles it against the rate
    (ONE_CYCLE_MOMENTUM there and back); None for the other schedules, which leave it as the optimiser has it."""
    if stage.schedule != "one_cycle":
        return None
    high, low = ONE_CYCLE_MOMENTUM
    phase, fraction = _one_cycle_position(step, num_steps)
    return _anneal_cos(high, low, fraction) if phase == 0 else _anneal_cos(low, high, fraction)


def layer_groups(model):
    """model.layer_groups() (StagedModel); a network that declares none is one group, all of it head."""
    return model.layer_groups() if hasattr(model, "layer_groups") else [list(model.parameters())]


def batch_norm_parameters(model):
    """The ids of the parameters of model's batch-norm layers."""
    return {id(p) for module in model.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
            for p in module.parameters()}


def enter(model, stage):
    """Freeze every layer group but the head, or none, and set the head's dropout, as the stage says. A frozen
    group's batch-norm layers keep training: fitted to the images of this task, not to those the weights were
    trained on (the 2019 recipe's library does the same; its option train_bn)."""
    *body, head = layer_groups(model)
    keep_training = batch_norm_parameters(model)
    for group in body:
        for parameter in group:
            parameter.requires_grad_(stage.train == "all" or id(parameter) in keep_training)
    for parameter in head:
        parameter.requires_grad_(True)
    if stage.dropout is not None:
        model.set_dropout(stage.dropout)


def peak_rates(model, stage):
    """(parameters, peak learning rate) per group the optimiser gets: one per layer group when the stage's lr is a
    pair: (low, high) spread geometrically from the first group to the head, (None, high) high / 10 for all but the
    head; else one group of every parameter. Frozen parameters are left out."""
    if isinstance(stage.lr, (list, tuple)):
        groups = layer_groups(model)
        low, high = stage.lr
        if low is None:
            peaks = [high / BODY_RATE_DIVISOR] * (len(groups) - 1) + [high]
        else:
            peaks = np.geomspace(low, high, len(groups))
        groups = [([p for p in group if p.requires_grad], float(peak)) for group, peak in zip(groups, peaks)]
    else:
        groups = [([p for p in model.parameters() if p.requires_grad], float(stage.lr))]
    return [(params, peak) for params, peak in groups if params]


def make_optimizer(model, stage, optimizer):
    """A new optimiser (OPTIMIZER: dict with name and its arguments) over the trainable parameters; each group's
    "peak_lr" is what lr_factor scales."""
    spec = dict(optimizer)
    cls = OPTIMIZERS[spec.pop("name")]
    return cls([dict(params=params, lr=peak, peak_lr=peak) for params, peak in peak_rates(model, stage)], **spec)


def set_peaks(optimizer, model, stage):
    """Give a kept optimiser (restart=False) the stage's peak rates; ValueError when the stage trains other
    parameters than the optimiser holds (a stage that changes what trains needs a new optimiser)."""
    groups = peak_rates(model, stage)
    if [len(params) for params, _ in groups] != [len(group["params"]) for group in optimizer.param_groups]:
        raise ValueError("a stage with restart=False must train the same parameters in the same groups as the "
                         "stage before it")
    for group, (_, peak) in zip(optimizer.param_groups, groups):
        group["peak_lr"] = peak


def check_optimizer(optimizer):
    """ValueError unless OPTIMIZER is a dict naming a known optimiser with arguments it takes."""
    if not isinstance(optimizer, dict) or optimizer.get("name") not in OPTIMIZERS:
        raise ValueError(f"must be a dict with name one of {', '.join(OPTIMIZERS)} and that optimiser's arguments, "
                         f"got {optimizer!r}")
    spec = dict(optimizer)
    cls = OPTIMIZERS[spec.pop("name")]
    try:
        cls([torch.zeros(1, requires_grad=True)], lr=1e-3, **spec)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{optimizer!r}: {exc}") from None


def set_lr(optimizer, factor, momentum=None):
    """Every group's rate to its peak times factor; and its momentum (Adam's beta1) to momentum unless None."""
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * factor
        if momentum is not None:
            if "betas" in group:
                group["betas"] = (momentum, group["betas"][1])
            else:
                group["momentum"] = momentum
