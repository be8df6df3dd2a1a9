"""Derived files and what they were made from: each stale file is refused with the step to rerun (before, each of
these cases finished with exit 0 and wrong output), and the steps rerun in order make them good again."""
import shutil

import numpy as np
import pytest

import blend_predictions
from galaxyzoo import checkpoints
import convert_npy_to_csv
import copy_data_to_shm
import create_solutions_train
import create_train_ids
import extract_pysex_params
import load_data
import make_synthetic_data
import score_predictions
from galaxyzoo import source_params
from galaxyzoo import train
from helpers import TINY_MODEL_NAME, save_predictions, save_recorded, tiny_recipe
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import errors

NUM_TRAIN, NUM_TEST = 20, 4


@pytest.fixture
def data_root(isolated, capsys):
    """A rendered dataset in the Kaggle layout whose ID and label files the scripts wrote; set as the root."""
    root = isolated / "root"
    assert make_synthetic_data.main(["--root", str(root), "--num-train", str(NUM_TRAIN), "--num-test", str(NUM_TEST),
                                     "--workers", "1"]) == 0
    paths.set_root(root)
    rerun_data_steps()
    capsys.readouterr()
    return root


def rerun_data_steps():
    """Steps 1 and 2, as a user reruns them."""
    assert create_train_ids.main([]) == 0
    assert create_solutions_train.main([]) == 0


def refusal(call, capsys):
    """The one-line error of a script's main() that must refuse (exit 1), or of a function raising DataError."""
    capsys.readouterr()
    try:
        status = call()
    except errors.DataError as exc:
        return str(exc)
    except SystemExit as exc:  # train.main exits with the status
        status = exc.code
    assert status == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    return error


NEW_ID = 999_999


def swap_one_training_image():
    """Replace one training galaxy by another one (same count): remove the first image, add a copy of the second under
    the GalaxyID NEW_ID. Returns (removed ID, copied ID)."""
    folder = paths.raw_images_dir("train")
    first, second = (int(g) for g in load_data.load_ids("train")[:2])
    (folder / f"{first}.jpg").unlink()
    shutil.copyfile(folder / f"{second}.jpg", folder / f"{NEW_ID}.jpg")
    load_data.forget_cached()
    return first, second


def relabel(copied):
    """Rewrite the label CSV for the training images in the folder now: the rows of removed images dropped, NEW_ID
    labelled as the galaxy it copies."""
    csv = paths.solutions_csv_path()
    header, *rows = csv.read_text().splitlines()
    by_id = {int(row.split(",")[0]): row for row in rows}
    by_id[NEW_ID] = str(NEW_ID) + by_id[copied][by_id[copied].index(","):]
    present = sorted(int(path.stem) for path in paths.raw_images_dir("train").glob("*.jpg"))
    csv.write_text("\n".join([header] + [by_id[g] for g in present]) + "\n")


def test_an_id_list_is_refused_when_its_image_folder_changed(data_root, capsys):
    removed, _ = swap_one_training_image()
    message = refusal(lambda: load_data.load_ids("train"), capsys)
    assert f"GalaxyID {removed}" in message and f"{NEW_ID}.jpg" in message and "create_train_ids.py" in message
    assert create_train_ids.main([]) == 0
    assert NEW_ID in load_data.load_ids("train")


def test_labels_are_refused_when_the_ids_or_the_csv_changed(data_root, capsys):
    """The case of the issue: create_train_ids.py rerun over a changed image folder; before, every label row then
    belonged to another galaxy, and training ended with exit 0."""
    _, copied = swap_one_training_image()
    assert create_train_ids.main([]) == 0
    message = refusal(lambda: load_data.load_solutions(), capsys)
    assert "solutions_train.npy: made from other training IDs" in message and "create_solutions_train.py" in message
    relabel(copied)
    assert create_solutions_train.main([]) == 0
    assert load_data.load_solutions().shape == (NUM_TRAIN, 37)

    csv = paths.solutions_csv_path()
    csv.write_text(csv.read_text() + "\n")  # any edit, even one that changes no label
    message = refusal(lambda: load_data.load_solutions(), capsys)
    assert f"made from other label file ({csv})" in message
    assert create_solutions_train.main([]) == 0


