"""Score predictions against known labels: overall RMSE (the competition metric) and RMSE per question,
next to two baselines: predicting all zeros, and predicting the mean label of the training split.

    python score_predictions.py predictions/final/blended/blended_predictions_uniform.npy.gz --split valid
    python score_predictions.py predictions/final/try_....csv.gz          # test set (synthetic labels only)

FILE is a .npy.gz ((N, 37) in ID order of the split, which its record must say) or a submission .csv.gz (its
GalaxyIDs must be the labels' IDs). Labels: --split valid uses the validation split of data/solutions_train.npy
(the last 10% of the training IDs); --split test uses data/raw/synthetic_test_solutions.csv, which only the
synthetic data generator writes (the real test labels were never published). Prints a table and draws a grouped
bar chart (default: FILE with suffix _scores.png).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from galaxyzoo import decision_tree
import load_data
from galaxyzoo import submission
from galaxyzoo import paths
from galaxyzoo import files
from galaxyzoo import runner
from galaxyzoo import errors

FILE_SUFFIXES = (".npy.gz", ".csv.gz")


def split_labels(split):
    """(ids (N,), labels (N, 37) float64) to score against, for split 'valid' or 'test'."""
    if split == "valid":
        labelled = load_data.labelled_split()
        return labelled.valid_ids, labelled.valid_labels.astype(np.float64)
    path = paths.synthetic_test_solutions_path()
    if not path.exists():
        raise errors.DataError(f"{path}: missing. The real test labels are not public; only the synthetic "
                                  "data generator writes this file. Score the validation split with --split valid")
    return submission.read_submission(path)


def load_predictions(path, split, without_record=False):
    """(ids (N,), predictions (N, 37) float64) of a .npy.gz (its record saying its rows are subset_ids) or a .csv.gz
    (which names its GalaxyIDs)."""
    path = Path(path)
    if path.name.endswith(".npy.gz"):
        return submission.load_recorded(path, load_data.split_ids(split), load_data.SPLIT_IDS_TEXT[split],
                                        f"score it with the --split it was made for, or run the step that made it "
                                        f"again; a file without a record is scored with --without-record",
                                        without_record)
    if not path.name.endswith((".csv.gz", ".csv")):
        raise errors.DataError(f"{path}: expected a .npy.gz or .csv.gz file")
    return submission.read_submission(path)


def align(path, ids, predictions, label_ids):
    """The rows of predictions reordered to label_ids; DataError unless ids are exactly label_ids (any order)."""
    missing, extra = np.setdiff1d(label_ids, ids), np.setdiff1d(ids, label_ids)
    if len(missing) or len(extra) or len(ids) != len(label_ids):
        detail = (f"GalaxyID {int(missing[0])} has a label but no prediction" if len(missing) else
                  f"GalaxyID {int(extra[0])} has no label" if len(extra) else "some GalaxyIDs appear twice")
        raise errors.DataError(f"{path}: its {len(ids)} GalaxyIDs are not the {len(label_ids)} labelled ones: {detail}")
    order = np.argsort(ids)
    return predictions[order[np.searchsorted(ids[order], label_ids)]]


def scores(predictions, labels):
    """[overall RMSE, RMSE of Q1, ..., RMSE of Q11] for (N, 37) predictions and labels."""
    squared = (predictions - labels) ** 2
    return [submission.rmse(predictions, labels)] + [float(np.sqrt(squared[:, s].mean()))
                                                     for s in decision_tree.QUESTION_SLICES]


def score_table(name, predictions, labels, training_mean):
    """{row name: scores} for the file and the two baselines."""
    return {name: scores(predictions, labels),
            "all zeros": scores(np.zeros_like(labels), labels),
            "training mean": scores(np.broadcast_to(training_mean, labels.shape), labels)}


def score_names():
    return ["overall"] + [f"Q{q.number}" for q in decision_tree.QUESTIONS]


def print_table(table):
    names = list(table)
    width = max(len(n) for n in names)
    print("RMSE      " + "  ".join(f"{n:>{width}}" for n in names))
    for i, label in enumerate(score_names()):
        print(f"{label:<10}" + "  ".join(f"{table[n][i]:>{width}.6f}" for n in names))


def default_png_path(path):
    path = Path(path)
    stem = next((path.name[:-len(s)] for s in FILE_SUFFIXES if path.name.endswith(s)), path.stem)
    return path.with_name(f"{stem}_scores.png")


def save_bar_chart(table, png_path, title):
    """Grouped bars: overall and per-question RMSE for each row of the table, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = score_names()
    positions = np.arange(len(labels))
    width = 0.8 / len(table)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for k, (name, values) in enumerate(table.items()):
        ax.bar(positions + (k - (len(table) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(positions, labels)
    ax.set_ylabel("RMSE")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with files.atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def score_file(path, split, png_path=None, without_record=False):
    """Print the score table of the predictions in path and draw its bar chart; returns the table."""
    png_path = Path(png_path) if png_path is not None else default_png_path(path)
    files.check_writable(png_path.parent)
    label_ids, labels = split_labels(split)
    predictions = align(path, *load_predictions(path, split, without_record), label_ids)
    training_mean = load_data.labelled_split().train_labels.astype(np.float64).mean(axis=0)
    table = score_table(Path(path).name, predictions, labels, training_mean)
    print(f"{len(labels)} {split} images")
    print_table(table)
    warning = submission.worse_than_mean(Path(path).name, table[Path(path).name][0], table["training mean"][0],
                                         f"{split} RMSE")
    if warning:
        print(warning)
    save_bar_chart(table, png_path, f"{Path(path).name} on the {split} set ({len(labels)} images)")
    print(f"wrote {png_path}")
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="predictions: .npy.gz (rows in ID order) or submission .csv.gz")
    parser.add_argument("--split", choices=load_data.SPLITS, default="test", help="labels to score against")
    parser.add_argument("--png", default=None, help="bar chart path (default: FILE with suffix _scores.png)")
    parser.add_argument("--without-record", action="store_true",
                        help="score a .npy.gz that has no record (made elsewhere), taking its rows to be the "
                             "split's IDs")
    return runner.run_script(parser, lambda args: score_file(args.file, args.split, args.png, args.without_record),
                                argv, runner.RERUN_NOTE)


if __name__ == "__main__":
    sys.exit(main())
