"""The best single model: two views (plain and turned 45 degrees) of 69x69, cut into 16 rotated parts,
four convolutions with untied biases, two maxout dense layers of 2048, 37 tree-normalised outputs.

    python try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense.py             # the full recipe
    python try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense.py --help      # options for short runs

Writes analysis/final/<this file's name>.pt (checkpoint, resumable), its _learning_curve.png, and
predictions/final/<this file's name>.csv.gz. Other ensemble members import this recipe and change a few lines.
"""
import convnet
import realtime_augmentation
import train

BATCH_SIZE = 16
MOMENTUM = 0.9
LEARNING_RATE_SCHEDULE = {0: 0.04, 1800: 0.004, 2300: 0.0004}  # first chunk -> learning rate
CHUNK_SIZE = 10000  # freshly augmented images per chunk
NUM_CHUNKS = 2500  # 25 million images in all
VALIDATE_EVERY = 20  # chunks
NUM_CHUNKS_NONORM = 1  # chunks trained before the output layer's normalisation is switched on
AUGMENTATION = realtime_augmentation.DEFAULT_AUGMENTATION
PREPROCESSING = None  # or "centre", "centre_rescale", "centre_rescale_gen1" (needs extract_pysex_params.py)
SEED = 0


def build_model():
    return convnet.GalaxyConvNet(filter_sizes=(6, 5, 3, 3), num_filters=(32, 64, 128, 128),
                                 num_dense=2, dense_units=4096, dense_activation="maxout")


if __name__ == "__main__":
    train.main(globals())
