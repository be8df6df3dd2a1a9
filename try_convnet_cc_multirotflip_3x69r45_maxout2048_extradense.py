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
OPTIMIZER = dict(name="nesterov", momentum=0.9)  # the original's form of Nesterov momentum, no weight decay
STAGES = [dict(chunks=1800, lr=0.04),  # learning rate 0.04 from chunk 0, 0.004 from 1800, 0.0004 from 2300;
          dict(chunks=500, lr=0.004, restart=False),  # the momentum carries over each change of rate
          dict(chunks=200, lr=0.0004, restart=False)]  # 2,500 chunks in all: 25 million images
CHUNK_SIZE = 10000  # freshly augmented images per chunk
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
