"""Nothing lost when the disk fills, a run diverges or a file is damaged, and every such case is one line: free space
checked before long work (a small disk simulated by a mock of shutil.disk_usage), writes that fail with ENOSPC
(simulated by a mock of the write) keeping the previous checkpoint or the predictions made, OSErrors from any script
and the worker pool as one line, non-finite losses, gradients and parameters, checkpoints with flipped bits, and the
messages that used to mislead."""
import errno
import hashlib
import os
import shutil
import zipfile

import numpy as np
import pytest
import torch

import blend_predictions
from galaxyzoo import files
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import runner
from galaxyzoo import checkpoints
import convert_npy_to_csv
import copy_data_to_shm
import create_solutions_train
import create_train_ids
from galaxyzoo import decision_tree
import extract_pysex_params
import load_data
import make_synthetic_data
from galaxyzoo import parallel
import predict_augmented_npy
from galaxyzoo import stages
from galaxyzoo import train
from helpers import (TINY_MODEL_NAME, make_tiny_root, no_space_task, save_predictions, small_disk, tiny_model,
                     tiny_recipe)

SHORT_RUN = ["--num-chunks", "3", "--validate-every", "1", "--workers", "0"]  # a checkpoint after every chunk


def no_space(filename=None):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)


@pytest.fixture
def root(isolated):
    """A tiny project root, set as the current one."""
    path = make_tiny_root(isolated / "root", num_train=20, num_test=3)
    paths.set_root(path)
    return path


def train_tiny(root, tmp_path, *options):
    """train.main of the tiny model on root; returns its exit status (0 when it ends normally)."""
    try:
        train.main(tiny_recipe(tmp_path), ["--root", str(root), *SHORT_RUN, *options])
    except SystemExit as exit_info:
        return exit_info.code
    return 0


def one_error_line(capsys):
    """The one line `error: ...` of the run's stderr (where progress bars are drawn too), which holds no other error
    and no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "Traceback" not in err, err
    return errors[0]


def checkpoint_digest():
    return hashlib.sha256(checkpoints.checkpoint_path(TINY_MODEL_NAME).read_bytes()).hexdigest()


def temporaries(folder):
    return [path for path in folder.rglob("*.tmp")]


# ---------------------------------------------------------------------------------------------------
# A full disk


def test_training_without_room_for_its_checkpoint_is_refused_before_training(root, tmp_path, capsys, monkeypatch):
    """The tiny model's checkpoint: parameters and momentum of 10,893 float32 parameters and 20 buffers, about 90 kB."""
    small_disk(monkeypatch, free=50_000)
    assert train_tiny(root, tmp_path) == 1
    err = one_error_line(capsys)
    assert f"{paths.analysis_dir()}: the checkpoint needs" in err and "but only 50.0 kB is free there" in err
    assert "chunk 1/" not in capsys.readouterr().out and not checkpoints.checkpoint_path(TINY_MODEL_NAME).exists()


def test_the_checkpoint_size_is_that_of_the_checkpoint_written(root, tmp_path):
    """checkpoint_bytes, from the model alone, is the size of the final checkpoint within its non-tensor part
    (pickled config, losses, stamps: a few kB)."""
    assert train_tiny(root, tmp_path) == 0
    config = checkpoints.load_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME))["config"]
    estimate = train.checkpoint_bytes(tiny_model(), config, len(load_data.labelled_split().valid_ids))
    size = checkpoints.checkpoint_path(TINY_MODEL_NAME).stat().st_size
    assert estimate < size < estimate + 40_000


def test_a_checkpoint_write_that_fails_keeps_the_last_good_one(root, tmp_path, capsys, monkeypatch):
    """The disk fills during the second save (after some bytes): one line naming the file and the reason, exit 1, the
    checkpoint of chunk 1 unchanged and loadable, no temporary left (before: a PyTorch traceback, the save on error
    failing too, and no checkpoint at all)."""
    real_save, saves, kept = torch.save, [], {}

    def filling_save(state, file):
        saves.append(1)
        if len(saves) == 2:
            kept["digest"] = checkpoint_digest()
            file.write(b"\0" * 1000)
            raise no_space()
        return real_save(state, file)

    monkeypatch.setattr(torch, "save", filling_save)
    assert train_tiny(root, tmp_path) == 1
    err = one_error_line(capsys)
    path = checkpoints.checkpoint_path(TINY_MODEL_NAME)
    assert f"{path}: cannot write the checkpoint (No space left on device" in err and "kept as it was" in err
    assert checkpoint_digest() == kept["digest"] and len(saves) == 2
    assert checkpoints.load_checkpoint(path)["next_chunk"] == 1 and temporaries(path.parent) == []
    monkeypatch.setattr(torch, "save", real_save)
    assert train_tiny(root, tmp_path) == 0  # once there is room, the same command resumes and ends
    assert checkpoints.load_checkpoint(path)["next_chunk"] == 3


