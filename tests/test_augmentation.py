"""Geometry, warping, colour noise and the chunk generators of realtime_augmentation."""
import multiprocessing

import numpy as np
import pytest
from PIL import Image

import load_data
from galaxyzoo import realtime_augmentation as ra
from helpers import make_tiny_root
from galaxyzoo import paths
from galaxyzoo import errors

CENTRE = ra.IMAGE_CENTRE
VIEW_CENTRE = (ra.VIEW_SIZE - 1) / 2.0
NUM_IMAGES = 12
# Largest |fast path - reference| measured over all 351 real sample images (random augmentation, with and without
# a centring/rescaling): 0.0020, half a uint8 step, from rounding the fast path's uint8 output; the bound
# leaves room for OpenCV's 1/32 px coordinate grid on steeper images.
REFERENCE_TOLERANCE = 0.01


def apply(matrix, x, y):
    """Where the (3, 3) inverse map sends output point (x, y)."""
    return (matrix @ np.array([x, y, 1.0]))[:2]


def blob_image(x, y, sigma=6.0, seed=0):
    """uint8 (424, 424, 3): faint noise plus a bright Gaussian blob centred on pixel (row y, column x)."""
    rows, cols = np.mgrid[:ra.IMAGE_SIZE, :ra.IMAGE_SIZE]
    blob = np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma ** 2))
    noise = np.random.default_rng(seed).uniform(0, 0.05, blob.shape)
    grey = np.clip(blob * 0.9 + noise, 0, 1)
    return (np.stack([grey, grey * 0.8, grey * 0.6], axis=-1) * 255).round().astype(np.uint8)


def centroid(channel):
    """(x, y) intensity centroid of a 2-D array."""
    rows, cols = np.mgrid[:channel.shape[0], :channel.shape[1]]
    return (cols * channel).sum() / channel.sum(), (rows * channel).sum() / channel.sum()


def spread(channel):
    """Root mean square distance from the centroid, weighted by intensity."""
    x, y = centroid(channel)
    rows, cols = np.mgrid[:channel.shape[0], :channel.shape[1]]
    return np.sqrt((((cols - x) ** 2 + (rows - y) ** 2) * channel).sum() / channel.sum())


@pytest.fixture(scope="module")
def image_root(tmp_path_factory, real_sample_if_present):
    """A project root whose training images are the real sample's first NUM_IMAGES (linked, not copied) or,
    without the sample, NUM_IMAGES synthetic galaxies. Yields (root, galaxy_ids); the root is forgotten after."""
    root = tmp_path_factory.mktemp("aug_root")
    if real_sample_if_present is None:
        ids = np.load(make_tiny_root(root, num_train=NUM_IMAGES, num_test=0) / "data" / "train_ids.npy")
    else:
        sample = real_sample_if_present / "images_train_rev1"
        folder = root / "data" / "raw" / paths.RAW_IMAGE_FOLDERS["train"]
        folder.parent.mkdir(parents=True)
        folder.symlink_to(sample)
        ids = np.array(sorted(int(p.stem) for p in sample.glob("*.jpg"))[:NUM_IMAGES])
    paths.set_root(root)
    yield root, ids
    paths.set_root(None)


@pytest.fixture(scope="module")
def images(image_root):
    _, ids = image_root
    return [load_data.load_image_uint8(g, "train") for g in ids]


# ---------------------------------------------------------------------------------------------------
# Matrices


