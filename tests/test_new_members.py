"""The members built on pretrained backbones (try_resnet50_fastai, try_resnet50_imagenet, try_dinov2_vitb14) at
tiny size: each trains through all its stages, predicts with test-time averaging, and blends beside a 2014
member, with the same scripts as the 2014 members. The backbones start from random weights here (no network),
saved to a file and passed as --weights PATH; the recipes refuse random weights asked for as such."""
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from galaxyzoo import backbones
import blend_predictions
from galaxyzoo import checkpoints
from galaxyzoo import decision_tree
import load_data
import predict_augmented_npy
from galaxyzoo import train
from helpers import PROJECT_DIR, make_tiny_root
from galaxyzoo import paths
from galaxyzoo import records

BEST = "try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense"
SHORT = ["--workers", "0", "--chunk-size", "4", "--batch-size", "2", "--max-valid", "2"]


def train_member(name, root, *options):
    recipe = vars(checkpoints.import_try_script(name, PROJECT_DIR / f"{name}.py"))
    train.main(recipe, ["--root", str(root), *SHORT, *options])
    paths.set_root(root)
    return checkpoints.load_checkpoint(checkpoints.checkpoint_path(name))


def predict(name, root):
    assert predict_augmented_npy.main([name, "--root", str(root), "--transform-set", "rot8flip",
                                       "--num-transforms", "2", "--workers", "0", "--device", "cpu"]) == 0
    return records.load_gz(paths.augmented_predictions_path(name, "valid"))


def random_weights_file(name, folder):
    """A file holding a randomly initialised backbone, as --weights PATH takes one."""
    torch.manual_seed(7)
    path = folder / f"{name}.safetensors"
    save_file(backbones.create_model(name).backbone.state_dict(), str(path))
    return path


@pytest.fixture
def root(isolated):
    return make_tiny_root(isolated / "root", num_train=12, num_test=2)


@pytest.mark.slow
def test_fastai_recipe_from_a_weights_file_trains_predicts_and_blends(root, tmp_path, capsys):
    weights = random_weights_file("resnet50", tmp_path)
    state = train_member("try_resnet50_fastai", root, "--num-chunks", "8", "--weights", str(weights))
    chunks = [stage["chunks"] for stage in state["config"]["STAGES"]]  # scaled to 8 in all, each >= 1
    assert len(chunks) == 8 and min(chunks) == 1 and len(state["losses_train"]) == sum(chunks) == 8
    assert state["weights"]["source"] == str(weights.resolve())
    assert state["config"]["INPUT"] == (224, 224) and np.isfinite(state["valid_rmse"])
    new = predict("try_resnet50_fastai", root)
    train_member(BEST, root, "--num-chunks", "1", "--init", "standard")
    old = predict(BEST, root)
    assert new.shape == old.shape == (len(load_data.labelled_split().valid_ids), decision_tree.NUM_OUTPUTS)
    capsys.readouterr()
    assert blend_predictions.main(["--root", str(root), "--models", f"try_resnet50_fastai,{BEST}"]) == 0
    assert "2 models" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name, backbone", [("try_resnet50_imagenet", "resnet50"),
                                            ("try_dinov2_vitb14", "dinov2_vitb14_reg")])
def test_single_stage_members_train_and_predict(root, tmp_path, name, backbone):
    weights = random_weights_file(backbone, tmp_path)
    state = train_member(name, root, "--num-chunks", "1", "--weights", str(weights))
    assert state["weights"]["source"] == str(weights.resolve()) and len(state["losses_train"]) == 1
    averaged = predict(name, root)
    assert averaged.shape == (len(load_data.labelled_split().valid_ids), decision_tree.NUM_OUTPUTS)
    assert np.isfinite(averaged).all()


def test_a_pretrained_recipe_without_weights_says_what_to_pass(root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_member("try_resnet50_imagenet", root, "--num-chunks", "1")
    assert exit_info.value.code == 1
    assert "--weights hub" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["try_resnet50_fastai", "try_resnet50_imagenet", "try_dinov2_vitb14"])
def test_fine_tuning_recipes_refuse_random_weights_before_reading_data(isolated, name, capsys):
    """The root has no data at all: the refusal comes first, says why and what to run instead, and writes nothing."""
    root = isolated / "empty_root"
    (root / "data").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        train_member(name, root, "--weights", "none")
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert "made to fine-tune pretrained weights" in err and "try_resnet18_scratch.py" in err
    assert ("only the head over a frozen backbone" in err) == (name == "try_resnet50_fastai")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["data"]


def test_a_from_scratch_recipe_refuses_weights(isolated, capsys):
    root = isolated / "empty_root"
    (root / "data").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        train_member("try_resnet18_scratch", root, "--weights", "hub")
    assert exit_info.value.code == 1 and "trains its network from random weights" in capsys.readouterr().err


def test_the_demo_asks_for_weights_and_fits_each_member_s_options(monkeypatch, capsys):
    import demo
    monkeypatch.setattr(sys, "argv", ["demo.py", "--models", "try_resnet50_fastai,try_resnet18_scratch"])
    with pytest.raises(SystemExit) as exit_info:
        demo.parse_args()
    assert exit_info.value.code == 2
    assert "try_resnet50_fastai fine-tunes pretrained weights: pass --weights hub" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["demo.py", "--models", f"try_resnet18_scratch,try_p4m_gcnn72,{BEST}"])
    args = demo.parse_args()
    options = {model: " ".join(demo.training_options(model, args)) for model in args.models}
    short = "--num-chunks 12 --chunk-size 992 --validate-every 4"
    assert options["try_resnet18_scratch"] == f"{short} --batch-size 16"  # 64 does not divide 992; own start kept
    assert options["try_p4m_gcnn72"] == f"{short} --init standard"  # 32 divides 992
    assert options[BEST] == f"{short} --init standard"
    monkeypatch.setattr(sys, "argv", ["demo.py", "--models", "try_resnet50_fastai", "--weights", "w.safetensors"])
    assert demo.training_options("try_resnet50_fastai", demo.parse_args()).count("--weights") == 1


@pytest.mark.slow
def test_the_residual_member_from_random_weights_trains_and_predicts(root):
    state = train_member("try_resnet18_scratch", root, "--num-chunks", "2", "--validate-every", "1")
    assert state["weights"] is None and len(state["losses_train"]) == 2 and np.isfinite(state["valid_rmse"])
    assert state["config"]["INPUT"] == (112, 224) and state["config"]["OPTIMIZER"]["name"] == "adamw"
    averaged = predict("try_resnet18_scratch", root)
    assert averaged.shape == (len(load_data.labelled_split().valid_ids), decision_tree.NUM_OUTPUTS)
    assert np.isfinite(averaged).all()


def test_a_missing_weights_file_is_refused_before_reading_data(isolated, capsys):
    root = isolated / "empty_root"
    (root / "data").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        train_member("try_resnet50_imagenet", root, "--weights", str(isolated / "nowhere.safetensors"))
    assert exit_info.value.code == 1 and "nowhere.safetensors: no such file" in capsys.readouterr().err
