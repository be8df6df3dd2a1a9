"""Test-time averaging: the 60 transforms are the original's (10 rotations 36 degrees apart x 3 zooms x
flip), the evenly spread subsets, invariance of the averaged prediction to a 36-degree rotation plus a flip
of the image, and predict_augmented_npy.py end-to-end on a tiny root of synthetic JPEGs."""
import numpy as np
import pytest
import torch
from PIL import Image

from galaxyzoo import checkpoints
from galaxyzoo import recipe
from galaxyzoo import decision_tree
import load_data
import predict_augmented_npy
from galaxyzoo import realtime_augmentation as ra
from helpers import TINY_MODEL_NAME, corrupt_image, make_tiny_root, tiny_model, tiny_recipe
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import files

ZOOMS = (1 / 1.2, 1.0, 1.2)
ANGLES = np.arange(10) * 36.0


def linear_part(matrix):
    """(scale, angle in degrees, flipped) of the 2x2 linear part of a similarity transform, with
    angle the direction the x axis is mapped to."""
    linear = matrix[:2, :2]
    det = np.linalg.det(linear)
    angle = np.degrees(np.arctan2(linear[1, 0], linear[0, 0])) % 360
    return np.sqrt(abs(det)), angle, det < 0


def fixed_point(matrix):
    return np.linalg.solve(matrix[:2, :2] - np.eye(2), -matrix[:2, 2])


def circular_distance(a, b):
    return np.abs((np.asarray(a) - b + 180) % 360 - 180)


def test_the_60_transforms_are_rotations_zooms_and_flips_about_the_centre():
    transforms = ra.tta_transforms()
    assert transforms.shape == (60, 3, 3)
    flat = transforms.reshape(60, 9)
    assert min(np.abs(flat[i] - flat[j]).max() for i in range(60) for j in range(i)) > 1e-3  # all distinct
    parts = [linear_part(m) for m in transforms]
    scales = np.array([p[0] for p in parts])
    flipped = np.array([p[2] for p in parts])
    # Order: for zoom, for angle, [unflipped, flipped]. Whether a matrix holds zoom or 1/zoom depends on
    # the inverse-map convention; the set {1/1.2, 1, 1.2} is the same either way.
    np.testing.assert_array_equal(flipped, np.tile([False, True], 30))
    for block in range(len(ZOOMS)):
        np.testing.assert_allclose(scales[20 * block:20 * (block + 1)], scales[20 * block], rtol=1e-9)
    assert sorted(np.round(scales[::20], 9)) == pytest.approx(sorted(ZOOMS))
    for flip in (False, True):
        angles = np.array([p[1] for p in parts if p[2] == flip]).reshape(3, 10)
        for row in angles:  # per zoom: 10 angles 36 degrees apart (for a flip, the axis image angles)
            steps = np.sort((row - row[0]) % 360)
            np.testing.assert_allclose(circular_distance(steps, ANGLES), 0, atol=1e-6)
    np.testing.assert_allclose(transforms[20], np.eye(3), atol=1e-9)
    centres = np.array([fixed_point(m) for m in transforms if abs(np.linalg.det(m[:2, :2] - np.eye(2))) > 1e-3])
    assert len(centres) == 49  # all but the identity and the ten pure reflections (zoom 1, flipped)
    assert np.abs(centres - centres[0]).max() < 1e-6
    assert np.abs(centres[0] - 211.5).max() <= 0.5
    for i, (zoom, angle, flip) in enumerate((z, a, f) for z in ZOOMS for a in ANGLES for f in (False, True)):
        np.testing.assert_allclose(transforms[i], ra.augmentation_transform(zoom=zoom, rotation=angle, flip=flip),
                                   atol=1e-9)


def test_spread_subsets_start_with_the_identity_and_cover_all_60():
    assert sorted(predict_augmented_npy.spread_transform_indices(60)) == list(range(60))
    transforms = ra.tta_transforms()
    for count in (1, 2, 3, 6, 10, 20, 30, 60):
        subset = predict_augmented_npy.selected_transforms(count)
        assert len(subset) == count and len(set(predict_augmented_npy.spread_transform_indices(count))) == count
        np.testing.assert_allclose(subset[0], np.eye(3), atol=1e-9)
    ten = [linear_part(m) for m in transforms[predict_augmented_npy.spread_transform_indices(10)]]
    assert all(scale == pytest.approx(1.0) and not flip for scale, _, flip in ten)
    np.testing.assert_allclose(circular_distance(np.sort([angle for _, angle, _ in ten]), ANGLES), 0, atol=1e-6)
    with pytest.raises(ValueError):
        predict_augmented_npy.spread_transform_indices(61)


