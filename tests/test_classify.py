"""classify_images.py: the same numbers as steps 6 and 7 for a run's own test images (one model, a fitted blend, the
plain average), on the synthetic run and on the real sample; images of other sizes and formats resampled; bad images
named and skipped; a stopped run continued."""
import io
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import blend_predictions
from galaxyzoo import checkpoints
import classify_images
from galaxyzoo import decision_tree
import extract_pysex_params
import layers
import load_data
import predict_augmented_npy
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import recipe
from helpers import TINY_MODEL_NAME, isolation, make_small_run, real_sample_root, tiny_model, tiny_recipe
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import runner

SECOND_MODEL = "try_tiny_test_model_b"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A run of every step with two tiny models, made once for the module: (root, {model: try script})."""
    folder = tmp_path_factory.mktemp("classify")
    with pytest.MonkeyPatch.context() as monkeypatch, isolation(monkeypatch, folder):
        scripts = make_small_run(folder / "run", models=(TINY_MODEL_NAME, SECOND_MODEL))
    return folder / "run", scripts


@pytest.fixture
def run_root(small_run, isolated):
    root, scripts = small_run
    paths.set_root(root)
    return root, scripts


def classify(root, sources, models, out, *options):
    """classify_images.py's exit status and its CSV (a DataFrame, None when not written)."""
    status = classify_images.main([*map(str, sources), "--models", ",".join(map(str, models)), "--out", str(out),
                                   "--root", str(root), "--device", "cpu", *options])
    answers = {column: str for column in classify_images.answer_columns()}
    return status, (pd.read_csv(out, keep_default_na=False, dtype=answers) if out.exists() else None)


def values_of(table):
    return table[list(decision_tree.COLUMNS)].to_numpy(np.float64)


@pytest.mark.parametrize("blend", ["per_model", "per_column", "uniform", "one model"])
def test_a_runs_own_test_images_get_the_numbers_of_steps_6_and_7(run_root, tmp_path, blend):
    root, scripts = run_root
    models = [scripts[TINY_MODEL_NAME]] if blend == "one model" else list(scripts.values())
    options = [] if blend == "one model" else ["--blend", blend]
    status, table = classify(root, [paths.raw_images_dir("test")], models, tmp_path / "out.csv", *options)
    assert status == 0
    test_ids = load_data.load_ids("test")
    assert table["file"].tolist() == [f"{galaxy_id}.jpg" for galaxy_id in test_ids]
    expected = (paths.augmented_predictions_path(TINY_MODEL_NAME, "test") if blend == "one model"
                else blend_predictions.blended_dir() / blend_predictions.BLEND_FILES[blend])
    np.testing.assert_allclose(values_of(table), records.load_gz(expected), atol=1e-6)
    assert np.ptp(values_of(table), axis=0).max() > 1e-3  # the images give different answers
    answers = decision_tree.most_voted_answers(values_of(table))
    for question, column in zip(decision_tree.QUESTIONS, classify_images.answer_columns()):
        q = question.number - 1
        assert table[column].tolist() == [question.answers[a] if a >= 0 else "" for a in answers[:, q]]


def test_without_fitted_weights_for_these_models_the_plain_average_is_said_and_used(run_root, tmp_path, capsys):
    root, scripts = run_root
    copy = shutil.copytree(root, tmp_path / "copy")
    paths.set_root(copy)
    (blend_predictions.blended_dir() / blend_predictions.WEIGHTS_FILE).unlink()
    scripts_in_copy = [copy / f"{name}.py" for name in scripts]
    status, table = classify(copy, [copy / "data" / "raw" / "images_test_rev1"], scripts_in_copy, tmp_path / "o.csv")
    assert status == 0 and "plain average: no fitted weights" in capsys.readouterr().out
    uniform = records.load_gz(copy / "predictions" / "final" / "blended" / blend_predictions.BLEND_FILES["uniform"])
    np.testing.assert_allclose(values_of(table), uniform, atol=1e-6)


def test_a_model_that_centres_and_rescales_measures_each_image_as_step_3_does(run_root, tmp_path):
    """The tiny model's checkpoint made to declare centred and rescaled input: classify_images measures each image
    itself and gets what step 6 gives from step 3's parameter files."""
    root, _ = run_root
    copy = shutil.copytree(root, tmp_path / "copy")
    paths.set_root(copy)
    path = checkpoints.checkpoint_path(TINY_MODEL_NAME)
    state = checkpoints.load_checkpoint(path)
    state["config"]["PREPROCESSING"] = "centre_rescale"
    checkpoints.save_checkpoint(path, state)
    assert extract_pysex_params.main(["--workers", "1"]) == 0
    script = copy / f"{TINY_MODEL_NAME}.py"
    assert predict_augmented_npy.main([TINY_MODEL_NAME, "--num-transforms", "2", "--workers", "0", "--device", "cpu",
                                       "--script", str(script)]) == 0
    test_ids = load_data.load_ids("test")
    prepro = ra.prepro_matrices("centre_rescale", test_ids, "test")
    assert not np.allclose(prepro, np.eye(3))  # the preprocessing moves or zooms the images
    status, table = classify(copy, [paths.raw_images_dir("test")], [script], tmp_path / "out.csv")
    assert status == 0
    np.testing.assert_allclose(values_of(table), records.load_gz(paths.augmented_predictions_path(
        TINY_MODEL_NAME, "test")), atol=1e-6)


