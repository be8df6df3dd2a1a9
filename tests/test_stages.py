"""Recipes trained in stages (stages.py): learning-rate schedules, frozen parameters, input and dropout changes at
stage boundaries, layer-group learning rates, and resuming in the middle of a stage."""
import os
import re
import signal

import numpy as np
import pytest
import torch

from galaxyzoo import paths
from galaxyzoo import backbones
from galaxyzoo import checkpoints
from galaxyzoo import convnet
from galaxyzoo import realtime_augmentation as ra
import load_data
from galaxyzoo import stages
from galaxyzoo import train
from helpers import PROJECT_DIR, TINY_MODEL_NAME, make_tiny_root, tiny_recipe, tiny_settings, torchrun, try_file_source

STAGED_MODEL_SOURCE = '''import torch

import layers

_SEEN = []  # (view size, head dropout) of every training forward pass


class Staged(torch.nn.Module):
    """A backbone and a head, like backbones.BackboneNet, small."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(),
                                            torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                            torch.nn.Flatten())
        self.dropout = torch.nn.Dropout(0.0)
        self.head = torch.nn.Linear(4, 37)
        self.output = layers.GalaxyOutput()

    def forward(self, views, normalise=True):
        if self.training:
            _SEEN.append((views.shape[-1], self.dropout.p))
        return self.output(self.head(self.dropout(self.backbone(views[:, 0]))), normalise=normalise)

    def set_dropout(self, p):
        self.dropout.p = p

    def layer_groups(self):
        return [list(self.backbone[0].parameters()), list(self.backbone[2].parameters()), list(self.head.parameters())]


def build_model():
    return Staged()
'''
STAGED_SETTINGS = tiny_settings(
    NUM_CHUNKS_NONORM=0, OPTIMIZER=dict(name="adamw", weight_decay=1e-4),
    STAGES=[dict(chunks=2, lr=1e-2, train="head", input=(24, 224), dropout=0.1),
            dict(chunks=2, lr=(1e-4, 1e-2), schedule="one_cycle", input=(32, 224), dropout=0.25)])
STAGED_RECIPE_SOURCE = try_file_source(STAGED_SETTINGS, STAGED_MODEL_SOURCE)
RUN = ["--workers", "0"]


def run(recipe, root, *options):
    train.main(recipe, ["--root", str(root), *RUN, *options])
    paths.set_root(root)
    return checkpoints.load_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME))


