"""Check the training labels and write them as an array in training-ID order.

    python create_solutions_train.py [--root ROOT]

Reads data/raw/training_solutions_rev1.csv and data/train_ids.npy (run create_train_ids.py first) and
writes data/solutions_train.npy: float32 (N, 37), row i the labels of train ID i, and its record
data/solutions_train.npy.record.json (the IDs and the CSV it was made from). Before writing it checks
the header, that every value is a number in [0, 1], that the GalaxyIDs are unique and match the training
images one to one, and that every question's answers sum to the answer they hang from (decision_tree.py).
"""
import csv
import itertools
import re
import sys

import numpy as np
import pandas as pd

from galaxyzoo import decision_tree
import load_data
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import files
from galaxyzoo import runner
from galaxyzoo import errors

TREE_TOLERANCE = 1e-5  # the Kaggle labels are rounded; real rows agree with the tree to ~1e-7
MAX_LISTED = 5  # problems named in one error message


def _fail(path, problems, what):
    """Raise DataError for a list of problem descriptions, naming the first few and the count."""
    listed = "; ".join(problems[:MAX_LISTED])
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    raise errors.DataError(f"{path}: {len(problems)} {what}: {listed}{more}")


def check_header(path, header):
    """Raise DataError naming the first column of `header` (list of str) that differs from CSV_HEADER."""
    expected = list(decision_tree.CSV_HEADER)
    if header == expected:
        return
    repeated = sorted({name for name in header if header.count(name) > 1})
    missing = [name for name in expected if name not in header]
    unexpected = [name for name in header if name not in expected]
    if repeated:
        problem = f"column(s) {repeated} appear more than once"
    elif missing and len(missing) == len(unexpected):
        pairs = ", ".join(f"'{u}' where '{m}' was expected" for m, u in zip(missing, unexpected))
        problem = f"renamed column(s): {pairs}"
    elif missing:
        problem = f"missing column(s) {missing}"
    elif unexpected:
        problem = f"unexpected column(s) {unexpected}"
    else:
        position = next(i for i, (a, b) in enumerate(zip(header, expected)) if a != b)
        problem = (f"columns out of order: column {position + 1} is '{header[position]}', "
                   f"expected '{expected[position]}'")
    raise errors.DataError(f"{path}: bad header: {problem}; the header must be exactly "
                              f"GalaxyID,{decision_tree.COLUMNS[0]},...,{decision_tree.COLUMNS[-1]}")


def read_table(path):
    """The CSV as (galaxy_ids int64 (N,), labels float64 (N, 37), line numbers (N,)) after checking the header
    and that every field is a number."""
    if not path.exists():
        raise errors.DataError(f"{path}: labels file missing")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            check_header(path, next(csv.reader(f), []))
        # header=None: the header line is read as a row, so that a data row with a field too many is an error naming
        # its line (with header=0, pandas takes such a first data row's GalaxyID as an index and shifts the labels)
        table = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                            skip_blank_lines=False)
    except pd.errors.ParserError as exc:
        raise errors.DataError(_field_count_problem(path, str(exc)) or f"{path}: cannot parse as CSV: {exc}") from None
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise errors.DataError(f"{path}: cannot parse as CSV: {exc}") from None
    table = table.iloc[1:].set_axis(list(decision_tree.CSV_HEADER), axis=1).reset_index(drop=True)
    # Blank lines are read as empty rows so that the line numbers in messages are the file's; then dropped.
    line_numbers = np.arange(len(table)) + 2  # 1-based, after the header line
    filled = ~(table == "").all(axis=1).to_numpy()
    table, line_numbers = table[filled].reset_index(drop=True), line_numbers[filled]
    if table.empty:
        raise errors.DataError(f"{path}: no label rows")
    values = np.stack([_numeric_column(path, table[name], table["GalaxyID"], line_numbers)
                       for name in table.columns], axis=1)
    return _galaxy_ids(path, values[:, 0], line_numbers), values[:, 1:], line_numbers


