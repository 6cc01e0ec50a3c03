"""How much memory the app's server takes while browsers upload large batches, and whether it gives it back.

Starts `streamlit run app/app.py` (a tiny test bundle trained in seconds, or --bundle) with MALLOC_ARENA_MAX=2
as the Docker image sets it (--arenas), identifies one small photo so that the model is loaded and has run once,
and reads the server's resident memory (RSS, its children included) every 0.1 s. Then, in headless Chromium,
one browser session uploads --files photos of --mb MiB each (PNGs of random noise, which do not compress) in
one batch and waits for the results; the browser closes and the server is given --settle seconds. Then
--sessions sessions do the same at once, each with photos of its own. Prints, per round, the
RSS before (baseline), the highest while it ran (peak) and after the sessions closed (settled), and what the
page said of the batch.

Usage (from the repo root; the full run writes --files x --mb MiB of photos per session under a temp folder):
    python bench/app_memory.py [--bundle models/deploy] [--files 60] [--mb 19] [--sessions 3] [--settle 30]
                               [--arenas 2] [--json bench/results/app_memory.json]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' support package: bundle and app helpers

from support.app_harness import CHROMIUM, headless_chromium, page_state, streamlit_process, upload  # noqa: E402

MB = 2**20  # MiB, for the photos' sizes (as server.maxUploadSize counts them) and the RSS figures
SAMPLE_EVERY_S = 0.1
PNG_WIDTH = 2560  # pixels; the height makes up the size asked for


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its children: psutil where installed, else /proc/<pid>/status."""
    try:
        import psutil
    except ImportError:
        return sum(_proc_rss(p) for p in [pid, *_proc_children(pid)])
    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0


def _proc_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _proc_children(pid: int) -> list[int]:
    children = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in path.read_text().split():
            children += [int(child), *_proc_children(int(child))]
    return children


class PeakSampler:
    """The highest RSS of `pid` seen, sampled every SAMPLE_EVERY_S in a thread of its own."""

    def __init__(self, pid: int):
        self.pid, self.peak = pid, rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def noise_png(path: Path, size_bytes: int, seed: int) -> Path:
    """A PNG of random noise `size_bytes` long give or take a few kB, written row by row with zlib level 0."""
    rng = np.random.default_rng(seed)
    height = (size_bytes - 200) // (3 * PNG_WIDTH + 1)
    rows = np.zeros((height, 3 * PNG_WIDTH + 1), dtype=np.uint8)  # filter byte 0, then the row's RGB
    rows[:, 1:] = rng.integers(0, 256, (height, 3 * PNG_WIDTH), dtype=np.uint8)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = PNG_WIDTH.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows.tobytes(), 0)) + chunk(b"IEND", b""))
    return path


def small_photo(path: Path) -> Path:
    from support.app_bundles import colour_photo, jpeg_bytes

    path.write_bytes(jpeg_bytes(colour_photo(0, 256)))
    return path


