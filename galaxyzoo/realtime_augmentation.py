"""Turn 424x424 galaxy images into the network's input, augmented at random for training (RandomChunks) or by
fixed transforms for validation and test-time averaging (fixed_views). What a model sees is its input
declaration (input_views): by default the original's two 69x69 views per image; or one square view of any size.

Coordinates: every transform is a (3, 3) float64 homogeneous matrix mapping OUTPUT pixel coordinates
(x = column, y = row) to INPUT pixel coordinates, the inverse-map convention of skimage.transform.warp.
A view's matrix is the input-side chain

    output -> downsample/crop -> [45 degree rotation for view 2] -> augmentation -> preprocessing -> input

that is `prepro @ augment @ view_transform`, applied with one bilinear interpolation that reflects at the
borders, as in the original solution. Pixel (i, j) has its centre at (j, i); the image centre is (211.5, 211.5).
"""
import collections
import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

import load_data
from galaxyzoo import parallel
from galaxyzoo import source_params
from galaxyzoo import paths
from galaxyzoo import files

IMAGE_SIZE = load_data.IMAGE_SIZE
IMAGE_CENTRE = (IMAGE_SIZE - 1) / 2.0
VIEW_SIZE = 69
PART_SIZE = 45
NUM_VIEWS = 2
NUM_CHANNELS = 3
COLOUR_PCA_DIRECTION = np.array([-0.0148366, -0.01253134, -0.01040762], dtype=np.float32)
COLOUR_STD = 0.5
DEFAULT_AUGMENTATION = dict(zoom_range=(1 / 1.3, 1.3), rotation_range=(0, 360), translation_range=(-4, 4),
                            do_flip=True)
DOWNSAMPLE_FACTOR = 3.0
VIEW_2_ROTATION = 45.0

# Border handling of the fast path. skimage's warp mode 'reflect' (the original's) mirrors without repeating
# the edge pixel, like numpy's 'reflect' and OpenCV's BORDER_REFLECT_101 (checked in tests/test_augmentation.py).
CV2_BORDER = cv2.BORDER_REFLECT_101
CV2_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP

Chunk = collections.namedtuple("Chunk", ["index", "views", "labels", "positions"])
ChunkPlan = collections.namedtuple("ChunkPlan", ["positions", "matrices", "noise"])


# ---------------------------------------------------------------------------------------------------
# Transforms


def translation_matrix(dx, dy):
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def about_centre(linear, translation=(0.0, 0.0), centre=IMAGE_CENTRE):
    """(3, 3) matrix x -> centre + linear @ (x - centre) + translation, for a (2, 2) `linear` part."""
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = translation
    return translation_matrix(centre, centre) @ matrix @ translation_matrix(-centre, -centre)


def downsample_transform(ds_factor=DOWNSAMPLE_FACTOR, target_size=VIEW_SIZE):
    """(3, 3): a target_size x target_size output that samples the centre (ds_factor * target_size)-pixel
    square of the image every ds_factor pixels; output centre pixel -> image centre (as skimage's resize
    places pixel centres, which the original mimicked)."""
    output_centre = (target_size - 1) / 2.0
    matrix = np.diag([ds_factor, ds_factor, 1.0])
    matrix[:2, 2] = IMAGE_CENTRE - ds_factor * output_centre
    return matrix


def augmentation_transform(zoom=1.0, rotation=0.0, translation=(0.0, 0.0), flip=False):
    """(3, 3) about the image centre: sample input at centre + R(rotation) F (x - centre) / zoom + translation,
    with F mirroring x when `flip`. zoom > 1 magnifies; rotation in degrees; translation in input pixels.
    The flipped matrix equals the original's flip (rotation + 180 with a 180 degree shear)."""
    angle = np.deg2rad(rotation)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    mirror = np.diag([-1.0 if flip else 1.0, 1.0])
    return about_centre(rotate @ mirror / zoom, translation)


VIEW_TRANSFORMS = [
    downsample_transform(),
    augmentation_transform(rotation=VIEW_2_ROTATION) @ downsample_transform(),
]


@dataclass(frozen=True)
class InputViews:
    """What a model sees of each image: one size x size view per (3, 3) transform (view output -> centred image,
    before augmentation and preprocessing). The network gets (B, len(transforms), 3, size, size)."""
    size: int
    transforms: tuple

    @property
    def num_views(self):
        return len(self.transforms)


ORIGINAL_INPUT = "original"  # the 2014 members' declaration


