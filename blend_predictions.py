"""Blend the test-time-averaged predictions of every model that has them, with weights fitted on the
validation set, as in the original solution.

Reads predictions/final/augmented/{valid,test}/<model>.npy.gz for every model with predictions (or for the models
named with --models; without it, a model with the predictions of one split only is refused) and the validation split
of data/solutions_train.npy. Writes to predictions/final/blended/:

    blended_predictions_uniform.npy.gz    the plain average of all models (the blend that was submitted)
    blended_predictions.npy.gz            one weight per model
    blended_predictions_separate.npy.gz   one weight per model per output column

Weights are a softmax of free parameters (so they are non-negative and sum to 1), fitted by L-BFGS-B
on the validation MSE with its analytic gradient, starting from the uniform blend. Test predictions are
read one file at a time and accumulated, so memory holds one model's test set and the three blends.
The fitted weights show which models help; convert_npy_to_csv.py turns a blend into a submission. Each blend's
record lists the prediction files it was made from; each prediction file is read only when its record says it was
made for the current validation or test IDs from its model's checkpoint as it is now.
"""
import argparse
import json
import sys

import numpy as np
import scipy.optimize

from galaxyzoo import decision_tree
import load_data
from galaxyzoo import submission
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import files
from galaxyzoo import runner
from galaxyzoo import errors

BLEND_FILES = {"uniform": "blended_predictions_uniform.npy.gz", "per_model": "blended_predictions.npy.gz",
               "per_column": "blended_predictions_separate.npy.gz"}


WEIGHTS_FILE = "blend_weights.json"


def blended_dir():
    return paths.predictions_dir() / "blended"


def save_weights(models, weights_by_blend, made_from):
    """Write blend_weights.json: {"models": [...], blend name: weights (M,) or (M, 37) as lists}, with its record
    (the prediction files the weights were fitted on)."""
    path = blended_dir() / WEIGHTS_FILE
    with files.atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"models": list(models), **{name: weights.tolist()
                                                              for name, weights in weights_by_blend.items()}}) + "\n")
    records.write_record(path, "blend_predictions.py", predictions=made_from)
    return path


def load_weights():
    """(models, {blend name: weights array}) of blend_weights.json, refused (DataError) when the prediction files it
    was fitted on have changed since, or when it is missing or damaged."""
    path = blended_dir() / WEIGHTS_FILE
    rerun = "run blend_predictions.py again"
    if not path.exists():
        raise errors.DataError(f"{path}: missing; {rerun}")
    records.check_record(path, rerun)
    try:
        saved = json.loads(path.read_text())
        models = [str(name) for name in saved["models"]]
        weights = {name: np.asarray(saved[name], dtype=np.float64) for name in BLEND_FILES}
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.DataError(f"{path}: unreadable ({exc}); {rerun}") from None
    return models, weights


def available_models(chosen=None):
    """(sorted names of the models to blend, {model left out: why}). Every model with a prediction file of either
    split is a candidate; with `chosen`, those named, each of which must have both files, and the others are left
    out. Without it, a model with one split's file but not the other's (a prediction run stopped in between) is
    refused, since blending without it would quietly be another blend."""
    folders = {split: paths.augmented_predictions_dir(split) for split in load_data.SPLITS}
    found = {split: {p.name[:-len(".npy.gz")] for p in folder.glob("*.npy.gz")} for split, folder in folders.items()}
    candidates = found["valid"] | found["test"]
    lacking = {model: next(split for split in folders if model not in found[split]) for model in candidates
               if not all(model in found[split] for split in folders)}
    if chosen is None:
        if lacking:
            model, split = sorted(lacking.items())[0]
            raise errors.DataError(f"{paths.augmented_predictions_path(model, split)}: missing, while the other "
                                      f"split's predictions of {model} exist (its prediction run stopped?); run "
                                      f"predict_augmented_npy.py {model} again, or name the models to blend with "
                                      f"--models")
        models = sorted(candidates)
    else:
        models = sorted(set(chosen))
        for model in models:
            if model not in candidates or model in lacking:
                split = lacking.get(model, "test")
                raise errors.DataError(f"{paths.augmented_predictions_path(model, split)}: no predictions of "
                                          f"{model}; run predict_augmented_npy.py {model} first")
    if not models:
        raise errors.DataError(f"{folders['test']}: no <model>.npy.gz predictions; run predict_augmented_npy.py "
                                  f"for at least one model first")
    left_out = {model: f"no {SPLIT_NAMES[lacking[model]]} predictions" if model in lacking else "not named in --models"
                for model in sorted(candidates - set(models))}
    return models, left_out


SPLIT_NAMES = {"valid": "validation", "test": "test"}


def load_checked(model, split, galaxy_ids):
    """One model's predictions of a split, one row per GalaxyID of galaxy_ids: refused unless its record says it was
    made for these IDs from the model's checkpoint as it is now (when it is there), and unless its values are finite
    and within [0, 1] up to submission.RANGE_TOLERANCE (naming the row, GalaxyID and column). (N, 37) float64."""
    return submission.load_recorded(paths.augmented_predictions_path(model, split), galaxy_ids, load_data.SPLIT_IDS_TEXT[split],
                                    f"run predict_augmented_npy.py {model} again")[1]


