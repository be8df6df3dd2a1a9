"""train.py: the Nesterov update, one step lowering the loss, and short CPU runs of the shared loop on a tiny
synthetic root with a small model (stopped by a signal and resumed, ending exactly where an uninterrupted
run ends), plus a smoke run on the real sample (skipped when it is absent)."""
import csv
import gzip
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import checkpoints
import decision_tree
import load_data
import predict_augmented_npy
import realtime_augmentation as ra
from recipe import Recipe
import stages
import train
from helpers import (PROJECT_DIR, TINY_MODEL_NAME, make_tiny_root, tiny_model, tiny_model_source, tiny_recipe,
                     tiny_settings, tree_valid_labels, try_file_source, write_labels)

SHORT_RUN = ["--num-chunks", "3", "--workers", "0"]  # no process pools: quicker on 2 cores


@pytest.fixture
def recipe(tmp_path):
    """The tiny try script, written to tmp_path and imported; returns its globals."""
    return tiny_recipe(tmp_path)


def run_training(recipe, root, *options):
    train.main(recipe, ["--root", str(root), *SHORT_RUN, *options])
    load_data.set_root(root)
    return checkpoints.load_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME))


def test_nesterov_update_follows_the_formula_across_a_learning_rate_change():
    w0 = torch.tensor([1.0, -2.0, 0.5])
    param = torch.nn.Parameter(w0.clone())
    optimizer = stages.NesterovMomentum([param], lr=0.1, momentum=0.9)
    g1, g2 = torch.tensor([0.3, -0.1, 2.0]), torch.tensor([-1.0, 0.4, 0.2])
    param.grad = g1.clone()
    optimizer.step()
    v1 = -0.1 * g1
    w1 = w0 + 0.9 * v1 - 0.1 * g1
    torch.testing.assert_close(param.data, w1)
    optimizer.param_groups[0]["lr"] = 0.01
    param.grad = g2.clone()
    optimizer.step()
    v2 = 0.9 * v1 - 0.01 * g2
    torch.testing.assert_close(param.data, w1 + 0.9 * v2 - 0.01 * g2)


@pytest.mark.parametrize("normalise", [False, True])
def test_one_training_step_lowers_the_loss_on_a_fixed_batch(normalise):
    model = tiny_model().eval()  # dropout off, so the loss is the same function before and after
    generator = torch.Generator().manual_seed(0)
    views = torch.rand(8, 2, 3, 69, 69, generator=generator)
    labels = torch.from_numpy(tree_valid_labels(8, np.random.default_rng(0)).astype(np.float32))
    optimizer = stages.NesterovMomentum(model.parameters(), lr=0.04, momentum=0.9)
    before = train.train_batch(model, optimizer, views, labels, normalise)
    with torch.no_grad():
        after = F.mse_loss(model(views, normalise=normalise), labels).item()
    assert after < before


def test_schedule_scaling_and_lookup():
    """The 2014 stages scaled to 25 and 12 chunks: boundaries rounded to the nearest chunk, as the original scaled its
    chunk-keyed rates; fewer chunks than stages keep the stages that still have one."""
    original = Recipe().stage_list()
    scaled = stages.scaled(original, 25)
    assert stages.first_chunks(scaled) == [0, 18, 23, 25]
    assert [scaled[stages.stage_at(scaled, k)].lr for k in (0, 17, 18, 22, 23, 24)] == [0.04, 0.04, 0.004, 0.004,
                                                                                        0.0004, 0.0004]
    assert stages.first_chunks(stages.scaled(original, 12)) == [0, 9, 11, 12]
    assert stages.first_chunks(stages.scaled(original, 3)) == [0, 1, 2, 3]  # each stage keeps one chunk
    assert [stage.lr for stage in stages.scaled(original, 2)] == [0.04, 0.004]


