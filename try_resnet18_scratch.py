"""A residual network trained from random weights: ResNet-18 (11.2 million parameters in its backbone) on the centre
224x224 pixels at 112 px, the 2014 members' augmentation, AdamW with one one-cycle schedule over 60 epochs, and the
decision-tree output layer.

    python try_resnet18_scratch.py                    # --help for short runs
    python predict_augmented_npy.py try_resnet18_scratch   # the 60 test-time transforms of the 2014 members

Why this size: a ResNet-50 from random weights reached 0.0757 at 224 px after 120 epochs; ResNet-18 is the network
the p4m group-convolution result (0.0748) was built on, and at 112 px it costs a seventh of a ResNet-50 at 224 per
image, which makes it a member a CPU can train at demo scale and a GPU in an hour or two at full scale.
Writes analysis/final/<this file's name>.pt, its _learning_curve.png and predictions/final/<this file's name>.csv.gz.
"""
from galaxyzoo import backbones
from galaxyzoo import realtime_augmentation
from galaxyzoo import train

BATCH_SIZE = 64
CHUNK_SIZE = "epoch"
VALIDATE_EVERY = 5
NUM_CHUNKS_NONORM = 0  # batch norm keeps the first outputs in range
AUGMENTATION = dict(realtime_augmentation.DEFAULT_AUGMENTATION)  # turns by any angle, zooms, shifts and flips
SEED = 0
INPUT = (112, 224)
OPTIMIZER = dict(name="adamw", weight_decay=5e-2)
STAGES = [dict(chunks=60, lr=2e-3, schedule="one_cycle")]


def build_model():
    return backbones.create_model("resnet18", dropout=0.1, pretrained=False)


if __name__ == "__main__":
    train.main(globals())
