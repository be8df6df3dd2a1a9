"""Several processes (torchrun, gloo on the CPU) and the on-device data path, on a tiny synthetic root with a
tiny model whose dropout is off (so that training is a deterministic function of the data):

(a) --data-on-device warps each chunk's images with the same draws as RandomChunks: the views agree within
    helpers.WARP_TOLERANCE (half a grey level plus cv2's fixed-point weights; RandomChunks rounds its warps to
    uint8, grid_sample does not), the labels exactly; the ranks' shares of a chunk make up the single-process
    chunk exactly;
(b) 2-rank training ends with the parameters of a 1-process run with the same seed, up to summation order
    (PARAMETER_TOLERANCE, measured);
(c) a run stopped by SIGTERM reaching rank 1 saves at one position for all ranks, and that checkpoint
    resumes in 1 process to the same end;
(d) prediction sharded over 2 ranks writes the files of a 1-process run (allclose 1e-6).
"""
import numpy as np
import pytest
import torch

import checkpoints
import distributed
import load_data
import predict_augmented_npy
import realtime_augmentation as ra
import torch_augmentation as ta
import train
from helpers import PROJECT_DIR, WARP_TOLERANCE, isolation, make_tiny_root, tiny_recipe, torchrun, try_file_source

MODEL_NAME = "try_tiny_distributed_model"
# Largest |2-rank - 1-process| parameter difference after 3 chunks of 2 minibatches: measured 7.5e-9
# (float32 sums over 2 and over 4 images in another order); the parameters themselves are of order 0.01-1.
PARAMETER_TOLERANCE = 1e-6
RUN_OPTIONS = ["--num-chunks", "3", "--workers", "0", "--device", "cpu"]
# The tiny recipe with build_model replaced: dropout off, and a SIGTERM hook for rank 1.
NO_DROPOUT_MODEL = '''


import os
import signal

import torch

SIGNAL_AT_CALL = int(os.environ.get("TEST_SIGTERM_RANK_1_AT_CALL", "0"))


class NoDropoutNet(convnet.GalaxyConvNet):
    """On rank 1, training forward call number SIGNAL_AT_CALL sends this process SIGTERM."""

    calls = 0

    def forward(self, views, normalise=True):
        if self.training:
            NoDropoutNet.calls += 1
            if NoDropoutNet.calls == SIGNAL_AT_CALL and os.environ.get("RANK") == "1":
                os.kill(os.getpid(), signal.SIGTERM)
        return super().forward(views, normalise)


def build_model():
    model = NoDropoutNet(num_filters=(4, 4, 4, 4), dense_units=16)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model
'''
RECIPE_SOURCE = try_file_source(model_source="import convnet" + NO_DROPOUT_MODEL)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A tiny root, the try script, and its 1-process run's final checkpoint."""
    folder = tmp_path_factory.mktemp("distributed")
    root = make_tiny_root(folder / "root", num_train=24, num_test=5)
    with pytest.MonkeyPatch.context() as patch, isolation(patch, folder):
        recipe = tiny_recipe(folder, RECIPE_SOURCE, MODEL_NAME)
        single = run_and_load(recipe, root, "--fresh")
        yield dict(root=root, script=recipe["__file__"], recipe=recipe, single=single)


def run_and_load(recipe, root, *options):
    train.main(recipe, ["--root", str(root), *RUN_OPTIONS, *options])
    return load_checkpoint(root)


def load_checkpoint(root):
    load_data.set_root(root)
    return checkpoints.load_checkpoint(checkpoints.checkpoint_path(MODEL_NAME))


def largest_parameter_difference(first, second):
    assert first["model"].keys() == second["model"].keys()
    return max((first["model"][name] - second["model"][name]).abs().max().item() for name in first["model"])


def test_batch_share_splits_every_minibatch_in_rank_order():
    shares = [distributed.batch_share(10, 4, distributed.Ranks(rank, 2)) for rank in range(2)]
    np.testing.assert_array_equal(shares[0], [0, 1, 4, 5])
    np.testing.assert_array_equal(shares[1], [2, 3, 6, 7])
    with pytest.raises(ValueError, match="cannot be split evenly over 3"):
        distributed.batch_share(16, 16, distributed.Ranks(0, 3))


