"""Open an HTML file in headless Chromium (Debian's chromium and chromium-driver packages, through selenium) and say
what a reader would see go wrong: console errors, images that did not load, resources fetched from anywhere but the
file system. Also takes the README's screenshot of a report:

    python tests/browser.py demo_run/report/index.html doc/report_screenshot.png
"""
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"
WINDOW = (1280, 1000)


def missing_browser():
    """Why no browser can be driven here (a sentence), or None when chromium, chromedriver and selenium are there."""
    if not any(shutil.which(name) for name in CHROMIUM):
        return "no chromium on this machine (Debian: apt-get install chromium chromium-driver)"
    if shutil.which(CHROMEDRIVER) is None:
        return "no chromedriver on this machine (Debian: apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -r requirements.txt)"
    return None


@dataclass
class PageCheck:
    console_errors: list  # messages of the browser's console at level SEVERE (script errors, failed loads)
    broken_images: list  # src of each <img> not loaded (not complete, or no pixels)
    image_count: int
    outside_resources: list  # resources the page fetched from anything but file://


def open_page(page, screenshot=None, window=WINDOW):
    """Load the file `page` in headless Chromium and check it (PageCheck); with `screenshot`, save the window's view
    of the page's top as a PNG there."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(name) for name in CHROMIUM if shutil.which(name))
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={window[0]},{window[1]}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(60)
        driver.get(Path(page).resolve().as_uri())
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
        broken = driver.execute_script("return Array.from(document.images)"
                                       ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        count = driver.execute_script("return document.images.length")
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
        errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        if screenshot is not None:
            driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    return PageCheck(errors, broken, count, [url for url in resources if not url.startswith("file:")])


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: python tests/browser.py PAGE.html SCREENSHOT.png")
    problem = missing_browser()
    if problem:
        sys.exit(f"error: {problem}")
    check = open_page(argv[0], argv[1])
    print(f"{check.image_count} images, {len(check.broken_images)} not loaded, {len(check.console_errors)} console "
          f"errors, {len(check.outside_resources)} resources from outside the file system; wrote {argv[1]}")
    return 1 if check.broken_images or check.console_errors or check.outside_resources else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