def test_views_sample_the_centre_207_pixels_every_3_pixels():
    for view in ra.VIEW_TRANSFORMS:
        np.testing.assert_allclose(apply(view, VIEW_CENTRE, VIEW_CENTRE), [CENTRE, CENTRE], atol=1e-9)
        step = apply(view, VIEW_CENTRE + 1, VIEW_CENTRE) - apply(view, VIEW_CENTRE, VIEW_CENTRE)
        assert np.linalg.norm(step) == pytest.approx(3.0)
    first = apply(ra.VIEW_TRANSFORMS[0], 0, 0)
    np.testing.assert_allclose(first, [CENTRE - 3 * 34] * 2)  # the 207-px square, pixel centres 3 px apart
    step_45 = apply(ra.VIEW_TRANSFORMS[1], VIEW_CENTRE + 1, VIEW_CENTRE) - [CENTRE, CENTRE]
    np.testing.assert_allclose(step_45, 3 * np.array([np.cos(np.pi / 4), np.sin(np.pi / 4)]), atol=1e-12)


def test_identity_augmentation_keeps_the_view_centre_on_the_image_centre():
    augment = ra.augmentation_transform()
    np.testing.assert_allclose(augment, np.eye(3), atol=1e-12)
    for matrix in ra.view_matrices(ra.augmentation_transform(zoom=1.3, rotation=77, flip=True)):
        np.testing.assert_allclose(apply(matrix, VIEW_CENTRE, VIEW_CENTRE), [CENTRE, CENTRE], atol=1e-9)


def test_flip_mirrors_and_matches_the_original_shear_formulation():
    flipped = ra.augmentation_transform(flip=True)
    np.testing.assert_allclose(apply(flipped, CENTRE + 10, CENTRE + 5), [CENTRE - 10, CENTRE + 5], atol=1e-9)
    # The original flipped with rotation + 180 and shear 180 in skimage's affine parametrisation
    # [[s cos r, -s sin(r + h)], [s sin r, s cos(r + h)]].
    zoom, rotation = 1.2, np.deg2rad(30.0)
    r, h, s = rotation + np.pi, np.pi, 1 / zoom
    linear = np.array([[s * np.cos(r), -s * np.sin(r + h)], [s * np.sin(r), s * np.cos(r + h)]])
    np.testing.assert_allclose(ra.augmentation_transform(zoom, 30.0, flip=True)[:2, :2], linear, atol=1e-12)


def test_zoom_above_one_magnifies():
    image = blob_image(211.5, 211.5, sigma=8)
    plain = ra.warp_views(image, ra.augmentation_transform())[0, 0]
    zoomed = ra.warp_views(image, ra.augmentation_transform(zoom=1.3))[0, 0]
    assert spread(np.clip(zoomed - 0.06, 0, None)) > 1.2 * spread(np.clip(plain - 0.06, 0, None))


def test_translation_samples_further_along():
    augment = ra.augmentation_transform(translation=(4.0, -2.0))
    np.testing.assert_allclose(apply(augment, CENTRE, CENTRE), [CENTRE + 4, CENTRE - 2])


def test_random_augmentation_ranges():
    rng = np.random.default_rng(1)
    matrices = [ra.random_augmentation(rng, **ra.DEFAULT_AUGMENTATION) for _ in range(400)]
    linear = np.array([m[:2, :2] for m in matrices])
    scales = np.sqrt(np.abs(np.linalg.det(linear)))
    assert scales.min() >= 1 / 1.3 - 1e-9 and scales.max() <= 1.3 + 1e-9
    flips = np.linalg.det(linear) < 0
    assert 0.35 < flips.mean() < 0.65
    shifts = np.array([apply(m, CENTRE, CENTRE) - CENTRE for m in matrices])
    assert np.abs(shifts).max() <= 4.0 and np.abs(shifts).max() > 3.5


def test_centring_moves_the_blob_to_the_view_centre():
    x, y = 190.0, 231.0
    image = blob_image(x, y)
    views = ra.warp_views(image, np.eye(3), ra.centring_transform(x, y))
    for view in views:
        cx, cy = centroid(np.clip(view[0] - 0.06, 0, None))
        assert abs(cx - VIEW_CENTRE) < 0.15 and abs(cy - VIEW_CENTRE) < 0.15
    off_centre = ra.warp_views(image, np.eye(3))[0, 0]
    assert np.hypot(*(np.array(centroid(np.clip(off_centre - 0.06, 0, None))) - VIEW_CENTRE)) > 5


