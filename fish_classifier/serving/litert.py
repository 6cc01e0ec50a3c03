"""The one place a LiteRT `Interpreter` is made: from a `.tflite` path or its bytes, with the project's CPU
thread count (`cpus.cpu_threads`). Serving, the frozen pass of training and the benchmarks all come here."""

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fish_classifier.cpus import cpu_threads


def interpreter(model: str | Path | bytes, num_threads: int | None = None):
    """An `ai_edge_litert.interpreter.Interpreter` for `model` (a file path, or the flat buffer itself), running
    on `num_threads` CPU threads (default `cpu_threads()`). LiteRT's own ValueError or RuntimeError for a file it
    cannot read is left to the caller, who knows what to tell the user."""
    from ai_edge_litert.interpreter import Interpreter  # imported when a model is run: it loads a native library

    threads = num_threads or cpu_threads()
    if isinstance(model, bytes):
        return Interpreter(model_content=model, num_threads=threads)
    return Interpreter(model_path=str(model), num_threads=threads)


def signature_runner(model: str | Path | bytes, num_threads: int | None = None) -> Callable[[np.ndarray], dict]:
    """`model`'s one signature as a function from a float32 batch (its one input, resized to the batch) to the
    outputs by name: how the benchmarks run a model with no bundle's checks around it."""
    made = interpreter(model, num_threads)
    [(key, signature)] = made.get_signature_list().items()
    runner = made.get_signature_runner(key)
    [name] = signature["inputs"]
    return lambda batch: runner(**{name: np.asarray(batch, dtype=np.float32)})
