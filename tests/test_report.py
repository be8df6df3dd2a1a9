"""make_report.py: the report of a small run (two tiny models trained, averaged, blended, converted and scored) opened
in headless Chromium with no console error and every image loaded; what it says about each file, model and blend; a
stale file and a run with one model, no blend or nothing at all."""
import re
import shutil

import numpy as np
import pytest
from PIL import Image

import blend_predictions
import load_data
import make_report
from galaxyzoo import submission
from browser import missing_browser, open_page
from helpers import TINY_MODEL_NAME, isolation, make_small_run, save_predictions
from galaxyzoo import paths
from galaxyzoo import records

SECOND_MODEL = "try_tiny_test_model_b"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A run of every step with two tiny models, made once for the module; tests copy it before changing it."""
    folder = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as monkeypatch, isolation(monkeypatch, folder):
        make_small_run(folder / "run", models=(TINY_MODEL_NAME, SECOND_MODEL))
    return folder / "run"


@pytest.fixture
def run_copy(small_run, isolated):
    """A copy of the small run in this test's folder, set as the root."""
    root = shutil.copytree(small_run, isolated / "run")
    paths.set_root(root)
    return root


def write_report(root, capsys):
    """make_report.py --root root; returns the page's text."""
    assert make_report.main(["--root", str(root)]) == 0
    path = root / "report" / "index.html"
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    return path.read_text()


def state_of(page, shown_path):
    """The state the pipeline table gives the file shown_path (relative to the root)."""
    match = re.search(rf"<code>{re.escape(shown_path)}</code></td><td class='[^']*'>([^<]*)</td>", page)
    assert match, f"{shown_path} not in the pipeline table"
    return match.group(1)


def test_the_report_loads_in_a_browser_with_every_image(run_copy, capsys, tmp_path):
    problem = missing_browser()
    if problem:
        pytest.skip(f"no headless browser: {problem}")
    write_report(run_copy, capsys)
    page = run_copy / "report" / "index.html"
    check = open_page(page, tmp_path / "report.png")
    assert check.console_errors == [] and check.broken_images == [] and check.outside_resources == []
    thumbnails = list((run_copy / "report" / "galaxies").glob("*.jpg"))
    # two learning curves, the per-column weights, the test-set distributions and every thumbnail
    assert thumbnails and check.image_count == 4 + page.read_text().count("<img src='galaxies/")
    width, height = Image.open(tmp_path / "report.png").size
    assert width == 1280 and height > 500  # the window less the browser's own frame

    thumbnails[0].unlink()  # the check sees a picture that does not load
    check = open_page(page)
    assert len(check.broken_images) == page.read_text().count(f"galaxies/{thumbnails[0].name}")
    assert check.broken_images[0].endswith(thumbnails[0].name) and check.console_errors


def test_every_file_is_fresh_and_the_scores_are_those_of_the_files(run_copy, capsys):
    page = write_report(run_copy, capsys)
    for shown in ("data/train_ids.npy", "data/solutions_train.npy", f"analysis/final/{SECOND_MODEL}.pt",
                  f"predictions/final/augmented/valid/{TINY_MODEL_NAME}.npy.gz",
                  "predictions/final/blended/blended_predictions_uniform.npy.gz",
                  "predictions/final/blended/blend_weights.json"):
        assert state_of(page, shown) == "fresh"
    assert state_of(page, "data/pysex_params_gen2_train.npy.gz") == "not made"
    assert "http" not in page  # nothing to fetch
    split = load_data.labelled_split()
    for model in (TINY_MODEL_NAME, SECOND_MODEL):
        averaged = blend_predictions.load_checked(model, "valid", split.valid_ids)
        assert f"<td>averaged over the test-time transforms</td><td>{submission.rmse(averaged, split.valid_labels):.5f}" \
            in page
    models, weights = blend_predictions.load_weights()
    assert models == [TINY_MODEL_NAME, SECOND_MODEL]
    assert f"<td>{SECOND_MODEL}</td><td>0.5000</td><td>{weights['per_model'][1]:.4f}</td>" in page
    mean = np.broadcast_to(split.train_labels.mean(axis=0), split.valid_labels.shape)
    assert f"<td>training mean</td><td>{submission.rmse(mean, split.valid_labels):.5f}</td>" in page
    assert "training time</b> 0:00:0" in page  # seconds, recorded by the checkpoint


def test_a_changed_prediction_file_is_stale_with_the_command_to_run(run_copy, capsys):
    path = paths.augmented_predictions_path(SECOND_MODEL, "valid")
    records.save_gz(path, np.full((len(load_data.labelled_split().valid_ids), 37), 0.5, np.float32))  # record kept
    page = write_report(run_copy, capsys)
    shown = f"predictions/final/augmented/valid/{SECOND_MODEL}.npy.gz"
    assert state_of(page, shown) == "stale"
    row = page[page.index(f"<code>{shown}</code>"):].split("</tr>")[0]
    assert "not the file its record" in row and f"python predict_augmented_npy.py {SECOND_MODEL} --root {run_copy}" in row
    assert state_of(page, "predictions/final/blended/blend_weights.json") == "stale"
    assert f"blend_weights.json: made from {path}, which has changed since; run blend_predictions.py again" in page


def test_one_model_and_no_blend(run_copy, capsys):
    shutil.rmtree(blend_predictions.blended_dir())
    for path in run_copy.rglob(f"{SECOND_MODEL}*"):
        path.unlink()
    page = write_report(run_copy, capsys)
    assert SECOND_MODEL not in page and state_of(page, "predictions/final/blended/blend_weights.json") == "missing"
    assert "no blend yet" in page and f"The model's answers are those of <b>{TINY_MODEL_NAME}</b>" in page
    assert f"as <b>{TINY_MODEL_NAME}</b> predicts it" in page  # the test set, from the model's own predictions


def test_a_run_with_nothing_yet_says_what_is_missing(isolated, capsys):
    page = write_report(isolated, capsys)
    assert state_of(page, "data/train_ids.npy") == "missing"
    assert "no trained model in analysis/final" in page and "no validation predictions to compare" in page


def test_a_blended_model_worse_than_the_training_mean_is_named_above_the_blends(run_copy, capsys):
    split = load_data.labelled_split()
    save_predictions(SECOND_MODEL, "valid", np.full(split.valid_labels.shape, 0.9))  # far worse than the mean
    assert blend_predictions.main(["--root", str(run_copy)]) == 0
    capsys.readouterr()
    mean_score = submission.rmse(np.broadcast_to(split.train_labels.mean(axis=0), split.valid_labels.shape),
                                 split.valid_labels)
    scores = {model: submission.rmse(blend_predictions.load_checked(model, "valid", split.valid_ids), split.valid_labels)
              for model in (TINY_MODEL_NAME, SECOND_MODEL)}
    page = write_report(run_copy, capsys)
    for model, score in scores.items():
        line = (f"<p class=warning>WARNING: {model}: validation RMSE {score:.6f} is worse than predicting the training "
                f"mean ({mean_score:.6f})</p>")
        assert (line in page) == (score > mean_score)
    assert scores[SECOND_MODEL] > mean_score and page.count("<p class=warning>") == sum(
        score > mean_score for score in scores.values())
