"""bench/feedback_load.py, tiny: both backends report nothing lost and nothing duplicated."""

import re
import subprocess
import sys

from support import REPO_ROOT


def test_the_load_benchmark_loses_and_duplicates_nothing_on_both_backends(postgres_server):
    result = subprocess.run(
        [sys.executable, "bench/feedback_load.py", "--records", "40", "--writers", "4", "--postgres-url", postgres_server],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = {m["backend"]: m for m in re.finditer(
        r"^(?P<backend>sqlite|postgresql): lost=(?P<lost>\d+) duplicated=(?P<duplicated>\d+) "
        r"\((?P<records>\d+) records, .* write latency p50 (?P<p50>[\d.]+) ms p95 (?P<p95>[\d.]+) ms$",
        result.stdout, flags=re.MULTILINE)}
    assert set(lines) == {"sqlite", "postgresql"}, result.stdout
    for line in lines.values():
        assert (line["lost"], line["duplicated"], line["records"]) == ("0", "0", "40")
        assert 0 < float(line["p50"]) <= float(line["p95"])
