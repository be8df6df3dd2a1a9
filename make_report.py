"""Write a run's report, report/index.html and the pictures it shows, from what the run folder holds.

    python make_report.py                    # the run in the project folder
    python make_report.py --root demo_run    # the demo's run

The page opens from the file system in any browser, offline: no server, nothing fetched, no script. It shows
- the pipeline: each step, the files it wrote, whether each derived file's record still matches its inputs (fresh,
  stale or missing) and, for a stale or missing one, the command to run;
- each trained model: its recipe, parameters, training time, learning curve, validation RMSE before and after
  test-time averaging and per question;
- the blends: the weights per model (and per model and column), each blend's validation RMSE beside each model's and
  the training-mean and all-zeros baselines, and a warning naming each blended model that scores worse than the
  training mean;
- validation galaxies as thumbnails with the crowd's and the model's answers along the decision tree: the best-,
  median- and worst-predicted, and per question the worst;
- the test-set predictions: the distribution of each answer beside the training labels'.
Whatever the run lacks is said where it would be shown. Only report/ is written: the new report replaces the old one
whole once it is complete.
"""
import argparse
import ast
import html
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import blend_predictions  # noqa: E402
from galaxyzoo import checkpoints  # noqa: E402
import convert_npy_to_csv  # noqa: E402
from galaxyzoo import decision_tree  # noqa: E402
import load_data  # noqa: E402
from galaxyzoo import recipe  # noqa: E402
import score_predictions  # noqa: E402
from galaxyzoo import source_params  # noqa: E402
from galaxyzoo import submission  # noqa: E402
from galaxyzoo import learning_curve  # noqa: E402
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import files
from galaxyzoo import runner
from galaxyzoo import errors

HERE = Path(__file__).resolve().parent
REPORT_FOLDER = "report"
THUMBNAIL_SIZE = 128  # pixels per side of a galaxy's thumbnail (the image is 424)
GALAXIES_PER_GROUP = 4  # best-, median- and worst-predicted galaxies shown
WORST_PER_QUESTION = 2


def report_dir():
    return paths.root() / REPORT_FOLDER


def command(script, *args):
    """The command line a user types for a step, with --root when the run is not the project folder."""
    root = [] if paths.root() == HERE else ["--root", str(paths.root())]
    return " ".join(["python", script, *args, *root])


def shown(path):
    """path relative to the run's root when inside it."""
    path = Path(path)
    return str(path.relative_to(paths.root())) if path.is_relative_to(paths.root()) else str(path)


def attempt(work):
    """(work(), None), or (None, the message of the DataError or ValueError it raised)."""
    try:
        return work(), None
    except (errors.DataError, ValueError) as exc:
        return None, str(exc)


# ---------------------------------------------------------------------------------------------------
# What the run holds


class Run:
    """The run folder's contents as the report reads them, each read once: IDs, labels, checkpoints, predictions
    (each None when missing or refused, with the reason in `problems`)."""

    def __init__(self):
        self.problems = {}
        self.split = self.read("labels", load_data.labelled_split)
        self.test_ids = self.read("test IDs", lambda: load_data.load_ids("test"))
        self.models = self.model_names()
        self.checkpoint = {model: self.read(f"checkpoint {model}", lambda m=model: checkpoints.load_checkpoint(
            checkpoints.checkpoint_path(m))) for model in self.models if checkpoints.checkpoint_path(model).exists()}
        self.valid = {}
        if self.split is not None:
            for model in self.models:
                if paths.augmented_predictions_path(model, "valid").exists():
                    self.valid[model] = self.read(f"valid {model}", lambda m=model: blend_predictions.load_checked(
                        m, "valid", self.split.valid_ids))
        self.valid = {model: values for model, values in self.valid.items() if values is not None}
        self.weights = self.read("blend weights", blend_predictions.load_weights) \
            if (blend_predictions.blended_dir() / blend_predictions.WEIGHTS_FILE).exists() else None

    def read(self, name, work):
        value, problem = attempt(work)
        if problem is not None:
            self.problems[name] = problem
        return value

    @staticmethod
    def model_names():
        """The models with a checkpoint or test-time-averaged predictions, sorted."""
        names = {path.stem for path in paths.analysis_dir().glob("*.pt")}
        for split in load_data.SPLITS:
            names |= {path.name[:-len(".npy.gz")] for path in paths.augmented_predictions_dir(split).glob("*.npy.gz")}
        return sorted(names)

    def training_mean(self):
        return self.split.train_labels.astype(np.float64).mean(axis=0)


