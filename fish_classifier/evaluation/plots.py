"""The evaluation's figures as PNGs: confusion matrix, reliability diagram, the most confident mistakes, and the
unknown-photo detector's score histogram and trade-off."""

from pathlib import Path

import numpy as np
import pandas as pd

from fish_classifier.contact_sheet import draw_contact_sheet, pyplot, thumbnail
from fish_classifier.evaluation.metrics import most_confident_mistakes


def plot_confusion(matrix: np.ndarray, names: list[str], path: str | Path, title: str) -> None:
    plt = pyplot()
    size = max(6.0, 0.6 * len(names) + 2.0)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Actual")
    ax.set_title(title)
    # Dark text on light cells and light text on dark cells keeps every count readable.
    half = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", color="white" if count > half else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(curves: dict[str, pd.DataFrame], path: str | Path, title: str) -> None:
    """Reliability diagram: accuracy against confidence per bin, one line per curve, with the diagonal."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for name, table in curves.items():
        ax.plot(table["confidence"], table["accuracy"], marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Confidence")
    ax.set_ylabel("Accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_misclassified(paths, y_true, probabilities: np.ndarray, names: list[str], path: str | Path, title: str,
                       limit: int) -> None:
    """A gallery of the misclassified photos, the most confident mistakes first (at most `limit`), each
    captioned with its true class, the predicted class and the confidence in it; `names[i]` names class i."""
    paths, y_true = list(paths), np.asarray(y_true)
    predicted = probabilities.argmax(axis=1)
    wrong = int((predicted != y_true).sum())
    shown = most_confident_mistakes(y_true, probabilities, limit)
    photos = [
        (thumbnail(paths[i]),
         f"true: {names[y_true[i]]}\npredicted: {names[predicted[i]]}\nconfidence {probabilities[i].max():.1%}")
        for i in shown
    ]
    heading = f"{title}: {wrong} of {len(y_true)} photos misclassified"
    if wrong:
        heading += f", the {len(shown)} most confident shown" if wrong > len(shown) else ", most confident first"
    draw_contact_sheet(photos, path, heading, columns=6, empty_message="No misclassified photos")


def plot_unknown_scores(histogram: pd.DataFrame, threshold: float, path: str | Path, title: str) -> None:
    """Step histograms of the unknown score, one per group of photos (shares of the group), and the threshold."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for group in histogram.columns.drop("score"):
        ax.step(histogram["score"], histogram[group], where="mid", label=group)
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set_xlabel("Unknown-photo score (higher = less like the training fish)")
    ax.set_ylabel("Share of the group's photos")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_flag_tradeoff(tradeoff: pd.DataFrame, x: str, y: str, marked: tuple[float, float], path: str | Path,
                       title: str) -> None:
    """The share of `y` photos flagged against the share of `x` photos flagged as the threshold moves."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(tradeoff[x], tradeoff[y])
    ax.plot(*marked, marker="o", color="black", label="the bundle's threshold")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(f"{x} flagged")
    ax.set_ylabel(f"{y} flagged")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