def input_views(declaration=ORIGINAL_INPUT):
    """The InputViews of a recipe's INPUT: "original" (the two 69x69 views: the centre 207x207 3x down, and the
    same turned 45 degrees), or (size, region): one size x size view of the centre region x region pixels
    (224, 224: the centre 224x224 as it is; 112, 224: the same square 2x down)."""
    if declaration == ORIGINAL_INPUT:
        return InputViews(VIEW_SIZE, tuple(VIEW_TRANSFORMS))
    try:
        size, region = (int(value) for value in declaration)
    except (TypeError, ValueError):
        raise ValueError(f"INPUT must be {ORIGINAL_INPUT!r} or (size, region) in pixels, got {declaration!r}") from None
    if not (size > 0 and 0 < region <= IMAGE_SIZE):
        raise ValueError(f"INPUT (size, region) needs size > 0 and 0 < region <= {IMAGE_SIZE}, got {declaration!r}")
    return InputViews(size, (downsample_transform(region / size, size),))


def random_augmentation(rng, zoom_range, rotation_range, translation_range, do_flip):
    """One random augmentation (3, 3), drawn as the original did: translation x and y uniform in
    translation_range, rotation uniform in rotation_range (degrees), a flip with probability 1/2 (no draw when
    do_flip is false), zoom log-uniform in zoom_range."""
    translation = (rng.uniform(*translation_range), rng.uniform(*translation_range))
    rotation = rng.uniform(*rotation_range)
    flip = bool(do_flip) and bool(rng.integers(2))
    zoom = math.exp(rng.uniform(math.log(zoom_range[0]), math.log(zoom_range[1])))
    return augmentation_transform(zoom, rotation, translation, flip)


def centring_transform(x, y, a=None, petro_radius=None, rescale=False, target_radius=160.0, limit=1.5):
    """(3, 3) preprocessing that moves the measured galaxy centre (x, y) to the image centre and, with
    `rescale`, zooms by target_radius / (petro_radius * a) clamped to [1/limit, limit]; NaN parameters leave
    that part out (identity when all are missing).

    x, y are used as given and compared with the 0-based centre 211.5, as in the original solution; the
    source-extraction files store them 1-based as SExtractor does (see extract_pysex_params.py), so, as
    there, each image is shifted 1 px further in x and in y than its galaxy's 0-based offset."""
    translation = (0.0, 0.0) if np.isnan(x) or np.isnan(y) else (x - IMAGE_CENTRE, y - IMAGE_CENTRE)
    zoom = 1.0
    if rescale:
        with np.errstate(divide="ignore", invalid="ignore"):
            zoom = np.float64(target_radius) / (np.float64(petro_radius) * np.float64(a))
        zoom = 1.0 if np.isnan(zoom) else float(np.clip(zoom, 1.0 / limit, limit))
    return augmentation_transform(zoom=zoom, translation=translation)


def prepro_matrices(preprocessing, galaxy_ids, subset):
    """The per-image preprocessing transforms of a recipe's PREPROCESSING (None, or a key of
    source_params.PREPROCESSING) from the source-extraction parameters of galaxy_ids (N,) of `subset`:
    (N, 3, 3) float64 aligned with galaxy_ids, or None for no preprocessing."""
    if preprocessing is None:
        return None
    param_set = source_params.PREPROCESSING[preprocessing][0]
    return prepro_from_columns(preprocessing, source_params.load_columns(param_set, subset, galaxy_ids))


def prepro_from_columns(preprocessing, column):
    """The preprocessing transforms (N, 3, 3) of a recipe's PREPROCESSING (a key of source_params.PREPROCESSING) from
    measured source-extraction parameters: column {name: (N,) float64}, as source_params.load_columns returns."""
    rescale = source_params.PREPROCESSING[preprocessing][1]
    if not rescale:
        return np.stack([centring_transform(x, y) for x, y in zip(column["x"], column["y"])])
    return np.stack([centring_transform(x, y, a, petro_radius=r, rescale=True)
                     for x, y, a, r in zip(column["x"], column["y"], column["a"], column["petro_radius"])])


# The original's 60 test-time transforms: 10 rotations x 3 zooms x unflipped/flipped.
TTA_NUM_ROTATIONS = 10
TTA_ZOOMS = (1 / 1.2, 1.0, 1.2)
TTA_FLIPS = (False, True)


def tta_transforms(num_rotations=TTA_NUM_ROTATIONS, zooms=TTA_ZOOMS, flips=TTA_FLIPS):
    """The fixed test-time transforms (T, 3, 3), T = len(zooms) * num_rotations * len(flips) (60 by default),
    ordered: for zoom, for rotation angle (360 / num_rotations apart from 0), for flip."""
    angles = np.arange(num_rotations) * (360.0 / num_rotations)
    return np.stack([augmentation_transform(zoom, angle, flip=flip)
                     for zoom in zooms for angle in angles for flip in flips])


