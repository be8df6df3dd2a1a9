"""Ensemble member: the best model (try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense.py) with the changes of
the original member of the same name. Max-norm constraints on the two maxout dense layers: every 10 updates, each
unit's incoming weights are scaled down where their root-mean-square exceeds 0.4 (first layer) or 0.23 (second),
limits the original solution read off weight histograms.
"""
from try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense import *  # noqa: F401,F403  (the recipe)
from galaxyzoo import convnet
from galaxyzoo import train


def build_model():
    return convnet.GalaxyConvNet(max_norm=(0.4, 0.23))


if __name__ == "__main__":
    train.main(globals())