class StandInModel(torch.nn.Module):
    """A fixed nonlinear function of the views: sigmoid of a random linear map, (B, 2, 3, 69, 69) -> (B, 37)."""

    def __init__(self, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(2 * 3 * 69 * 69, decision_tree.NUM_OUTPUTS, generator=generator, dtype=torch.float64)

    def forward(self, views, normalise=True):
        features = views.reshape(len(views), -1).double() - 0.2
        return torch.sigmoid(features @ self.weight / 20.0)


def smooth_galaxy(centre, linear=np.eye(2)):
    """uint8 (424, 424, 3): three coloured Gaussian blobs, off centre so that no rotation or flip leaves
    the image unchanged, evaluated analytically at `linear` @ (pixel - centre), so that a rotated or flipped
    copy is exact, with no interpolation."""
    rows, cols = np.mgrid[0:424, 0:424].astype(np.float64)
    offset = np.stack([cols - centre[0], rows - centre[1]], axis=-1) @ np.asarray(linear).T
    image = np.zeros((424, 424, 3))
    for (x, y), sigma, colour in (((0, 0), 40, (0.6, 0.5, 0.4)), ((35, 12), 18, (0.1, 0.3, 0.5)),
                                  ((-20, 30), 14, (0.4, 0.2, 0.1))):
        image += np.exp(-((offset[..., 0] - x) ** 2 + (offset[..., 1] - y) ** 2) / (2 * sigma ** 2))[..., None] * colour
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def test_average_is_invariant_to_a_36_degree_rotation_and_a_flip():
    """Rotating an image by 36 degrees and flipping it permutes its 60 transformed views, so the averaged
    prediction of any fixed model is unchanged up to interpolation (bilinear, of a smooth image, here)
    and uint8 rounding. The prediction from the identity view alone changes by much more."""
    transforms = ra.tta_transforms()
    centre = fixed_point(transforms[0])
    angle = np.radians(36)
    rotate_and_flip = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.diag([-1, 1])
    images = [smooth_galaxy(centre), smooth_galaxy(centre, rotate_and_flip)]
    views = np.stack([np.stack([ra.warp_views(image, t, None) for t in transforms]) for image in images])
    outputs = predict_augmented_npy.predict_views(StandInModel(), views, torch.device("cpu"), batch_size=64)
    averaged, identity = outputs.mean(axis=1), outputs[:, 20]
    change_averaged = np.abs(averaged[0] - averaged[1]).max()
    change_identity = np.abs(identity[0] - identity[1]).max()
    print(f"largest change: averaged {change_averaged:.2e}, identity view alone {change_identity:.2e}")
    assert change_identity > 0.05
    assert change_averaged < 5e-3
    assert change_averaged < change_identity / 20


def smooth_random_galaxy(rng):
    """A smooth_galaxy near the image centre, stretched along the axes at random."""
    return smooth_galaxy(211.5 + rng.normal(0, 5, 2), np.diag(rng.uniform(0.7, 1.4, 2)))


def use_stand_in(monkeypatch, make_model, loaded=None):
    """Predict with make_model() in place of a trained model: checkpoints.load_trained replaced (the names it is
    asked for appended to `loaded`), and a placeholder file at the checkpoint path, which prediction records."""
    def load_stand_in(name, device="cpu", script=None):
        if loaded is not None:
            loaded.append(name)
        return make_model(), recipe.Recipe().config()

    monkeypatch.setattr(checkpoints, "load_trained", load_stand_in)
    path = checkpoints.checkpoint_path("stand_in")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"a stand-in checkpoint")


def test_end_to_end_on_a_tiny_root(isolated, monkeypatch, capsys):
    root = make_tiny_root(isolated / "root", num_train=20, num_test=3, galaxy_image=smooth_random_galaxy)
    model = StandInModel(seed=1)
    loaded = []
    paths.set_root(root)
    use_stand_in(monkeypatch, lambda: model, loaded)
    assert predict_augmented_npy.main(["stand_in", "--root", str(root), "--num-transforms", "3",
                                       "--device", "cpu", "--batch-size", "4", "--workers", "1"]) == 0
    valid_path = paths.augmented_predictions_path("stand_in", "valid")
    test_path = paths.augmented_predictions_path("stand_in", "test")
    valid, test = records.load_gz(valid_path), records.load_gz(test_path)
    assert not list(valid_path.parent.parent.glob("*/*.partial*.npz"))  # removed once the files are written
    train_ids, test_ids = load_data.load_ids("train"), load_data.load_ids("test")
    valid_idx = load_data.train_valid_split(len(train_ids))[1]
    assert loaded == ["stand_in"]
    assert valid.shape == (len(valid_idx), 37) and test.shape == (len(test_ids), 37)
    assert valid.dtype == np.float32 and test.dtype == np.float32

    # The last test image, averaged by hand over the same three transforms.
    transforms = predict_augmented_npy.selected_transforms(3)
    image = np.asarray(Image.open(root / "data" / "raw" / "images_test_rev1" / f"{test_ids[-1]}.jpg").convert("RGB"))
    views = np.stack([ra.warp_views(image, t, None) for t in transforms])[None]
    expected = predict_augmented_npy.predict_views(model, views, torch.device("cpu")).mean(axis=1)[0]
    np.testing.assert_allclose(test[-1], expected, atol=1e-6)
    out = capsys.readouterr().out
    assert "identity transform only" in out and "averaged over 3 transforms" in out


