"""blend_predictions.py: the analytic gradient, fitted weights being probability vectors, the fitted blends
no worse than the best single model on validation, the test blends applied with those weights, and clear
errors when there is nothing to blend or shapes disagree."""
import numpy as np
import pytest
from scipy.optimize import check_grad

import blend_predictions
from galaxyzoo import decision_tree
import load_data
from galaxyzoo import submission
from helpers import make_tiny_root, save_predictions
from galaxyzoo import paths
from galaxyzoo import records

NOISE_LEVELS = (0.05, 0.08, 0.12)  # independent noise per model, so a mix beats each one


@pytest.fixture
def blend_root(isolated):
    """A tiny root of ID and label files (no images), set as the project root."""
    root = make_tiny_root(isolated / "root", num_train=300, num_test=12, galaxy_image=None)
    paths.set_root(root)
    return root


def noisy_copies(labels, seed):
    """One (N, 37) prediction per noise level: labels plus independent Gaussian noise, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    return [np.clip(labels + rng.normal(0, level, labels.shape), 0, 1).astype(np.float32) for level in NOISE_LEVELS]


def write_models(root):
    """Valid and test predictions of three models; returns (names, valid stack (3, N_valid, 37), test stack)."""
    labels = load_data.labelled_split().valid_labels.astype(np.float64)
    test_labels = np.random.default_rng(5).uniform(0, 1, (len(load_data.load_ids("test")), 37))
    names = [f"model_{level}" for level in NOISE_LEVELS]
    valid, test = noisy_copies(labels, seed=1), noisy_copies(test_labels, seed=2)
    for name, v, t in zip(names, valid, test):
        save_predictions(name, "valid", v)
        save_predictions(name, "test", t)
    return names, np.stack(valid).astype(np.float64), np.stack(test).astype(np.float64)


@pytest.mark.parametrize("per_column", [False, True])
def test_analytic_gradient_matches_finite_differences(per_column):
    rng = np.random.default_rng(0)
    stack, labels = rng.uniform(0, 1, (4, 30, 37)), rng.uniform(0, 1, (30, 37))
    params = rng.normal(0, 1, 4 * 37 if per_column else 4)

    def loss(p):
        return blend_predictions.blend_loss_and_gradient(p, stack, labels)[0]

    def gradient(p):
        return blend_predictions.blend_loss_and_gradient(p, stack, labels)[1]

    gradient_norm = np.linalg.norm(gradient(params))
    assert check_grad(loss, gradient, params, epsilon=1e-6) < 1e-5 * max(gradient_norm, 1e-3)


def test_fitted_blends_beat_every_single_model_and_are_applied_to_the_test_set(blend_root, capsys):
    names, valid, test = write_models(blend_root)
    labels = load_data.labelled_split().valid_labels.astype(np.float64)
    assert blend_predictions.main(["--root", str(blend_root)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in names) and "per_column" in out

    single = [submission.rmse(v, labels) for v in valid]
    per_model = blend_predictions.fit_weights(valid, labels, per_column=False)
    per_column = blend_predictions.fit_weights(valid, labels, per_column=True)
    assert per_model.shape == (3,) and per_column.shape == (3, 37)
    for weights in (per_model, per_column):
        assert (weights >= 0).all()
        np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-12)
    per_model_rmse = submission.rmse(blend_predictions.blend(valid, per_model), labels)
    per_column_rmse = submission.rmse(blend_predictions.blend(valid, per_column), labels)
    assert per_model_rmse < min(single)
    assert per_column_rmse <= per_model_rmse + 1e-9
    assert np.argmax(per_model) == 0  # the least noisy model weighs most

    written = {name: records.load_gz(blend_predictions.blended_dir() / file)
               for name, file in blend_predictions.BLEND_FILES.items()}
    expected = {"uniform": test.mean(axis=0), "per_model": blend_predictions.blend(test, per_model),
                "per_column": blend_predictions.blend(test, per_column)}
    for name, blended in written.items():
        assert blended.shape == (len(load_data.load_ids("test")), decision_tree.NUM_OUTPUTS)
        np.testing.assert_allclose(blended, expected[name], atol=1e-6)


def test_nothing_to_blend_or_shapes_that_disagree_are_clear_errors(blend_root, capsys):
    assert blend_predictions.main(["--root", str(blend_root)]) == 1
    assert "no <model>.npy.gz predictions" in capsys.readouterr().err

    names, _, test = write_models(blend_root)
    save_predictions(names[1], "test", test[1, :-1])
    assert blend_predictions.main(["--root", str(blend_root)]) == 1
    err = capsys.readouterr().err
    assert f"{names[1]}.npy.gz" in err and "shape" in err
    assert not blend_predictions.blended_dir().exists()

    (paths.augmented_predictions_dir("valid") / f"{names[2]}.npy.gz").unlink()
    assert blend_predictions.main(["--root", str(blend_root)]) == 1
    assert f"valid/{names[2]}.npy.gz: missing" in capsys.readouterr().err


def test_models_option_blends_only_the_named_models(blend_root, capsys):
    names, valid, test = write_models(blend_root)
    assert blend_predictions.main(["--root", str(blend_root), "--models", f"{names[2]},{names[0]}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"blending {', '.join(sorted([names[0], names[2]]))}\n"
                          f"left out: {names[1]} (not named in --models)\n2 models")
    uniform = records.load_gz(blend_predictions.blended_dir() / blend_predictions.BLEND_FILES["uniform"])
    np.testing.assert_allclose(uniform, test[[0, 2]].mean(axis=0), atol=1e-6)

    assert blend_predictions.main(["--root", str(blend_root), "--models", f"{names[0]},no_such_model"]) == 1
    assert "no predictions of no_such_model" in capsys.readouterr().err


@pytest.mark.parametrize("missing_split", ["test", "valid"])
def test_a_model_with_one_split_only_is_refused_unless_the_models_are_named(blend_root, capsys, missing_split):
    """A model whose prediction run stopped between the splits: the blend refuses to leave it out by itself (before,
    a model without its test file was dropped without a word); named models are blended, and it is said to be left
    out and why."""
    names, _, test = write_models(blend_root)
    (paths.augmented_predictions_dir(missing_split) / f"{names[1]}.npy.gz").unlink()
    assert blend_predictions.main(["--root", str(blend_root)]) == 1
    err = capsys.readouterr().err
    assert f"{missing_split}/{names[1]}.npy.gz: missing" in err and "--models" in err
    assert not blend_predictions.blended_dir().exists()
    assert blend_predictions.main(["--root", str(blend_root), "--models", f"{names[0]}.py,{names[2]}"]) == 0
    which = {"test": "test", "valid": "validation"}[missing_split]
    assert f"left out: {names[1]} (no {which} predictions)" in capsys.readouterr().out
    uniform = records.load_gz(blend_predictions.blended_dir() / blend_predictions.BLEND_FILES["uniform"])
    np.testing.assert_allclose(uniform, test[[0, 2]].mean(axis=0), atol=1e-6)
    assert blend_predictions.main(["--root", str(blend_root), "--models", f"{names[0]},{names[1]}"]) == 1
    assert f"no predictions of {names[1]}" in capsys.readouterr().err


@pytest.mark.parametrize("split, value", [("valid", np.nan), ("test", np.inf), ("test", 5.0), ("valid", -3.0)])
def test_bad_numbers_in_a_prediction_file_are_refused(blend_root, capsys, split, value):
    """One bad value in one model's file: exit 1, the message names the file, row, GalaxyID and column, and no blend
    is written (before, a NaN in a validation file left the weights uniform and wrote 'fitted' blends)."""
    names, valid, test = write_models(blend_root)
    stack, ids = (valid, load_data.labelled_split().valid_ids) if split == "valid" else (test, load_data.load_ids("test"))
    bad = stack[1].copy()
    bad[3, 7] = value
    path = save_predictions(names[1], split, bad.astype(np.float32))
    assert blend_predictions.main(["--root", str(blend_root)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and f"row 3 (GalaxyID {int(ids[3])})" in err and decision_tree.COLUMNS[7] in err
    assert not blend_predictions.blended_dir().exists()


def test_a_model_worse_than_the_training_mean_is_named_with_both_scores(blend_root, capsys):
    names, valid, _ = write_models(blend_root)
    split = load_data.labelled_split()
    labels = split.valid_labels.astype(np.float64)
    mean_score = submission.rmse(np.broadcast_to(split.train_labels.mean(axis=0), labels.shape), labels)
    constant = np.full_like(labels, 0.9)  # far from every label mean: worse than the mean
    save_predictions("model_constant", "valid", constant)
    save_predictions("model_constant", "test", np.full((len(load_data.load_ids("test")), 37), 0.9))
    assert blend_predictions.main(["--root", str(blend_root)]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "model_constant" in warnings[0]
    assert f"{submission.rmse(constant, labels):.6f}" in warnings[0] and f"({mean_score:.6f})" in warnings[0]
    assert blend_predictions.member_warnings(names) == []  # the good models alone: nothing to say
    assert blend_predictions.member_warnings(["model_constant", names[0]]) == warnings
