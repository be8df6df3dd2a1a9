"""Ensemble member: the best model (try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense.py) with the changes of
the original member of the same name. One maxout dense layer (4096 linear units, 2048 outputs) instead of two.
"""
from try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense import *  # noqa: F401,F403  (the recipe)
from galaxyzoo import convnet
from galaxyzoo import train


def build_model():
    return convnet.GalaxyConvNet(num_dense=1)


if __name__ == "__main__":
    train.main(globals())