# ---------------------------------------------------------------------------------------------------
# The pipeline's state


@dataclass
class FileState:
    path: Path
    status: str  # fresh, stale, missing, not made (an optional file), written (a file without a record)
    detail: str
    command: str


def file_state(path, check, rerun, optional=False):
    """The FileState of a derived file: missing (or 'not made' when optional), 'written' when check is None (no
    record to compare), else fresh when check() passes and stale with its message when it raises."""
    if not Path(path).exists():
        return FileState(path, "not made" if optional else "missing", "optional" if optional else "", rerun)
    if check is None:
        return FileState(path, "written", "no record (made with its step's other files)", "")
    problem = attempt(check)[1]
    return FileState(path, "fresh" if problem is None else "stale", problem or "", "" if problem is None else rerun)


def check_ids(subset):
    return lambda: load_data.load_ids(subset)


def check_checkpoint(run, model):
    """A check that the model's checkpoint (as Run read it) was trained on the data as it is now."""
    def check():
        state = run.checkpoint.get(model)
        if state is None:
            raise errors.DataError(run.problems[f"checkpoint {model}"])
        checkpoints.check_data(checkpoints.checkpoint_path(model), state, checkpoints.data_stamp(),
                               "train it again with --fresh")
    return check


def check_recorded(path, ids, what, rerun):
    """A check that path's record says it was made for `ids` from inputs unchanged since."""
    return lambda: records.check_record(path, rerun, ids=(records.ids_stamp(ids()), what))


def pipeline_steps(run):
    """[(step number, title, [FileState, ...]), ...] in README order."""
    steps = [("1", "ID lists", [file_state(paths.ids_path(subset), check_ids(subset), command("create_train_ids.py"))
                                for subset in paths.SUBSETS]),
             ("2", "training labels", [file_state(paths.solutions_train_path(), load_data.load_solutions,
                                                  command("create_solutions_train.py"))])]
    extraction = command("extract_pysex_params.py")
    steps.append(("3", "galaxy centres and sizes (optional)", [
        file_state(source_params.target_path(param_set, subset),
                   lambda p=param_set, s=subset: source_params.check_made_for(source_params.target_path(p, s), s,
                                                                              load_data.load_ids(s)),
                   extraction, optional=True)
        for param_set in source_params.PARAM_SETS for subset in paths.SUBSETS]))
    steps.append(("4", "decoded image cache (optional)", [
        file_state(paths.cache_path(subset), lambda s=subset: load_data.ImageCache(s),
                   command("copy_data_to_shm.py", "--cache"), optional=True) for subset in paths.SUBSETS]))
    for model in run.models:
        path = checkpoints.checkpoint_path(model)
        steps.append(("5", f"train {model}", [
            file_state(path, check_checkpoint(run, model), command(f"{model}.py")),
            file_state(learning_curve.path(model), None, command(f"{model}.py")),
            file_state(checkpoints.submission_path(model), None, command(f"{model}.py"))]))
    valid_ids = lambda: load_data.labelled_split().valid_ids  # noqa: E731
    test_ids = lambda: load_data.load_ids("test")  # noqa: E731
    for model in run.models:
        rerun = command("predict_augmented_npy.py", model)
        steps.append(("6", f"test-time averages of {model}", [
            file_state(paths.augmented_predictions_path(model, split),
                       check_recorded(paths.augmented_predictions_path(model, split), ids,
                                      load_data.SPLIT_IDS_TEXT[split], rerun), rerun)
            for split, ids in (("valid", valid_ids), ("test", test_ids))]))
    blend = command("blend_predictions.py")
    blends = [blend_predictions.blended_dir() / name for name in blend_predictions.BLEND_FILES.values()]
    steps.append(("7", "blends", [file_state(path, check_recorded(path, test_ids, load_data.SPLIT_IDS_TEXT["test"],
                                                                  blend), blend) for path in blends]
                  + [file_state(blend_predictions.blended_dir() / blend_predictions.WEIGHTS_FILE,
                                blend_predictions.load_weights, blend)]))
    uniform = blends[0]
    csv = convert_npy_to_csv.csv_path_for(uniform)
    steps.append(("8", "submission CSV", [file_state(csv, None, command("convert_npy_to_csv.py", shown(uniform)))]))
    steps.append(("9", "scores", [file_state(score_predictions.default_png_path(csv), None,
                                             command("score_predictions.py", shown(csv)))]))
    return steps