def test_interrupted_run_resumes_to_the_same_parameters(isolated, recipe, monkeypatch):
    root = make_tiny_root(isolated / "root")
    uninterrupted = run_training(recipe, root)
    curve = train.learning_curve_path(TINY_MODEL_NAME)
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_path = load_data.predictions_dir() / f"{TINY_MODEL_NAME}.csv.gz"
    with gzip.open(csv_path, "rt") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == decision_tree.CSV_HEADER
    assert [int(r[0]) for r in rows[1:]] == list(np.load(root / "data" / "test_ids.npy"))
    assert np.isfinite(uninterrupted["valid_rmse"]) and len(uninterrupted["losses_train"]) == 3
    torch.load(checkpoints.checkpoint_path(TINY_MODEL_NAME), weights_only=True)

    # Stop by SIGTERM in the middle of chunk 2 (after its first batch), then run the same command again.
    real_train_batch, calls = train.train_batch, []

    def train_batch_then_signal(*args):
        loss = real_train_batch(*args)
        calls.append(loss)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(train, "train_batch", train_batch_then_signal)
    stopped = run_training(recipe, root, "--fresh")
    assert (stopped["next_chunk"], stopped["next_batch"]) == (1, 1)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    monkeypatch.setattr(train, "train_batch", real_train_batch)
    resumed = run_training(recipe, root)
    assert resumed["model"].keys() == uninterrupted["model"].keys()
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    assert resumed["losses_train"] == uninterrupted["losses_train"]

    with pytest.raises(load_data.DataError, match="--script PATH"):  # the checkpoint's script path is not imported
        checkpoints.load_trained(TINY_MODEL_NAME)
    model, config = checkpoints.load_trained(TINY_MODEL_NAME, script=recipe["__file__"])
    assert not model.training and config["NUM_CHUNKS"] == 3 and config["PREPROCESSING"] is None


@pytest.mark.slow
def test_sigterm_to_the_script_saves_and_a_rerun_finishes_like_an_uninterrupted_run(isolated, recipe):
    """The command-line path with a worker pool: SIGTERM once the log shows a chunk done, exit 0, run again."""
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    options = ["--root", str(root), "--num-chunks", "12", "--validate-every", "6", "--workers", "1"]
    train.main(recipe, options)
    uninterrupted = checkpoints.load_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME))

    env = dict(os.environ, PYTHONPATH=str(PROJECT_DIR))
    script = Path(recipe["__file__"])
    with subprocess.Popen([sys.executable, str(script), *options, "--fresh"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, env=env) as process:
        for line in process.stdout:
            if line.startswith("chunk 1/"):
                process.send_signal(signal.SIGTERM)
                break
        output = process.stdout.read()
        assert process.wait(timeout=60) == 0
    stopped = checkpoints.load_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME))
    assert 1 <= stopped["next_chunk"] < 12
    assert train.stopped_at(stopped["next_chunk"], stopped["next_batch"], 2, 12) in output  # the saved position

    train.main(recipe, options)
    resumed = checkpoints.load_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME))
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name


def test_training_loop_enforces_max_norm(isolated, tmp_path):
    """A recipe with max-norm limits below the initial weights' RMS (about 1e-3): after chunks of 10 updates each
    (the loop rescales every 10), no unit of either dense layer is above its limit and some sit on it."""
    limits = (1e-4, 2e-4)
    recipe = tiny_recipe(tmp_path, try_file_source(model_source=tiny_model_source(max_norm=limits)))
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    state = run_training(recipe, root, "--chunk-size", str(10 * recipe["BATCH_SIZE"]))
    model = recipe["build_model"]()
    model.load_state_dict(state["model"])
    for linear, limit in zip(model.dense_linears(), limits):
        rms = linear.weight.detach().pow(2).mean(dim=1).sqrt()
        assert limit * (1 - 1e-5) <= float(rms.max()) <= limit * (1 + 1e-5)


def test_resume_with_other_settings_is_refused(isolated, recipe, capsys):
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    run_training(recipe, root)
    with pytest.raises(SystemExit) as exit_info:
        train.main(recipe, ["--root", str(root), *SHORT_RUN, "--chunk-size", "4"])
    assert exit_info.value.code == 1
    assert "CHUNK_SIZE" in capsys.readouterr().err


def test_standard_init_is_recorded_and_resuming_without_it_is_refused(isolated, recipe, capsys):
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    original = run_training(recipe, root)
    standard = run_training(recipe, root, "--fresh", "--init", "standard")
    assert original["config"]["INIT"] == "original" and standard["config"]["INIT"] == "standard"
    with pytest.raises(SystemExit) as exit_info:
        train.main(recipe, ["--root", str(root), *SHORT_RUN])
    assert exit_info.value.code == 1 and "INIT" in capsys.readouterr().err