@pytest.mark.parametrize("script", ["make_synthetic_data", "extract_pysex_params", "copy_data_to_shm"])
def test_the_other_long_steps_without_room_are_refused_before_their_work(root, capsys, monkeypatch, script):
    small_disk(monkeypatch, free=1000)
    before = sorted(root.parent.rglob("*"))
    if script == "make_synthetic_data":
        status = make_synthetic_data.main(["--root", str(root.parent / "new"), "--num-train", "2", "--num-test", "1"])
    else:
        status = {"extract_pysex_params": extract_pysex_params, "copy_data_to_shm": copy_data_to_shm}[script].main(
            ["--root", str(root), "--workers", "1"])
    err = one_error_line(capsys)
    assert status == 1 and "needs" in err and "but only 1.0 kB is free" in err and "nothing was written" in err
    assert sorted(root.parent.rglob("*")) == before


@pytest.fixture
def trained(root, tmp_path, capsys):
    """root with the tiny model trained (SHORT_RUN)."""
    assert train_tiny(root, tmp_path) == 0
    capsys.readouterr()
    return root


def predict():
    """predict_augmented_npy.main for the tiny model trained under the current root; returns its exit status."""
    script = paths.root().parent / f"{TINY_MODEL_NAME}.py"  # where tiny_recipe wrote it
    return predict_augmented_npy.main([TINY_MODEL_NAME, "--script", str(script), "--num-transforms", "2",
                                       "--workers", "0", "--device", "cpu"])


def test_prediction_without_room_is_refused_before_predicting(trained, capsys, monkeypatch):
    small_disk(monkeypatch, free=2000)
    assert predict() == 1
    err = one_error_line(capsys)
    num_images = len(load_data.labelled_split().valid_ids) + len(load_data.load_ids("test"))
    assert f"the predictions of {num_images} images needs" in err and "only 2.0 kB is free" in err
    assert not (trained / "predictions" / "final" / "augmented").exists()


def test_a_prediction_write_that_fails_keeps_the_predictions(trained, capsys, monkeypatch):
    """The disk fills when the test split's file is written: one line, exit 1; the validation file is written, the
    test split's predictions are kept in its partial file, and the rerun writes them without predicting again
    (before: the predictions were lost with an OSError traceback)."""
    real_save_gz = records.save_gz

    def full_for_test(path, *args, **kwargs):
        if "/test/" in str(path):
            raise no_space(str(path))
        return real_save_gz(path, *args, **kwargs)

    monkeypatch.setattr(records, "save_gz", full_for_test)
    assert predict() == 1
    err = one_error_line(capsys)
    test_path = paths.augmented_predictions_path(TINY_MODEL_NAME, "test")
    assert f"{test_path}: cannot write the predictions (No space left on device)" in err
    assert f"the {len(load_data.load_ids('test'))} images predicted are kept" in err
    assert paths.augmented_predictions_path(TINY_MODEL_NAME, "valid").exists() and not test_path.exists()
    monkeypatch.setattr(records, "save_gz", real_save_gz)
    predicted = []
    real_predict_views = predict_augmented_npy.predict_views
    monkeypatch.setattr(predict_augmented_npy, "predict_views",
                        lambda *args, **kwargs: predicted.append(1) or real_predict_views(*args, **kwargs))
    assert predict() == 0
    assert predicted == [] and test_path.exists() and not list(test_path.parent.glob("*.partial*"))


def write_blend_inputs():
    for split in ("valid", "test"):
        ids = load_data.split_ids(split)
        save_predictions("model_a", split, np.full((len(ids), 37), 0.5, dtype=np.float32))


@pytest.mark.parametrize("script", ["blend", "labels", "ids"])
def test_no_space_left_when_a_step_writes_is_one_line(root, capsys, monkeypatch, script):
    """A full disk met by np.save inside an atomic write: one line naming the file, exit 1, no file changed and no
    temporary left (before, a traceback)."""
    if script == "blend":
        write_blend_inputs()
    if script == "labels":  # the label CSV create_solutions_train.py reads
        ids, labels = load_data.load_ids("train"), np.load(root / "data" / "solutions_train.npy")
        rows = [",".join([str(galaxy_id), *map(repr, map(float, row))]) for galaxy_id, row in zip(ids, labels)]
        (root / "data" / "raw" / paths.SOLUTIONS_CSV).write_text(
            "\n".join([",".join(decision_tree.CSV_HEADER), *rows]) + "\n")
    main = {"blend": blend_predictions.main, "labels": create_solutions_train.main, "ids": create_train_ids.main}[script]
    before = {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}

    def full(file, array, *args, **kwargs):
        file.write(b"\x93NUMPY")
        raise no_space()

    monkeypatch.setattr(np, "save", full)
    status = main(["--root", str(root)])
    monkeypatch.undo()
    err = one_error_line(capsys)
    assert status == 1 and "No space left on device; free some space there" in err and str(root) in err
    assert {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()} == before


