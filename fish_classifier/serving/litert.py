"""The one place a LiteRT `Interpreter` is made: from a `.tflite` path or its bytes, with the project's CPU
thread count (`cpus.cpu_threads`). Serving, the frozen pass of training and the benchmarks all come here."""

from pathlib import Path

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
