"""An ImageNet ResNet-50 at 224 px with sigmoid outputs, Adam with a warm-up and a cosine decay over 30 epochs.

    python try_resnet50_imagenet.py --weights hub      # or --weights FILE; --help for short runs

Writes analysis/final/<this file's name>.pt, its _learning_curve.png and predictions/final/<this file's name>.csv.gz.
"""
from galaxyzoo import backbones
from galaxyzoo import realtime_augmentation
from galaxyzoo import train

BATCH_SIZE = 64
CHUNK_SIZE = "epoch"
VALIDATE_EVERY = 1
NUM_CHUNKS_NONORM = 0
AUGMENTATION = dict(realtime_augmentation.DEFAULT_AUGMENTATION, zoom_range=(1 / 1.1, 1.1))
COLOUR_STD = 0.0
PREPROCESSING = None
SEED = 0
INPUT = (224, 224)
OPTIMIZER = dict(name="adam")
STAGES = [dict(chunks=30, lr=1e-4, schedule="cosine", warmup=0.03)]


def build_model():
    return backbones.create_model("resnet50", output="sigmoid")


if __name__ == "__main__":
    train.main(globals())