# ---------------------------------------------------------------------------------------------------
# The worker pool


@pytest.mark.parametrize("reason", [errno.ENOSPC, errno.EROFS])
def test_a_worker_pool_that_cannot_start_is_one_line(root, tmp_path, capsys, monkeypatch, reason):
    """/dev/shm full or read-only when the pool makes its locks: training stops in one line saying where and what to
    do (before, "checkpoint saved" and then a traceback)."""
    def refused(*args, **kwargs):
        raise OSError(reason, os.strerror(reason))

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", refused)
    assert train_tiny(root, tmp_path, "--workers", "2") == 1
    err = one_error_line(capsys)
    assert f"error: {parallel.SEMAPHORE_FOLDER}: {os.strerror(reason)}" in err and "--workers 0" in err


def test_an_oserror_raised_in_a_worker_is_one_line(capsys):
    def work():
        with parallel.process_pool(1) as pool:
            list(parallel.imap_unordered(pool, no_space_task, ["/data/out.npy"]))

    assert runner.report_errors(work) == 1
    assert one_error_line(capsys) == "error: /data/out.npy: No space left on device; free some space there and run " \
                                     "the same command again"


def test_an_oserror_that_is_a_bug_keeps_its_traceback():
    def work():
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    with pytest.raises(OSError):
        runner.report_errors(work)


# ---------------------------------------------------------------------------------------------------
# A diverged run