def view_matrices(augment, prepro=None, views=None):
    """The views' (3, 3) matrices for one image: (V, 3, 3); views: InputViews (default: the original's two)."""
    outer = augment if prepro is None else prepro @ augment
    return np.stack([outer @ view for view in (views or input_views()).transforms])


# ---------------------------------------------------------------------------------------------------
# Warping


def warp_uint8(image_uint8, matrices, size=VIEW_SIZE):
    """Fast path: image (424, 424, 3) uint8, matrices (..., 3, 3) -> uint8 (..., 3, size, size), one
    cv2.warpAffine call (all channels) per matrix."""
    image = np.ascontiguousarray(image_uint8)
    flat = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    out = np.empty((len(flat), NUM_CHANNELS, size, size), dtype=np.uint8)
    for k, matrix in enumerate(flat):
        warped = cv2.warpAffine(image, matrix[:2], (size, size), flags=CV2_FLAGS, borderMode=CV2_BORDER)
        out[k] = warped.transpose(2, 0, 1)
    return out.reshape(np.shape(matrices)[:-2] + out.shape[1:])


def to_float(views_uint8):
    """uint8 views -> float32 in [0, 1]."""
    return views_uint8.astype(np.float32) * np.float32(1 / 255)


def colour_noise_amounts(rng, num_images, std=COLOUR_STD):
    """float32 (num_images,): one s ~ N(0, std) per image, the draws add_colour_noise makes."""
    return rng.standard_normal(num_images).astype(np.float32) * np.float32(std)


def apply_colour_noise(views, amounts):
    """add_colour_noise with the per-image amounts (n,) given instead of drawn. In place; returns views."""
    arrays = views if isinstance(views, (list, tuple)) else [views]
    num_images = len(arrays[0])
    noise = np.asarray(amounts, dtype=np.float32)[:, None] * COLOUR_PCA_DIRECTION
    for array in arrays:
        per_pixel = noise.reshape((num_images,) + (1,) * (array.ndim - 4) + (NUM_CHANNELS, 1, 1))
        array += per_pixel
        np.clip(array, 0.0, 1.0, out=array)
    return views


# ---------------------------------------------------------------------------------------------------
# Work for the background processes (parallel.Prefetcher)


def _init_worker():
    """Worker set-up: one OpenCV thread per process."""
    cv2.setNumThreads(1)


def _warp_task(layout, task):
    """layout: the paths.Layout to read from; task: (subset, galaxy_ids (n,), matrices (n, ..., 3, 3), size) ->
    uint8 (n, ..., 3, size, size)."""
    subset, galaxy_ids, matrices, size = task
    return np.stack([warp_uint8(load_data.load_image_uint8(g, subset, layout), m, size)
                     for g, m in zip(galaxy_ids, matrices)])


def _warp_prefetcher(keys, build, num_workers):
    """parallel.Prefetcher whose tasks are _warp_task, reading from this process's project root."""
    return parallel.Prefetcher(keys, build, functools.partial(_warp_task, paths.current()), num_workers, _init_worker)


def _tasks_per_chunk(num_workers):
    return 4 * max(num_workers, 1)


# ---------------------------------------------------------------------------------------------------
# Training chunks


