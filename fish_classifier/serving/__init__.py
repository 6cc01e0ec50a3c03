"""Serving: the deploy bundle, the inference backends and the Predictor (no TensorFlow), and the LiteRT export.

Nothing here imports training or evaluation code. The Docker image holds this folder but `export.py`,
which needs TensorFlow (tests/test_import_graph.py keeps both true).
"""
