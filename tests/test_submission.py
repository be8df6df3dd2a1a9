"""submission.py, convert_npy_to_csv.py and score_predictions.py: CSV round trip to the printed precision,
the real benchmark file's format, refusal of bad input with no file left behind, and convert + score
end-to-end on a tiny root of ID and label files."""
import gzip

import numpy as np
import pytest

import convert_npy_to_csv
from galaxyzoo import decision_tree
import load_data
import score_predictions
from galaxyzoo import submission
from helpers import make_tiny_root, save_recorded
from galaxyzoo import paths
from galaxyzoo import errors


@pytest.fixture
def label_root(isolated):
    """A tiny root of ID and label files (no images), set as the project root."""
    root = make_tiny_root(isolated / "root", num_train=50, num_test=8, galaxy_image=None)
    paths.set_root(root)
    return root


def random_predictions(num, seed=0):
    values = np.random.default_rng(seed).uniform(0, 1, (num, decision_tree.NUM_OUTPUTS))
    values[0, :3] = [0.0, 1.0, 0.5]  # the range's edges are valid
    return values


def test_round_trip_is_exact_to_the_printed_precision(tmp_path):
    ids = np.array([3, 17, 18, 400_000])
    values = random_predictions(len(ids))
    for name in ("sub.csv.gz", "sub.csv"):
        submission.write_submission(tmp_path / name, ids, values)
        read_ids, read_values = submission.read_submission(tmp_path / name)
        np.testing.assert_array_equal(read_ids, ids)
        assert read_ids.dtype == np.int64 and read_values.dtype == np.float64
        assert np.abs(read_values - values).max() <= submission.PRINTED_PRECISION + 1e-12
    with gzip.open(tmp_path / "sub.csv.gz", "rt") as f:
        assert f.readline().rstrip("\n") == ",".join(decision_tree.CSV_HEADER)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv", "sub.csv.gz"]


def test_real_benchmark_file_reads_and_our_file_matches_its_format(real_sample, tmp_path):
    benchmark = real_sample / "central_pixel_benchmark.csv.gz"
    ids, values = submission.read_submission(benchmark)
    assert values.shape == (len(ids), 37) and len(ids) == len(np.load(real_sample / "test_ids.npy"))
    ours = tmp_path / "ours.csv.gz"
    submission.write_submission(ours, ids, values)
    with gzip.open(benchmark, "rt") as theirs_file, gzip.open(ours, "rt") as ours_file:
        assert ours_file.readline() == theirs_file.readline().replace("\r\n", "\n")
    our_ids, our_values = submission.read_submission(ours)
    np.testing.assert_array_equal(our_ids, ids)
    assert np.abs(our_values - values).max() <= submission.PRINTED_PRECISION + 1e-12


@pytest.mark.parametrize("problem, expected_words", [
    ("shape", ["shape", "(4, 37)"]),
    ("nan", ["row 2", "GalaxyID 18", "Class2.1", "nan"]),
    ("range", ["row 1", "GalaxyID 17", "Class11.6", "1.5"]),
    ("negative", ["row 3", "GalaxyID 20", "Class1.1"]),
    ("order", ["row 2", "GalaxyID 17", "ascending"]),
])
def test_bad_predictions_are_refused_and_no_file_is_left(tmp_path, problem, expected_words):
    ids, values = np.array([3, 17, 18, 20]), random_predictions(4)
    if problem == "shape":
        values = values[:, :36]
    elif problem == "nan":
        values[2, decision_tree.COLUMNS.index("Class2.1")] = np.nan
    elif problem == "range":
        values[1, -1] = 1.5
    elif problem == "negative":
        values[3, 0] = -0.01
    else:
        ids = np.array([3, 18, 17, 20])
    target = tmp_path / "out" / "sub.csv.gz"
    with pytest.raises(errors.DataError) as error:
        submission.write_submission(target, ids, values)
    message = str(error.value)
    assert str(target) in message and all(word in message for word in expected_words), message
    assert not target.parent.exists() or not any(target.parent.iterdir())


def test_rounding_error_at_the_range_edges_is_clipped(tmp_path):
    values = random_predictions(2)
    values[0, 0], values[1, 1] = 1 + 1e-7, -1e-8
    submission.write_submission(tmp_path / "s.csv", [1, 2], values)
    _, read_values = submission.read_submission(tmp_path / "s.csv")
    assert read_values[0, 0] == 1.0 and read_values[1, 1] == 0.0
    assert "-0.000000" not in (tmp_path / "s.csv").read_text()


@pytest.mark.parametrize("edit, expected_words", [
    (lambda lines: [lines[0].replace("Class3.2", "Class3.3")] + lines[1:], ["header", "field 8"]),
    (lambda lines: [lines[0].rsplit(",", 1)[0]] + lines[1:], ["header"]),
    (lambda lines: lines[:2] + [lines[2].replace(",", ",abc,", 1).rsplit(",", 1)[0]], ["row 2", "GalaxyID 17", "Class1.1", "abc"]),
    (lambda lines: lines[:1] + [lines[1].rsplit(",", 1)[0]] + lines[2:], ["row 1", "Class11.6"]),
])
def test_bad_files_are_refused_by_the_reader(tmp_path, edit, expected_words):
    path = tmp_path / "s.csv"
    submission.write_submission(path, [3, 17], random_predictions(2))
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    with pytest.raises(errors.DataError) as error:
        submission.read_submission(path)
    message = str(error.value)
    assert str(path) in message and all(word in message for word in expected_words), message


