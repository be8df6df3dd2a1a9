"""Checks made before a step's work: every script refuses an output folder it cannot write, in one line and before
any work (before, a traceback, for training and prediction only after all their work); training and prediction
refuse a broken image before their work (before, when it was first drawn, losing the training since the last
checkpoint); a huge image is refused from its header, never decoded."""
import numpy as np
import pytest
import simplejpeg

import blend_predictions
from galaxyzoo import checkpoints
import convert_npy_to_csv
import copy_data_to_shm
import create_solutions_train
import create_train_ids
import load_data
import make_synthetic_data
import predict_augmented_npy
import score_predictions
from galaxyzoo import train
from galaxyzoo import paths
from galaxyzoo import errors
from helpers import (IMAGE_PROBLEMS, TINY_MODEL_NAME, corrupt_image, jpeg_claiming_size, make_tiny_root, read_only,
                     save_predictions, tiny_recipe)


def write_predictions(split, name="model_a"):
    """A (N, 37) prediction file of `split` for the current root; returns its path."""
    num_rows = len(load_data.split_ids(split))
    return save_predictions(name, split, np.full((num_rows, 37), 0.5, dtype=np.float32))


def files(root):
    return sorted(path for path in root.rglob("*") if not path.is_dir())


def run_script(script, root, tmp_path):
    """Run one script's main on `root` (set as the current root); returns its exit status."""
    options = ["--root", str(root)]
    if script == "train":
        with pytest.raises(SystemExit) as exit_info:
            train.main(tiny_recipe(tmp_path), [*options, "--num-chunks", "3", "--workers", "0"])
        return exit_info.value.code
    modules = dict(create_train_ids=create_train_ids, create_solutions_train=create_solutions_train,
                   copy_data_to_shm=copy_data_to_shm, blend=blend_predictions)
    if script in modules:
        return modules[script].main(options)
    if script == "predict":
        return predict_augmented_npy.main(["try_tiny_test_model", *options, "--workers", "0"])
    if script == "convert":
        return convert_npy_to_csv.main([str(paths.augmented_predictions_dir("test") / "model_a.npy.gz"), *options])
    if script == "score":
        return score_predictions.main([str(paths.augmented_predictions_dir("valid") / "model_a.npy.gz"),
                                       "--split", "valid", *options])
    return make_synthetic_data.main(["--root", str(root / "new"), "--num-train", "2", "--num-test", "1",
                                     "--workers", "1"])


# script -> the folder made read-only, relative to the root ("ram": the RAM copy's folder)
UNWRITABLE = {"create_train_ids": "data", "create_solutions_train": "data", "copy_data_to_shm": "ram",
              "train": "analysis/final", "train (its submission)": "predictions/final",
              "predict": "predictions/final", "blend": "predictions/final", "convert": "predictions/final/augmented/test",
              "score": "predictions/final/augmented/valid", "make_synthetic_data": "."}


@pytest.mark.parametrize("case", list(UNWRITABLE))
def test_an_unwritable_output_folder_is_one_line_before_any_work(isolated, capsys, case):
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    paths.set_root(root)
    if case in ("blend", "convert", "score"):
        for split in ("valid", "test"):
            write_predictions(split)
    folder = paths.ram_dir() if UNWRITABLE[case] == "ram" else root / UNWRITABLE[case]
    with read_only(folder):
        before = files(root)
        status = run_script(case.split(" ")[0], root, isolated)
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "cannot write in this folder" in err and str(folder) in err and "Traceback" not in err
    assert files(root) == before  # nothing written, not even a temporary


@pytest.mark.parametrize("script", ["create_train_ids", "create_solutions_train", "copy_data_to_shm", "train",
                                    "predict", "blend", "convert", "score"])
def test_a_missing_root_is_one_line_and_nothing_is_made(isolated, capsys, script):
    """--root naming a folder that does not exist: refused in one line; no folder, lock or RAM copy is made (before,
    training and prediction made their lock folders under it, and copy_data_to_shm.py its lock in /dev/shm)."""
    root = isolated / "no-such-root"
    paths.set_root(root)
    status = run_script(script, root, isolated)
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{root}: the project root (--root or $GALAXY_ROOT) does not exist" in err
    assert not root.exists() and not paths.ram_dir().exists()


@pytest.mark.parametrize("script, missing", [("train", "data/solutions_train.npy"), ("predict", "data/test_ids.npy"),
                                             ("copy_data_to_shm", "data/raw/images_test_rev1")])
def test_a_missing_input_is_refused_before_any_lock_or_folder_is_made(isolated, capsys, script, missing):
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    paths.set_root(root)
    if script == "predict":  # a checkpoint to predict with
        train.main(tiny_recipe(isolated), ["--root", str(root), "--num-chunks", "1", "--workers", "0"])
        (root / "predictions").rename(isolated / "predictions-of-training")
    target = root / missing
    target.rename(isolated / "moved") if target.is_dir() else target.unlink()
    capsys.readouterr()
    before = files(root)
    status = run_script(script, root, isolated)
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1 and target.name in err
    assert files(root) == before and not paths.ram_dir().exists()
    assert not (root / "predictions").exists() and (script == "predict" or not (root / "analysis").exists())


@pytest.mark.parametrize("subset", ["train", "test"])
@pytest.mark.parametrize("problem", IMAGE_PROBLEMS)
def test_a_broken_image_stops_training_before_it_starts(isolated, capsys, problem, subset):
    root = make_tiny_root(isolated / "root", num_train=20, num_test=3)
    paths.set_root(root)
    bad_id = int(load_data.load_ids(subset)[-1])  # a test image is read only after training, a validation one later
    expected = corrupt_image(paths.raw_images_dir(subset), bad_id, problem)
    if problem == "truncated":  # found from the file's end, without decoding it
        expected = "cut short"
    with pytest.raises(SystemExit) as exit_info:
        train.main(tiny_recipe(isolated), ["--root", str(root), "--num-chunks", "3", "--workers", "0"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 1 and expected in captured.err and f"GalaxyID {bad_id}" in captured.err
    assert "chunk 1/" not in captured.out and not checkpoints.checkpoint_path(TINY_MODEL_NAME).exists()


def test_a_huge_image_is_refused_from_its_header_without_decoding(tmp_path, monkeypatch):
    path = tmp_path / "1.jpg"
    path.write_bytes(jpeg_claiming_size(12000, 12000))
    decoded = []
    monkeypatch.setattr(simplejpeg, "decode_jpeg", lambda *args, **kwargs: decoded.append(1))
    with pytest.raises(errors.DataError, match="image is 12000x12000, expected 424x424"):
        load_data.decode_jpeg(path, 1)
    assert decoded == []
