"""Ensemble member: try_convnet_cc_multirotflip_3x69r45_shareddense.py with a per-part layer twice as wide, as in
the original member of the same name. Compared with the best model: before the merge, each of the 16 parts' 512
features goes through a maxout dense layer of 1024 linear units (512 outputs) whose weights all parts share, so
each image has 8192 merged features; after the merge there is a single maxout dense layer (2048 outputs).
"""
from try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense import *  # noqa: F401,F403  (the recipe)
from galaxyzoo import convnet
from galaxyzoo import train


def build_model():
    return convnet.GalaxyConvNet(part_dense_units=1024, num_dense=1)


if __name__ == "__main__":
    train.main(globals())
