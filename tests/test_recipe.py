"""recipe.py: what a try file may say. Unknown names and bad values are refused before any data is read, with the
file, the setting and what to write instead; --show-recipe tells where each value came from; older checkpoints'
recipes read in today's form; and every member's effective recipe, the split and the constants the code takes
compared with the method's numbers (../shared/SPEC.md)."""
import inspect
import os
from pathlib import Path

import numpy as np
import pytest

import convnet
import load_data
import realtime_augmentation as ra
import recipe
import stages
import train
from helpers import PROJECT_DIR, TINY_MODEL_NAME, tiny_recipe, tiny_settings, try_file_source

SPEC = Path(os.environ.get("GALAXY_SPEC", PROJECT_DIR.parent / "shared" / "SPEC.md"))
BEST = "try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense"
MEMBERS_2014 = sorted(path.stem for path in PROJECT_DIR.glob("try_convnet_*.py"))

# The method's numbers, as ../shared/SPEC.md states them ("Preprocessing and augmentation", "The network",
# "Training", "Test-time averaging"); every one is looked up in SPEC.md where it is present.
SPEC_RECIPE = dict(BATCH_SIZE=16, CHUNK_SIZE=10000, VALIDATE_EVERY=20, NUM_CHUNKS_NONORM=1, COLOUR_STD=0.5,
                   OPTIMIZER=dict(name="nesterov", momentum=0.9), INPUT="original", INIT="original")
SPEC_RATES = [(0, 0.04), (1800, 0.004), (2300, 0.0004)]  # (first chunk, learning rate)
SPEC_NUM_CHUNKS = 2500
SPEC_AUGMENTATION = dict(zoom_range=(1 / 1.3, 1.3), rotation_range=(0, 360), translation_range=(-4, 4), do_flip=True)
SPEC_COLOUR_DIRECTION = [-0.0148366, -0.01253134, -0.01040762]
SPEC_MAX_NORM = (0.4, 0.23)  # the normconstraint member's limits, every 10 minibatches
SPEC_MAX_NORM_EVERY = 10
SPEC_CENTRING = dict(target_radius=160.0, limit=1.5)
SPEC_TTA = dict(rotations=10, zooms=(1 / 1.2, 1.0, 1.2), flips=2, transforms=60)
SPEC_TEXT = ["minibatch 16", "chunks of 10,000", "2,500 chunks", "Nesterov momentum 0.9", "Learning rate 0.04",
             "0.004 from chunk 1,800", "0.0004 from chunk 2,300", "The first chunk trains without",
             "Validate every 20 chunks", "N(0, 0.5)", "-0.0148366, -0.01253134, -0.01040762", "[-4, 4]",
             "[1/1.3, 1.3]", "0.4 in the first dense", "0.23 in the second, every 10 minibatches", "160 px",
             "[1/1.5, 1.5]", "10 rotations 36 degrees apart", "{1/1.2, 1, 1.2}", "60 transforms",
             "the last 10% of the training IDs"]