def test_other_sizes_and_formats_are_resampled_to_the_424_frame(run_root, tmp_path):
    root, _ = run_root
    jpeg = paths.raw_images_dir("test") / f"{load_data.load_ids('test')[0]}.jpg"
    pixels = load_data.decode_jpeg(jpeg)
    Image.fromarray(pixels).save(tmp_path / "same.png")
    np.testing.assert_array_equal(classify_images.read_image(tmp_path / "same.png"), pixels)  # lossless: same pixels
    Image.fromarray(pixels).resize((848, 848), Image.LANCZOS).save(tmp_path / "twice.png")
    assert np.abs(classify_images.read_image(tmp_path / "twice.png").astype(int) - pixels).mean() < 1.5
    wide = np.zeros((424, 600, 3), np.uint8)
    wide[:, 88:512] = pixels
    Image.fromarray(wide).save(tmp_path / "wide.png")
    np.testing.assert_array_equal(classify_images.read_image(tmp_path / "wide.png"), pixels)  # the centred square
    Image.fromarray(pixels).convert("L").save(tmp_path / "grey.jpg")
    assert classify_images.read_image(tmp_path / "grey.jpg").shape == (424, 424, 3)


def test_bad_images_are_named_skipped_and_counted(run_root, tmp_path, capsys):
    root, scripts = run_root
    folder = tmp_path / "images"
    shutil.copytree(paths.raw_images_dir("test"), folder)
    good = sorted(path.name for path in folder.iterdir())
    (folder / "cut.jpg").write_bytes((folder / good[0]).read_bytes()[:600])
    (folder / "notes.png").write_text("not an image")
    buffer = io.BytesIO()
    Image.new("RGB", (50, 50)).save(buffer, format="GIF")
    (folder / "anim.jpg").write_bytes(buffer.getvalue())
    (folder / "readme.txt").write_text("not listed: not an image suffix")
    status, table = classify(root, [folder], [scripts[TINY_MODEL_NAME]], tmp_path / "out.csv")
    out = capsys.readouterr().out
    assert status == 0 and table["file"].tolist() == good  # no row for a bad image
    assert f"3 of {len(good) + 3} images skipped, not readable:" in out
    assert f"{folder / 'anim.jpg'}: not a JPEG or PNG image (found GIF)" in out
    assert f"{folder / 'cut.jpg'}: cannot read as an image" in out and f"{folder / 'notes.png'}: cannot" in out

    status, _ = classify(root, [folder / "cut.jpg"], [scripts[TINY_MODEL_NAME]], tmp_path / "none.csv")
    assert status == 1 and "error: none of the 1 images could be read" in capsys.readouterr().err
    status, _ = classify(root, [tmp_path / "nowhere"], [scripts[TINY_MODEL_NAME]], tmp_path / "none.csv")
    assert status == 1 and capsys.readouterr().err == f"error: {tmp_path / 'nowhere'}: no such file or folder\n"


def test_a_stopped_run_continues_after_the_images_done(run_root, tmp_path, monkeypatch, capsys):
    root, scripts = run_root
    models, source = list(scripts.values()), [paths.raw_images_dir("test")]
    monkeypatch.setattr(classify_images, "IMAGES_PER_CHUNK", 2)  # the same forward batches in every run
    _, expected = classify(root, source, models, tmp_path / "whole.csv")
    calls, real_blended = [], classify_images.blended

    def stopping(members, weights, images, device, batch_size):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_blended(members, weights, images, device, batch_size)

    monkeypatch.setattr(classify_images, "blended", stopping)
    out = tmp_path / "out.csv"
    assert classify(root, source, models, out)[0] == runner.INTERRUPTED
    assert not out.exists() and classify_images.partial_path(out).exists()
    counted = []
    monkeypatch.setattr(classify_images, "blended", lambda *a: counted.append(len(a[2])) or real_blended(*a))
    status, table = classify(root, source, models, out)
    assert status == 0 and sum(counted) == len(expected) - 2  # the first chunk's two images were kept
    assert "continuing after the 2 images done" in capsys.readouterr().out
    pd.testing.assert_frame_equal(table, expected)
    assert not classify_images.partial_path(out).exists()


def test_the_real_samples_test_images_get_step_6s_numbers(isolated, real_sample, tmp_path):
    """A tiny checkpoint on a root of real images (symlinked, never copied): classify_images on the sample's own
    test files gives what predict_augmented_npy.py wrote for those IDs over the same 3 transforms."""
    root = isolated / "real_root"
    _, test_ids = real_sample_root(root, real_sample, num_train=20, num_test=8)
    paths.set_root(root)
    script = tiny_recipe(tmp_path)["__file__"]
    model = tiny_model(seed=5)
    layers.reinitialise_standard(model)  # outputs that differ from image to image
    checkpoints.save_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME),
                                dict(model=model.state_dict(), config=recipe.Recipe().config(),
                                     data=checkpoints.data_stamp()))
    assert predict_augmented_npy.main([TINY_MODEL_NAME, "--root", str(root), "--num-transforms", "3", "--workers", "0",
                                       "--device", "cpu", "--script", str(script)]) == 0
    files = [real_sample / "images_test_rev1" / f"{galaxy_id}.jpg" for galaxy_id in test_ids]
    status, table = classify(root, files, [script], tmp_path / "out.csv")
    assert status == 0 and table["file"].tolist() == [str(path) for path in files]
    step6 = records.load_gz(paths.augmented_predictions_path(TINY_MODEL_NAME, "test"))
    np.testing.assert_allclose(values_of(table), step6, atol=1e-6)
    assert np.ptp(step6, axis=0).max() > 1e-3  # the images give different answers: the comparison means something