def test_smoke_on_the_real_sample(isolated, recipe, real_sample):
    """Two tiny chunks on the real labelled images (symlinked, never copied)."""
    root = isolated / "real_root"
    labels_csv = pd.read_csv(real_sample / "training_solutions_rev1_sample.csv")
    train_ids = np.sort(labels_csv["GalaxyID"].to_numpy(np.int64))
    test_ids = np.sort(np.array([int(p.stem) for p in (real_sample / "images_test_rev1").glob("*.jpg")]))[:4]
    for subset, ids, source in (("train", train_ids, "images_train_rev1"), ("test", test_ids, "images_test_rev1")):
        folder = root / "data" / "raw" / load_data.RAW_IMAGE_FOLDERS[subset]
        folder.mkdir(parents=True)
        for galaxy_id in ids:
            (folder / f"{galaxy_id}.jpg").symlink_to(real_sample / source / f"{galaxy_id}.jpg")
        np.save(root / "data" / f"{subset}_ids.npy", ids)
    (root / "data" / "raw" / load_data.SOLUTIONS_CSV).symlink_to(real_sample / "training_solutions_rev1_sample.csv")
    labels = labels_csv.set_index("GalaxyID").loc[train_ids, list(decision_tree.COLUMNS)].to_numpy(np.float32)
    write_labels(root, train_ids, labels, csv=root / "data" / "raw" / load_data.SOLUTIONS_CSV)

    train.main(recipe, ["--root", str(root), "--num-chunks", "2", "--workers", "1", "--max-valid", "8"])
    state = checkpoints.load_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME))
    assert len(state["losses_train"]) == 2 and np.isfinite(state["valid_rmse"])
    assert state["valid_predictions"].shape == (8, decision_tree.NUM_OUTPUTS)
    assert (load_data.predictions_dir() / f"{TINY_MODEL_NAME}.csv.gz").exists()


SINGLE_VIEW_MODEL_SOURCE = '''import torch

import layers


class SingleView(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                       torch.nn.Flatten(), torch.nn.Linear(4, 37))
        self.output = layers.GalaxyOutput()

    def forward(self, views, normalise=True):
        assert views.shape[1:] == (1, 3, 24, 24), views.shape  # what INPUT declares, in training and prediction
        return self.output(self.net(views[:, 0]), normalise=normalise)


def build_model():
    return SingleView()
'''
SINGLE_VIEW_RECIPE_SOURCE = try_file_source(tiny_settings(INPUT=(24, 224)), SINGLE_VIEW_MODEL_SOURCE)


@pytest.mark.parametrize("where", ["workers", "device"])
def test_a_model_declaring_one_square_view_trains_and_predicts(isolated, tmp_path, where):
    """INPUT = (24, 224): training (views from the worker path, or warped on the device), the final predictions,
    and test-time averaging all give the model (B, 1, 3, 24, 24)."""
    recipe = tiny_recipe(tmp_path, SINGLE_VIEW_RECIPE_SOURCE)
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    state = run_training(recipe, root, *(["--data-on-device"] if where == "device" else []))
    assert state["config"]["INPUT"] == (24, 224)
    assert len(state["losses_train"]) == 3 and np.isfinite(state["valid_rmse"])
    model = recipe["build_model"]()
    model.load_state_dict(state["model"])
    test_ids = load_data.load_ids("test")
    averaged, _ = predict_augmented_npy.predict_augmented(model, test_ids, "test", ra.tta_transforms()[:2], None,
                                                          torch.device("cpu"), workers=0, progress=False,
                                                          views=ra.input_views(state["config"]["INPUT"]))
    assert averaged.shape == (2, decision_tree.NUM_OUTPUTS)


def test_stop_message_counts_chunks_from_one():
    """Stopped at a chunk boundary after the 2nd chunk (state next_chunk 2, next_batch 0), and inside the 3rd after
    one minibatch (next_chunk 2, next_batch 1)."""
    assert train.stopped_at(2, 0, 62, 12) == "stopped after chunk 2 of 12"
    assert train.stopped_at(2, 1, 62, 12) == "stopped in chunk 3 of 12, after minibatch 1 of 62"


class NotATensor:
    """An object a weights-only load refuses."""