def test_centring_rescale_clamps_and_nan_means_identity():
    def zoom_of(matrix):
        return 1 / np.sqrt(np.linalg.det(matrix[:2, :2]))

    assert zoom_of(ra.centring_transform(CENTRE, CENTRE, a=10.0, petro_radius=8.0, rescale=True)) == pytest.approx(1.5)
    assert zoom_of(ra.centring_transform(CENTRE, CENTRE, a=40.0, petro_radius=5.0, rescale=True)) == pytest.approx(0.8)
    assert zoom_of(ra.centring_transform(CENTRE, CENTRE, a=100.0, petro_radius=5.0, rescale=True)) == pytest.approx(1 / 1.5)
    nan = float("nan")
    np.testing.assert_allclose(ra.centring_transform(nan, nan, nan, nan, rescale=True), np.eye(3))
    np.testing.assert_allclose(ra.centring_transform(CENTRE, CENTRE, a=nan, petro_radius=4.0, rescale=True), np.eye(3))


def test_tta_transforms_count_order_and_distinct():
    transforms = ra.tta_transforms()
    assert transforms.shape == (60, 3, 3)
    assert len({tuple(np.round(t, 9).ravel()) for t in transforms}) == 60
    np.testing.assert_allclose(transforms[0], ra.augmentation_transform(zoom=1 / 1.2))
    np.testing.assert_allclose(transforms[1], ra.augmentation_transform(zoom=1 / 1.2, flip=True))
    np.testing.assert_allclose(transforms[2], ra.augmentation_transform(zoom=1 / 1.2, rotation=36.0))
    np.testing.assert_allclose(transforms[20], ra.augmentation_transform(zoom=1.0))
    np.testing.assert_allclose(transforms[59], ra.augmentation_transform(zoom=1.2, rotation=324.0, flip=True))


# ---------------------------------------------------------------------------------------------------
# Warping


def test_border_mode_matches_skimage_reflect():
    from skimage.transform import warp

    ramp = (np.add.outer(np.arange(424), 2 * np.arange(424)) % 256).astype(np.uint8)
    image = np.repeat(ramp[..., None], 3, axis=-1)
    shift = ra.translation_matrix(-50.3, -20.0)  # reaches 50 px past the top-left corner
    fast = ra.warp_uint8(image, shift)[0].astype(np.float64)
    reference = warp(image[..., 0] / 255.0, shift, output_shape=(69, 69), order=1, mode="reflect") * 255
    assert np.abs(fast - reference).max() <= 1.0


def test_fast_path_agrees_with_reference(images):
    rng = np.random.default_rng(5)
    worst = 0.0
    for image in images:
        augment = ra.random_augmentation(rng, **ra.DEFAULT_AUGMENTATION)
        prepro = ra.centring_transform(*rng.uniform(180, 240, 2), a=5.0, petro_radius=rng.uniform(4, 60),
                                       rescale=True)
        for pre in (None, prepro):
            fast = ra.warp_views(image, augment, pre)
            assert fast.shape == (2, 3, 69, 69) and fast.dtype == np.float32
            reference = ra.warp_views_reference(image.astype(np.float32) / 255, augment, pre)
            worst = max(worst, float(np.abs(fast - reference).max()))
    assert worst < REFERENCE_TOLERANCE


