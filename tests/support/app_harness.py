"""Running the app for real: `streamlit run` on a free localhost port, and headless Chromium to drive it.

Shared by tests/app/test_app_browser.py, bench/app_latency.py and bench/app_memory.py. Chromium and its
driver are Debian's (`apt-get install chromium chromium-driver`); Selenium is
pointed at them and never downloads a browser or driver of its own.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from support import REPO_ROOT

APP = REPO_ROOT / "app" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO_ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def streamlit_server(bundle_dir, log_path, *, timeout: float = 120) -> Iterator[str]:
    """`streamlit run app/app.py` serving `bundle_dir`; yields its URL once healthy, always stops it."""
    with streamlit_process(bundle_dir, log_path, timeout=timeout) as (url, _):
        yield url


@contextmanager
def streamlit_process(bundle_dir, log_path, *, timeout: float = 120) -> Iterator[tuple[str, subprocess.Popen]]:
    """As `streamlit_server`, yielding the server's process too (bench/app_memory.py reads its memory)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
    ]  # fmt: skip
    env = {**os.environ, "FISH_BUNDLE": str(bundle_dir)}
    with open(log_path, "wb") as log:
        # From the repo root, so that .streamlit/config.toml applies.
        server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_healthy(url, server, timeout, Path(log_path))
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def is_healthy(url: str) -> bool:
    """Whether Streamlit at `url` answers its health endpoint."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_until_healthy(url: str, server: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}:\n{log_path.read_text()[-3000:]}")
        if is_healthy(url):
            return
        time.sleep(0.25)
    raise TimeoutError(f"streamlit not healthy at {url} after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


@contextmanager
def headless_chromium(width: int = 1400, height: int = 1200):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: CI and containers run as root, where Chromium's sandbox cannot start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def upload(driver, paths, *, timeout: float = 120) -> None:
    """Choose `paths` in the app's file uploader, all in one batch."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def choose(driver):
        inputs = driver.find_elements(By.CSS_SELECTOR, 'input[type="file"]')
        if inputs:
            inputs[0].send_keys("\n".join(str(Path(p).resolve()) for p in paths))
        return bool(inputs)

    # The page re-renders while the app starts, which can replace the input under our feet.
    try:
        WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(choose)
    except TimeoutException:
        raise AssertionError(
            f"no file uploader after {timeout:.0f} s; page text:\n{page_state(driver)['text']}"
        ) from None


def click(driver, key: str, *, timeout: float = 120) -> None:
    """Click the app's button with widget key `key` (Streamlit marks its element with the class st-key-<key>)."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def press(driver):
        buttons = driver.find_elements(By.CSS_SELECTOR, f".st-key-{key} button")
        if buttons:
            buttons[0].click()
        return bool(buttons)

    # As with the uploader: a re-render can replace or briefly cover the button.
    try:
        WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,
                                                           ElementClickInterceptedException)).until(press)
    except TimeoutException:
        raise AssertionError(f"no button {key!r} after {timeout:.0f} s; page text:\n{page_state(driver)['text']}") from None


UNKNOWN_HEADING = "Not a known fish"  # app/app.py's heading for a photo unlike every species

# One atomic look at the page: Streamlit re-renders often, so holding element handles goes stale.
_PAGE_STATE = """
const main = document.querySelector('[data-testid="stMain"]');
const texts = (selector, root) => [...(root || document).querySelectorAll(selector)].map(e => e.innerText.trim());
return {
  running: !!document.querySelector('[data-testid="stStatusWidget"]'),
  headings: main ? texts('h3', main) : [],
  captions: main ? texts('[data-testid="stImageCaption"]', main) : [],
  errors: texts('[data-testid="stAlertContentError"]'),
  warnings: texts('[data-testid="stAlertContentWarning"]'),
  charts: document.querySelectorAll('[data-testid="stVegaLiteChart"]').length,
  imagesLoaded: [...document.querySelectorAll('img')].every(image => image.complete && image.naturalWidth > 0),
  text: main ? main.innerText : '',
};
"""


def page_state(driver) -> dict:
    """What the app shows now: running?, result headings, image captions, error and warning texts, charts, images,
    main text."""
    return driver.execute_script(_PAGE_STATE)


# What markdown made of the page's texts: links, KaTeX math, emphasis and colour, and the tallest image drawn.
_MARKUP = """
const main = document.querySelector('[data-testid="stMain"]');
const all = selector => [...main.querySelectorAll(selector)];
return {
  links: all('a[href]').map(a => a.getAttribute('href')),
  katex: all('.katex').length,
  emphasis: all('em, strong, b').map(e => e.innerText),
  coloured: all('span[class*="colored"], span[style*="color"]').map(e => e.innerText),
  tallestImage: Math.max(0, ...all('img').map(image => image.getBoundingClientRect().height)),
};
"""


def markup_in_main(driver) -> dict:
    """Links (their href), KaTeX formulas, emphasised and coloured texts, and the tallest image, in the main area."""
    return driver.execute_script(_MARKUP)


def wait_for_results(driver, species: str, bad_file: str | None = None, *, photos: Sequence[str] = (),
                     timeout: float = 120) -> dict:
    """Wait until the app has finished a run showing `species` (and an error naming `bad_file`, and each of
    `photos`, file names, under its result); its page state.

    Settled means: no script run in progress, every result's chart drawn (Vega draws after the
    heading appears) and every image loaded, so that what the caller asserts and screenshots is final.
    The browser may draw a result's photo after the run has ended and the rest of the result is drawn
    (an image that is not on the page yet counts as loaded): a caller that asserts on photos names them.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(driver):
        state = page_state(driver)
        shown = species in state["headings"] and len(state["headings"]) >= len(photos)
        # As the browser shows a file name: a '"' as %22 (HTML's form rules).
        shown = shown and all(name.replace('"', "%22") in state["captions"] for name in photos)
        if bad_file is not None:
            shown = shown and any(bad_file in error for error in state["errors"])
        # Every result but an unknown photo's has a top-k chart.
        answers = [heading for heading in state["headings"] if heading != UNKNOWN_HEADING]
        drawn = state["charts"] >= len(answers) and state["imagesLoaded"]
        return state if shown and drawn and not state["running"] else None

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(settled)
    except TimeoutException:
        expected = (f"{species!r} result" + (f" and error for {bad_file!r}" if bad_file else "")
                    + (f" and results under {', '.join(map(repr, photos))}" if photos else ""))
        raise AssertionError(
            f"after {timeout:.0f} s the app shows no {expected}; page text:\n{page_state(driver)['text']}"
        ) from None


def save_full_page_screenshot(driver, path) -> Path:
    """Grow the window to the main area's full height first: Streamlit scrolls inside it, not the page."""
    height = driver.execute_script(
        'const main = document.querySelector(\'[data-testid="stMain"]\');'
        "return Math.max(main ? main.scrollHeight : 0, document.body.scrollHeight);"
    )
    driver.set_window_size(driver.get_window_size()["width"], min(int(height) + 120, 6000))
    time.sleep(0.5)  # let the charts re-lay out at the new size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