@pytest.mark.parametrize("content, words", [
    (b"", "empty (0 bytes)"),
    (np.random.default_rng(0).bytes(2000), "not the zip archive torch.save writes"),
    ("bare", "bare state dict"),
    ("object", "never loaded"),
])
def test_unusable_checkpoints_are_one_line_errors(isolated, recipe, capsys, content, words):
    """An empty file, random bytes, a bare state dict, a pickle with arbitrary objects: resuming stops with one line
    saying what is wrong and what to do (never suggesting to load untrusted objects)."""
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    load_data.set_root(root)
    path = checkpoints.checkpoint_path(TINY_MODEL_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "bare":
        torch.save(tiny_model().state_dict(), path)
    elif content == "object":
        torch.save({"model": {}, "config": NotATensor()}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        train.main(recipe, ["--root", str(root), *SHORT_RUN])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and words in err and "--fresh" in err
    assert "weights_only" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_checkpoint_of_another_network_is_a_one_line_error(isolated, tmp_path, capsys):
    """build_model() edited after training (wider dense layers): resuming says the parameters do not fit."""
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    run_training(tiny_recipe(tmp_path), root)
    wider = tiny_recipe(tmp_path, try_file_source(model_source=tiny_model_source(dense_units=32)))
    with pytest.raises(SystemExit) as exit_info:
        train.main(wider, ["--root", str(root), *SHORT_RUN])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "do not fit the network" in err and "--fresh" in err


def test_a_second_run_of_the_same_model_is_refused_while_the_first_lives(isolated, recipe, capsys):
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    load_data.set_root(root)
    held = checkpoints.training_lock(TINY_MODEL_NAME)  # as a live first run holds it
    try:
        with pytest.raises(SystemExit) as exit_info:
            train.main(recipe, ["--root", str(root), *SHORT_RUN])
        err = capsys.readouterr().err
        assert exit_info.value.code == 1 and "another run of" in err and not checkpoints.checkpoint_path(
            TINY_MODEL_NAME).exists()
    finally:
        held.close()
    run_training(recipe, root)  # once the first has ended (its lock gone with it), the run goes ahead


@pytest.mark.slow
def test_a_killed_run_leaves_no_lock_and_its_stale_temporary_is_removed(isolated, recipe):
    """SIGKILL to a process holding the lock: the next run trains; a temporary of an interrupted checkpoint write
    is removed at the start."""
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    load_data.set_root(root)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time, checkpoints, load_data; "
                               f"load_data.set_root({str(root)!r}); checkpoints.training_lock({TINY_MODEL_NAME!r}); "
                               "print('held', flush=True); time.sleep(60)"],
                              cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(timeout=10)
    stale = checkpoints.checkpoint_path(TINY_MODEL_NAME).parent / f".{TINY_MODEL_NAME}.pt.x1y2z3.tmp"
    stale.write_bytes(b"\0" * 1000)
    run_training(recipe, root)
    assert not stale.exists()


def test_an_error_during_training_saves_the_last_completed_minibatch(isolated, recipe, monkeypatch, capsys):
    """A bad image met in chunk 3 (simulated): the checkpoint holds the 4 minibatches done, and the rerun ends with
    the parameters of an uninterrupted run (before, the training since the last checkpoint, here all of it, was
    lost)."""
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    options = ["--validate-every", "3"]  # no checkpoint before the end
    uninterrupted = run_training(recipe, root, *options)
    real_train_batch, calls = train.train_batch, []

    def failing_train_batch(*args):
        calls.append(1)
        if len(calls) == 5:
            raise load_data.DataError("GalaxyID 100008: simulated unreadable image")
        return real_train_batch(*args)

    monkeypatch.setattr(train, "train_batch", failing_train_batch)
    with pytest.raises(SystemExit):
        run_training(recipe, root, *options, "--fresh")
    saved = checkpoints.load_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME))
    assert (saved["next_chunk"], saved["next_batch"]) == (2, 0)
    assert "stopped after chunk 2 of 3 by the error below; checkpoint saved" in capsys.readouterr().out
    monkeypatch.setattr(train, "train_batch", real_train_batch)
    resumed = run_training(recipe, root, *options)
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name


def test_the_test_set_is_predicted_chunk_by_chunk(isolated, monkeypatch):
    """The final test-set predictions never hold every test image's views at once (9 GB for the 79,975 real test
    images; before, they were all made first): the model is given one chunk of views at a time, with the outputs of
    all views at once."""
    root = make_tiny_root(isolated / "root", num_train=4, num_test=7)
    load_data.set_root(root)
    monkeypatch.setattr(ra, "default_images_per_chunk", lambda num_transforms: 3)
    model, seen, predict = tiny_model(seed=0), [], train.predict
    monkeypatch.setattr(train, "predict", lambda m, views, device: seen.append(len(views)) or predict(m, views, device))
    ids = load_data.load_ids("test")
    streamed = train.predict_streamed(model, ids, "test", None, 0, ra.input_views(ra.ORIGINAL_INPUT), "cpu")
    assert seen == [3, 3, 1]
    all_at_once = predict(model, ra.identity_views(ids, "test", num_workers=0), "cpu")
    np.testing.assert_allclose(streamed, all_at_once, atol=1e-6)