def test_colour_noise_is_one_scalar_per_image_along_the_pca_direction():
    rng = np.random.default_rng(2)
    views = rng.uniform(0.2, 0.8, (5, 2, 3, 69, 69)).astype(np.float32)
    views[0, 0, :, 0, 0] = [0.0, 0.0, 0.0]
    before = views.copy()
    result = ra.add_colour_noise(views, np.random.default_rng(3), std=0.5)
    assert result is views
    scalars = np.random.default_rng(3).standard_normal(5).astype(np.float32) * np.float32(0.5)
    expected = before + (scalars[:, None] * ra.COLOUR_PCA_DIRECTION)[:, None, :, None, None]
    np.testing.assert_allclose(views, np.clip(expected, 0, 1), atol=1e-6)
    assert views.min() >= 0.0 and views.max() <= 1.0
    shift = (views - before)[:, :, :, 10, 10]  # one unclipped pixel per image and view
    np.testing.assert_allclose(shift / ra.COLOUR_PCA_DIRECTION, scalars[:, None, None].repeat(2, 1).repeat(3, 2),
                               rtol=1e-3)

    as_list = [before[:, 0].copy(), before[:, 1].copy()]
    ra.add_colour_noise(as_list, np.random.default_rng(3), std=0.5)
    np.testing.assert_array_equal(np.stack(as_list, axis=1), views)


# ---------------------------------------------------------------------------------------------------
# Generators


def collect(chunks):
    return [(c.index, c.views, c.labels, c.positions) for c in chunks]


def make_chunks(image_root, **kwargs):
    _, ids = image_root
    labels = np.arange(len(ids) * 37, dtype=np.float32).reshape(len(ids), 37)
    options = dict(chunk_size=16, num_chunks=3, seed=7, num_workers=0) | kwargs
    return ra.RandomChunks(ids, labels, subset="train", **options), labels


def test_random_chunks_are_worker_independent_and_resumable(image_root):
    in_process, labels = make_chunks(image_root, num_workers=0)
    assert len(in_process) == 3
    serial = collect(in_process)
    parallel = collect(make_chunks(image_root, num_workers=2)[0])
    resumed = collect(make_chunks(image_root, start_chunk=2, num_workers=2)[0])
    assert [c[0] for c in serial] == [0, 1, 2] and [c[0] for c in resumed] == [2]
    for a, b in zip(serial, parallel):
        for x, y in zip(a[1:], b[1:]):
            np.testing.assert_array_equal(x, y)
    for x, y in zip(serial[2][1:], resumed[0][1:]):
        np.testing.assert_array_equal(x, y)
    index, views, chunk_labels, positions = serial[0]
    assert views.shape == (16, 2, 3, 69, 69) and views.dtype == np.float32
    assert positions.dtype == np.int64 and chunk_labels.dtype == np.float32
    np.testing.assert_array_equal(chunk_labels, labels[positions])
    assert len(np.unique(positions[:NUM_IMAGES])) == NUM_IMAGES  # every image once before any repeats
    assert not np.array_equal(serial[0][1], serial[1][1])
    other_seed = collect(make_chunks(image_root, seed=8, num_chunks=1)[0])
    assert not np.array_equal(other_seed[0][1], serial[0][1])


def test_random_chunks_stop_early_leaves_no_processes(image_root):
    before = set(multiprocessing.active_children())
    chunks = iter(make_chunks(image_root, num_workers=2, num_chunks=50)[0])
    next(chunks)
    assert len(set(multiprocessing.active_children()) - before) >= 2
    chunks.close()
    assert not set(multiprocessing.active_children()) - before

    def train_until_interrupted():
        for _ in make_chunks(image_root, num_workers=2, num_chunks=50)[0]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_until_interrupted()
    assert not set(multiprocessing.active_children()) - before


@pytest.mark.parametrize("workers", [0, 2])
def test_missing_image_raises_data_error(image_root, workers):
    _, ids = image_root
    chunks = ra.RandomChunks(np.append(ids, 1), np.zeros((len(ids) + 1, 37)), chunk_size=len(ids) + 1,
                             num_chunks=1, num_workers=workers)
    with pytest.raises(errors.DataError, match="GalaxyID 1"):
        list(chunks)


