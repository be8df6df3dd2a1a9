"""A trained model's own submission: its outputs for every test image, untransformed, as
predictions/final/<model>.csv.gz (what a finished training run writes)."""
import numpy as np
from tqdm import tqdm

import load_data
from galaxyzoo import checkpoints, decision_tree, submission
from galaxyzoo import realtime_augmentation as ra


def write(model, config, device, workers, model_name):
    """Predict every test image (no augmentation) and write predictions/final/<model>.csv.gz."""
    test_ids = load_data.load_ids("test")
    prepro = ra.prepro_matrices(config["PREPROCESSING"], test_ids, "test")
    predictions = predict_streamed(model, test_ids, "test", prepro, workers, ra.input_views(config["INPUT"]), device)
    path = checkpoints.submission_path(model_name)
    submission.write_submission(path, test_ids, np.clip(predictions, 0.0, 1.0))


def predict_streamed(model, galaxy_ids, subset, prepro, workers, views, device):
    """The model's outputs (N, 37) float32 for the untransformed views of every image of galaxy_ids, predicted chunk by
    chunk as the views are made: all of the test set's views at once would take 9 GB for two 69x69 views (48 GB for
    one 224 px view)."""
    outputs = np.empty((len(galaxy_ids), decision_tree.NUM_OUTPUTS), dtype=np.float32)
    with tqdm(total=len(galaxy_ids), desc=f"{subset} predictions", unit="img", dynamic_ncols=True,
              mininterval=1.0) as bar:
        for positions, chunk_views in ra.identity_chunks(galaxy_ids, subset, prepro, workers, views):
            outputs[positions] = checkpoints.predict_views(model, chunk_views, device)
            bar.update(len(positions))
    return outputs
