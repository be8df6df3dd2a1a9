"""A recipe's optimisation as data, for the members trained in stages (the 2014 members use none of this: they
keep Nesterov momentum with a chunk-keyed learning rate, train.NesterovMomentum).

A try_*.py file declares, instead of MOMENTUM and LEARNING_RATE_SCHEDULE:

    OPTIMIZER = dict(name="adamw", weight_decay=1e-4)        # or "adam"
    STAGES = [dict(chunks=2, lr=5e-2, train="head", input=(112, 224), dropout=0.1),
              dict(chunks=6, lr=(1e-6, 5e-6), schedule="one_cycle"), ...]

Each stage starts a new optimiser (as each `fit` call of the 2019 recipe's library did) and sets, for its chunks
(one pass over the training images each when CHUNK_SIZE is "epoch"), which parameters train, the input, the
head's dropout and the learning rate of every minibatch from its schedule. A learning rate (low, high) is spread
geometrically over the model's layer groups (model.layer_groups(), earliest first): discriminative rates.
"""
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

SCHEDULES = ("constant", "one_cycle", "cosine")
ONE_CYCLE_WARMUP = 0.3  # share of the steps rising to the peak (fastai 1's fit_one_cycle)
ONE_CYCLE_START_DIVISOR = 25.0  # the cycle starts at lr / 25 ...
ONE_CYCLE_END_DIVISOR = 25.0 * 1e4  # ... and ends at lr / 250,000
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@dataclass(frozen=True)
class Stage:
    """chunks: chunks in the stage; lr: peak learning rate, or (low, high) across layer groups; schedule: one of
    SCHEDULES; warmup: share of the stage's steps with a linear warm-up (cosine); train: "all" or "head" (the
    backbone frozen); input: the stage's INPUT declaration (None: the recipe's); dropout: the head's dropout from
    this stage on (None: as it was)."""
    chunks: int
    lr: object
    schedule: str = "constant"
    warmup: float = 0.0
    train: str = "all"
    input: object = None
    dropout: object = None


def parse(stages, recipe_input):
    """The recipe's STAGES (a list of dicts) as Stage objects with every input resolved; ValueError when one is
    malformed."""
    known = {field.name for field in fields(Stage)}
    parsed = []
    for number, stage in enumerate(stages, 1):
        unknown = set(stage) - known
        if unknown or "chunks" not in stage or "lr" not in stage:
            raise ValueError(f"STAGES[{number - 1}]: needs chunks and lr, may have {sorted(known)}; got {sorted(stage)}")
        stage = Stage(**{**stage, "input": stage.get("input") or recipe_input})
        if stage.schedule not in SCHEDULES or stage.train not in ("all", "head") or stage.chunks < 1:
            raise ValueError(f"STAGES[{number - 1}]: schedule one of {SCHEDULES}, train 'all' or 'head', chunks >= 1; "
                             f"got {stage}")
        parsed.append(stage)
    return parsed


def as_config(stages):
    """Stages as plain data, for the checkpoint."""
    return [asdict(stage) for stage in stages]


def scaled(stages, num_chunks):
    """The stages with their chunks scaled to exactly num_chunks in all, each at least 1 (ValueError when there are
    more stages than that), for short runs: each stage gets its share rounded down, and the chunks left over go to
    the stages whose shares were rounded down most."""
    total = sum(stage.chunks for stage in stages)
    if num_chunks == total:
        return list(stages)
    if num_chunks < len(stages):
        raise ValueError(f"--num-chunks {num_chunks}: the recipe has {len(stages)} stages, and each needs a chunk")
    shares = np.array([stage.chunks * num_chunks / total for stage in stages])
    counts = np.maximum(1, np.floor(shares)).astype(int)
    while counts.sum() > num_chunks:  # the stages raised to 1 took chunks from the others
        counts[np.argmax(np.where(counts > 1, counts - shares, -np.inf))] -= 1
    while counts.sum() < num_chunks:
        counts[np.argmax(shares - counts)] += 1
    return [Stage(**{**asdict(stage), "chunks": int(count)}) for stage, count in zip(stages, counts)]


def first_chunks(stages):
    """The first chunk of each stage, and the total: [0, c0, c0 + c1, ..., sum]."""
    return [0] + list(np.cumsum([stage.chunks for stage in stages]).tolist())


def stage_at(stages, chunk):
    """Index of the stage that chunk `chunk` belongs to."""
    return int(np.searchsorted(first_chunks(stages)[1:], chunk, side="right"))


def lr_factor(stage, step, num_steps):
    """The learning rate of step `step` (0-based) of num_steps in the stage, as a multiple of the stage's lr."""
    t = step / max(num_steps - 1, 1)
    if stage.schedule == "constant":
        return 1.0
    if stage.schedule == "cosine":
        warmup_steps = stage.warmup * num_steps
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(num_steps - warmup_steps - 1, 1)
        return 0.5 * (1 + math.cos(math.pi * t))
    low, end = 1 / ONE_CYCLE_START_DIVISOR, 1 / ONE_CYCLE_END_DIVISOR
    if t < ONE_CYCLE_WARMUP:
        return low + (1 - low) * 0.5 * (1 - math.cos(math.pi * t / ONE_CYCLE_WARMUP))
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * (t - ONE_CYCLE_WARMUP) / (1 - ONE_CYCLE_WARMUP)))


def enter(model, stage):
    """Freeze or unfreeze the backbone and set the head's dropout as the stage says."""
    for parameter in model.backbone.parameters():
        parameter.requires_grad_(stage.train == "all")
    if stage.dropout is not None:
        model.set_dropout(stage.dropout)


def make_optimizer(model, stage, optimizer):
    """A new optimiser (OPTIMIZER: dict with name and its arguments) over the trainable parameters, one group per
    layer group when the stage's lr is (low, high); each group's "peak_lr" is what lr_factor scales."""
    spec = dict(optimizer)
    cls = OPTIMIZERS[spec.pop("name")]
    if isinstance(stage.lr, (list, tuple)):
        layer_groups = model.layer_groups()
        peaks = np.geomspace(stage.lr[0], stage.lr[1], len(layer_groups))
        groups = [dict(params=[p for p in group if p.requires_grad], peak_lr=float(peak))
                  for group, peak in zip(layer_groups, peaks)]
    else:
        groups = [dict(params=[p for p in model.parameters() if p.requires_grad], peak_lr=float(stage.lr))]
    groups = [group for group in groups if group["params"]]
    return cls([dict(group, lr=group["peak_lr"]) for group in groups], **spec)


def set_lr(optimizer, factor):
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * factor
