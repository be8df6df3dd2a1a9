"""torch_augmentation.py: the batched PyTorch warp gives the views realtime_augmentation.warp_views gives
(cv2), borders included; the colour noise equals the numpy version; geometry and the device cache.

Measured agreement with warp_views on the real sample (and on synthetic blobs): the views differ by at most
helpers.WARP_TOLERANCE (see there) over all pixels of all views, translations up to 300 px included."""
import cv2
import numpy as np
import pytest
import torch

import load_data
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import torch_augmentation as ta
from helpers import WARP_TOLERANCE

NUM_IMAGES = 6
# Before warp_views rounds to uint8 (cv2 on the float32 image), it and warp_batch agree to FLOAT_TOLERANCE.
FLOAT_TOLERANCE = 2e-5
BORDER_TEST_AUGMENTATION = dict(ra.DEFAULT_AUGMENTATION, translation_range=(-300, 300))


def synthetic_blobs(count, seed=0):
    """uint8 (count, 424, 424, 3): a few Gaussian blobs of random colours on a dark noisy background."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:load_data.IMAGE_SIZE, :load_data.IMAGE_SIZE]
    images = rng.uniform(0, 20, size=(count, load_data.IMAGE_SIZE, load_data.IMAGE_SIZE, 3))
    for image in images:
        for _ in range(4):
            centre, width = rng.uniform(50, 374, size=2), rng.uniform(5, 40)
            blob = np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * width ** 2))
            image += blob[..., None] * rng.uniform(60, 200, size=3)
    return np.clip(images, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images(real_sample_if_present):
    """uint8 (NUM_IMAGES, 424, 424, 3): real training images when the sample is present, else blobs."""
    if real_sample_if_present is None:
        return synthetic_blobs(NUM_IMAGES)
    paths = sorted((real_sample_if_present / "images_train_rev1").glob("*.jpg"))[:NUM_IMAGES]
    return np.stack([load_data.decode_jpeg(p) for p in paths])


def channels_first(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def draw_augments(count, seed, augmentation):
    rng = np.random.default_rng(seed)
    return [ra.random_augmentation(rng, **augmentation) for _ in range(count)]


def warp_views_max_difference(images, augmentation, border=ta.BORDER, seed=1):
    """Largest |warp_batch - warp_views| over all pixels of both views of all images, same transforms."""
    augments = draw_augments(len(images), seed, augmentation)
    expected = np.stack([ra.warp_views(image, augment) for image, augment in zip(images, augments)])
    matrices = np.stack([ra.view_matrices(augment) for augment in augments])
    got = ta.warp_batch(channels_first(images), matrices, border=border).numpy()
    assert got.shape == expected.shape == (len(images), 2, 3, ra.VIEW_SIZE, ra.VIEW_SIZE)
    return np.abs(got - expected).max()


def test_warp_batch_matches_warp_views(images):
    assert warp_views_max_difference(images, ra.DEFAULT_AUGMENTATION) <= WARP_TOLERANCE


def test_warp_batch_matches_warp_views_across_borders(images):
    """Large translations put much of each view outside the image, so the reflections must agree too."""
    assert warp_views_max_difference(images, BORDER_TEST_AUGMENTATION) <= WARP_TOLERANCE


def test_warp_batch_matches_cv2_on_float_images_before_rounding(images):
    """The same warps by cv2 on the float32 image (no rounding to uint8) agree to FLOAT_TOLERANCE, so the
    difference with warp_views is its rounding alone (measured: 6e-6)."""
    augments = draw_augments(len(images), 3, BORDER_TEST_AUGMENTATION)
    matrices = np.stack([ra.view_matrices(augment) for augment in augments])
    got = ta.warp_batch(channels_first(images), matrices).numpy()
    for image, image_matrices, image_views in zip(images, matrices, got):
        for matrix, view in zip(image_matrices, image_views):
            expected = cv2.warpAffine(image.astype(np.float32) / 255, matrix[:2], (ra.VIEW_SIZE, ra.VIEW_SIZE),
                                      flags=ra.CV2_FLAGS, borderMode=ra.CV2_BORDER)
            assert np.abs(view - expected.transpose(2, 0, 1)).max() <= FLOAT_TOLERANCE


def test_border_test_is_sensitive_to_the_reflection_mode(images):
    """The other reflection (about pixel centres instead of edges, or the reverse) fails the border test,
    so passing it means the borders really match."""
    other = next(b for b in ta.ALIGN_CORNERS_FOR_BORDER if b != ta.BORDER)
    assert warp_views_max_difference(images, BORDER_TEST_AUGMENTATION, border=other) > 10 * WARP_TOLERANCE


def test_warp_batch_with_preprocessing_matches_warp_views(images):
    prepro = ra.centring_transform(230.0, 190.0, a=1.5, petro_radius=60.0, rescale=True)
    augment = draw_augments(1, 2, ra.DEFAULT_AUGMENTATION)[0]
    expected = ra.warp_views(images[0], augment, prepro)
    got = ta.warp_batch(channels_first(images[:1]), ra.view_matrices(augment, prepro)[None])[0].numpy()
    assert np.abs(got - expected).max() <= WARP_TOLERANCE


def test_random_matrices_compose_as_realtime_augmentation(images):
    prepro = np.stack([ra.centring_transform(200.0 + i, 220.0 - i) for i in range(3)])
    matrices = ta.random_matrices(3, np.random.default_rng(5), prepro=prepro)
    augments = draw_augments(3, 5, ra.DEFAULT_AUGMENTATION)
    expected = np.stack([ra.view_matrices(a, p) for a, p in zip(augments, prepro)])
    assert matrices.shape == (3, len(ra.VIEW_TRANSFORMS), 3, 3)
    np.testing.assert_allclose(matrices, expected, rtol=0, atol=1e-12)


def test_identity_view_maps_image_centre_to_view_centre():
    """A bright 2x2 square on the image centre (pixels 211 and 212, centre 211.5) lands on the central
    pixel of both views, and the sampling grid of that pixel is the normalised image centre (0, 0)."""
    centre = ra.VIEW_SIZE // 2
    matrices = ra.view_matrices(np.eye(3))[None]
    grid = ta.sampling_grid(matrices, load_data.IMAGE_SIZE).reshape(1, 2, ra.VIEW_SIZE, ra.VIEW_SIZE, 2)
    np.testing.assert_allclose(grid[0, :, centre, centre].numpy(), 0.0, atol=1e-6)
    image = np.zeros((1, 3, load_data.IMAGE_SIZE, load_data.IMAGE_SIZE), dtype=np.uint8)
    image[..., 211:213, 211:213] = 255
    views = ta.warp_batch(torch.from_numpy(image), matrices)[0]
    for view in views.sum(dim=1):
        assert divmod(int(view.argmax()), ra.VIEW_SIZE) == (centre, centre)


def test_colour_noise_equals_numpy_version(images):
    views = ra.warp_views(images[0], np.eye(3))
    batch = np.stack([views, views[:, ::-1], 1.0 - views]).astype(np.float32)
    expected = ra.add_colour_noise(batch.copy(), np.random.default_rng(7))
    got = ta.add_colour_noise_torch(torch.from_numpy(batch.copy()), np.random.default_rng(7))
    np.testing.assert_array_equal(got.numpy(), expected)
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_colour_noise_from_given_amounts_and_torch_generator():
    views = torch.full((2, 2, 3, 4, 4), 0.5)
    amounts = torch.tensor([1.0, -2.0])
    noisy = ta.add_colour_noise_torch(views.clone(), amounts)
    direction = torch.as_tensor(ra.COLOUR_PCA_DIRECTION)
    torch.testing.assert_close(noisy[1, 0, :, 0, 0], 0.5 - 2.0 * direction)
    first = ta.add_colour_noise_torch(views.clone(), torch.Generator().manual_seed(3))
    again = ta.add_colour_noise_torch(views.clone(), torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, again)
    with pytest.raises(ValueError, match="noise amounts"):
        ta.add_colour_noise_torch(views, torch.zeros(3))


def test_device_image_cache_layout_and_views(images):
    cache = ta.DeviceImageCache(images, block_size=4)
    assert cache.images.shape == (len(images), 3, load_data.IMAGE_SIZE, load_data.IMAGE_SIZE)
    assert cache.images.dtype == torch.uint8
    positions = np.array([3, 0])
    np.testing.assert_array_equal(cache.batch(positions).permute(0, 2, 3, 1).numpy(), images[positions])
    matrices = np.stack([ra.view_matrices(np.eye(3))] * 2)
    torch.testing.assert_close(cache.views(positions, matrices), ta.warp_batch(channels_first(images[positions]),
                                                                                 matrices))
    with pytest.raises(ValueError, match="uint8"):
        ta.DeviceImageCache(images.astype(np.float32))


def test_device_image_cache_from_ids_reads_through_load_data(images, monkeypatch):
    by_id = {100 + i: image for i, image in enumerate(images)}
    monkeypatch.setattr(load_data, "load_image_uint8", lambda galaxy_id, subset: by_id[int(galaxy_id)])
    galaxy_ids = np.array([105, 101, 102, 100, 104])
    cache = ta.DeviceImageCache.from_ids(galaxy_ids, "train", block_size=2)
    np.testing.assert_array_equal(cache.images.permute(0, 2, 3, 1).numpy(), np.stack([by_id[g] for g in galaxy_ids]))


def test_random_views_shapes_and_range(images):
    cache = ta.DeviceImageCache(images)
    views = ta.random_views(cache, np.arange(len(images)), np.random.default_rng(0))
    assert views.shape == (len(images), 2, 3, ra.VIEW_SIZE, ra.VIEW_SIZE) and views.dtype == torch.float32
    assert views.min() >= 0.0 and views.max() <= 1.0