def main_exit(namespace, argv, capsys):
    """train.main(namespace, argv) that must exit non-zero: (exit code, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        train.main(namespace, argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("settings, words", [
    (tiny_settings(COLOR_STD=0.0), "COLOR_STD: no such setting; did you mean COLOUR_STD?"),
    (tiny_settings(LEARNING_RATE_SHEDULE={0: 0.04}), "LEARNING_RATE_SHEDULE: no such setting; the nearest, "
                                                     "LEARNING_RATE_SCHEDULE, is no longer one"),
    (tiny_settings(MOMENTUM=0.95), 'MOMENTUM: no longer a setting; write OPTIMIZER = dict(name="nesterov"'),
    (tiny_settings(BATCH_SIZE="16"), "BATCH_SIZE = '16': must be an integer of at least 1"),
    (tiny_settings(COLOUR_STD=-0.5), "COLOUR_STD = -0.5: must be a number of at least 0"),
    (tiny_settings(PREPROCESSING="centred"), "PREPROCESSING = 'centred': must be None or one of centre"),
    (tiny_settings(AUGMENTATION=dict(zoom_range=(1.3, 1 / 1.3), rotation_range=(0, 360), translation_range=(-4, 4),
                                     do_flip=True)), "zoom_range must be (low, high) with low <= high"),
    (tiny_settings(OPTIMIZER=dict(name="adam", momentum=0.9)), "momentum"),
    (tiny_settings(OPTIMIZER=dict(name="sgd")), "name one of nesterov, adam, adamw"),
    (tiny_settings(STAGES=[dict(chunks=10, lr=-0.1)]), "STAGES[0]: lr must be a positive number"),
    (tiny_settings(STAGES=[dict(chunks=10, lr=0.1, restart=False)]), "STAGES[0]: the first stage starts"),
    (tiny_settings(INPUT=(0, 224)), "INPUT = (0, 224)"),
])
def test_a_bad_setting_is_refused_before_any_data_is_read(isolated, tmp_path, capsys, settings, words):
    """The root does not even exist: the refusal names the try file and the setting, and nothing is created."""
    namespace = tiny_recipe(tmp_path, try_file_source(settings))
    root = isolated / "no_root_here"
    code, err = main_exit(namespace, ["--root", str(root)], capsys)
    assert code == 1 and f"{TINY_MODEL_NAME}.py: " in err and words in err, err
    assert len(err.strip().splitlines()) == 1 and not root.exists()


def test_a_name_of_the_file_s_own_starts_with_an_underscore(tmp_path):
    source = try_file_source(tiny_settings(_HALF=4, CHUNK_SIZE=8))
    assert train.config_of(tiny_recipe(tmp_path, source))["CHUNK_SIZE"] == 8


def test_show_recipe_says_where_each_value_came_from(tmp_path, monkeypatch, capsys):
    """A try file importing another's recipe: each setting from the default, that recipe, this file or the command
    line; nothing else runs (no root is read or made)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    tiny_recipe(tmp_path, try_file_source(tiny_settings(COLOUR_STD=0.25)), "try_tiny_parent")
    child = tiny_recipe(tmp_path, '"""A child."""\nfrom try_tiny_parent import *  # noqa\nimport train\n\nSEED = 5\n'
                                  '\nif __name__ == "__main__":\n    train.main(globals())\n', "try_tiny_child")
    train.main(child, ["--show-recipe", "--batch-size", "8", "--num-chunks", "25", "--root", str(tmp_path / "none")])
    lines = {line.split("=")[0].strip(): line for line in capsys.readouterr().out.splitlines() if " = " in line}
    assert lines["SEED"].endswith("= 5  # this file")
    assert lines["COLOUR_STD"].endswith("= 0.25  # try_tiny_parent.py")
    assert lines["BATCH_SIZE"].endswith("= 8  # command line (--batch-size)")
    assert lines["INIT"].endswith("= 'original'  # default")
    assert "# command line (--num-chunks); 25 chunks in all" in lines["STAGES"]
    assert not (tmp_path / "none").exists()


def test_older_checkpoints_recipes_read_in_today_s_form():
    """The configs checkpoints stored before the one schedule system (a 2014 recipe scaled to 25 chunks; a staged
    recipe) equal what the same settings give now."""
    before_2014 = {"BATCH_SIZE": 16, "MOMENTUM": 0.9, "LEARNING_RATE_SCHEDULE": {0: 0.04, 18: 0.004, 23: 0.0004},
                   "CHUNK_SIZE": 16, "NUM_CHUNKS": 25, "VALIDATE_EVERY": 25, "NUM_CHUNKS_NONORM": 1,
                   "AUGMENTATION": dict(ra.DEFAULT_AUGMENTATION), "PREPROCESSING": None, "SEED": 0, "INIT": "original"}
    today = recipe.Recipe(CHUNK_SIZE=16, VALIDATE_EVERY=25).with_num_chunks(25).config()
    assert recipe.config_from_checkpoint(before_2014) == today
    staged = recipe.Recipe(OPTIMIZER=dict(name="adamw"), STAGES=[dict(chunks=2, lr=1e-3, input=(24, 224))],
                           INPUT=(24, 224)).config()
    before_staged = {**staged, "STAGES": [{k: v for k, v in stage.items() if k != "restart"}
                                          for stage in staged["STAGES"]]}
    assert recipe.config_from_checkpoint(before_staged) == staged