def test_run_rank_reports_expected_errors_with_the_rank_and_lets_others_through(capsys):
    def failing(exc):
        def work():
            raise exc
        return work

    second_of_two = distributed.Ranks(1, 2, 1)
    assert distributed.run_rank(lambda: None, second_of_two, ValueError) == 0
    assert distributed.run_rank(failing(ValueError("bad image 42")), second_of_two, ValueError) == 1
    assert capsys.readouterr().err == "error: rank 1: bad image 42\n"
    assert distributed.run_rank(failing(ValueError("bad image 42")), distributed.Ranks(), ValueError) == 1
    assert capsys.readouterr().err == "error: bad image 42\n"
    with pytest.raises(KeyError):
        distributed.run_rank(failing(KeyError("a bug")), second_of_two, ValueError)


def test_rank_shares_and_device_views_match_random_chunks(setting):
    load_data.set_root(setting["root"])
    ids, labels = load_data.load_ids("train"), load_data.load_solutions()
    options = dict(subset="train", chunk_size=8, num_chunks=2, seed=5, start_chunk=1, num_workers=0)
    expected = next(iter(ra.RandomChunks(ids, labels, **options)))

    shares = [next(iter(ra.RandomChunks(ids, labels, select=distributed.batch_share(8, 4, distributed.Ranks(r, 2)),
                                        **options))) for r in range(2)]
    per_batch = np.concatenate([np.stack([share.views.reshape(2, 2, *share.views.shape[1:])[b] for share in shares])
                                for b in range(2)]).reshape(expected.views.shape)
    np.testing.assert_array_equal(per_batch, expected.views)

    cache = ta.DeviceImageCache.from_ids(ids, "train", torch.device("cpu"))
    chunk = next(train.planned_chunks(ra.RandomChunks(ids, labels, **options), cache, torch.from_numpy(labels)))
    views, got_labels = (torch.cat(parts).numpy() for parts in zip(*(chunk.batch(b, 4) for b in range(2))))
    assert chunk.index == 1
    np.testing.assert_array_equal(got_labels, expected.labels)
    difference = np.abs(views - expected.views).max()
    print(f"largest |device view - RandomChunks view| {difference:.2e} (tolerance {WARP_TOLERANCE:.2e})")
    assert difference <= WARP_TOLERANCE


def test_data_on_device_training_runs_close_to_the_worker_path(setting):
    on_device = run_and_load(setting["recipe"], setting["root"], "--fresh", "--data-on-device")
    assert on_device["losses_train"] == pytest.approx(setting["single"]["losses_train"], rel=0.05)
    assert np.isfinite(on_device["valid_rmse"])


@pytest.mark.slow
def test_two_ranks_train_like_one_process(setting):
    result = torchrun(setting["script"], "--root", str(setting["root"]), *RUN_OPTIONS, "--fresh")
    assert result.stdout.count("chunk 3/3") == 1  # rank 0 alone prints
    two_ranks = load_checkpoint(setting["root"])
    difference = largest_parameter_difference(two_ranks, setting["single"])
    print(f"largest |2 ranks - 1 process| parameter difference {difference:.2e}")
    assert difference <= PARAMETER_TOLERANCE
    np.testing.assert_allclose(two_ranks["losses_train"], setting["single"]["losses_train"], rtol=1e-5)
    assert (load_data.predictions_dir() / f"{MODEL_NAME}.csv.gz").exists()


@pytest.mark.slow
def test_sigterm_on_rank_1_stops_both_and_resumes_in_one_process(setting):
    # Training forward call 3 on rank 1 is minibatch 1 of chunk 1 (2 minibatches per chunk).
    torchrun(setting["script"], "--root", str(setting["root"]), *RUN_OPTIONS, "--fresh",
             extra_env={"TEST_SIGTERM_RANK_1_AT_CALL": "3"})
    stopped = load_checkpoint(setting["root"])
    assert (stopped["next_chunk"], stopped["next_batch"]) == (1, 1)
    resumed = run_and_load(setting["recipe"], setting["root"])
    assert largest_parameter_difference(resumed, setting["single"]) <= PARAMETER_TOLERANCE


@pytest.mark.slow
def test_sharded_prediction_writes_the_single_process_files(setting):
    root = setting["root"]
    options = ["--num-transforms", "2", "--device", "cpu", "--workers", "0", "--script", str(setting["script"])]
    assert predict_augmented_npy.main([MODEL_NAME, "--root", str(root), *options]) == 0
    paths = [load_data.augmented_predictions_path(MODEL_NAME, split) for split in ("valid", "test")]
    single = [load_data.load_gz(path) for path in paths]
    torchrun(PROJECT_DIR / "predict_augmented_npy.py", MODEL_NAME, "--root", str(root), *options)
    for path, expected in zip(paths, single):
        got = load_data.load_gz(path)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