def pipeline_section(run):
    rows = []
    for number, title, states in pipeline_steps(run):
        for k, state in enumerate(states):
            step = (f"<td rowspan={len(states)}>{number}</td><td rowspan={len(states)} class=title>{esc(title)}</td>"
                    if k == 0 else "")
            todo = f"<code>{esc(state.command)}</code>" if state.command else ""
            rows.append(f"<tr>{step}<td><code>{esc(shown(state.path))}</code></td>"
                        f"<td class='{state.status.replace(' ', '-')}'>{state.status}</td>"
                        f"<td>{esc(state.detail)}</td><td>{todo}</td></tr>")
    return section("pipeline", "The pipeline", table(["step", "", "file", "state", "detail", "to make it"], rows))


# ---------------------------------------------------------------------------------------------------
# The models


def recipe_summary(model, config):
    """The first line of the try script's docstring (when the project holds it) and the recipe's main settings."""
    script = HERE / f"{model}.py"
    lines = []
    if script.exists():
        docstring = ast.get_docstring(ast.parse(script.read_text())) or ""
        lines.append(esc(docstring.strip().splitlines()[0]) if docstring.strip() else "")
    lines += [f"<b>{key}</b> {esc(str(config[key]))}" for key in ("NUM_CHUNKS", *recipe.SETTING_NAMES) if key in config]
    return "<br>".join(line for line in lines if line)


def members_section(run, folder):
    if not run.models:
        return section("models", "The models", missing(f"no trained model in {shown(paths.analysis_dir())}: train "
                                                       f"one with {command('<model>.py')}"))
    parts = [member_html(run, model, folder) for model in run.models]
    return section("models", "The models", "".join(parts))


def member_html(run, model, folder):
    """One model's block: recipe, parameters, time, learning curve, validation RMSE before and after averaging."""
    state = run.checkpoint.get(model)
    lines = [f"<h3>{esc(model)}</h3>"]
    if state is None:
        problem = run.problems.get(f"checkpoint {model}", f"no checkpoint; train it with {command(f'{model}.py')}")
        lines.append(missing(problem))
    else:
        config = recipe.config_from_checkpoint(state["config"])
        seconds = state.get("train_seconds")
        parameters = sum(int(tensor.numel()) for tensor in state["model"].values())
        lines.append(f"<p>{recipe_summary(model, config)}</p>")
        lines.append(f"<p><b>parameters</b> {parameters:,} &nbsp; <b>trained</b> {state['next_chunk']} of "
                     f"{config['NUM_CHUNKS']} chunks &nbsp; <b>training time</b> "
                     f"{runner.hms(seconds) if seconds is not None else 'not recorded (an older checkpoint)'}</p>")
        lines.append(learning_curve_html(run, model, state, folder))
    lines.append(member_scores_html(run, model, state))
    return "".join(lines)


def learning_curve_html(run, model, state, folder):
    if not state["losses_train"]:
        return missing("no chunk trained yet: no learning curve")
    if run.split is None:
        return missing(f"no learning curve: {run.problems['labels']}")
    mean_baseline = submission.rmse(np.broadcast_to(run.training_mean(), run.split.valid_labels.shape),
                                    run.split.valid_labels)
    path = folder / f"curve_{model}.png"
    learning_curve.save(path, state["losses_train"], state["losses_valid"], mean_baseline)
    return image(folder, path, f"learning curve of {model}")


def member_scores_html(run, model, state):
    """Validation RMSE without averaging (the checkpoint's) and with it (step 6's file), overall and per question."""
    before = None if state is None else state.get("valid_rmse", state["losses_valid"][-1][1] if state["losses_valid"]
                                                    else None)
    rows = [] if before is None else [f"<tr><td>identity transform (training's last validation)</td>"
                                      f"<td>{before:.5f}</td>{''.join('<td></td>' for _ in decision_tree.QUESTIONS)}</tr>"]
    if model in run.valid:
        rows.append(score_row("averaged over the test-time transforms", run.valid[model], run.split.valid_labels))
    else:
        reason = run.problems.get(f"valid {model}", "no validation predictions")
        rows.append(f"<tr><td colspan=13 class=missing>{esc(reason)}; run "
                    f"<code>{esc(command('predict_augmented_npy.py', model))}</code></td></tr>")
    return table(["validation RMSE", *score_predictions.score_names()], rows)


