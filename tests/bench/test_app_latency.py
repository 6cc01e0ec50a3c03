"""bench/app_latency.py and bench/serving_parity.py, tiny: both time warm single photos through the Predictor with
the one helper, here on a colour bundle (the browser cold start needs Chromium and is left to the bench itself)."""

from support.app_bundles import colour_photo, jpeg_bytes
from support.benches import load_bench

from fish_classifier.serving.predictor import Predictor

app_latency = load_bench("app_latency")
serving_parity = load_bench("serving_parity")


def test_warm_latency_is_timed_over_the_calls_asked_for(colour_bundle):
    figures = app_latency.warm_latency_ms(Predictor(colour_bundle), jpeg_bytes(colour_photo(0, 64, seed=1)),
                                          calls=5, warmup=1)
    assert figures["calls"] == 5
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] and figures["mean_ms"] > 0
    assert serving_parity.warm_latency_ms is app_latency.warm_latency_ms  # one way of timing serving


def test_the_bench_photo_is_a_given_file_or_the_sample(tmp_path):
    photo = tmp_path / "fish.jpg"
    photo.write_bytes(jpeg_bytes(colour_photo(1, 32, seed=2)))
    assert app_latency.bench_photo(photo) == ("fish.jpg", photo.read_bytes())
