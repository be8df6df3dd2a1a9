"""Why the fastai recipe does not learn from random weights: its first stage (the head alone over a frozen ResNet-50,
Adam one-cycle, minibatches of 64, the centre 224 square squished to 112 px) run on the real sample's labelled
images from a randomly initialised backbone, with the member's former head (linear 37 at PyTorch's default start)
and the library's head, at the recipe's rate and lower ones. Prints per epoch the training RMSE and the share of
outputs that are exactly zero (answers the decision-tree layer's ReLU has cut off), and the validation RMSE beside
predicting the training mean and zeros.

    python bench/probe_random_backbone.py              # about 2 minutes on 2 cores

The images are preloaded without augmentation: a probe of the first stage's mechanics, not a training run.
"""
import argparse
import math

import numpy as np
import pandas as pd
import torch
from PIL import Image

import common
from galaxyzoo import backbones
from galaxyzoo import decision_tree
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import stages

NUM_TRAIN = 316  # the pipeline's split of the 351 labelled images: the first 90% train
OPTIMIZER = dict(name="adamw", betas=(0.9, 0.99), weight_decay=1e-4)  # try_resnet50_fastai.py's
FIRST_INPUT = (112, 224)  # its first stages' input: the centre 224 square at 112 px


def real_sample_views(sample):
    """(views (N, 1, 3, 112, 112) in [0, 1], labels (N, 37)) of the labelled images in GalaxyID order: the fastai
    recipe's first INPUT, made by the pipeline's own warp without augmentation."""
    table = pd.read_csv(sample / common.REAL_SAMPLE_LABELS).sort_values("GalaxyID")
    spec = ra.input_views(FIRST_INPUT)
    matrices = ra.view_matrices(np.eye(3), views=spec)
    views = [ra.warp_uint8(np.asarray(Image.open(sample / "images_train_rev1" / f"{galaxy_id}.jpg")), matrices,
                           spec.size) for galaxy_id in table["GalaxyID"]]
    return (torch.from_numpy(ra.to_float(np.stack(views))),
            torch.from_numpy(table[list(decision_tree.COLUMNS)].to_numpy(np.float32)))


def first_stage(views, labels, head, lr, epochs, batch_size=64):
    """The head-only one-cycle stage from a random backbone; prints its progress, returns validation RMSE."""
    torch.manual_seed(0)
    model = backbones.create_model("resnet50", dropout=0.1, head="linear" if head == "former" else head)
    if head == "former":
        model.head.out.reset_parameters()  # PyTorch's default start, as the former head had
    stage = stages.Stage(chunks=epochs, lr=lr, train="head", schedule="one_cycle")
    stages.enter(model, stage)
    optimizer = stages.make_optimizer(model, stage, OPTIMIZER)
    batches = NUM_TRAIN // batch_size
    model.train()
    for epoch in range(epochs):
        order, losses = torch.randperm(NUM_TRAIN), []
        for batch in range(batches):
            step = epoch * batches + batch
            stages.set_lr(optimizer, stages.lr_factor(stage, step, epochs * batches),
                          stages.momentum_at(stage, step, epochs * batches))
            chosen = order[batch * batch_size:(batch + 1) * batch_size]
            outputs = model(views[chosen])
            loss = torch.nn.functional.mse_loss(outputs, labels[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(f"  {head} head, lr {lr:g}, epoch {epoch + 1}: training RMSE {math.sqrt(np.mean(losses)):.4f}, "
              f"outputs exactly zero {(outputs == 0).float().mean().item():.0%}", flush=True)
    model.eval()
    with torch.no_grad():
        outputs = model(views[NUM_TRAIN:])
    rmse = torch.sqrt((outputs - labels[NUM_TRAIN:]).square().mean()).item()
    print(f"  validation RMSE {rmse:.4f}, outputs exactly zero {(outputs == 0).float().mean().item():.0%}", flush=True)
    return rmse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    sample = common.real_sample_or_exit()
    views, labels = real_sample_views(sample)
    mean = torch.sqrt((labels[NUM_TRAIN:] - labels[:NUM_TRAIN].mean(0)).square().mean()).item()
    zeros = torch.sqrt(labels[NUM_TRAIN:].square().mean()).item()
    print(f"{NUM_TRAIN} training, {len(labels) - NUM_TRAIN} validation images; validation RMSE of the training mean "
          f"{mean:.4f}, of predicting zeros {zeros:.4f}")
    for head, lr in (("former", 5e-2), ("fastai", 5e-2), ("former", 1e-3), ("fastai", 1e-3), ("fastai", 1e-4)):
        first_stage(views, labels, head, lr, args.epochs)


if __name__ == "__main__":
    main()
