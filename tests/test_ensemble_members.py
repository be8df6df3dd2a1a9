"""Every try_*.py model of the repository (the best model and the other ensemble members): its recipe is valid
and names itself, its network has the parameter count its architecture implies, answers (2, 37) per batch of
two images in a way that obeys the decision tree, and trains (two Nesterov-momentum updates change it).

The training steps cost several seconds per model on two cores, so they run on the members listed in
TRAINED_MEMBERS, which between them use every kind of layer and constraint that the members use; the others
differ from one of those only in preprocessing, seed, or layer and filter sizes (all are built and run forward)."""
import pytest
import torch

from galaxyzoo import checkpoints
from galaxyzoo import decision_tree
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import source_params
from galaxyzoo import stages
from galaxyzoo import train
from helpers import PROJECT_DIR

SCRIPTS = sorted(PROJECT_DIR.glob("try_*.py"))
BEST = "try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense"
MEMBER = "try_convnet_cc_multirotflip_3x69r45_{}"
TRAINED_MEMBERS = {
    BEST,  # two maxout dense layers
    MEMBER.format("bigger"),  # ReLU dense layer, 192 top filters
    MEMBER.format("shareddense"),  # dense layer per part
    MEMBER.format("normconstraint"),  # max-norm constraints
}
# Run as a script, a recipe trains under its own name only if it passes train.main its own globals: a star import
# brings neither the base recipe's __file__ nor its main block along.
MAIN_BLOCK = 'if __name__ == "__main__":\n    train.main(globals())\n'

torch.set_num_threads(2)
RESNET50_BACKBONE = 25_557_032 - (2048 * 1000 + 1000)  # torchvision's published count, less its classifier
RESNET18_BACKBONE = 11_689_512 - (512 * 1000 + 1000)


def conv_params(in_channels, out_channels, kernel, out_size):
    """Weights plus one untied bias per output position."""
    return out_channels * in_channels * kernel * kernel + out_channels * out_size * out_size


def linear_params(n_in, n_out):
    return n_in * n_out + n_out


def hand_counts():
    """Parameter counts worked out from the architectures (45x45 parts, valid convolutions, 2x2 pooling after
    the 1st, 2nd and 4th; 16 parts per image; maxout halves a layer's linear units)."""
    convs_up_to_top = conv_params(3, 32, 6, 40) + conv_params(32, 64, 5, 16) + conv_params(64, 128, 3, 6)
    convs = convs_up_to_top + conv_params(128, 128, 3, 4)
    convs_192 = convs_up_to_top + conv_params(128, 192, 3, 4)
    output_2048 = linear_params(2048, decision_tree.NUM_OUTPUTS)
    return {
        BEST: convs + linear_params(16 * 128 * 4, 4096) + linear_params(2048, 4096) + output_2048,
        MEMBER.format("shareddense"): convs + linear_params(128 * 4, 512) + linear_params(16 * 256, 4096) + output_2048,
        MEMBER.format("bigger"): convs_192 + linear_params(16 * 192 * 4, 4096)
        + linear_params(4096, decision_tree.NUM_OUTPUTS),
        # torchvision's ResNet-50 and ResNet-18 without their ImageNet classifiers (tests/test_backbones.py), then the heads:
        # fastai's two batch norms (scale and shift each) and two linear layers; one linear layer
        "try_resnet50_fastai": RESNET50_BACKBONE + 2 * 4096 + linear_params(4096, 512) + 2 * 512
        + linear_params(512, decision_tree.NUM_OUTPUTS),
        "try_resnet18_scratch": RESNET18_BACKBONE + linear_params(512, decision_tree.NUM_OUTPUTS),
    }


def load(script):
    return checkpoints.import_try_script(script.stem, script)


def build_on_meta(module):
    """The model without memory or initialisation cost: enough for its structure and parameter count."""
    with torch.device("meta"):
        return module.build_model()


def recipe_config(module):
    return train.config_of(vars(module))


def test_all_members_present():
    names = {script.stem for script in SCRIPTS}
    assert BEST in names
    assert set(hand_counts()) <= names
    assert TRAINED_MEMBERS <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.stem)
def test_recipe_is_valid_and_names_its_own_outputs(script):
    assert script.read_text().endswith(MAIN_BLOCK)
    module = load(script)
    assert module.__doc__ and module.__doc__.strip()
    if script.stem != BEST:
        assert module.__doc__ != load(PROJECT_DIR / f"{BEST}.py").__doc__
    config = recipe_config(module)
    assert config["PREPROCESSING"] is None or config["PREPROCESSING"] in source_params.PREPROCESSING


def test_members_are_distinct():
    """No two try files train the same network with the same recipe (repeated runs differ in their seed)."""
    seen = {}
    for script in SCRIPTS:
        module = load(script)
        model = build_on_meta(module)
        key = (repr(model), getattr(model, "max_norm", None), repr(sorted(recipe_config(module).items())))
        assert key not in seen, f"{script.stem} repeats {seen[key]}"
        seen[key] = script.stem


def test_parameter_counts_match_the_hand_figures():
    counts = {name: sum(p.numel() for p in build_on_meta(load(PROJECT_DIR / f"{name}.py")).parameters())
              for name in hand_counts()}
    assert counts == hand_counts()
    assert 42e6 < counts[BEST] < 43e6  # "about 42 million parameters"


def check_max_norm(model):
    """Blow the constrained weights up, then apply_max_norm must bring every unit's RMS down to its limit."""
    with torch.no_grad():
        for linear in model.dense_linears():
            linear.weight.mul_(1e4)
    model.apply_max_norm()
    for linear, limit in zip(model.dense_linears(), model.max_norm):
        rms = linear.weight.detach().double().pow(2).mean(dim=1).sqrt()
        assert float(rms.max()) <= limit * (1 + 1e-5)
        assert float(rms.max()) >= limit * (1 - 1e-5)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.stem)
def test_forward_obeys_tree_and_training_changes_parameters(script):
    module = load(script)
    torch.manual_seed(0)
    model = module.build_model()
    views_spec = ra.input_views(recipe_config(module)["INPUT"])
    views = torch.rand(2, views_spec.num_views, 3, views_spec.size, views_spec.size)

    model.eval()
    with torch.no_grad():
        answers = model(views)
    assert answers.shape == (2, decision_tree.NUM_OUTPUTS)
    assert torch.isfinite(answers).all() and (answers >= 0).all() and (answers <= 1 + 1e-6).all()
    if getattr(model, "output_kind", "tree") == "tree":
        # A question whose raw outputs are all negative gets zeros after the ReLU (as in the original layer);
        # that is the only way its answers may miss their parent's value.
        violations = decision_tree.tree_violations(answers.numpy(), tol=1e-5)
        assert all(actual == 0.0 for _, _, actual, _ in violations), violations
    if script.stem not in TRAINED_MEMBERS:
        return

    model.train()
    config = recipe_config(module)
    optimizer = stages.make_optimizer(model, stages.Stage(**config["STAGES"][0]), config["OPTIMIZER"])
    before = [p.detach().clone() for p in model.parameters()]
    labels = torch.rand(2, decision_tree.NUM_OUTPUTS)
    for normalise in (False, True):  # the first chunk trains without the output normalisation
        loss = train.train_batch(model, optimizer, views, labels, normalise)
        assert loss == loss and loss >= 0
    unchanged = [name for (name, p), old in zip(model.named_parameters(), before) if torch.equal(p, old)]
    assert unchanged == []

    if getattr(model, "max_norm", None) is not None:
        check_max_norm(model)