@pytest.mark.parametrize("member", MEMBERS_2014)
def test_every_2014_member_s_recipe_is_the_method_s(member):
    """The effective recipe each try file gives, against the method's numbers: a rate boundary moved by one chunk,
    another momentum, colour noise or augmentation range fails here."""
    config = train.config_of(vars(train.checkpoints.import_try_script(member)))
    for name, value in SPEC_RECIPE.items():
        assert config[name] == value, (member, name)
    assert config["AUGMENTATION"] == SPEC_AUGMENTATION
    assert config["NUM_CHUNKS"] == SPEC_NUM_CHUNKS
    stage_list = [stages.Stage(**stage) for stage in config["STAGES"]]
    assert list(zip(stages.first_chunks(stage_list), [stage.lr for stage in stage_list])) == SPEC_RATES
    assert [stage.restart for stage in stage_list] == [True, False, False]  # one optimiser throughout
    assert {stage.schedule for stage in stage_list} == {"constant"} and {stage.train for stage in stage_list} == {"all"}


def test_the_constants_the_code_takes_are_the_method_s():
    np.testing.assert_array_equal(ra.COLOUR_PCA_DIRECTION, np.float32(SPEC_COLOUR_DIRECTION))
    model = train.checkpoints.import_try_script("try_convnet_cc_multirotflip_3x69r45_normconstraint").build_model()
    assert model.max_norm == SPEC_MAX_NORM and train.MAX_NORM_EVERY == SPEC_MAX_NORM_EVERY
    defaults = {name: p.default for name, p in inspect.signature(ra.centring_transform).parameters.items()}
    assert {name: defaults[name] for name in SPEC_CENTRING} == SPEC_CENTRING
    assert (ra.TTA_NUM_ROTATIONS, ra.TTA_ZOOMS, len(ra.TTA_FLIPS)) == (SPEC_TTA["rotations"], SPEC_TTA["zooms"],
                                                                        SPEC_TTA["flips"])
    assert len(ra.tta_transforms()) == SPEC_TTA["transforms"]
    assert (convnet.CONV_INIT, convnet.TOP_CONV_INIT, convnet.DENSE_INIT, convnet.OUTPUT_INIT, convnet.DROPOUT) == \
        ((0.01, 0.1), (0.1, 0.1), (0.001, 0.01), (0.01, 0.1), 0.5)


def test_the_pinned_numbers_are_the_spec_s():
    """Each number above appears in ../shared/SPEC.md as written there (skipped where the file is absent)."""
    if not SPEC.is_file():
        pytest.skip(f"{SPEC} not found (set GALAXY_SPEC)")
    text = " ".join(SPEC.read_text().split())
    missing = [phrase for phrase in SPEC_TEXT if phrase not in text]
    assert missing == []


@pytest.mark.parametrize("num_train", [1, 9, 10, 11, 19, 20, 99, 1000, 61578])
def test_the_split_is_the_last_tenth_disjoint_and_complete(num_train):
    train_idx, valid_idx = load_data.train_valid_split(num_train)
    assert len(valid_idx) == num_train // 10
    assert set(train_idx).isdisjoint(valid_idx)
    assert sorted([*train_idx, *valid_idx]) == list(range(num_train))
    assert list(valid_idx) == list(range(num_train - num_train // 10, num_train))
    if num_train == 61578:
        assert (len(train_idx), len(valid_idx)) == (55421, 6157)
