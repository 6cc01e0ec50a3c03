"""serving/litert.py: the one Interpreter factory (a path or the model's bytes, the project's threads), and the
one-signature runner the benchmarks use."""

import numpy as np
import pytest

from fish_classifier.serving import litert


@pytest.fixture(scope="module")
def doubling_model(tmp_path_factory):
    """A tiny LiteRT model that doubles its (1, 4) float32 input, exported from Keras."""
    import keras

    inputs = keras.Input((4,), batch_size=1)
    model = keras.Model(inputs, keras.layers.Rescaling(2.0)(inputs))
    path = tmp_path_factory.mktemp("litert") / "double.tflite"
    model.export(str(path), format="litert", verbose=False)
    return path


def _run(interpreter, values):
    interpreter.allocate_tensors()
    [source], [target] = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(source["index"], np.asarray([values], dtype=np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(target["index"])[0].tolist()


def test_an_interpreter_from_a_path_or_from_bytes_runs_the_same_model(doubling_model):
    assert _run(litert.interpreter(doubling_model), [1, 2, 3, 4]) == [2, 4, 6, 8]
    assert _run(litert.interpreter(str(doubling_model), 1), [0.5, 0, -1, 8]) == [1, 0, -2, 16]
    assert _run(litert.interpreter(doubling_model.read_bytes()), [1, 1, 1, 1]) == [2, 2, 2, 2]


def test_the_thread_count_defaults_to_the_project_s(doubling_model, monkeypatch):
    seen = []
    from ai_edge_litert import interpreter as runtime

    real = runtime.Interpreter

    def recording(*args, **kwargs):
        seen.append(kwargs["num_threads"])
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime, "Interpreter", recording)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")  # what `fish-classifier repro --jobs` sets for each job
    litert.interpreter(doubling_model)
    litert.interpreter(doubling_model, 1)
    assert seen == [3, 1]


def test_a_file_litert_cannot_read_raises_its_own_error(tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flat buffer")
    with pytest.raises((ValueError, RuntimeError)):
        litert.interpreter(broken)


def test_a_signature_runner_maps_a_batch_to_the_outputs_by_name(doubling_model):
    run = litert.signature_runner(doubling_model.read_bytes(), 1)
    [(name, output)] = run([[1, 2, 3, 4]]).items()  # a list of ints: made float32 on the way in
    assert isinstance(name, str) and output.dtype == np.float32 and output.tolist() == [[2, 4, 6, 8]]
