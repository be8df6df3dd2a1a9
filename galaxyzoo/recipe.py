"""What a try_*.py file may say: every setting, its default (the original recipe's), its type and allowed values.

A try file is a recipe: module-level settings in capitals and build_model(). It may import another try file's
recipe (`from try_... import *`) and change a few settings. Names it defines in capitals must be settings listed
here (helpers of its own start with an underscore); anything else is refused before any data is read, with the
nearest known name. `python try_X.py --show-recipe` prints the effective recipe with where each value came from.

    BATCH_SIZE          images per minibatch
    CHUNK_SIZE          freshly augmented images per chunk, or "epoch" (one pass over the training images)
    VALIDATE_EVERY      chunks between validations (and checkpoints)
    NUM_CHUNKS_NONORM   first chunks trained without the output layer's normalisation
    AUGMENTATION        the random transform drawn per image (realtime_augmentation.random_augmentation)
    COLOUR_STD          standard deviation of the colour noise along the first PCA direction of pixel colour
    PREPROCESSING       None, or centring (and rescaling) from step 3's source-extraction parameters
    INPUT               "original" (two 69x69 views) or (size, region): one square view of the centre region
    INIT                "original" (the recipe's initialisation) or "standard" (He / PyTorch default scaling)
    SEED                seed of initialisation, data and dropout
    OPTIMIZER           dict(name=..., arguments): "nesterov" (the original's form), "adam", "adamw"
    STAGES              the schedule: a list of stages (stages.py), each with its chunks and learning rate (a
                        number, or slice(low, high) / slice(high) across layer groups)
"""
import ast
import copy
import difflib
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import source_params
from galaxyzoo import errors, stages

EPOCH = "epoch"  # CHUNK_SIZE of one pass over the training images (the last incomplete minibatch left out)
# The 2014 recipes' schedule: 2,500 chunks at 0.04, from chunk 1,800 at 0.004, from chunk 2,300 at 0.0004, one
# Nesterov optimiser throughout (its momentum carries over the rate changes).
ORIGINAL_OPTIMIZER = dict(name="nesterov", momentum=0.9)
ORIGINAL_STAGES = [dict(chunks=1800, lr=0.04), dict(chunks=500, lr=0.004, restart=False),
                   dict(chunks=200, lr=0.0004, restart=False)]
# Settings of earlier versions of this file, with what replaces them.
FORMER_SETTINGS = {
    "LEARNING_RATE_SCHEDULE": "the chunk-keyed rates are stages now: STAGES = [dict(chunks=1800, lr=0.04), "
                              "dict(chunks=500, lr=0.004, restart=False), ...] (see recipe.ORIGINAL_STAGES)",
    "MOMENTUM": "write OPTIMIZER = dict(name=\"nesterov\", momentum=0.9)",
    "NUM_CHUNKS": "the number of chunks is the sum of the stages' chunks (STAGES); --num-chunks scales them",
}


def _integer(low):
    def check(value):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"must be an integer of at least {low}")
    return check


def _chunk_size(value):
    if value != EPOCH:
        _integer(1)(value)


def _number_at_least_zero(value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ValueError("must be a number of at least 0")


def _augmentation(value):
    expected = set(ra.DEFAULT_AUGMENTATION)
    if not isinstance(value, dict) or set(value) != expected:
        raise ValueError(f"must be a dict with exactly the keys {', '.join(sorted(expected))}")
    for key in ("zoom_range", "rotation_range", "translation_range"):
        pair = value[key]
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, (int, float)) for x in pair)
                and pair[0] <= pair[1]):
            raise ValueError(f"{key} must be (low, high) with low <= high, got {pair!r}")
    if not value["zoom_range"][0] > 0:
        raise ValueError(f"zoom_range must be positive, got {value['zoom_range']!r}")
    if not isinstance(value["do_flip"], bool):
        raise ValueError(f"do_flip must be True or False, got {value['do_flip']!r}")


def _preprocessing(value):
    if value is not None and value not in source_params.PREPROCESSING:
        raise ValueError(f"must be None or one of {', '.join(source_params.PREPROCESSING)}")


def _one_of(*allowed):
    def check(value):
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(repr, allowed))}")
    return check


def _setting(default, check):
    """A dataclass field for a setting: its default and the function that raises ValueError for a bad value."""
    return field(default_factory=lambda: copy.deepcopy(default), metadata=dict(check=check))