def test_a_labels_file_replaced_by_hand_or_a_damaged_record_is_refused(data_root, capsys):
    path = paths.solutions_train_path()
    labels = np.load(path)
    np.save(path, labels[::-1])  # the same shape: before, accepted as it was
    message = refusal(lambda: load_data.load_solutions(), capsys)
    assert "not the file its record solutions_train.npy.record.json describes" in message
    for damaged in ("", "{", "[]", '{"file": 1, "inputs": {}}', '{"file": {}, "inputs": []}',
                    '{"file": {}, "inputs": {"a": {"path": 3}}}'):
        records.record_path(path).write_text(damaged)
        assert "unreadable record" in refusal(lambda: load_data.load_solutions(), capsys), damaged
    records.record_path(path).unlink()
    assert "no record of what it was made from" in refusal(lambda: load_data.load_solutions(), capsys)


def test_the_decoded_cache_and_the_ram_copy_are_refused_after_an_image_changed(data_root, capsys):
    """The case of the issue: one training image replaced by another galaxy's, the ID list rebuilt; training then
    read every image from the wrong cache row and ended with exit 0."""
    assert copy_data_to_shm.main(["--cache", "--workers", "1", "--subsets", "train"]) == 0
    first = load_data.load_ids("train")[0]
    np.testing.assert_array_equal(load_data.load_image_uint8(first), load_data.ImageCache("train")[first])
    swap_one_training_image()
    assert create_train_ids.main([]) == 0
    message = refusal(lambda: load_data.load_image_uint8(load_data.load_ids("train")[0]), capsys)
    assert "images_train_rev1_uint8.npy: made from other train IDs" in message and "--cache" in message

    assert copy_data_to_shm.main(["--workers", "1", "--subsets", "train"]) == 0  # the copy again, not the cache
    message = refusal(lambda: load_data.load_image_uint8(load_data.load_ids("train")[0]), capsys)
    assert "uint8.npy: made from other train IDs" in message

    # the same names, one image's content changed (rewritten): the cache is stale, the RAM copy too until recopied
    assert copy_data_to_shm.main(["--cache", "--workers", "1", "--subsets", "train"]) == 0
    second_id = load_data.load_ids("train")[1]
    raw_file = paths.raw_images_dir("train") / f"{second_id}.jpg"
    raw_file.write_bytes((paths.raw_images_dir("train") / "999999.jpg").read_bytes())
    load_data.forget_cached()
    message = refusal(lambda: load_data.load_image_uint8(second_id), capsys)
    assert "uint8.npy: made from other images" in message
    paths.cache_path("train").unlink()
    load_data.forget_cached()
    message = refusal(lambda: load_data.load_image_uint8(second_id), capsys)
    assert "RAM copy" in message and "copy_data_to_shm.py again" in message
    assert copy_data_to_shm.main(["--cache", "--workers", "1", "--subsets", "train"]) == 0
    np.testing.assert_array_equal(load_data.load_image_uint8(second_id), load_data.decode_jpeg(raw_file))


def test_a_ram_copy_cut_short_or_with_extra_images_is_refused_and_a_rerun_mends_it(data_root, capsys):
    assert copy_data_to_shm.main(["--workers", "1", "--subsets", "test"]) == 0
    in_ram = paths.ram_images_dir("test")
    copied = sorted(in_ram.glob("*.jpg"))
    copied[0].unlink()
    load_data.forget_cached()
    assert "differs from it (3 images there, 4 in data/raw" in refusal(lambda: load_data.load_image(
        load_data.load_ids("test")[1], "test"), capsys)
    shutil.copyfile(copied[1], in_ram / "123.jpg")
    shutil.copyfile(copied[1], copied[0])
    load_data.forget_cached()
    assert "RAM copy" in refusal(lambda: load_data.image_folders("test"), capsys)
    assert copy_data_to_shm.main(["--workers", "1", "--subsets", "test"]) == 0
    assert not (in_ram / "123.jpg").exists() and load_data.image_folders("test")[0] == in_ram


def test_source_extraction_parameters_are_refused_for_other_images(data_root, capsys):
    assert extract_pysex_params.main(["--workers", "1", "--subsets", "test"]) == 0
    test_ids = load_data.load_ids("test")
    source_params.load_columns(source_params.GEN2, "test", test_ids)
    image = paths.raw_images_dir("test") / f"{test_ids[0]}.jpg"
    image.write_bytes((paths.raw_images_dir("test") / f"{test_ids[1]}.jpg").read_bytes())
    load_data.forget_cached()
    message = refusal(lambda: source_params.load_columns(source_params.EXTRA, "test", test_ids), capsys)
    assert "pysex_params_extra_test.npy.gz: made from other images" in message and "extract_pysex_params.py" in message