def test_missing_checkpoint_is_a_clear_error(isolated, capsys):
    """A model not trained yet (named with or without .py), and a misspelt model, which no script would train; neither
    leaves a lock or folder behind."""
    root = make_tiny_root(isolated / "root", galaxy_image=None)
    best = "try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense"
    for typed in (best, f"{best}.py"):
        assert predict_augmented_npy.main([typed, "--root", str(root), "--device", "cpu"]) == 1
        assert f"{best}.pt: no checkpoint; train the model with {best}.py first" in capsys.readouterr().err
    assert predict_augmented_npy.main(["no_such_model", "--root", str(root), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "no_such_model: no such model" in err and "no_such_model.py does not exist" in err
    assert not (root / "predictions").exists()


def test_end_to_end_from_a_saved_checkpoint(isolated):
    """The checkpoint format of train.py (model, config, script) loaded by checkpoints.load_trained. The script
    lies outside the project folder: the path stored in the checkpoint is not imported (a message asks for
    --script), the path given with --script is."""
    root = make_tiny_root(isolated / "root", num_train=10, num_test=2, galaxy_image=smooth_random_galaxy)
    script = tiny_recipe(isolated)["__file__"]
    paths.set_root(root)
    checkpoints.save_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME),
                                dict(model=tiny_model(seed=0).state_dict(), script=str(script),
                                     config=recipe.Recipe().config(), data=checkpoints.data_stamp()))
    options = [TINY_MODEL_NAME, "--root", str(root), "--num-transforms", "2", "--device", "cpu", "--workers", "1"]
    assert predict_augmented_npy.main(options) == 1
    assert predict_augmented_npy.main([*options, "--script", str(script)]) == 0
    test = records.load_gz(paths.augmented_predictions_path(TINY_MODEL_NAME, "test"))
    assert test.shape == (2, 37) and np.isfinite(test).all() and (test >= 0).all() and (test <= 1).all()
    assert not decision_tree.tree_violations(test, tol=1e-5)


def test_interrupted_averaging_continues_where_it_stopped(isolated, monkeypatch):
    """Stopped during the second chunk of views (8 images each with 60 transforms), the run keeps the first 8
    images; the rerun with the same key predicts only the other 12 and ends equal to an uninterrupted run; a
    rerun with another key starts over."""
    root = make_tiny_root(isolated / "root", num_train=4, num_test=20, galaxy_image=smooth_random_galaxy)
    paths.set_root(root)
    model, ids, transforms = StandInModel(seed=1), load_data.load_ids("test"), ra.tta_transforms()
    options = dict(device=torch.device("cpu"), workers=0, progress=False)
    uninterrupted, _ = predict_augmented_npy.predict_augmented(model, ids, "test", transforms, None, **options)
    real_predict_views, chunks = predict_augmented_npy.predict_views, []

    def counting(*args, **kwargs):
        chunks.append(len(args[1]))
        if len(chunks) == 2 and stop:
            raise KeyboardInterrupt
        return real_predict_views(*args, **kwargs)

    monkeypatch.setattr(predict_augmented_npy, "predict_views", counting)
    partial, stop = isolated / "test.partial0.npz", True
    with pytest.raises(KeyboardInterrupt):
        predict_augmented_npy.predict_augmented(model, ids, "test", transforms, None, partial=partial, key="a", **options)
    with np.load(partial) as saved:
        assert len(saved["averaged"]) == 8
    chunks.clear()
    stop = False
    resumed, _ = predict_augmented_npy.predict_augmented(model, ids, "test", transforms, None, partial=partial,
                                                         key="a", **options)
    assert sum(chunks) == 12
    np.testing.assert_array_equal(resumed, uninterrupted)
    chunks.clear()
    predict_augmented_npy.predict_augmented(model, ids, "test", transforms, None, partial=partial, key="b", **options)
    assert sum(chunks) == 20