@dataclass(frozen=True)
class Recipe:
    """The settings of a try file, every one with the original recipe's value as its default (see the module's
    docstring for their meanings). STAGES are as declared; NUM_CHUNKS, stage_list() and the effective schedule
    come from them."""
    BATCH_SIZE: int = _setting(16, _integer(1))
    CHUNK_SIZE: object = _setting(10000, _chunk_size)
    VALIDATE_EVERY: int = _setting(20, _integer(1))
    NUM_CHUNKS_NONORM: int = _setting(1, _integer(0))
    AUGMENTATION: dict = _setting(ra.DEFAULT_AUGMENTATION, _augmentation)
    COLOUR_STD: float = _setting(ra.COLOUR_STD, _number_at_least_zero)
    PREPROCESSING: object = _setting(None, _preprocessing)
    INPUT: object = _setting(ra.ORIGINAL_INPUT, ra.input_views)
    INIT: str = _setting("original", _one_of("original", "standard"))
    SEED: int = _setting(0, _integer(0))
    OPTIMIZER: dict = _setting(ORIGINAL_OPTIMIZER, stages.check_optimizer)
    STAGES: list = _setting(ORIGINAL_STAGES, lambda value: stages.parse(value, ra.ORIGINAL_INPUT))

    def __post_init__(self):
        for name in SETTING_NAMES:
            check_value(name, getattr(self, name))
        first = self.stage_list()[0]
        if not first.restart:
            raise ValueError("STAGES[0]: the first stage starts the optimiser (restart=False is for later stages)")

    def stage_list(self):
        """STAGES as stages.Stage objects, each stage's input resolved."""
        return stages.parse(self.STAGES, self.INPUT)

    @property
    def NUM_CHUNKS(self):
        return sum(stage.chunks for stage in self.stage_list())

    def with_num_chunks(self, num_chunks):
        """The recipe with its stages scaled to num_chunks in all (stages.scaled)."""
        return replace(self, STAGES=stages.as_config(stages.scaled(self.stage_list(), num_chunks)))

    def config(self):
        """The effective recipe as plain data (what a checkpoint stores): every setting, NUM_CHUNKS, STAGES with
        every field and input resolved, and INPUT the last stage's."""
        values = {name: getattr(self, name) for name in SETTING_NAMES}
        values["AUGMENTATION"] = {key: tuple(v) if isinstance(v, list) else v for key, v in self.AUGMENTATION.items()}
        values["STAGES"] = stages.as_config(self.stage_list())
        values["INPUT"] = values["STAGES"][-1]["input"]  # what the trained network takes, in prediction
        values["NUM_CHUNKS"] = self.NUM_CHUNKS
        return values


SETTINGS = {f.name: f for f in fields(Recipe)}
SETTING_NAMES = tuple(SETTINGS)


def check_value(name, value):
    """ValueError "NAME = value: what is wrong" for a bad value of setting `name`."""
    try:
        SETTINGS[name].metadata["check"](value)
    except ValueError as exc:
        raise ValueError(f"{name} = {value!r}: {exc}") from None


def unknown_setting_message(name):
    """What to say about a capitalised name that is no setting."""
    if name in FORMER_SETTINGS:
        return f"{name}: no longer a setting; {FORMER_SETTINGS[name]}"
    close = difflib.get_close_matches(name, SETTING_NAMES + tuple(FORMER_SETTINGS), n=1, cutoff=0.6)
    if close and close[0] in FORMER_SETTINGS:
        return f"{name}: no such setting; the nearest, {close[0]}, is no longer one either: {FORMER_SETTINGS[close[0]]}"
    hint = f"did you mean {close[0]}?" if close else f"the settings are {', '.join(SETTING_NAMES)}"
    return f"{name}: no such setting; {hint} (a name of the file's own starts with an underscore)"


def declared_names(namespace):
    """The capitalised names of a try module's namespace that hold data (modules, classes and functions aside)."""
    return [name for name, value in namespace.items()
            if name.isupper() and not name.startswith("_") and not callable(value) and type(value).__name__ != "module"]


def assigned_in(path):
    """The names a Python file assigns at its top level, and the modules it imports everything from."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    names, star_imports = set(), []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        names.update(target.id for target in targets if isinstance(target, ast.Name))
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            star_imports.append(node.module)
    return names, star_imports


class RecipeError(errors.SettingError):
    """A try file's setting that is unknown, of the wrong type, or out of range; the message names file and setting."""


