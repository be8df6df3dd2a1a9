"""A network exactly invariant to quarter turns and flips (group convolutions over p4m, galaxyzoo/p4m.py), trained
from random weights: one 72x72 view of the centre 216x216 pixels (3x down, the scale of the 2014 members' views; 72
is a multiple of 8, which the network's three poolings need), AdamW with one one-cycle schedule over 30 epochs.

    python try_p4m_gcnn72.py             # --help for short runs
    python predict_augmented_npy.py try_p4m_gcnn72   # averages over the p4m transform set (turns between quarter
                                                     # turns, and zooms), which the network names as its own

Writes analysis/final/<this file's name>.pt, its _learning_curve.png and predictions/final/<this file's name>.csv.gz.
"""
from galaxyzoo import p4m
from galaxyzoo import realtime_augmentation
from galaxyzoo import train

BATCH_SIZE = 32  # a divisor of the demo's chunk of 992 images
CHUNK_SIZE = "epoch"
VALIDATE_EVERY = 1
NUM_CHUNKS_NONORM = 0  # batch norm keeps the first outputs in range: no chunk without the output normalisation
# The original's augmentation: its turns by any angle and its zooms teach what the built-in symmetry does not.
AUGMENTATION = dict(realtime_augmentation.DEFAULT_AUGMENTATION)
SEED = 0
INPUT = (72, 216)
OPTIMIZER = dict(name="adamw", weight_decay=1e-2)
STAGES = [dict(chunks=30, lr=3e-3, schedule="one_cycle")]


def build_model():
    return p4m.P4MNet(widths=(8, 16, 32, 32), dense_units=256, dropout=0.5)


if __name__ == "__main__":
    train.main(globals())
