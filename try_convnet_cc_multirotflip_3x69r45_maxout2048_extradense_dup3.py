"""Ensemble member: the best model (try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense.py) with the changes of
the original member of the same name. Nothing but the seed: a repeated run of the same model and recipe (the
original's repeated runs differed only in their random draws).
"""
from try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense import *  # noqa: F401,F403  (the recipe)
from galaxyzoo import train

SEED = 3


if __name__ == "__main__":
    train.main(globals())
