"""The machinery the pipeline's scripts share, one job per module.

Recipes and training: recipe (what a try file may say), stages (optimisers and schedules), train (the one training
loop), learning_curve, model_submission (a trained model's own test-set submission), device_chunks (minibatches on
the training device), checkpoints (checkpoint files, loading a trained model, its forward pass), precision,
distributed.
Networks: convnet (the 2014 network), backbones (pretrained ResNet-50 and DINOv2 with the decision-tree head),
p4m (group convolutions whose outputs are invariant to quarter turns and flips), decision_tree (the 37 outputs).
Input views: realtime_augmentation (transforms and warps on the CPU), torch_augmentation (the same on a torch
device), parallel (background workers), source_params and source_extraction (step 3's parameter files and
measurements), sextractor (the SExtractor program as step 3's optional backend).
Files and scripts: paths (where every file lives), records (what each derived file was made from), files (atomic
writes, free room, locks), runner (the options several scripts share, and how a script ends), errors (the errors a
user can cause), submission (the submission CSV and the score), synthetic_galaxies (the rendered dataset).

The data layer's reading functions are load_data.py, and the network's layers layers.py, in the project folder.
"""