def _field_count_problem(path, parser_message):
    """The message for pandas' 'Expected N fields in line L, saw M', naming the line's GalaxyID; None for others."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", parser_message)
    if found is None:
        return None
    expected, line, saw = (int(group) for group in found.groups())
    with open(path, encoding="utf-8-sig") as f:
        text = next(itertools.islice(f, line - 1, None), "")
    return (f"{path}: line {line} (GalaxyID {text.split(',')[0].strip()!r}) has {saw} fields, the header "
            f"{expected}; remove the extra field(s)")


def _numeric_column(path, texts, galaxy_ids, line_numbers):
    """One column (pandas Series of str) as float64, or DataError naming the lines that are not numbers."""
    numbers = pd.to_numeric(texts.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(numbers))
    if len(bad):
        problems = [f"line {line_numbers[i]} (GalaxyID {galaxy_ids.iloc[i]}) has {texts.iloc[i]!r}" for i in bad]
        _fail(path, problems, f"missing or non-numeric value(s) (NaN) in column {texts.name}")
    return numbers


def _galaxy_ids(path, numbers, line_numbers):
    """The GalaxyID column (float64 (N,)) as int64, or DataError for a non-integer or repeated ID."""
    not_integer = np.flatnonzero((numbers != np.round(numbers)) | (numbers < 0))
    if len(not_integer):
        _fail(path, [f"line {line_numbers[i]} has {numbers[i]:.9g}" for i in not_integer],
              "GalaxyID(s) that are not non-negative integers")
    ids = numbers.astype(np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        problems = [f"GalaxyID {g} on lines {', '.join(str(n) for n in line_numbers[ids == g])}"
                    for g in unique[counts > 1]]
        _fail(path, problems, "duplicate GalaxyID(s)")
    return ids


def check_range(path, galaxy_ids, labels, line_numbers):
    """DataError naming the line, GalaxyID and column of every label outside [0, 1]."""
    rows, cols = np.nonzero((labels < 0) | (labels > 1))
    if len(rows):
        problems = [f"line {line_numbers[r]} GalaxyID {galaxy_ids[r]} column {decision_tree.COLUMNS[c]} "
                    f"= {labels[r, c]:.9g}" for r, c in zip(rows, cols)]
        _fail(path, problems, "value(s) outside [0, 1]")


def check_matches_images(path, galaxy_ids, train_ids, line_numbers):
    """DataError when a labelled GalaxyID has no training image or a training image has no label row."""
    images = paths.raw_images_dir("train")
    no_image = np.flatnonzero(~np.isin(galaxy_ids, train_ids))
    if len(no_image):
        problems = [f"line {line_numbers[i]} GalaxyID {galaxy_ids[i]} (no {images / f'{galaxy_ids[i]}.jpg'})"
                    for i in no_image]
        _fail(path, problems, f"labelled GalaxyID(s) without a training image in {paths.ids_path('train')}")
    no_label = train_ids[~np.isin(train_ids, galaxy_ids)]
    if len(no_label):
        problems = [f"GalaxyID {g} ({images / f'{g}.jpg'})" for g in no_label]
        _fail(path, problems, "training image(s) without a label row")


def check_tree(path, galaxy_ids, labels, line_numbers):
    """DataError naming the GalaxyID and question of every decision-tree sum that is off by more than
    TREE_TOLERANCE."""
    violations = decision_tree.tree_violations(labels, TREE_TOLERANCE)
    if violations:
        problems = []
        for row, question, actual, expected in violations:
            q = decision_tree.QUESTIONS[question - 1]
            parent = q.parent or "1"
            problems.append(f"line {line_numbers[row]} GalaxyID {galaxy_ids[row]} question {question} "
                            f"(columns Class{question}.1-Class{question}.{len(q.answers)}) sums to {actual:.6g}, "
                            f"expected {expected:.6g} (= {parent})")
        _fail(path, problems, f"decision-tree sum(s) off by more than {TREE_TOLERANCE}")


def convert():
    """Check the CSV and write the labels (float32 (N, 37)) in train-ID order; says what it wrote."""
    path = paths.solutions_csv_path()
    files.check_writable(paths.data_dir())
    load_data.forget_cached()  # data/train_ids.npy may have been rewritten since it was read
    train_ids = load_data.load_ids("train")
    galaxy_ids, labels, line_numbers = read_table(path)
    check_range(path, galaxy_ids, labels, line_numbers)
    check_matches_images(path, galaxy_ids, train_ids, line_numbers)
    check_tree(path, galaxy_ids, labels, line_numbers)
    row_of_id = dict(zip(galaxy_ids.tolist(), range(len(galaxy_ids))))
    ordered = labels[[row_of_id[g] for g in train_ids.tolist()]].astype(np.float32)
    target = paths.solutions_train_path()
    records.save_npy(target, ordered, "create_solutions_train.py", train_ids=records.ids_stamp(train_ids),
                       labels_csv=records.file_stamp(path))
    print(f"{len(ordered)} label rows checked ({decision_tree.NUM_OUTPUTS} columns, values in [0, 1], "
          f"decision-tree sums within {TREE_TOLERANCE}) -> {target}")


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    return runner.run_root_only_script(__doc__, convert, argv)


if __name__ == "__main__":
    sys.exit(main())
