"""Evaluation: scores with scikit-learn, temperature calibration, and choosing the model to deploy."""