@dataclass(frozen=True)
class TryFile:
    """A try file's recipe and model: its name (the file's stem, which names its checkpoint and predictions), path,
    Recipe, build_model, and where each setting's value came from."""
    name: str
    path: Path
    recipe: Recipe
    build_model: object
    sources: dict
    doc: str = ""

    @classmethod
    def from_namespace(cls, namespace):
        """The TryFile of a try module's globals(); RecipeError for an unknown or bad setting or a missing
        build_model."""
        path = Path(namespace["__file__"]).resolve()
        unknown = [name for name in declared_names(namespace) if name not in SETTINGS]
        if unknown:
            raise RecipeError(f"{path.name}: {unknown_setting_message(unknown[0])}")
        if not callable(namespace.get("build_model")):
            raise RecipeError(f"{path.name}: defines no build_model() (the function that returns the network)")
        own, star_imports = assigned_in(path)
        sources = {}
        for name in SETTING_NAMES:
            if name in own:
                sources[name] = "this file"
            elif name in namespace:
                sources[name] = next((f"{module}.py" for module in star_imports
                                      if name in vars(sys.modules.get(module, object))), "an imported recipe")
            else:
                sources[name] = "default"
        try:
            recipe = Recipe(**{name: namespace[name] for name in SETTING_NAMES if name in namespace})
        except ValueError as exc:
            raise RecipeError(f"{path.name}: {exc}") from None
        return cls(path.stem, path, recipe, namespace["build_model"], sources, namespace.get("__doc__") or "")

    def with_overrides(self, **overrides):
        """The TryFile with command-line values (setting name -> (option text, value); None values are left out)
        applied; NUM_CHUNKS scales the stages."""
        recipe, sources = self.recipe, dict(self.sources)
        for name, (option, value) in overrides.items():
            if value is None:
                continue
            try:
                recipe = recipe.with_num_chunks(value) if name == "NUM_CHUNKS" else replace(recipe, **{name: value})
            except ValueError as exc:
                raise RecipeError(f"{option}: {exc}") from None
            sources["STAGES" if name == "NUM_CHUNKS" else name] = f"command line ({option})"
        return replace(self, recipe=recipe, sources=sources)

    def describe(self):
        """The effective recipe, a line per setting (the stages a line each) with where its value came from."""
        config = self.recipe.config()
        width = max(map(len, SETTING_NAMES))
        lines = [f"{self.name} ({self.path}): the effective recipe"]
        for name in SETTING_NAMES:
            if name == "STAGES":
                lines.append(f"{name:<{width}} = [  # {self.sources[name]}; {config['NUM_CHUNKS']} chunks in all")
                lines += [f"{'':<{width}}     {stage}," for stage in self.recipe.STAGES]
                lines.append(f"{'':<{width}}   ]")
            else:
                lines.append(f"{name:<{width}} = {getattr(self.recipe, name)!r}  # {self.sources[name]}")
        return "\n".join(lines)


def config_from_checkpoint(config):
    """A checkpoint's stored recipe in today's form (Recipe.config()): checkpoints written before the one schedule
    system store LEARNING_RATE_SCHEDULE and MOMENTUM (2014 recipes) or stages without `restart`, and the oldest
    neither INPUT nor COLOUR_STD."""
    config = {"INPUT": ra.ORIGINAL_INPUT, "COLOUR_STD": ra.COLOUR_STD, "INIT": "original", **config}
    if "LEARNING_RATE_SCHEDULE" in config:
        schedule, num_chunks = sorted(config.pop("LEARNING_RATE_SCHEDULE").items()), config["NUM_CHUNKS"]
        starts = [start for start, _ in schedule if start < num_chunks] or [0]
        ends = starts[1:] + [num_chunks]
        config["OPTIMIZER"] = dict(name="nesterov", momentum=config.pop("MOMENTUM"))
        config["STAGES"] = stages.as_config([
            stages.Stage(chunks=end - start, lr=dict(schedule)[start], input=config["INPUT"], restart=index == 0)
            for index, (start, end) in enumerate(zip(starts, ends))])
    else:
        config["STAGES"] = [{"restart": True, **stage} for stage in config["STAGES"]]
    return config