def test_learning_rate_schedules():
    one_cycle = stages.Stage(chunks=1, lr=1.0, schedule="one_cycle")
    factors = [stages.lr_factor(one_cycle, step, 101) for step in range(101)]
    assert factors[0] == pytest.approx(1 / 25) and max(factors) == pytest.approx(1.0, abs=1e-3)
    # the last of the 71 falling steps is 70/71 of the way down (fastai 1's step placement)
    end = 1 / 250_000
    assert int(np.argmax(factors)) == 30 and factors[-1] == pytest.approx(end + (1 - end) * (1 + np.cos(np.pi * 70 / 71)) / 2)
    cosine = stages.Stage(chunks=1, lr=1.0, schedule="cosine", warmup=0.1)
    factors = [stages.lr_factor(cosine, step, 100) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert stages.lr_factor(stages.Stage(chunks=1, lr=1.0), 7, 10) == 1.0


def test_malformed_stages_are_refused():
    for bad in ([dict(lr=1e-3)], [dict(chunks=1, lr=1e-3, schedule="linear")], [dict(chunks=1, lr=1, train="body")],
                [dict(chunks=1, lr=1, momentum=0.9)]):
        with pytest.raises(ValueError, match="STAGES"):
            stages.parse(bad, "original")


def test_stages_freeze_change_input_and_dropout_and_spread_learning_rates(isolated, tmp_path):
    recipe = tiny_recipe(tmp_path, STAGED_RECIPE_SOURCE)
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    torch.manual_seed(recipe["SEED"])
    initial = recipe["build_model"]().state_dict()

    head_only = run(recipe, root, "--num-chunks", "2")  # scaled to one chunk per stage
    assert [stage["chunks"] for stage in head_only["config"]["STAGES"]] == [1, 1]

    recipe["_SEEN"].clear()
    state = run(recipe, root, "--fresh", "--max-valid", "4")
    batches = recipe["CHUNK_SIZE"] // recipe["BATCH_SIZE"]
    assert recipe["_SEEN"] == [(24, 0.1)] * 2 * batches + [(32, 0.25)] * 2 * batches
    assert state["config"]["INPUT"] == (32, 224) and len(state["losses_train"]) == 4
    peaks = [group["peak_lr"] for group in state["optimizer"]["param_groups"]]
    np.testing.assert_allclose(peaks, [1e-4, 1e-3, 1e-2])
    for name, tensor in state["model"].items():
        assert not torch.equal(tensor, initial[name]), name

    # after the head-only stage alone, the backbone is where it started and the head is not
    recipe["STAGES"] = recipe["STAGES"][:1]
    first_stage = run(recipe, root, "--fresh")
    for name, tensor in first_stage["model"].items():
        assert torch.equal(tensor, initial[name]) == name.startswith("backbone."), name


def test_epoch_chunks_are_one_pass_over_the_training_images(isolated, tmp_path):
    recipe = tiny_recipe(tmp_path, try_file_source({**STAGED_SETTINGS, "CHUNK_SIZE": "epoch"}, STAGED_MODEL_SOURCE))
    root = make_tiny_root(isolated / "root", num_train=23, num_test=2)
    state = run(recipe, root, "--num-chunks", "2")
    num_train = len(load_data.labelled_split().train_ids)
    assert state["config"]["CHUNK_SIZE"] == num_train // 4 * 4


def test_resume_in_the_middle_of_a_stage_gives_the_uninterrupted_parameters(isolated, tmp_path, monkeypatch):
    recipe = tiny_recipe(tmp_path, STAGED_RECIPE_SOURCE)
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    uninterrupted = run(recipe, root)
    real_train_batch, calls = train.train_batch, []

    def train_batch_then_signal(*args):
        loss = real_train_batch(*args)
        calls.append(loss)
        if len(calls) == 7:  # chunk 4 of 4 (stage 2), after its first batch
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(train, "train_batch", train_batch_then_signal)
    stopped = run(recipe, root, "--fresh")
    assert (stopped["next_chunk"], stopped["next_batch"]) == (3, 1)
    monkeypatch.setattr(train, "train_batch", real_train_batch)
    resumed = run(recipe, root)
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    assert resumed["losses_train"] == uninterrupted["losses_train"]


@pytest.mark.slow
def test_two_ranks_train_the_stages_like_one_process(isolated, tmp_path):
    """torchrun with 2 CPU ranks through a head-only stage and a full one: the parameters match the 1-process
    run's. Dropout is off, so that both runs draw nothing at random in the model, and Adam's eps is large, so that
    its steps follow the gradient (with the usual eps a gradient near zero steps by about lr either way, and
    rounding decides which)."""
    first, second = STAGED_SETTINGS["STAGES"]
    settings = {**STAGED_SETTINGS, "OPTIMIZER": dict(name="adamw", weight_decay=1e-4, eps=1.0),
                "STAGES": [{**first, "dropout": 0.0}, {**second, "dropout": 0.0, "lr": 1.0}]}
    recipe = tiny_recipe(tmp_path, try_file_source(settings, STAGED_MODEL_SOURCE))
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    single = run(recipe, root)
    torchrun(recipe["__file__"], "--root", str(root), *RUN, "--device", "cpu", "--fresh")
    two_ranks = checkpoints.load_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME))
    difference = max((two_ranks["model"][k] - single["model"][k]).abs().max().item() for k in single["model"])
    print(f"largest |2 ranks - 1 process| parameter difference {difference:.2e}")
    assert difference <= 1e-6
    assert two_ranks["losses_train"] == pytest.approx(single["losses_train"], rel=1e-5)


