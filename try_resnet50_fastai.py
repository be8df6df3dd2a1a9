"""The 2019 fastai recipe: an ImageNet ResNet-50 with that library's head (concat pooling, batch norm, a hidden layer
of 512, ps = 0.1) and the decision-tree output layer, trained in stages with progressive resizing (the centre
224x224 at 112 px, then at 224 px) and one-cycle learning rates and momenta.

    python try_resnet50_fastai.py --weights hub        # ImageNet weights from the Hugging Face hub
    python try_resnet50_fastai.py --weights FILE       # the same weights from a local file (see README)
    python try_resnet50_fastai.py --help               # options for short runs

A fine-tuning recipe: it refuses random weights (try_resnet18_scratch.py is the residual member for those).
Writes analysis/final/<this file's name>.pt (checkpoint, resumable), its _learning_curve.png, and
predictions/final/<this file's name>.csv.gz.
"""
from galaxyzoo import backbones
from galaxyzoo import train

BATCH_SIZE = 64
CHUNK_SIZE = "epoch"  # a chunk is one pass over the training images
VALIDATE_EVERY = 1
NUM_CHUNKS_NONORM = 0
AUGMENTATION = dict(zoom_range=(1.0, 1.05), rotation_range=(0, 360), translation_range=(0, 0), do_flip=True)
COLOUR_STD = 0.0  # no colour noise
PREPROCESSING = None
SEED = 0
INPUT = (224, 224)
_SMALL = (112, 224)  # the same square 2x down
OPTIMIZER = dict(name="adamw", betas=(0.9, 0.99), weight_decay=1e-4)  # decoupled decay on every parameter
# train="head": the backbone frozen but for its batch-norm layers; a number: one rate for all; slice(a, b): a to b
# geometrically over the three layer groups (stages.py)
STAGES = [
    dict(chunks=2, lr=5e-2, train="head", input=_SMALL, schedule="one_cycle"),
    dict(chunks=10, lr=1e-4, input=_SMALL, schedule="one_cycle"),
    dict(chunks=2, lr=1e-2, train="head", schedule="one_cycle"),
    *[dict(chunks=6, lr=1e-4, schedule="one_cycle")] * 3,
    dict(chunks=8, lr=2e-5, schedule="one_cycle"),
    dict(chunks=6, lr=slice(1e-6, 5e-6), schedule="one_cycle"),
]


def build_model():
    return backbones.create_model("resnet50", dropout=0.1, head="fastai")  # ps = 0.1


if __name__ == "__main__":
    train.main(globals())
