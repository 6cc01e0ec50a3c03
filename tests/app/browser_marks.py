"""Marking an answer in Chromium (app/feedback.py's buttons and species lists), for the browser and Docker tests.

A photo's feedback widgets are keyed `feedback-<what>-<index>-<sha256[:16]>`: its place in the batch and its
bytes' hash, so that a test names them from the files it uploads. Nothing here is a test.
"""

import hashlib
from pathlib import Path

from support.app_harness import click, page_state

# The page's success notices ("Saved: ..."), in page order, read in one go as page_state does.
_SAVED = """return [...document.querySelectorAll('[data-testid="stAlertContentSuccess"]')].map(e => e.innerText.trim());"""


def feedback_widgets(driver) -> int:
    """How many feedback widgets (buttons and species lists) the page offers now."""
    return driver.execute_script("return document.querySelectorAll('[class*=\"st-key-feedback-\"]').length;")


def widget_key(what: str, index: int, photo: Path) -> str:
    """The key of `what` (right, wrong, not-fish, fish) under the `index`th photo of the batch, read from `photo`."""
    return f"feedback-{what}-{index}-{hashlib.sha256(Path(photo).read_bytes()).hexdigest()[:16]}"


def mark(driver, what: str, index: int, photo: Path, *, timeout: float = 60) -> None:
    """Click the button "Right" (`what` right), "Not a fish" or "Right, not a fish" (not-fish) under a photo."""
    click(driver, widget_key(what, index, photo), timeout=timeout)


def choose_species(driver, what: str, index: int, photo: Path, species: str, *, timeout: float = 60) -> None:
    """Pick `species` (a display name) from "Wrong: it is …" (`what` wrong) or "It is a fish: …" (fish)."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    key = widget_key(what, index, photo)
    ignored = (StaleElementReferenceException, ElementClickInterceptedException)

    def open_list(driver):
        boxes = driver.find_elements(By.CSS_SELECTOR, f".st-key-{key} input[role='combobox']")
        if boxes:
            boxes[0].click()
        return bool(driver.find_elements(By.CSS_SELECTOR, "[role='option']"))

    def pick(driver):
        options = [o for o in driver.find_elements(By.CSS_SELECTOR, "[role='option']") if o.text.strip() == species]
        if options:
            options[0].click()
        return bool(options)

    try:
        WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(open_list)
        WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(pick)
    except TimeoutException:
        raise AssertionError(f"could not choose {species!r} in {key!r}; page text:\n{page_state(driver)['text']}") from None


def wait_for_saved(driver, count: int, *, timeout: float = 60) -> list[str]:
    """The page's "Saved: ..." notices once there are `count` of them and the app has finished its run."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def saved(driver):
        notices = driver.execute_script(_SAVED)
        return notices if len(notices) >= count and not page_state(driver)["running"] else None

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(saved)
    except TimeoutException:
        state = page_state(driver)
        raise AssertionError(f"after {timeout:.0f} s, not {count} saved marks; warnings {state['warnings']}, "
                             f"page text:\n{state['text']}") from None