def score_row(name, predictions, labels):
    values = score_predictions.scores(np.asarray(predictions, np.float64), np.asarray(labels, np.float64))
    return f"<tr><td>{esc(name)}</td>" + "".join(f"<td>{value:.5f}</td>" for value in values) + "</tr>"


# ---------------------------------------------------------------------------------------------------
# The blends


def blend_sources(run):
    """{name: validation predictions (N, 37)} of each blend whose weights are fresh and whose models' validation
    predictions are all readable; {} otherwise."""
    if run.weights is None or run.split is None:
        return {}
    models, weights = run.weights
    if not all(model in run.valid for model in models):
        return {}
    stack = np.stack([run.valid[model] for model in models])
    return {f"blend: {name}": blend_predictions.blend(stack, w) for name, w in weights.items()}


def blends_section(run, folder):
    if run.split is None:
        return section("blends", "The blends", missing(run.problems["labels"]))
    parts = []
    blends = blend_sources(run)
    if run.weights is None:
        parts.append(missing(run.problems.get("blend weights", "no blend yet") + f"; run {command('blend_predictions.py')}"))
    elif not blends:
        parts.append(missing("the blend weights were fitted on validation predictions that cannot be read now; run "
                             + command("blend_predictions.py")))
    else:
        parts.append(weights_html(run.weights, folder))
        models = run.weights[0]
        parts += [f"<p class=warning>{esc(line)}</p>" for line in blend_predictions.worse_than_mean_lines(
            models, [run.valid[model] for model in models], run.split)]
    labels = run.split.valid_labels
    rows = [score_row(name, values, labels) for name, values in blends.items()]
    rows += [score_row(model, values, labels) for model, values in run.valid.items()]
    rows += [score_row("training mean", np.broadcast_to(run.training_mean(), labels.shape), labels),
             score_row("all zeros", np.zeros(labels.shape), labels)]
    parts.append(f"<p>Validation RMSE on {len(labels)} images.</p>"
                 + table(["predictions", *score_predictions.score_names()], rows))
    return section("blends", "The blends", "".join(parts))


def weights_html(saved, folder):
    """The weight per model of each blend, and the per-column weights as a picture."""
    models, weights = saved
    rows = [f"<tr><td>{esc(model)}</td><td>{weights['uniform'][m]:.4f}</td><td>{weights['per_model'][m]:.4f}</td>"
            f"<td>{weights['per_column'][m].min():.4f} / {weights['per_column'][m].mean():.4f} / "
            f"{weights['per_column'][m].max():.4f}</td></tr>" for m, model in enumerate(models)]
    figure, axes = plt.subplots(figsize=(11, 0.5 + 0.35 * len(models)))
    shown_image = axes.imshow(weights["per_column"], vmin=0, vmax=1, aspect="auto", cmap="viridis")
    axes.set_yticks(range(len(models)), models, fontsize=7)
    axes.set_xticks(range(decision_tree.NUM_OUTPUTS), [c.removeprefix("Class") for c in decision_tree.COLUMNS],
                    rotation=90, fontsize=7)
    figure.colorbar(shown_image, ax=axes, label="weight")
    axes.set_title("weights per model and column (blended_predictions_separate)", fontsize=9)
    path = save_figure(figure, folder / "blend_weights.png")
    return (table(["model", "uniform", "per model", "per column: min / mean / max"], rows)
            + image(folder, path, "blend weights per model and column"))


# ---------------------------------------------------------------------------------------------------
# Galaxies


def best_source(run):
    """(name, validation predictions) of the blend or model with the lowest validation RMSE, or None."""
    sources = {**blend_sources(run), **run.valid}
    if not sources:
        return None
    labels = run.split.valid_labels
    name = min(sources, key=lambda key: submission.rmse(sources[key], labels))
    return name, np.asarray(sources[name], np.float64)


