"""DINOv2 ViT-B/14 with registers at 224 px (16 x 16 patches of the centre 224x224), decision-tree outputs,
AdamW at 1e-4 with a cosine decay over 15 epochs; the rest as try_resnet50_imagenet.py.

    python try_dinov2_vitb14.py --weights hub          # or --weights FILE; --help for short runs

Writes analysis/final/<this file's name>.pt, its _learning_curve.png and predictions/final/<this file's name>.csv.gz.
"""
from try_resnet50_imagenet import *  # noqa: F401,F403  (the recipe)
from galaxyzoo import backbones
from galaxyzoo import train

BATCH_SIZE = 32
OPTIMIZER = dict(name="adamw", weight_decay=0.05)
STAGES = [dict(chunks=15, lr=1e-4, schedule="cosine", warmup=0.05)]


def build_model():
    return backbones.create_model("dinov2_vitb14_reg", dropout=0.1)


if __name__ == "__main__":
    train.main(globals())
