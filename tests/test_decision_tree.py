"""decision_tree.py: the 37-column schema against the table in the method description, the tree sums on
labels valid by construction, detection of a broken sum, and the real labels."""
import numpy as np
import pandas as pd
import pytest

from galaxyzoo import decision_tree as dt
from helpers import tree_valid_labels

# The method's table: answers per question and the column each question's answers sum to.
ANSWERS_PER_QUESTION = (3, 2, 2, 2, 4, 2, 3, 7, 3, 3, 6)
PARENT_OF_QUESTION = {1: None, 2: "Class1.2", 3: "Class2.2", 4: "Class2.2", 5: "Class2.2", 6: None,
                      7: "Class1.1", 8: "Class6.1", 9: "Class2.1", 10: "Class4.1", 11: "Class4.1"}


def test_columns_and_header():
    expected = [f"Class{q}.{a}" for q, n in enumerate(ANSWERS_PER_QUESTION, start=1) for a in range(1, n + 1)]
    assert list(dt.COLUMNS) == expected
    assert dt.NUM_OUTPUTS == len(dt.COLUMNS) == 37
    assert dt.CSV_HEADER == ("GalaxyID",) + dt.COLUMNS


def test_questions_slices_and_parents():
    assert [q.number for q in dt.QUESTIONS] == list(range(1, 12))
    assert tuple(len(q.answers) for q in dt.QUESTIONS) == ANSWERS_PER_QUESTION
    assert {q.number: q.parent for q in dt.QUESTIONS} == PARENT_OF_QUESTION
    covered = [i for s in dt.QUESTION_SLICES for i in range(s.start, s.stop)]
    assert covered == list(range(dt.NUM_OUTPUTS))
    for q, s, parent_index in zip(dt.QUESTIONS, dt.QUESTION_SLICES, dt.PARENT_INDEX):
        assert all(dt.question_of_column(i) is q for i in range(s.start, s.stop))
        if q.parent is None:
            assert parent_index is None
        else:
            assert dt.COLUMNS[parent_index] == q.parent
            assert parent_index < s.start  # a parent is always answered earlier in the tree


def test_sums_hold_on_labels_valid_by_construction():
    labels = tree_valid_labels(500, np.random.default_rng(0))
    np.testing.assert_allclose(dt.question_sums(labels), dt.expected_sums(labels), atol=1e-12)
    assert dt.tree_violations(labels, 1e-9) == []
    assert ((labels >= 0) & (labels <= 1)).all()


@pytest.mark.parametrize("column", range(37))
def test_perturbing_one_value_breaks_its_question_and_its_children(column):
    labels = tree_valid_labels(20, np.random.default_rng(column))
    row, delta = 7, 0.01
    labels[row, column] += delta
    own = dt.question_of_column(column).number
    children = {q.number for q, p in zip(dt.QUESTIONS, dt.PARENT_INDEX) if p == column}
    violations = dt.tree_violations(labels, 1e-5)
    assert {v[0] for v in violations} == {row}
    assert {v[1] for v in violations} == {own} | children
    own_violation = next(v for v in violations if v[1] == own)
    assert own_violation[2] == pytest.approx(own_violation[3] + delta)


def test_real_labels_obey_the_tree(real_sample):
    table = pd.read_csv(real_sample / "training_solutions_rev1_sample.csv")
    assert tuple(table.columns) == dt.CSV_HEADER
    labels = table[list(dt.COLUMNS)].to_numpy()
    assert len(labels) == 351
    assert dt.tree_violations(labels, 1e-5) == []
