"""The top-k column's one format, shared by `evaluate`'s predictions table and `fish-classifier predict`'s CSV.

A module of its own, so that the CLI writes it without loading the evaluation code (scikit-learn,
pandas, Matplotlib: over a second of start-up).
"""


def format_top_k(top_k) -> str:
    """`label:probability` pairs, most likely first, joined by '; ' (labels may hold spaces, never ';')."""
    return "; ".join(f"{label}:{probability:.4f}" for label, probability in top_k)
