"""A chunk's minibatches as tensors on the training device: views made by the worker processes and moved there
(LoadedChunk), or warped there from the device's copy of the images (PlannedChunk, --data-on-device)."""
import torch

from galaxyzoo import torch_augmentation as ta


class LoadedChunk:
    """A chunk's views (n, V, 3, S, S) and labels (n, 37) as tensors on the training device."""

    def __init__(self, chunk, device):
        self.index = chunk.index
        self.views = torch.from_numpy(chunk.views).to(device)
        self.labels = torch.from_numpy(chunk.labels).to(device)

    def batch(self, b, size):
        """(views, labels) of minibatch b of `size` images."""
        rows = slice(b * size, (b + 1) * size)
        return self.views[rows], self.labels[rows]


class PlannedChunk:
    """A chunk whose plan (realtime_augmentation.ChunkPlan) is warped on the cache's device a minibatch at a
    time: the views RandomChunks builds for the same plan, up to interpolation rounding (it rounds to uint8)."""

    def __init__(self, index, plan, cache, labels, size):
        """cache: DeviceImageCache of the training images; labels: (N, 37) tensor on its device; size: the views'."""
        self.index, self.plan, self.cache, self.labels, self.size = index, plan, cache, labels, size

    def batch(self, b, size):
        rows = slice(b * size, (b + 1) * size)
        positions = torch.from_numpy(self.plan.positions[rows]).to(self.cache.device)
        views = self.cache.views(positions, self.plan.matrices[rows], self.size)
        ta.add_colour_noise_torch(views, torch.from_numpy(self.plan.noise[rows]))
        return views, self.labels.index_select(0, positions)


def planned_chunks(random_chunks, cache, labels):
    """PlannedChunk for each chunk of random_chunks (a RandomChunks, not iterated): cache is the DeviceImageCache
    of its images, labels their (N, 37) tensor on the same device."""
    for k in range(random_chunks.start_chunk, random_chunks.num_chunks):
        yield PlannedChunk(k, random_chunks.plan(k), cache, labels, random_chunks.views.size)