def softmax(params, axis=0):
    shifted = np.exp(params - params.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def blend(stack, weights):
    """stack (M, N, 37) of M models' predictions, weights (M,) or (M, 37) -> blended (N, 37)."""
    weights = weights if weights.ndim == 2 else weights[:, None]
    return np.einsum("mnc,mc->nc", stack, weights)


def blend_loss_and_gradient(params, stack, labels):
    """Validation MSE of the blend with weights softmax(params) over models, and its gradient.

    params: (M,) one weight per model, or (M * 37,) one weight per model per column (model-major)."""
    num_models = len(stack)
    per_column = params.size != num_models
    logits = params.reshape(num_models, -1)
    weights = softmax(logits, axis=0)  # (M, 1) or (M, 37)
    residual = blend(stack, weights) - labels
    loss = np.mean(residual ** 2)
    # d loss / d weight[m, c] = 2 / (N * 37) * sum_n residual[n, c] * stack[m, n, c]
    grad_weights = 2.0 / residual.size * np.einsum("nc,mnc->mc", residual, stack)
    if not per_column:
        grad_weights = grad_weights.sum(axis=1, keepdims=True)
    # Softmax Jacobian along the model axis: dL/dlogit = w * (dL/dw - sum_m w dL/dw).
    grad_logits = weights * (grad_weights - (weights * grad_weights).sum(axis=0, keepdims=True))
    return loss, grad_logits.ravel()


def fit_weights(stack, labels, per_column):
    """Softmax weights fitted on (stack (M, N, 37), labels (N, 37)): (M,) or, per_column, (M, 37)."""
    num_models = len(stack)
    size = num_models * decision_tree.NUM_OUTPUTS if per_column else num_models
    result = scipy.optimize.minimize(blend_loss_and_gradient, np.zeros(size), args=(stack, labels), jac=True,
                                     method="L-BFGS-B", options=dict(maxiter=10000, maxfun=10000, gtol=1e-9))
    weights = softmax(result.x.reshape(num_models, -1), axis=0)
    return weights if per_column else weights[:, 0]


def blend_test_set(models, weights_by_blend, test_ids):
    """Apply each blend's weights to the test predictions, one model's file at a time: {blend name: (N_test, 37)}."""
    totals = {name: np.zeros((len(test_ids), decision_tree.NUM_OUTPUTS)) for name in weights_by_blend}
    for m, model in enumerate(models):
        predictions = load_checked(model, "test", test_ids)
        for name, weights in weights_by_blend.items():
            totals[name] += predictions * weights[m]  # a scalar, or (37,) per column
    return totals


def worse_than_mean_lines(models, stack, split):
    """A warning line (submission.worse_than_mean) per model whose validation predictions, in stack (M, N, 37), score
    worse than predicting the mean label of the training split for every image; split: load_data.LabelledSplit."""
    labels = split.valid_labels.astype(np.float64)
    mean_score = submission.rmse(np.broadcast_to(split.train_labels.astype(np.float64).mean(axis=0), labels.shape),
                                 labels)
    warnings = (submission.worse_than_mean(model, submission.rmse(predictions, labels), mean_score)
                for model, predictions in zip(models, stack))
    return [line for line in warnings if line]


def member_warnings(models):
    """worse_than_mean_lines of the models' test-time-averaged validation predictions (as checked for blending)."""
    split = load_data.labelled_split()
    return worse_than_mean_lines(models, [load_checked(model, "valid", split.valid_ids) for model in models], split)


def run(chosen=None):
    models, left_out = available_models(chosen)
    print(f"blending {', '.join(models)}")
    for model, why in left_out.items():
        print(f"left out: {model} ({why})")
    files.check_writable(blended_dir())
    split = load_data.labelled_split()
    labels = split.valid_labels.astype(np.float64)
    stack = np.stack([load_checked(model, "valid", split.valid_ids) for model in models])
    num_models = len(models)
    print(f"{num_models} models, {len(labels)} validation images")
    print("validation RMSE of each model:")
    for model, predictions in zip(models, stack):
        print(f"  {submission.rmse(predictions, labels):.6f}  {model}")
    for line in worse_than_mean_lines(models, stack, split):
        print(line)

    weights_by_blend = {"uniform": np.full(num_models, 1.0 / num_models),
                        "per_model": fit_weights(stack, labels, per_column=False),
                        "per_column": fit_weights(stack, labels, per_column=True)}
    print("weights, one per model (per column: min / mean / max over the 37 columns):")
    for m, model in enumerate(models):
        column_weights = weights_by_blend["per_column"][m]
        print(f"  {weights_by_blend['per_model'][m]:.5f}  ({column_weights.min():.5f} / {column_weights.mean():.5f} / "
              f"{column_weights.max():.5f})  {model}")
    print("validation RMSE of the blends:")
    for name, weights in weights_by_blend.items():
        print(f"  {submission.rmse(blend(stack, weights), labels):.6f}  {name} ({BLEND_FILES[name]})")

    test_ids = load_data.load_ids("test")
    made_from = [records.file_input(paths.augmented_predictions_path(model, split))
                 for model in models for split in load_data.SPLITS]
    for name, blended in blend_test_set(models, weights_by_blend, test_ids).items():
        path = blended_dir() / BLEND_FILES[name]
        records.save_gz(path, blended.astype(np.float32), "blend_predictions.py", ids=records.ids_stamp(test_ids),
                          predictions=made_from)
        print(f"wrote {path}")
    print(f"wrote {save_weights(models, weights_by_blend, made_from)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated model names to blend (default: every model with predictions)")

    def work(args):
        run(None if args.models is None else [runner.model_name_argument(name.strip())
                                              for name in args.models.split(",") if name.strip()])

    return runner.run_script(parser, work, argv, runner.RERUN_NOTE)


if __name__ == "__main__":
    sys.exit(main())
