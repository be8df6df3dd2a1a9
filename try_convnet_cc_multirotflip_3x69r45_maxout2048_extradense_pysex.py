"""Ensemble member: the best model (try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense.py) with the changes of
the original member of the same name. The input is centred on the galaxy and rescaled (Petrosian radius x a -> 160 px,
zoom clamped to [1/1.5, 1.5]) using the second-generation source-extraction parameters (step 3,
extract_pysex_params.py).
"""
from try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense import *  # noqa: F401,F403  (the recipe)
from galaxyzoo import train

PREPROCESSING = "centre_rescale"


if __name__ == "__main__":
    train.main(globals())