def test_predictions_that_are_not_numbers_are_never_written(isolated, monkeypatch, capsys):
    root = make_tiny_root(isolated / "root", num_train=20, num_test=3, galaxy_image=smooth_random_galaxy)

    class NaNModel(StandInModel):
        def forward(self, views, normalise=True):
            return super().forward(views) * float("nan")

    paths.set_root(root)
    use_stand_in(monkeypatch, NaNModel)
    assert predict_augmented_npy.main(["stand_in", "--root", str(root), "--num-transforms", "2", "--device", "cpu",
                                       "--workers", "0"]) == 1
    err = capsys.readouterr().err
    assert "stand_in's valid predictions (not written)" in err and "is not a number within [0, 1]" in err
    assert not paths.augmented_predictions_path("stand_in", "valid").exists()


def test_a_broken_test_image_stops_prediction_before_it_starts(isolated, monkeypatch, capsys):
    """Checked from its header and end before the validation images are predicted (before: found after them)."""
    root = make_tiny_root(isolated / "root", num_train=20, num_test=3)
    paths.set_root(root)
    bad_id = int(load_data.load_ids("test")[-1])
    expected = corrupt_image(paths.raw_images_dir("test"), bad_id, "wrong size")
    use_stand_in(monkeypatch, StandInModel)
    assert predict_augmented_npy.main(["stand_in", "--root", str(root), "--num-transforms", "2", "--device", "cpu",
                                       "--workers", "0"]) == 1
    captured = capsys.readouterr()
    assert expected in captured.err and f"GalaxyID {bad_id}" in captured.err and "valid:" not in captured.err
    assert not paths.augmented_predictions_path("stand_in", "valid").exists()


def test_a_second_prediction_run_of_a_model_is_refused_and_stale_temporaries_are_removed(isolated, monkeypatch,
                                                                                            capsys):
    root = make_tiny_root(isolated / "root", num_train=20, num_test=3)
    paths.set_root(root)
    use_stand_in(monkeypatch, StandInModel)
    options = ["stand_in", "--root", str(root), "--num-transforms", "2", "--device", "cpu", "--workers", "0"]
    with files.take_lock(paths.predictions_dir() / "augmented" / "stand_in.lock", [], "held by the test"):
        assert predict_augmented_npy.main(options) == 1
        assert "another prediction run of stand_in" in capsys.readouterr().err
    path = paths.augmented_predictions_path("stand_in", "test")
    stale = path.with_name(f".{path.name}.k1ll3d.tmp")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0" * 1000)
    assert predict_augmented_npy.main(options) == 0
    assert not stale.exists() and path.exists()


def test_a_rerun_keeps_a_split_already_written_from_the_same_checkpoint(isolated, monkeypatch, capsys):
    """A run stopped in the test split, rerun, does not predict the validation split again (60 transforms of it take
    hours on a CPU); a split written from another checkpoint or other transforms is predicted again."""
    root = make_tiny_root(isolated / "root", num_train=20, num_test=3)
    paths.set_root(root)
    predicted = []

    class CountingModel(StandInModel):
        def forward(self, views, normalise=True):
            predicted.append(len(views))
            return super().forward(views)

    use_stand_in(monkeypatch, CountingModel)
    options = ["stand_in", "--root", str(root), "--num-transforms", "2", "--device", "cpu", "--workers", "0"]
    assert predict_augmented_npy.main(options) == 0
    valid_path, test_path = (paths.augmented_predictions_path("stand_in", split) for split in ("valid", "test"))
    valid = records.load_gz(valid_path)
    num_valid, num_test = len(valid), len(load_data.load_ids("test"))
    assert sum(predicted) == 2 * (num_valid + num_test)

    test_path.unlink()  # as after a stop in the test split
    predicted.clear()
    capsys.readouterr()
    assert predict_augmented_npy.main(options) == 0
    assert sum(predicted) == 2 * num_test and f"{valid_path}: kept" in capsys.readouterr().out
    np.testing.assert_array_equal(records.load_gz(valid_path), valid)

    predicted.clear()
    assert predict_augmented_npy.main([*options[:4], "3", *options[5:]]) == 0  # other transforms: both again
    assert sum(predicted) == 3 * (num_valid + num_test)
    checkpoints.checkpoint_path("stand_in").write_bytes(b"trained further")
    predicted.clear()
    assert predict_augmented_npy.main([*options[:4], "3", *options[5:]]) == 0
    assert sum(predicted) == 3 * (num_valid + num_test)