def test_stages_are_scaled_to_exactly_the_chunks_asked_for():
    """Each stage keeps at least one chunk and the stages add up to --num-chunks (before, rounding each stage's share
    gave "8 stages over 9 chunks" for --num-chunks 8); with fewer chunks than stages, those left with none are left
    out."""
    recipe = checkpoints.import_try_script("try_resnet50_fastai")
    parsed = stages.parse(recipe.STAGES, recipe.INPUT)
    for num_chunks in range(len(parsed), 80):
        counts = [stage.chunks for stage in stages.scaled(parsed, num_chunks)]
        assert sum(counts) == num_chunks and min(counts) >= 1, (num_chunks, counts)
    for num_chunks in range(1, len(parsed)):
        counts = [stage.chunks for stage in stages.scaled(parsed, num_chunks)]
        assert sum(counts) == num_chunks and min(counts) >= 1 and len(counts) <= num_chunks, (num_chunks, counts)


def test_each_chunk_logs_its_first_and_last_learning_rate(isolated, tmp_path, capsys):
    """A one-cycle stage's rate changes within a chunk: the log shows where it starts and ends (before, only the
    rate of the chunk's last minibatch, 2e-07 at the end of a 1e-2 stage)."""
    recipe = tiny_recipe(tmp_path, STAGED_RECIPE_SOURCE)
    run(recipe, make_tiny_root(isolated / "root", num_train=20, num_test=2))
    out = capsys.readouterr().out
    one_cycle = stages.parse(recipe["STAGES"], recipe.get("INPUT"))[1]
    steps = 2 * recipe["CHUNK_SIZE"] // recipe["BATCH_SIZE"]
    lrs = [1e-2 * stages.lr_factor(one_cycle, step, steps) for step in range(steps)]
    assert "2 stages over 4 chunks" in out
    assert "chunk 1/4  lr 0.01  " in out and "chunk 2/4  lr 0.01  " in out
    assert f"chunk 3/4  lr {lrs[0]:g} to {lrs[steps // 2 - 1]:g}  " in out
    assert f"chunk 4/4  lr {lrs[steps // 2]:g} to {lrs[-1]:g}  " in out


@pytest.mark.parametrize("build", [lambda: convnet.GalaxyConvNet(num_filters=(4, 4, 4, 4), dense_units=16),
                                   lambda: convnet.GalaxyConvNet(num_filters=(4, 4, 4, 4), dense_units=16,
                                                                 part_dense_units=8),
                                   lambda: backbones.create_model("resnet50")], ids=["convnet", "part_dense", "resnet50"])
def test_the_2014_net_and_the_backbones_implement_the_staged_model_protocol(build):
    """Layer groups that hold every parameter once (the head last), dropout set on the head, and the input checked."""
    with torch.device("meta"):
        model = build()
    groups = model.layer_groups()
    grouped = [id(p) for group in groups for p in group]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters()) and len(groups) == 3
    model.set_dropout(0.25)
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.25}
    own_input = ra.ORIGINAL_INPUT if isinstance(model, convnet.GalaxyConvNet) else (224, 224)
    model.check_input(ra.input_views(own_input))
    with pytest.raises(ValueError):
        model.check_input(ra.input_views((224, 224) if own_input == ra.ORIGINAL_INPUT else ra.ORIGINAL_INPUT))


def test_no_module_outside_the_model_modules_asks_for_a_model_s_class():
    """What the loop and the scripts need of a network is the protocol, never its class."""
    model_modules = {"convnet.py", "backbones.py", "layers.py"}
    sources = [p for p in PROJECT_DIR.rglob("*.py") if ".venv" not in p.parts and "tests" not in p.parts
               and p.name not in model_modules]
    asking = [str(p) for p in sources if re.search(r"isinstance\([^)]*(GalaxyConvNet|BackboneNet)", p.read_text())]
    assert asking == []
