"""The one schedule system trains the best 2014 model exactly as the code before it did: the same short run (25
chunks of one minibatch, so that the rates change after chunks 18 and 23) with the project as it was at
PREVIOUS_COMMIT (taken from the repository's history) and as it is now ends with bit-identical parameters; a
schedule whose first boundary lies one chunk later does not. The previous code's checkpoint also loads now."""
import hashlib
import itertools
import os
import subprocess
import sys

import pytest
import torch

import checkpoints
import load_data
import recipe
from helpers import PROJECT_DIR, make_tiny_root, tiny_recipe

PREVIOUS_COMMIT = "41505ef554d23d28a88f7956083c61d2aae47ff9"  # the last commit with LEARNING_RATE_SCHEDULE
BEST = "try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense"
RUN = ["--num-chunks", "25", "--chunk-size", "16", "--validate-every", "25", "--workers", "0", "--max-valid", "4",
       "--device", "cpu", "--fresh"]


def parameters_digest(path):
    """sha256 of a checkpoint's parameters, in name order."""
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def train_with(project, script, root):
    """Run the try script `script` of the project folder `project` on root; returns its checkpoint's digest."""
    env = dict(os.environ, PYTHONPATH=str(project), OMP_NUM_THREADS="1")
    env.pop("GALAXY_ROOT", None)
    result = subprocess.run([sys.executable, str(script), "--root", str(root), *RUN], cwd=project, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return parameters_digest(root / "analysis" / "final" / f"{script.stem}.pt")


@pytest.mark.slow
def test_the_best_model_trains_bit_identically_to_the_previous_code(isolated, tmp_path):
    if subprocess.run(["git", "-C", str(PROJECT_DIR), "cat-file", "-e", f"{PREVIOUS_COMMIT}^{{commit}}"],
                      capture_output=True).returncode != 0:
        pytest.skip(f"commit {PREVIOUS_COMMIT[:7]} is not in this clone's history")
    previous = tmp_path / "previous"
    previous.mkdir()
    archive = subprocess.run(["git", "-C", str(PROJECT_DIR), "archive", PREVIOUS_COMMIT], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(previous)], input=archive, check=True)
    root = make_tiny_root(isolated / "root", num_train=40, num_test=5)

    before = train_with(previous, previous / f"{BEST}.py", root)
    previous_checkpoint = (root / "analysis" / "final" / f"{BEST}.pt").read_bytes()
    now = train_with(PROJECT_DIR, PROJECT_DIR / f"{BEST}.py", root)
    print(f"parameters after the short run: previous code {before}, now {now}")
    assert now == before

    # the same run with the first rate change one scaled chunk later (chunk 19): other parameters
    best = vars(checkpoints.import_try_script(BEST))
    later = [dict(stage) for stage in best["STAGES"]]
    later[0]["chunks"] += 100
    later[1]["chunks"] -= 100
    settings = "\n".join(f"{name} = {best[name]!r}" for name in recipe.SETTING_NAMES if name in best and name != "STAGES")
    shifted = tiny_recipe(tmp_path, f'"""The best model, first boundary later."""\nfrom {BEST} import build_model\n'
                          f'import train\n\n{settings}\nSTAGES = {later!r}\n\nif __name__ == "__main__":\n'
                          f'    train.main(globals())\n', "try_shifted_boundary")
    assert train_with(PROJECT_DIR, tmp_path / "try_shifted_boundary.py", root) != before
    assert stages_of(shifted) == [19, 23, 25]

    # the previous code's checkpoint loads, its recipe read in today's form
    path = root / "analysis" / "final" / f"{BEST}.pt"
    path.write_bytes(previous_checkpoint)
    load_data.set_root(root)
    model, config = checkpoints.load_trained(BEST)
    assert config["STAGES"][1]["restart"] is False and config["OPTIMIZER"] == dict(name="nesterov", momentum=0.9)


def stages_of(namespace):
    """The ends of the stages of a try module's recipe scaled to 25 chunks."""
    chunks = [stage["chunks"] for stage in recipe.TryFile.from_namespace(namespace).recipe.with_num_chunks(25).STAGES]
    return list(itertools.accumulate(chunks))
