"""Ensemble member: the best model (try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense.py) with the changes of
the original member of the same name. 256 filters in the top convolution instead of 128.
"""
from try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense import *  # noqa: F401,F403  (the recipe)
from galaxyzoo import convnet
from galaxyzoo import train


def build_model():
    return convnet.GalaxyConvNet(num_filters=(32, 64, 128, 256))


if __name__ == "__main__":
    train.main(globals())