def test_convert_writes_the_test_ids_and_refuses_bad_arrays(label_root, capsys):
    test_ids = np.load(label_root / "data" / "test_ids.npy")
    values = random_predictions(len(test_ids)).astype(np.float32)
    npy = label_root / "predictions" / "final" / "model.npy.gz"
    save_recorded(npy, values, test_ids)
    assert convert_npy_to_csv.main([str(npy), "--root", str(label_root)]) == 0
    ids, read_values = submission.read_submission(npy.with_name("model.csv.gz"))
    np.testing.assert_array_equal(ids, test_ids)
    assert np.abs(read_values - values).max() <= submission.PRINTED_PRECISION + 1e-7

    for name, bad, words in (("short", values[:-1], ["short.npy.gz", "shape", f"({len(test_ids)}, 37)"]),
                             ("nan", np.where(np.arange(37) == 5, np.nan, values), ["nan.npy.gz", "row 0",
                                                                                    f"GalaxyID {test_ids[0]}", "Class3.1"]),
                             ("big", values * 2 + 0.01, ["big.npy.gz", "row 0", "Class1.2", "2.0"])):
        path = npy.with_name(f"{name}.npy.gz")
        save_recorded(path, bad, test_ids)
        capsys.readouterr()
        assert convert_npy_to_csv.main([str(path), "--root", str(label_root)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and all(word in err for word in words), err
        assert not path.with_name(f"{name}.csv.gz").exists()
    assert sorted(p.name for p in npy.parent.iterdir() if p.name.startswith(".")) == []


def test_score_against_synthetic_test_labels_and_the_validation_split(label_root, capsys):
    rng = np.random.default_rng(1)
    test_ids = np.load(label_root / "data" / "test_ids.npy")
    test_labels = rng.uniform(0, 1, (len(test_ids), 37))
    predictions = np.clip(test_labels + rng.normal(0, 0.05, test_labels.shape), 0, 1)
    npy = label_root / "preds.npy.gz"
    save_recorded(npy, predictions, test_ids)
    assert score_predictions.main([str(npy), "--root", str(label_root)]) == 1  # no test labels yet
    err = capsys.readouterr().err
    assert "not public" in err and "--split valid" in err

    submission.write_submission(paths.synthetic_test_solutions_path(), test_ids, test_labels)
    assert convert_npy_to_csv.main([str(npy), "--root", str(label_root)]) == 0
    for path in (npy, label_root / "preds.csv.gz"):
        table = score_predictions.score_file(path, "test")
        expected = np.sqrt(np.mean((predictions - test_labels) ** 2))
        assert table[path.name][0] == pytest.approx(expected, abs=2e-6)
        assert table["all zeros"][0] == pytest.approx(np.sqrt(np.mean(test_labels ** 2)), rel=1e-6)
        q8 = decision_tree.QUESTION_SLICES[7]
        assert table[path.name][8] == pytest.approx(np.sqrt(np.mean((predictions - test_labels)[:, q8] ** 2)), abs=2e-6)
    png = label_root / "preds_scores.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "overall" in out and "Q11" in out and "training mean" in out

    labels = np.load(label_root / "data" / "solutions_train.npy").astype(np.float64)
    train_idx, valid_idx = load_data.train_valid_split(len(labels))
    valid = label_root / "valid.npy.gz"
    save_recorded(valid, labels[valid_idx], load_data.labelled_split().valid_ids)
    table = score_predictions.score_file(valid, "valid", png_path=label_root / "v.png")
    assert table["valid.npy.gz"][0] < 1e-6
    mean_rmse = np.sqrt(np.mean((labels[train_idx].mean(axis=0) - labels[valid_idx]) ** 2))
    assert table["training mean"][0] == pytest.approx(mean_rmse, rel=1e-6)


def test_score_refuses_ids_that_are_not_the_labelled_ones(label_root, capsys):
    test_ids = np.load(label_root / "data" / "test_ids.npy")
    submission.write_submission(paths.synthetic_test_solutions_path(), test_ids,
                                random_predictions(len(test_ids)))
    wrong = label_root / "wrong.csv.gz"
    submission.write_submission(wrong, np.append(test_ids[1:], test_ids[-1] + 1), random_predictions(len(test_ids)))
    assert score_predictions.main([str(wrong), "--root", str(label_root)]) == 1
    err = capsys.readouterr().err
    assert f"GalaxyID {test_ids[0]} has a label but no prediction" in err
    assert not (label_root / "wrong_scores.png").exists()


@pytest.mark.parametrize("value", [np.nan, np.inf, 5.0])
def test_score_refuses_bad_numbers(label_root, capsys, value):
    labels = np.load(label_root / "data" / "solutions_train.npy").astype(np.float64)
    _, valid_idx = load_data.train_valid_split(len(labels))
    predictions = labels[valid_idx].copy()
    predictions[1, 4] = value
    path = label_root / "bad.npy.gz"
    save_recorded(path, predictions, load_data.labelled_split().valid_ids)
    assert score_predictions.main([str(path), "--split", "valid", "--root", str(label_root)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "row 1 (GalaxyID" in err and decision_tree.COLUMNS[4] in err
    assert not (label_root / "bad_scores.png").exists()


def test_score_warns_when_the_file_is_worse_than_the_training_mean(label_root, capsys):
    split = load_data.labelled_split()
    mean = split.train_labels.astype(np.float64).mean(axis=0)
    for name, predictions, warned in (("near.npy.gz", split.valid_labels, False),
                                      ("far.npy.gz", np.broadcast_to(1.0 - mean, split.valid_labels.shape), True)):
        path = label_root / name
        save_recorded(path, predictions, split.valid_ids)
        table = score_predictions.score_file(path, "valid", png_path=label_root / "s.png")
        warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARNING")]
        assert len(warnings) == int(warned)
        if warned:
            assert warnings[0].startswith(f"WARNING: {name}: valid RMSE ")
            assert f"{table[name][0]:.6f}" in warnings[0] and f"({table['training mean'][0]:.6f})" in warnings[0]