def test_fixed_views_in_order_and_equal_to_warp_views(image_root, images):
    _, ids = image_root
    augments = ra.tta_transforms(num_rotations=2, zooms=(1.0,))
    prepro = np.stack([ra.centring_transform(200.0 + k, 210.0) for k in range(len(ids))])
    parts = list(ra.fixed_views(ids, "train", augments, prepro=prepro, images_per_chunk=5, num_workers=2))
    assert [len(p) for p, _ in parts] == [5, 5, 2]
    positions = np.concatenate([p for p, _ in parts])
    np.testing.assert_array_equal(positions, np.arange(len(ids)))
    views = np.concatenate([v for _, v in parts])
    assert views.shape == (len(ids), 4, 2, 3, 69, 69)
    for i in (0, 7, 11):
        for t, augment in enumerate(augments):
            np.testing.assert_array_equal(views[i, t], ra.warp_views(images[i], augment, prepro[i]))
    in_process = np.concatenate([v for _, v in ra.fixed_views(ids, "train", augments, prepro, num_workers=0)])
    np.testing.assert_array_equal(in_process, views)


def test_save_views_png(tmp_path, images):
    path = tmp_path / "views.png"
    ra.save_views_png(images[0], path, augment=ra.augmentation_transform(rotation=30, zoom=1.2))
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.size[0] > 400


# ---------------------------------------------------------------------------------------------------
# Input declarations other than the original's two views


def test_square_view_is_the_centre_crop():
    """INPUT (224, 224): the untransformed view is the image's centre 224x224, pixel for pixel."""
    image = np.random.default_rng(0).integers(0, 256, (424, 424, 3), dtype=np.uint8)
    views = ra.input_views((224, 224))
    view = ra.warp_uint8(image, ra.view_matrices(np.eye(3), None, views), views.size)
    assert view.shape == (1, 3, 224, 224)
    np.testing.assert_array_equal(view[0], image[100:324, 100:324].transpose(2, 0, 1))


def test_half_size_view_is_the_centre_crop_2x_down():
    """INPUT (112, 224): the same square at half resolution; each pixel is the mean of a 2x2 block, up to
    rounding to uint8 (a mean of four integers is a multiple of 0.25, rounded by at most half a level)."""
    image = np.random.default_rng(1).integers(0, 256, (424, 424, 3), dtype=np.uint8)
    views = ra.input_views((112, 224))
    view = ra.warp_uint8(image, ra.view_matrices(np.eye(3), None, views), views.size)[0].astype(np.float64)
    blocks = image[100:324, 100:324].astype(np.float64).reshape(112, 2, 112, 2, 3).mean(axis=(1, 3))
    assert np.abs(view - blocks.transpose(2, 0, 1)).max() <= 0.5


def test_square_view_under_augmentation_agrees_with_a_direct_warp():
    """A 224 px view under a random augmentation: the fast path against skimage's warp with the same matrix
    (the original's interpolation and border), within rounding to uint8."""
    from skimage.transform import warp
    rng = np.random.default_rng(2)
    image = np.random.default_rng(3).integers(0, 256, (424, 424, 3), dtype=np.uint8)
    views = ra.input_views((224, 224))
    for _ in range(3):
        augment = ra.random_augmentation(rng, **ra.DEFAULT_AUGMENTATION)
        fast = ra.warp_views(image, augment, views=views)
        matrix = ra.view_matrices(augment, None, views)[0]
        direct = np.stack([warp(image[..., c] / 255.0, matrix, output_shape=(224, 224), order=1, mode="reflect")
                           for c in range(3)])
        assert np.abs(fast[0] - direct).max() <= 0.5 / 255 + 1e-4


def test_malformed_input_declarations_are_refused():
    for declaration in ("big", (0, 224), (224, 500), (224,), None):
        with pytest.raises(ValueError, match="INPUT"):
            ra.input_views(declaration)
    assert ra.input_views().size == ra.VIEW_SIZE and ra.input_views().num_views == 2
