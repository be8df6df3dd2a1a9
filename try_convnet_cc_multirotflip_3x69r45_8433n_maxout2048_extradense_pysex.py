"""Ensemble member: the best model (try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense.py) with the changes of
the original member of the same name. Filter sizes 8/4/3/3 instead of 6/5/3/3 (each part still ends as 128x2x2 = 512
features). The input is centred on the galaxy and rescaled (Petrosian radius x a -> 160 px, zoom clamped to [1/1.5,
1.5]) using the second-generation source-extraction parameters (step 3, extract_pysex_params.py).
"""
from try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense import *  # noqa: F401,F403  (the recipe)
from galaxyzoo import convnet
from galaxyzoo import train

PREPROCESSING = "centre_rescale"


def build_model():
    return convnet.GalaxyConvNet(filter_sizes=(8, 4, 3, 3))


if __name__ == "__main__":
    train.main(globals())