@pytest.fixture
def trained(data_root, capsys):
    """The tiny model trained for one short chunk on data_root; returns its recipe."""
    recipe = tiny_recipe(data_root)
    train.main(recipe, ["--num-chunks", "1", "--workers", "1", "--max-valid", "4"])
    capsys.readouterr()
    return recipe


def test_a_checkpoint_is_refused_for_other_training_data(trained, capsys):
    import predict_augmented_npy
    _, copied = swap_one_training_image()
    relabel(copied)
    rerun_data_steps()
    message = refusal(lambda: train.main(trained, ["--num-chunks", "1", "--workers", "1", "--max-valid", "4"]), capsys)
    assert "trained on other training images or labels" in message and "--fresh" in message
    message = refusal(lambda: predict_augmented_npy.main([TINY_MODEL_NAME, "--num-transforms", "1", "--workers", "1",
                                                          "--script", trained["__file__"]]), capsys)
    assert "trained on other training images or labels" in message


def test_predictions_and_blends_are_refused_when_what_they_came_from_changed(data_root, capsys):
    valid_ids, test_ids = load_data.labelled_split().valid_ids, load_data.load_ids("test")
    rng = np.random.default_rng(0)
    for model in ("a", "b"):
        for split, ids in (("valid", valid_ids), ("test", test_ids)):
            save_predictions(model, split, rng.uniform(0, 1, (len(ids), 37)).astype(np.float32))
    # a prediction file made from a checkpoint that has changed since (the model trained further)
    checkpoint = checkpoints.checkpoint_path("b")
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"the checkpoint the predictions were made from")
    path = paths.augmented_predictions_path("b", "valid")
    records.save_gz(path, records.load_gz(path), "predict_augmented_npy.py", ids=records.ids_stamp(valid_ids),
                      checkpoint=records.file_input(checkpoint))
    assert blend_predictions.main([]) == 0
    checkpoint.write_bytes(b"the checkpoint after more training")
    message = refusal(lambda: blend_predictions.main([]), capsys)
    assert f"made from {checkpoint}, which has changed since" in message and "predict_augmented_npy.py b" in message
    checkpoint.unlink()  # a checkpoint that is gone is not compared

    uniform = blend_predictions.blended_dir() / blend_predictions.BLEND_FILES["uniform"]
    assert convert_npy_to_csv.main([str(uniform)]) == 0
    save_predictions("a", "test", rng.uniform(0, 1, (len(test_ids), 37)).astype(np.float32))  # predicted again
    message = refusal(lambda: convert_npy_to_csv.main([str(uniform)]), capsys)
    assert "augmented/test/a.npy.gz, which has changed since" in message

    # a prediction file of the validation split scored, or blended, as another split
    valid_file = paths.augmented_predictions_path("a", "valid")
    message = refusal(lambda: score_predictions.main([str(valid_file), "--split", "test"]), capsys)
    assert "made from other test IDs" in message


def test_a_file_without_a_record_is_refused_unless_asked_for(data_root, capsys):
    test_ids = load_data.load_ids("test")
    made_elsewhere = data_root / "elsewhere.npy.gz"
    records.save_gz(made_elsewhere, np.full((len(test_ids), 37), 0.25, dtype=np.float32))
    message = refusal(lambda: convert_npy_to_csv.main([str(made_elsewhere)]), capsys)
    assert "no record of what it was made from" in message and "--without-record" in message
    assert convert_npy_to_csv.main([str(made_elsewhere), "--without-record"]) == 0

    recorded = save_recorded(data_root / "recorded.npy.gz", np.full((len(test_ids), 37), 0.25), test_ids)
    swap_test = paths.raw_images_dir("test") / f"{test_ids[0]}.jpg"
    swap_test.rename(swap_test.with_name("999998.jpg"))
    assert create_train_ids.main([]) == 0
    message = refusal(lambda: convert_npy_to_csv.main([str(recorded)]), capsys)
    assert "made from other test IDs" in message
