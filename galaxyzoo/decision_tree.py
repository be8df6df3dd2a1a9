"""The Galaxy Zoo 2 decision tree: the one definition of the 37 label columns.

Every part of the project that needs to know which columns form a question, which answer a question
hangs from, or what the CSV header is, reads it from here.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Question:
    number: int
    text: str
    answers: tuple
    parent: str | None  # the column whose vote fraction the answers sum to; None means they sum to 1


QUESTIONS = (
    Question(1, "smooth, features or disk, or star or artifact?", ("smooth", "features or disk", "star or artifact"), None),
    Question(2, "edge-on?", ("yes", "no"), "Class1.2"),
    Question(3, "bar?", ("yes", "no"), "Class2.2"),
    Question(4, "spiral arms?", ("yes", "no"), "Class2.2"),
    Question(5, "bulge prominence?", ("none", "noticeable", "obvious", "dominant"), "Class2.2"),
    Question(6, "anything odd?", ("yes", "no"), None),
    Question(7, "how rounded?", ("completely round", "in between", "cigar-shaped"), "Class1.1"),
    Question(8, "odd feature?", ("ring", "lens or arc", "disturbed", "irregular", "other", "merger", "dust lane"), "Class6.1"),
    Question(9, "bulge shape (edge-on)?", ("rounded", "boxy", "no bulge"), "Class2.1"),
    Question(10, "arm tightness?", ("tight", "medium", "loose"), "Class4.1"),
    Question(11, "number of arms?", ("1", "2", "3", "4", "more than four", "can't tell"), "Class4.1"),
)

COLUMNS = tuple(f"Class{q.number}.{a}" for q in QUESTIONS for a in range(1, len(q.answers) + 1))
NUM_OUTPUTS = len(COLUMNS)  # 37
CSV_HEADER = ("GalaxyID",) + COLUMNS


def _question_slices():
    slices, start = [], 0
    for q in QUESTIONS:
        slices.append(slice(start, start + len(q.answers)))
        start += len(q.answers)
    return tuple(slices)


QUESTION_SLICES = _question_slices()
# Column index of each question's parent answer, or None for the root questions (Q1, Q6).
PARENT_INDEX = tuple(None if q.parent is None else COLUMNS.index(q.parent) for q in QUESTIONS)


def question_of_column(column_index):
    """The Question that column `column_index` (0..36) answers."""
    for q, s in zip(QUESTIONS, QUESTION_SLICES):
        if s.start <= column_index < s.stop:
            return q
    raise IndexError(f"column index {column_index} outside 0..{NUM_OUTPUTS - 1}")


def expected_sums(labels):
    """Per question, what its answers should sum to: (N, 11) array (1 for root questions)."""
    labels = np.asarray(labels, dtype=np.float64)
    return np.stack([np.ones(len(labels)) if p is None else labels[:, p] for p in PARENT_INDEX], axis=1)


def question_sums(labels):
    """Per question, the sum of its answer columns: (N, 11) array."""
    labels = np.asarray(labels, dtype=np.float64)
    return np.stack([labels[:, s].sum(axis=1) for s in QUESTION_SLICES], axis=1)


def tree_violations(labels, tol=1e-5):
    """List of (row, question number, actual sum, expected sum) where a question's answers do not sum
    to their parent answer within `tol`."""
    actual, expected = question_sums(labels), expected_sums(labels)
    rows, qs = np.nonzero(np.abs(actual - expected) > tol)
    return [(int(r), QUESTIONS[q].number, float(actual[r, q]), float(expected[r, q])) for r, q in zip(rows, qs)]


def most_voted_answers(values):
    """The most-voted answer of each question along the tree: values (N, 37) -> (N, 11) int, the answer's index
    within its question (0-based), or -1 where the question is not reached (its parent answer is not the most-voted
    one of the parent question). Q1 and Q6 are always reached."""
    values = np.asarray(values, dtype=np.float64)
    answers = np.stack([values[:, s].argmax(axis=1) for s in QUESTION_SLICES], axis=1)
    for q, parent in enumerate(PARENT_INDEX):
        if parent is not None:  # parents come before their children in QUESTIONS
            parent_question = QUESTIONS.index(question_of_column(parent))
            parent_answer = parent - QUESTION_SLICES[parent_question].start
            answers[answers[:, parent_question] != parent_answer, q] = -1
    return answers
