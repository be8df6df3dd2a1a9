"""The augmentation data path in PyTorch, batched, so that it can run on the GPU next to the network.

It computes the same views as realtime_augmentation.warp_views (one bilinear interpolation per view from the
uint8 image, reflecting borders) and the same colour noise as realtime_augmentation.add_colour_noise, but
for a whole batch in a few tensor operations. On a GPU the decoded images live on the device as uint8
(DeviceImageCache: 61,578 training images take 33 GB), so a training step needs no worker processes and
no host-to-device copies of views: pick indices, draw matrices, warp, add noise, train.

Matrices follow realtime_augmentation's convention: 3x3 homogeneous inverse maps from OUTPUT pixel
coordinates (x = column, y = row, pixel centres at integers) to INPUT pixel coordinates, so output pixel
(row i, column j) samples the input at M @ (j, i, 1), as cv2.warpAffine with WARP_INVERSE_MAP does.
"""
import cv2
import numpy as np
import torch
import torch.nn.functional as F

import load_data
from galaxyzoo import realtime_augmentation as ra

# cv2's reflecting border modes and the grid_sample normalisation whose 'reflection' padding equals them:
# with align_corners=False grid_sample reflects about the outer pixel edges (-0.5 and W - 0.5), which is
# BORDER_REFLECT (the edge pixel repeated, fedcba|abcdef); with align_corners=True it reflects about the
# outer pixel centres (0 and W - 1), which is BORDER_REFLECT_101 (gfedcb|abcdefg). In both cases the
# bilinear interpolant of the reflected image is symmetric about the mirror, so reflecting the sampling
# coordinate (what grid_sample does) gives the same value as interpolating the padded image (what cv2 does).
ALIGN_CORNERS_FOR_BORDER = {"reflect": False, "reflect101": True}


def _border_of_warp_views():
    """The border mode realtime_augmentation.warp_views uses, as a key of ALIGN_CORNERS_FOR_BORDER."""
    return {cv2.BORDER_REFLECT: "reflect", cv2.BORDER_REFLECT_101: "reflect101"}[ra.CV2_BORDER]


BORDER = _border_of_warp_views()


# ---------------------------------------------------------------------------------------------------
# Images on the device


class DeviceImageCache:
    """Decoded images held on one device as uint8, channels-first: `images` is (N, 3, 424, 424).

    Channels-first is the layout grid_sample reads, so a batch is an index_select and a conversion to
    float32 of just that batch; the cache itself stays uint8 (a quarter of the float32 size). Images go to
    the device a block at a time, so neither the host nor the device ever holds a second full copy.
    """

    def __init__(self, images_uint8, device="cpu", block_size=256):
        """images_uint8: (N, H, W, 3) uint8, numpy array (a memory map is fine) or tensor, as load_data
        returns images."""
        if images_uint8.dtype not in (np.uint8, torch.uint8) or images_uint8.ndim != 4 or images_uint8.shape[-1] != 3:
            raise ValueError(f"expected uint8 images (N, H, W, 3), got {images_uint8.dtype} "
                             f"{tuple(images_uint8.shape)}")
        count, height, width = images_uint8.shape[:3]
        self.images = torch.empty((count, 3, height, width), dtype=torch.uint8, device=device)
        for start in range(0, count, block_size):
            self._put(start, images_uint8[start:start + block_size])

    @classmethod
    def from_ids(cls, galaxy_ids, subset="train", device="cpu", block_size=256):
        """Load the galaxies `galaxy_ids` in that order through load_data.load_image_uint8 (which reads the
        decoded cache when it was built), `block_size` images at a time. Raises errors.DataError for a
        missing or bad image."""
        galaxy_ids = np.asarray(galaxy_ids)
        size = load_data.IMAGE_SIZE
        cache = cls(np.empty((0, size, size, 3), dtype=np.uint8), device)
        cache.images = torch.empty((len(galaxy_ids), 3, size, size), dtype=torch.uint8, device=device)
        for start in range(0, len(galaxy_ids), block_size):
            cache._put(start, np.stack([load_data.load_image_uint8(g, subset)
                                        for g in galaxy_ids[start:start + block_size]]))
        return cache

    def _put(self, start, block_uint8):
        """Copy (n, H, W, 3) images into places start .. start + n - 1."""
        # np.array copies a (possibly read-only, memory-mapped) numpy block into memory torch may own.
        block = torch.from_numpy(np.array(block_uint8)) if isinstance(block_uint8, np.ndarray) else block_uint8
        self.images[start:start + len(block)] = block.to(self.device).permute(0, 3, 1, 2)

    @property
    def device(self):
        return self.images.device

    def __len__(self):
        return self.images.shape[0]

    def batch(self, positions):
        """uint8 (B, 3, H, W): the images at `positions` (B,) (array or tensor of indices into the cache)."""
        positions = torch.as_tensor(positions)
        return self.images.index_select(0, positions.to(self.device, torch.long))

    def views(self, positions, matrices, out_size=ra.VIEW_SIZE):
        """float32 (B, V, 3, out_size, out_size): warp_batch of the images at `positions` with `matrices`."""
        return warp_batch(self.batch(positions), matrices, out_size)