class NaNGradient(torch.autograd.Function):
    """The identity, whose gradient is NaN."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_training_stops_at_the_first_non_finite_loss_or_gradient(root, tmp_path, capsys, monkeypatch, what):
    """The 4th minibatch (chunk 2, minibatch 2 of 2) gives a NaN loss, or a NaN gradient with a finite loss: one line
    naming chunk and minibatch, exit 1, and the checkpoint of chunk 1 unchanged (before: training went on with NaN,
    validated and saved NaN checkpoints)."""
    real_mse, calls, kept = torch.nn.functional.mse_loss, [], {}

    def poisoned_mse(predictions, labels):
        calls.append(1)
        if len(calls) != 4:
            return real_mse(predictions, labels)
        kept["digest"] = checkpoint_digest()
        if what == "loss":
            return real_mse(predictions, labels) * float("nan")
        return real_mse(NaNGradient.apply(predictions), labels)

    monkeypatch.setattr(torch.nn.functional, "mse_loss", poisoned_mse)
    assert train_tiny(root, tmp_path) == 1
    err = one_error_line(capsys)
    assert "training diverged in chunk 2 of 3, minibatch 2 of 2" in err
    assert ("the loss is nan" if what == "loss" else "a gradient holds NaN or infinity") in err
    assert "kept as it was" in err and checkpoint_digest() == kept["digest"]
    assert checkpoints.load_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME))["next_chunk"] == 1


def test_non_finite_parameters_are_never_saved(root, tmp_path, capsys, monkeypatch):
    """A parameter made infinite by the last update of chunk 1: the checkpoint after chunk 1 is not written."""
    real_step, steps = stages.NesterovMomentum.step, []

    def step_to_infinity(self):
        real_step(self)
        steps.append(1)
        if len(steps) == 2:
            self.param_groups[0]["params"][0].data.fill_(float("inf"))

    monkeypatch.setattr(stages.NesterovMomentum, "step", step_to_infinity)
    assert train_tiny(root, tmp_path) == 1
    err = one_error_line(capsys)
    assert "training diverged:" in err and "holds NaN or infinity" in err and "no checkpoint was written" in err
    assert not checkpoints.checkpoint_path(TINY_MODEL_NAME).exists()


def test_resuming_from_non_finite_parameters_is_refused(trained, tmp_path, capsys):
    path = checkpoints.checkpoint_path(TINY_MODEL_NAME)
    state = checkpoints.load_checkpoint(path)
    name = next(iter(state["model"]))
    state["model"][name][0] = float("nan")
    checkpoints.save_checkpoint(path, state)  # a digest that matches: the file is what a diverged run saved
    assert train_tiny(trained, tmp_path) == 1
    err = one_error_line(capsys)
    assert f"non-finite parameters (NaN or infinity in {name})" in err and "--fresh" in err
    assert predict() == 1 and "non-finite parameters" in one_error_line(capsys)


# ---------------------------------------------------------------------------------------------------
# A damaged checkpoint


def flip_bits(path, count, seed=0):
    """Flip `count` bits inside the largest tensor stored in the checkpoint archive (stored uncompressed)."""
    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = (int.from_bytes(data[entry.header_offset + k:entry.header_offset + k + 2], "little")
                                 for k in (26, 28))
    start = entry.header_offset + 30 + name_length + extra_length
    for bit in np.random.default_rng(seed).choice(entry.file_size * 8, count, replace=False):
        data[start + bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(data))


def test_a_checkpoint_with_flipped_bits_is_refused(trained, tmp_path, capsys):
    """200 bits flipped in one weight tensor: torch.load reads the file without complaint, but training and prediction
    refuse it in one line (before, its predictions were written and blended)."""
    path = checkpoints.checkpoint_path(TINY_MODEL_NAME)
    before = torch.load(path, weights_only=True)
    flip_bits(path, 200)
    after = torch.load(path, weights_only=True)
    assert any(not torch.equal(before["model"][name], after["model"][name]) for name in before["model"])
    assert train_tiny(trained, tmp_path) == 1
    assert "damaged checkpoint" in one_error_line(capsys)
    assert predict() == 1
    assert f"{path}: damaged checkpoint" in one_error_line(capsys)


def test_a_checkpoint_without_a_digest_loads_with_a_note(trained, capsys):
    """Checkpoints written before they carried a digest still load (older runs are not lost), saying that damage to
    them cannot be found."""
    path = checkpoints.checkpoint_path(TINY_MODEL_NAME)
    state = checkpoints.load_checkpoint(path)
    del state[checkpoints.DIGEST_KEY]
    torch.save(state, path)
    assert checkpoints.load_checkpoint(path)["model"].keys() == state["model"].keys()
    assert "written before checkpoints carried a digest" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# Messages


def test_a_galaxy_id_in_both_image_folders_is_refused(root, capsys):
    train_folder, test_folder = paths.raw_images_dir("train"), paths.raw_images_dir("test")
    shared = sorted(train_folder.iterdir())[:2]
    for image in shared:
        shutil.copy(image, test_folder / image.name)
    before = {path: path.read_bytes() for path in (root / "data").glob("*.npy")}
    assert create_train_ids.main(["--root", str(root)]) == 1
    err = one_error_line(capsys)
    assert "2 GalaxyID(s) in both folders" in err and all(image.stem in err for image in shared)
    assert {path: path.read_bytes() for path in (root / "data").glob("*.npy")} == before


@pytest.mark.parametrize("main", [create_train_ids.main, copy_data_to_shm.main])
def test_kaggles_folder_name_is_named_with_the_rename_to_make(root, capsys, main):
    folder = paths.raw_images_dir("train")
    misnamed = folder.parent / "images_training_rev1"
    folder.rename(misnamed)
    assert main(["--root", str(root)]) == 1
    err = one_error_line(capsys)
    assert f"{folder}: image folder missing, but {misnamed} is there" in err and f"(mv {misnamed} {folder})" in err


def test_convert_names_a_missing_file_and_refuses_an_array_of_text(root, capsys):
    missing = paths.predictions_dir() / "nothing.npy.gz"
    assert convert_npy_to_csv.main([str(missing), "--root", str(root)]) == 1
    assert one_error_line(capsys) == f"error: {missing}: file missing"
    text = paths.predictions_dir() / "text.npy.gz"
    records.save_gz(text, np.full((len(load_data.load_ids("test")), 37), "a"))
    assert convert_npy_to_csv.main([str(text), "--root", str(root), "--without-record"]) == 1
    assert "predictions must be numbers, got an array of <U1" in one_error_line(capsys)


@pytest.mark.parametrize("num_bytes, shown", [(1_600_000_000, "1.6 GB"), (1_617_984, "1.6 MB"), (539_328, "539.3 kB")])
def test_sizes_are_shown_in_a_unit_that_keeps_their_digits(num_bytes, shown):
    assert files.size_text(num_bytes) == shown


def test_images_read_from_the_decoded_cache_are_said_so(root, capsys):
    assert copy_data_to_shm.main(["--root", str(root), "--cache", "--workers", "1"]) == 0
    load_data.forget_cached()
    line = load_data.check_images_read([("train", load_data.load_ids("train")), ("test", load_data.load_ids("test"))])
    assert line == "23 images read from the decoded cache (checked when it was built)"


def test_remove_gives_the_ram_copy_back(root, capsys):
    assert copy_data_to_shm.main(["--root", str(root), "--cache", "--workers", "1"]) == 0
    ram = paths.ram_dir()
    size = sum(path.stat().st_size for path in ram.rglob("*") if path.is_file())
    capsys.readouterr()
    assert copy_data_to_shm.main(["--root", str(root), "--remove"]) == 0
    assert capsys.readouterr().out == f"removed {ram} ({files.size_text(size)})\n" and not ram.exists()
    assert copy_data_to_shm.main(["--root", str(root), "--remove"]) == 0
    assert "no RAM copy to remove" in capsys.readouterr().out
