"""A training run's learning curve: train RMSE per chunk and validation RMSE where measured, drawn to a PNG."""
import matplotlib
import numpy as np

from galaxyzoo import files, paths

matplotlib.use("Agg")  # the learning curve is drawn to a file, never to a screen
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


def path(model_name):
    """analysis/final/<model_name>_learning_curve.png."""
    return paths.analysis_dir() / f"{model_name}_learning_curve.png"


def save(path, losses_train, losses_valid, mean_baseline):
    """Train RMSE per chunk, validation RMSE where measured, and the training-mean baseline, as a PNG."""
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(np.arange(1, len(losses_train) + 1), losses_train, label="train RMSE (dropout on)", lw=1)
    if losses_valid:
        chunks, values = zip(*losses_valid)
        ax.plot(chunks, values, "o-", label="validation RMSE", ms=3)
    ax.axhline(mean_baseline, color="grey", ls="--", label=f"predict the training mean ({mean_baseline:.4f})")
    ax.set_xlabel("chunks trained")
    ax.set_ylabel("RMSE")
    ax.set_title(path.stem)
    ax.grid(alpha=0.3)
    ax.legend()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