# ---------------------------------------------------------------------------------------------------
# Warping


def _normalising_matrix(size, align_corners):
    """3x3 map from pixel coordinates (centres at integers) to grid_sample's [-1, 1] coordinates of an
    axis of `size` pixels: x -> (2x + 1) / size - 1 (align_corners=False) or 2x / (size - 1) - 1 (True)."""
    scale = 2.0 / (size - 1) if align_corners else 2.0 / size
    offset = -1.0 if align_corners else 1.0 / size - 1.0
    return torch.tensor([[scale, 0.0, offset], [0.0, scale, offset], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _output_pixel_coordinates(out_size, device):
    """float32 (S, S, 3): homogeneous (x = column, y = row, 1) of every output pixel, indexed [row, column]."""
    steps = torch.arange(out_size, dtype=torch.float32, device=device)
    rows, cols = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([cols, rows, torch.ones_like(rows)], dim=-1)


def sampling_grid(matrices, image_size, out_size=ra.VIEW_SIZE, border=BORDER, device="cpu"):
    """grid_sample's grid for inverse maps `matrices` (B, V, 3, 3) on (image_size x image_size) images:
    float32 (B, V * out_size, out_size, 2), the V views stacked along the output rows, so that one
    grid_sample call reads each image once for all its views."""
    matrices = torch.as_tensor(matrices, dtype=torch.float64).to(device)
    if matrices.ndim != 4 or matrices.shape[-2:] != (3, 3):
        raise ValueError(f"expected matrices (B, V, 3, 3), got {tuple(matrices.shape)}")
    # Fold the pixel-to-normalised conversion into the maps in float64, then evaluate them in float32.
    to_normalised = _normalising_matrix(image_size, ALIGN_CORNERS_FOR_BORDER[border]).to(device)
    maps = (to_normalised @ matrices)[..., :2, :].to(torch.float32)
    coordinates = _output_pixel_coordinates(out_size, device)
    grid = torch.einsum("bvkl,ijl->bvijk", maps, coordinates)
    batch, views = matrices.shape[:2]
    return grid.reshape(batch, views * out_size, out_size, 2)


def warp_batch(images, matrices, out_size=ra.VIEW_SIZE, border=BORDER):
    """Warp a batch of images with V inverse maps each.

    images: (B, 3, H, W) uint8 (or float in [0, 1]) tensor, square (H == W); matrices: (B, V, 3, 3)
    inverse maps (numpy or tensor, any float dtype). Returns float32 (B, V, 3, out_size, out_size) in [0, 1],
    on the images' device: bilinear, borders reflected as in realtime_augmentation.warp_views.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"expected square images (B, 3, H, W), got {tuple(images.shape)}")
    pixels = images.to(torch.float32)
    if images.dtype == torch.uint8:
        pixels = pixels.mul_(1.0 / 255.0)
    grid = sampling_grid(matrices, images.shape[-1], out_size, border, images.device)
    if grid.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but matrices for {grid.shape[0]}")
    warped = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="reflection",
                           align_corners=ALIGN_CORNERS_FOR_BORDER[border])
    batch, views = matrices.shape[:2]
    return warped.reshape(batch, 3, views, out_size, out_size).transpose(1, 2).contiguous()


# ---------------------------------------------------------------------------------------------------
# Random transforms and colour noise


def random_matrices(batch_size, rng, augmentation=ra.DEFAULT_AUGMENTATION, view_transforms=ra.VIEW_TRANSFORMS,
                    prepro=None):
    """float64 (B, V, 3, 3) view matrices for B images, drawn as realtime_augmentation.RandomChunks draws them:
    one ra.random_augmentation(rng, **augmentation) per image in order, chained as ra.view_matrices chains
    them (prepro @ augment @ view transform) with each of the V view_transforms (3, 3) and with the image's
    preprocessing map (prepro: None, one (3, 3) for all images, or (B, 3, 3))."""
    augments = np.stack([ra.random_augmentation(rng, **augmentation) for _ in range(batch_size)])
    if prepro is not None:
        prepro = np.asarray(prepro, dtype=np.float64)
        if prepro.shape not in ((3, 3), (batch_size, 3, 3)):
            raise ValueError(f"prepro must be (3, 3) or ({batch_size}, 3, 3), got {prepro.shape}")
        augments = prepro @ augments
    return augments[:, None] @ np.asarray(view_transforms, dtype=np.float64)[None]


def colour_noise_tensor(source, batch_size, std=ra.COLOUR_STD, device="cpu"):
    """float32 (B,) amounts s ~ N(0, std) as a tensor on `device`: drawn from a numpy Generator (the numbers
    realtime_augmentation.colour_noise_amounts draws from it) or a torch.Generator (on its device), or `source`
    itself when it is already the (B,) amounts."""
    if isinstance(source, np.random.Generator):
        amounts = torch.from_numpy(ra.colour_noise_amounts(source, batch_size, std))
    elif isinstance(source, torch.Generator):
        amounts = torch.randn(batch_size, generator=source, device=source.device) * std
    else:
        amounts = torch.as_tensor(source)
    if amounts.shape != (batch_size,):
        raise ValueError(f"expected {batch_size} noise amounts, got shape {tuple(amounts.shape)}")
    return amounts.to(device, torch.float32)


def add_colour_noise_torch(views, source, std=ra.COLOUR_STD):
    """Add s * COLOUR_PCA_DIRECTION to every pixel of all views of each image and clamp to [0, 1], in place.

    views: float32 (B, V, 3, S, S); source: numpy Generator, torch.Generator or (B,) amounts (see
    colour_noise_tensor). Returns `views`."""
    amounts = colour_noise_tensor(source, views.shape[0], std, views.device)
    direction = torch.as_tensor(ra.COLOUR_PCA_DIRECTION, dtype=torch.float32, device=views.device)
    views.add_(amounts[:, None, None, None, None] * direction[None, None, :, None, None])
    return views.clamp_(0.0, 1.0)


def random_views(cache, positions, rng, augmentation=ra.DEFAULT_AUGMENTATION, colour_std=ra.COLOUR_STD,
                 prepro=None):
    """One augmented training batch: float32 (B, 2, 3, 69, 69) on the cache's device for the images at
    `positions` (B,), with random view matrices and colour noise both drawn from the numpy Generator `rng`."""
    matrices = random_matrices(len(positions), rng, augmentation, prepro=prepro)
    views = cache.views(positions, matrices)
    return add_colour_noise_torch(views, rng, colour_std)