def chosen_galaxies(predictions, labels):
    """[(group title, [row, ...]), ...]: the best-, median- and worst-predicted rows by RMSE, then per question the
    rows with the largest RMSE over its answers."""
    per_row = np.sqrt(((predictions - labels) ** 2).mean(axis=1))
    order = np.argsort(per_row, kind="stable")
    n, middle = GALAXIES_PER_GROUP, len(order) // 2
    groups = [("best predicted", order[:n]), ("median", order[max(middle - n // 2, 0):][:n]),
              ("worst predicted", order[::-1][:n])]
    for question, columns in zip(decision_tree.QUESTIONS, decision_tree.QUESTION_SLICES):
        error = np.sqrt(((predictions[:, columns] - labels[:, columns]) ** 2).mean(axis=1))
        groups.append((f"Q{question.number} {question.text} worst", np.argsort(-error, kind="stable")[:WORST_PER_QUESTION]))
    return groups


def thumbnail(galaxy_id, folder):
    """A small JPEG of a training image in folder/galaxies; returns its path, or the DataError message."""
    path = folder / "galaxies" / f"{galaxy_id}.jpg"
    if not path.exists():
        pixels, problem = attempt(lambda: load_data.load_image_uint8(galaxy_id, "train"))
        if problem is not None:
            return problem
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.LANCZOS).save(path, quality=85)
    return path


def answers_table(crowd, model):
    """The questions the crowd's or the model's most-voted answers reach, each with both answers and fractions."""
    crowd_answers, model_answers = decision_tree.most_voted_answers(np.stack([crowd, model]))
    rows = []
    for q, (question, columns) in enumerate(zip(decision_tree.QUESTIONS, decision_tree.QUESTION_SLICES)):
        if crowd_answers[q] < 0 and model_answers[q] < 0:
            continue
        cells = [answer_cell(question, columns, values, answer[q])
                 for values, answer in ((crowd, crowd_answers), (model, model_answers))]
        differs = " class=differs" if crowd_answers[q] != model_answers[q] else ""
        rows.append(f"<tr{differs}><td>Q{question.number} {esc(question.text)}</td>{cells[0]}{cells[1]}</tr>")
    return f"<table class=answers><tr><th></th><th>crowd</th><th>model</th></tr>{''.join(rows)}</table>"


def answer_cell(question, columns, values, answer):
    if answer < 0:
        return "<td>(not reached)</td>"
    return f"<td>{esc(question.answers[answer])} {values[columns][answer]:.2f}</td>"


def galaxies_section(run, folder):
    source = None if run.split is None else best_source(run)
    if source is None:
        return section("galaxies", "Validation galaxies", missing(
            "no validation predictions to compare with the crowd's; run " + command("predict_augmented_npy.py", "<model>")))
    name, predictions = source
    labels = run.split.valid_labels.astype(np.float64)
    parts = [f"<p>The model's answers are those of <b>{esc(name)}</b>, the lowest validation RMSE; each answer is the "
             "most-voted one of its question, followed down the decision tree, with its vote fraction. Rows where "
             "the model's answer differs from the crowd's are marked.</p>"]
    for title, rows in chosen_galaxies(predictions, labels):
        cards = [galaxy_card(int(run.split.valid_ids[row]), labels[row], predictions[row], folder) for row in rows]
        parts.append(f"<h3>{esc(title)}</h3><div class=cards>{''.join(cards)}</div>")
    return section("galaxies", "Validation galaxies", "".join(parts))


def galaxy_card(galaxy_id, crowd, model, folder):
    picture = thumbnail(galaxy_id, folder)
    shown_picture = image(folder, picture, f"galaxy {galaxy_id}") if isinstance(picture, Path) else missing(picture)
    return (f"<div class=card>{shown_picture}<div><b>{galaxy_id}</b> RMSE {submission.rmse(model, crowd):.4f}</div>"
            f"{answers_table(crowd, model)}</div>")


# ---------------------------------------------------------------------------------------------------
# The test set


def test_source(run):
    """(name, test predictions (N, 37)) of the submitted (uniform) blend, else of the one model; or (None, reason)."""
    uniform = blend_predictions.blended_dir() / blend_predictions.BLEND_FILES["uniform"]
    candidates = [(uniform.name, uniform)] + [(model, paths.augmented_predictions_path(model, "test"))
                                              for model in run.models]
    reasons = []
    for name, path in candidates:
        if not path.exists():
            continue
        values, problem = attempt(lambda p=path: submission.load_recorded(
            p, run.test_ids, load_data.SPLIT_IDS_TEXT["test"], "rerun the step that wrote it")[1])
        if values is not None:
            return name, values
        reasons.append(problem)
    return None, "; ".join(reasons) or "no test-set predictions yet; run " + command("predict_augmented_npy.py", "<model>")


def test_section(run, folder):
    if run.test_ids is None or run.split is None:
        return section("test", "The test set", missing(run.problems.get("test IDs") or run.problems["labels"]))
    name, values = test_source(run)
    if name is None:
        return section("test", "The test set", missing(values))
    training = np.concatenate([run.split.train_labels, run.split.valid_labels]).astype(np.float64)
    figure, axes = plt.subplots(5, 8, figsize=(16, 10))
    bins = np.linspace(0, 1, 21)
    for column, ax in enumerate(axes.flat):
        if column >= decision_tree.NUM_OUTPUTS:
            ax.axis("off")
            continue
        question = decision_tree.question_of_column(column)
        answer = question.answers[column - decision_tree.QUESTION_SLICES[question.number - 1].start]
        ax.hist(training[:, column], bins, density=True, histtype="step", label="training labels")
        ax.hist(values[:, column], bins, density=True, histtype="step", label="test predictions")
        ax.set_title(f"{decision_tree.COLUMNS[column].removeprefix('Class')} {answer}", fontsize=8)
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=6)
    figure.suptitle(f"vote fractions: {len(values)} test predictions ({name}) and {len(training)} training labels")
    path = save_figure(figure, folder / "test_distributions.png")
    text = (f"<p>Each answer's vote fraction over the {len(values)} test images as <b>{esc(name)}</b> predicts it, "
            f"beside the {len(training)} training labels (densities).</p>")
    return section("test", "The test set", text + image(folder, path, "answer distributions on the test set"))


# ---------------------------------------------------------------------------------------------------
# HTML


STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; }
th, td.fresh, td.stale, td.not-made, td.written { white-space: nowrap; }
td.title { max-width: 15em; overflow-wrap: anywhere; }
td.fresh { background: #d8f0d8; } td.stale { background: #f6d0c8; } td.missing { background: #f6e3b0; }
td.not-made, td.written { background: #eee; }
.missing { color: #8a4b00; font-style: italic; }
.warning { color: #a00000; font-weight: bold; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #bbb; padding: 6px; width: 330px; font-size: 12px; }
.card table { font-size: 11px; } tr.differs td { background: #fbe3dc; }
nav a { margin-right: 1em; }
code { font-size: 12px; overflow-wrap: anywhere; }
img { max-width: 100%; }
"""


def esc(text):
    return html.escape(str(text))


def missing(text):
    return f"<p class=missing>{esc(text)}</p>"


def table(header, rows):
    if not rows:
        return ""
    return "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>" + "".join(rows) + "</table>"


def section(anchor, title, body):
    return f"<section id={anchor}><h2>{esc(title)}</h2>{body}</section>"


def image(folder, path, alt):
    """An <img> of the file `path` inside the report folder `folder`, by its relative path."""
    return f"<img src='{esc(Path(path).relative_to(folder).as_posix())}' alt='{esc(alt)}'>"


def save_figure(figure, path):
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=80)
    plt.close(figure)
    return path


def page(sections):
    navigation = "".join(f"<a href='#{anchor}'>{title}</a>" for anchor, title in (
        ("pipeline", "pipeline"), ("models", "models"), ("blends", "blends"), ("galaxies", "galaxies"),
        ("test", "test set")))
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Galaxy Zoo run: {esc(paths.root())}"
            f"</title><style>{STYLE}</style></head><body><h1>Galaxy Zoo run report</h1>"
            f"<p>{esc(paths.root())}, written {time.strftime('%Y-%m-%d %H:%M')}</p><nav>{navigation}</nav>"
            + "".join(sections) + "</body></html>\n")


def write_report():
    """Build the report in a new folder beside report/ and put it in report/'s place; returns report/index.html."""
    target = report_dir()
    files.check_writable(target.parent)
    folder = target.with_name(f".{REPORT_FOLDER}.{uuid.uuid4().hex[:8]}.tmp")
    folder.mkdir()
    try:
        run = Run()
        sections = [pipeline_section(run), members_section(run, folder), blends_section(run, folder),
                    galaxies_section(run, folder), test_section(run, folder)]
        (folder / "index.html").write_text(page(sections))
        replace_folder(folder, target)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return target / "index.html"


def replace_folder(new, target):
    """Put the folder `new` at `target`, the old one removed once the new one is in place."""
    old = target.with_name(f".{REPORT_FOLDER}.{uuid.uuid4().hex[:8]}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return runner.run_script(parser, lambda args: print(f"wrote {write_report()}"), argv, runner.RERUN_NOTE)


if __name__ == "__main__":
    sys.exit(main())
