"""The `fish-classifier` command line: `predict` (main.py, its CSV in predictions_csv.py), `repro`
(concurrent_repro.py) and `feedback` (feedback.py)."""