def draw_chunk_plan(rng, num_images, chunk_size, augmentation=DEFAULT_AUGMENTATION, colour_std=COLOUR_STD,
                    prepro=None, views=None):
    """The random content of one training chunk, drawn from `rng` in this order: chunk_size positions into the
    num_images images (without repeats until every image was drawn once, as the original did), each image's
    augmentation in order, then each image's colour-noise amount. prepro: None or (num_images, 3, 3); views:
    InputViews (default: the original's). Returns ChunkPlan(positions int64 (n,), matrices float64 (n, V, 3, 3)
    view matrices, noise float32 (n,))."""
    views = views or input_views()
    rounds = -(-chunk_size // num_images)
    positions = np.concatenate([rng.permutation(num_images) for _ in range(rounds)])[:chunk_size].astype(np.int64)
    matrices = np.empty((len(positions), views.num_views, 3, 3))
    for i, position in enumerate(positions):
        matrices[i] = view_matrices(random_augmentation(rng, **augmentation),
                                    None if prepro is None else prepro[position], views)
    return ChunkPlan(positions, matrices, colour_noise_amounts(rng, len(positions), colour_std))


class RandomChunks:
    """Chunks of freshly augmented training images, prepared in background processes.

    Iterating yields Chunk(index, views float32 (n, V, 3, S, S) as `views` (InputViews, default the original's
    two 69x69) declares, labels float32 (n, 37), positions int64 (n,)) for chunk indices start_chunk .. num_chunks - 1, n = chunk_size; positions index galaxy_ids.
    Chunk k depends only on (seed, k): rng = np.random.default_rng([seed, k]) draws its plan (draw_chunk_plan:
    the images, each image's augmentation, the colour noise). `select` (indices into the chunk_size images of
    a chunk) builds only those images, in that order (n = len(select)): one process's share of every chunk."""

    def __init__(self, galaxy_ids, labels, subset="train", chunk_size=10000, num_chunks=2500, seed=0,
                 augmentation=DEFAULT_AUGMENTATION, colour_std=COLOUR_STD, prepro=None, start_chunk=0,
                 num_workers=None, select=None, views=None):
        self.galaxy_ids = np.asarray(galaxy_ids)
        self.views = views or input_views()
        self.labels = np.asarray(labels, dtype=np.float32)
        if len(self.labels) != len(self.galaxy_ids):
            raise ValueError(f"{len(self.labels)} label rows for {len(self.galaxy_ids)} galaxy IDs")
        if prepro is not None and np.shape(prepro) != (len(self.galaxy_ids), 3, 3):
            raise ValueError(f"prepro must be ({len(self.galaxy_ids)}, 3, 3), got {np.shape(prepro)}")
        self.subset, self.chunk_size, self.num_chunks, self.seed = subset, chunk_size, num_chunks, seed
        self.augmentation, self.colour_std, self.prepro = dict(augmentation), colour_std, prepro
        self.start_chunk = start_chunk
        self.num_workers = parallel.default_num_workers() if num_workers is None else num_workers
        self.select = None if select is None else np.asarray(select, dtype=np.int64)

    def __len__(self):
        return max(self.num_chunks - self.start_chunk, 0)

    def plan(self, index):
        """ChunkPlan of chunk `index`, restricted to `select` when given."""
        plan = draw_chunk_plan(np.random.default_rng([self.seed, index]), len(self.galaxy_ids), self.chunk_size,
                               self.augmentation, self.colour_std, self.prepro, self.views)
        return plan if self.select is None else ChunkPlan(*(array[self.select] for array in plan))

    def build_chunk(self, index, warp_all):
        """Chunk `index`, its warps done by warp_all (see parallel.Prefetcher)."""
        positions, matrices, noise = self.plan(index)
        ids = self.galaxy_ids[positions]
        pieces = parallel.split(len(positions), _tasks_per_chunk(self.num_workers))
        warped = warp_all([(self.subset, ids[piece], matrices[piece], self.views.size) for piece in pieces])
        views = apply_colour_noise(to_float(np.concatenate(warped)), noise)
        return Chunk(index, views, self.labels[positions], positions)

    def __iter__(self):
        with _warp_prefetcher(range(self.start_chunk, self.num_chunks), self.build_chunk, self.num_workers) as chunks:
            for _ in range(len(self)):
                yield chunks.get()


# ---------------------------------------------------------------------------------------------------
# Fixed views


def default_images_per_chunk(num_transforms):
    return max(1, 500 // num_transforms)


def fixed_views(galaxy_ids, subset, augments, prepro=None, images_per_chunk=None, num_workers=None, views=None):
    """Every image under every fixed transform, in order, no randomness; prepared one chunk ahead in background
    processes. augments: (T, 3, 3); prepro: None or (N, 3, 3) aligned with galaxy_ids; views: InputViews
    (default: the original's). Yields (positions int64 (m,), views float32 (m, T, V, 3, S, S)), positions
    indexing galaxy_ids."""
    views = views or input_views()
    galaxy_ids = np.asarray(galaxy_ids)
    augments = np.asarray(augments, dtype=np.float64).reshape(-1, 3, 3)
    if prepro is not None and np.shape(prepro) != (len(galaxy_ids), 3, 3):
        raise ValueError(f"prepro must be ({len(galaxy_ids)}, 3, 3), got {np.shape(prepro)}")
    images_per_chunk = images_per_chunk or default_images_per_chunk(len(augments))
    num_workers = parallel.default_num_workers() if num_workers is None else num_workers
    starts = range(0, len(galaxy_ids), images_per_chunk)

    def build(start, warp_all):
        positions = np.arange(start, min(start + images_per_chunk, len(galaxy_ids)), dtype=np.int64)
        matrices = np.stack([np.stack([view_matrices(augment, None if prepro is None else prepro[p], views)
                                       for augment in augments]) for p in positions])
        pieces = parallel.split(len(positions), _tasks_per_chunk(num_workers))
        warped = warp_all([(subset, galaxy_ids[positions[piece]], matrices[piece], views.size) for piece in pieces])
        return positions, to_float(np.concatenate(warped))

    with _warp_prefetcher(starts, build, num_workers) as chunks:
        for _ in starts:
            yield chunks.get()


def identity_chunks(galaxy_ids, subset, prepro=None, num_workers=None, views=None):
    """fixed_views under the identity alone: yields (positions int64 (m,), views float32 (m, V, 3, S, S))."""
    for positions, chunk_views in fixed_views(galaxy_ids, subset, np.eye(3)[None], prepro=prepro,
                                              num_workers=num_workers, views=views):
        yield positions, chunk_views[:, 0]


def identity_views(galaxy_ids, subset, prepro=None, num_workers=None, views=None, label=None):
    """The untransformed views of each image (the original's validation input): (N, V, 3, S, S) float32; a progress
    bar named `label` when one is given."""
    result = None
    with tqdm(total=len(galaxy_ids), desc=label, unit="img", dynamic_ncols=True, mininterval=1.0, leave=False,
              disable=label is None) as bar:
        for positions, chunk_views in identity_chunks(galaxy_ids, subset, prepro, num_workers, views):
            if result is None:
                result = np.empty((len(galaxy_ids),) + chunk_views.shape[1:], dtype=np.float32)
            result[positions] = chunk_views
            bar.update(len(positions))
    return result


# ---------------------------------------------------------------------------------------------------
# One image at a time, and the original's way: the pipeline runs none of these; tests, benchmarks and
# pictures for the documentation use them to check and show what the functions above compute.


def warp_views(image_uint8, augment, prepro=None, views=None):
    """image uint8 (424, 424, 3), augment (3, 3), prepro (3, 3) or None, views InputViews or None (the original's)
    -> float32 (V, 3, S, S) in [0, 1]."""
    views = views or input_views()
    return to_float(warp_uint8(image_uint8, view_matrices(augment, prepro, views), views.size))


def warp_views_reference(image_float, augment, prepro=None):
    """The original's approach: skimage warp per channel per view of a float image (424, 424, 3) in [0, 1]
    -> float32 (2, 3, 69, 69)."""
    from skimage.transform import warp

    out = np.empty((NUM_VIEWS, NUM_CHANNELS, VIEW_SIZE, VIEW_SIZE), dtype=np.float32)
    for v, matrix in enumerate(view_matrices(augment, prepro)):
        for c in range(NUM_CHANNELS):
            out[v, c] = warp(image_float[..., c], matrix, output_shape=(VIEW_SIZE, VIEW_SIZE), order=1,
                             mode="reflect")
    return out


def add_colour_noise(views, rng, std=COLOUR_STD):
    """Add s * COLOUR_PCA_DIRECTION to every pixel of each image, s ~ N(0, std) drawn once per image, then clip
    to [0, 1]. views: float32 (n, V, 3, H, W), or a list of per-view arrays (n, 3, H, W). In place; returns views."""
    arrays = views if isinstance(views, (list, tuple)) else [views]
    return apply_colour_noise(views, colour_noise_amounts(rng, len(arrays[0]), std))


def save_views_png(image_uint8, path, augment=None, prepro=None):
    """Draw an image (424, 424, 3) uint8, its two 69x69 views under `augment` (identity when None) and
    `prepro`, and the 16 45x45 parts the network sees (layers.multi_rot_slice), to a PNG at `path`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import layers

    views = warp_views(image_uint8, np.eye(3) if augment is None else augment, prepro)
    parts = layers.multi_rot_slice(torch.from_numpy(views[None]), PART_SIZE).numpy()
    figure = plt.figure(figsize=(12, 6))
    grid = figure.add_gridspec(4, 8)
    panels = [(grid[:2, :2], image_uint8, "input 424x424"),
              (grid[:2, 2:4], views[0].transpose(1, 2, 0), "view 1"),
              (grid[:2, 4:6], views[1].transpose(1, 2, 0), "view 2 (45 deg)")]
    panels += [(grid[2 + k // 8, k % 8], part.transpose(1, 2, 0), f"part {k}") for k, part in enumerate(parts)]
    for cell, picture, title in panels:
        axes = figure.add_subplot(cell)
        axes.imshow(picture)
        axes.set_title(title, fontsize=8)
        axes.axis("off")
    with files.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    plt.close(figure)