def photo_set(folder: Path, count: int, mb: float, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [noise_png(folder / f"noise-{seed}-{i:03d}.png", int(mb * MB), seed * 1000 + i) for i in range(count)]


# Settled: no script run, no upload in progress, a result or a message on the page, for STABLE_S seconds.
_UPLOADS = """
return {
  uploading: document.querySelectorAll('[data-testid="stFileChipIconSpinner"]').length,
  refusedChips: document.querySelectorAll('[data-testid="stFileChipIconError"]').length,
};
"""
STABLE_S = 3.0


def upload_batch(url: str, photos: list[Path], timeout: float) -> dict:
    """One browser session uploads `photos` at once and waits for the page to settle; what the page said."""
    with headless_chromium() as browser:
        browser.get(url)
        upload(browser, photos, timeout=timeout)
        deadline, stable_since, state = time.monotonic() + timeout, None, None
        while time.monotonic() < deadline:
            state = page_state(browser) | browser.execute_script(_UPLOADS)
            answered = state["headings"] or state["errors"]
            if answered and not state["running"] and not state["uploading"] and state["imagesLoaded"]:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= STABLE_S:
                    break
            else:
                stable_since = None
            time.sleep(0.2)
        else:
            raise TimeoutError(f"the page did not settle in {timeout:.0f} s:\n{state and state['text'][-2000:]}")
    return {
        "results": len(state["headings"]),
        "refused_chips": state["refusedChips"],
        "messages": [e for e in state["errors"] if "not accepted" in e or "photos chosen" in e],
    }


def measure_round(pid: int, url: str, batches: list[list[Path]], settle: float, timeout: float) -> dict:
    """Baseline, peak and settled RSS around `len(batches)` browser sessions uploading at once."""
    baseline = rss_bytes(pid)
    start = time.perf_counter()
    with PeakSampler(pid) as sampler, ThreadPoolExecutor(len(batches)) as pool:
        pages = list(pool.map(lambda batch: upload_batch(url, batch, timeout), batches))
        done = time.perf_counter() - start
        at_close = rss_bytes(pid)
        time.sleep(settle)
    return {
        "sessions": len(batches),
        "baseline_mib": round(baseline / MB),
        "peak_mib": round(sampler.peak / MB),
        "at_close_mib": round(at_close / MB),
        "settled_mib": round(rss_bytes(pid) / MB),
        "seconds": round(done, 1),
        "pages": pages,
    }


def warm_up(url: str, photo: Path, timeout: float) -> None:
    """Identify one small photo, so that the baseline holds the model and what its first run allocates."""
    with headless_chromium() as browser:
        browser.get(url)
        upload(browser, [photo], timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = page_state(browser)
            if state["headings"] and not state["running"] and state["imagesLoaded"]:
                return
            time.sleep(0.2)
        raise TimeoutError(f"no result for {photo.name} in {timeout:.0f} s:\n{page_state(browser)['text'][-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a deploy bundle (default: a tiny test bundle, trained here)")
    parser.add_argument("--files", type=int, default=60, help="photos per browser session")
    parser.add_argument("--mb", type=float, default=19, help="size of each photo, in MiB (as server.maxUploadSize)")
    parser.add_argument("--sessions", type=int, default=3, help="browser sessions at once, in the second round")
    parser.add_argument("--settle", type=float, default=30, help="seconds after the browsers close")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a round may take")
    parser.add_argument("--arenas", default="2", help="the server's MALLOC_ARENA_MAX (glibc heaps); '' for glibc's own")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.arenas:
        os.environ["MALLOC_ARENA_MAX"] = args.arenas  # the server inherits it
    else:
        os.environ.pop("MALLOC_ARENA_MAX", None)
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} not found: apt-get install chromium chromium-driver")

    with tempfile.TemporaryDirectory(prefix="app-memory-") as work:
        work = Path(work)
        bundle = args.bundle
        if bundle is None:
            from support.app_bundles import build_colour_bundle

            bundle = build_colour_bundle(work / "deploy")
        print(f"writing {args.files} x {args.mb:g} MiB noise PNGs for each of {1 + args.sessions} sessions...",
              flush=True)
        sets = [photo_set(work / f"photos-{k}", args.files, args.mb, seed=k) for k in range(1 + args.sessions)]
        with streamlit_process(bundle, work / "streamlit.log", timeout=300) as (url, server):
            warm_up(url, small_photo(work / "small.jpg"), args.timeout)
            time.sleep(args.settle)  # the warm-up session's own upload dropped, as the rounds' will be
            rounds = [measure_round(server.pid, url, sets[:1], args.settle, args.timeout),
                      measure_round(server.pid, url, sets[1:], args.settle, args.timeout)]
        log_tail = (work / "streamlit.log").read_text()[-1500:]

    report = {
        "files_per_session": args.files,
        "mib_per_file": args.mb,
        "bundle": str(args.bundle or "tiny colour test bundle"),
        "malloc_arena_max": args.arenas or "glibc default",
        "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}",
        "rounds": rounds,
    }
    print(f"\n{args.files} photos of {args.mb:g} MiB per browser session, MALLOC_ARENA_MAX={args.arenas or 'unset'} "
          "(RSS of the Streamlit server, MiB):")
    print(f"{'sessions':>8}  {'baseline':>8}  {'peak':>6}  {'at close':>8}  {'settled':>7}  {'results':>7}  "
          f"{'refused':>7}  {'seconds':>7}")
    for r in rounds:
        results = "+".join(str(p["results"]) for p in r["pages"])
        refused = "+".join(str(p["refused_chips"]) for p in r["pages"])
        print(f"{r['sessions']:>8}  {r['baseline_mib']:>8}  {r['peak_mib']:>6}  {r['at_close_mib']:>8}  "
              f"{r['settled_mib']:>7}  {results:>7}  {refused:>7}  {r['seconds']:>7}")
    for message in {m for r in rounds for p in r["pages"] for m in p["messages"]}:
        print(f"page: {message}")
    if not any(p["results"] for r in rounds for p in r["pages"]):
        print(f"no results at all; the server's log ends:\n{log_tail}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
