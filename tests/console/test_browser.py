"""The console in a real browser: Debian's chromium driven by Selenium (its chromedriver; nothing
downloads a browser). Log in (a wrong password is refused), N nodes on the map and in the table, a
node whose link is cut goes late, then buffering when it reports its backlog, then live after the
backfill; an open alert shows on the overview (panel, row and map marker) and the admin acknowledges
it from the node page; open a node, its charts have drawn pixels; switch range and language.

Screenshots of the overview and a node page (an emulated storm) go to $STREETNODE_SCREENSHOTS (a
directory, e.g. docs/) when set, else to the test's temporary directory."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from central.accounts import Accounts
from central.alerts.config import parse_alerts
from central.alerts.db import AlertsDb
from central.alerts.engine import AlertEngine
from central.console.config import ConsoleConfig
from central.server import serve_in_thread
from central.store import open_store
from tests.central.helpers import KEY, now_ms
from tests.console.nodes import ago, health_of, upload
from tests.console.storm import STORM_NODES, store_storm, storm_health

PASSWORD = "correct horse battery staple"
CUT = "pole-cut"
FLOODED = "hk-0042"
FLOOD_RULE = {"alerts": {"rules": [{"name": "flood", "kind": "threshold", "channel": "*.depth_cm",
                                    "above": 20.0, "nodes": [FLOODED]}]}}


def browser_or_skip():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        reason = ("chromium and chromedriver not installed (apt-get install chromium chromium-driver; "
                  "deploy/ci-deps.sh does when run as root)")
        print(f"SKIP console browser test: {reason}")
        pytest.skip(reason)
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--lang=en-GB", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-GB,en"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def wait_for(driver, condition, timeout=30.0, what="condition"):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=[StaleElementReferenceException])
    return wait.until(lambda d: condition(d), message=f"waited {timeout:g} s for {what}")


def text_of(driver, selector):
    """The text of the first element matching ``selector``, read in one script: the overview's
    table is rebuilt every poll, so an element found a moment earlier can be gone."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); "
                                 "return e ? e.textContent : null;", selector)


def click(driver, selector):
    driver.execute_script("document.querySelector(arguments[0]).click();", selector)


def count_of(driver, selector):
    return driver.execute_script("return document.querySelectorAll(arguments[0]).length;", selector)


def row_state(driver, node):
    return driver.execute_script("const e = document.querySelector(arguments[0]); "
                                 "return e ? e.dataset.state : null;", f'#nodes tbody tr[data-node="{node}"]')


class Heartbeat:
    """The storm nodes keep uploading (a reading every second each) while the test runs."""

    def __init__(self, url: str) -> None:
        self.url, self.stop_flag = url, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.seq = 10_000_000
        self.also: list[str] = []  # more nodes to keep live (the cut node, once it caught up)

    def run(self) -> None:
        while not self.stop_flag.wait(1.0):
            for node, *_rest in STORM_NODES:
                upload(self.url, node, [("node.cpu_temp_c", 48.0, ago(0.5))], first_seq=self.seq,
                       health=storm_health(node, oldest_reading_age_s=1.0))
            for node in list(self.also):
                upload(self.url, node, [("flood.depth_cm", 3.0, ago(0.5))], first_seq=self.seq,
                       health=health_of(node, oldest_reading_age_s=1.0))
            self.seq += 1

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=10)


@pytest.fixture
def console(tmp_path):
    driver = browser_or_skip()
    store = open_store(f"sqlite:///{tmp_path / 'central.db'}")
    store_storm(store, now_ms())
    store.add_node(CUT, KEY, now_ms())
    Accounts(store).add_user("operator", "admin", PASSWORD)  # admin: acknowledges an alert
    config = ConsoleConfig(late_after_s=6, silent_after_s=600, buffering_age_s=30, poll_s=1)
    engine = AlertEngine(parse_alerts(FLOOD_RULE), AlertsDb.for_store(store), list_nodes=store.list_nodes)
    url, stop = serve_in_thread(store, console=config, alerts=engine)
    heartbeat = Heartbeat(url)
    heartbeat.thread.start()
    try:
        yield driver, url, heartbeat
    finally:
        heartbeat.stop()
        driver.quit()
        stop()
        store.close()


def screenshot(driver, tmp_path: Path, name: str, height: int) -> None:
    target = Path(os.environ.get("STREETNODE_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1400, height)
    time.sleep(0.5)  # charts redraw at the new size
    driver.save_screenshot(str(target / name))
    driver.set_window_size(1400, 1000)
    assert (target / name).stat().st_size > 10_000


def drawn_pixels(driver) -> int:
    return driver.execute_script(
        "const c = document.querySelector('figure.chart canvas'); if (!c) return 0;"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) { if (d[i]) n++; } return n;")


def test_the_console_in_chromium(console, tmp_path):
    from selenium.webdriver.common.by import By

    driver, url, heartbeat = console
    upload(url, CUT, [("flood.depth_cm", 3.0, ago(1))], health=health_of(CUT, oldest_reading_age_s=1.0))

    # log in: a wrong password is refused, the right one opens the overview
    driver.get(url + "/console/")
    wait_for(driver, lambda d: "/console/login" in d.current_url, what="redirect to the login form")
    driver.find_element(By.ID, "user").send_keys("operator")
    driver.find_element(By.ID, "password").send_keys("not the password")
    driver.find_element(By.ID, "login-button").click()
    error = wait_for(driver, lambda d: d.find_elements(By.ID, "login-error"), what="login refused")
    assert "Wrong user name or password" in error[0].text and "/console/login" in driver.current_url
    driver.find_element(By.ID, "user").send_keys("operator")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-button").click()
    wait_for(driver, lambda d: d.current_url.rstrip("/").endswith("/console"), what="the overview")

    # every node on the map and in the table
    count = len(STORM_NODES) + 1
    wait_for(driver, lambda d: count_of(d, "#nodes tbody tr") == count, what="rows")
    placed = driver.execute_script("return [...document.querySelectorAll('#map g.marker')]"
                                   ".map((m) => m.dataset.node).sort();")
    assert placed == sorted([n[0] for n in STORM_NODES] + [CUT])
    flood = text_of(driver, '#nodes tr[data-node="hk-0042"] td.band')
    assert "cm" in flood and "severe" in flood  # ~42 cm: above 30
    # the water crosses the rule's 20 cm: an open alert in the panel, on the node's row and its marker
    upload(url, FLOODED, [("flood.depth_cm", 43.0, ago(0.5))], first_seq=20_000_000,
           health=storm_health(FLOODED, oldest_reading_age_s=1.0))
    panel_row = wait_for(driver, lambda d: d.find_elements(
        By.CSS_SELECTOR, f'#alerts tbody tr[data-node="{FLOODED}"][data-state="open"]'), what="the alert")
    assert "critical" in panel_row[0].text and "43 >= 20" in panel_row[0].text
    mark = wait_for(driver, lambda d: d.find_elements(
        By.CSS_SELECTOR, f'#nodes tr[data-node="{FLOODED}"] .alert-mark'), what="the row's alert marker")
    assert "1 alert" in mark[0].text
    assert driver.find_elements(By.CSS_SELECTOR, f'#map g.marker[data-node="{FLOODED}"] circle.alert-ring')
    screenshot(driver, tmp_path, "console-overview.png", 1150)

    # the cut node: late while nothing arrives, buffering when its backlog arrives, live when drained
    wait_for(driver, lambda d: row_state(d, CUT) == "late", timeout=30, what="late after the cut")
    backlog = [("flood.depth_cm", 3.0, ago(60 - i)) for i in range(50)]
    upload(url, CUT, backlog[:10], first_seq=1,
           health=health_of(CUT, backlog_readings=400, oldest_reading_age_s=60.0))
    wait_for(driver, lambda d: row_state(d, CUT) == "buffering", what="buffering during the backfill")
    upload(url, CUT, backlog[10:], first_seq=11,
           health=health_of(CUT, backlog_readings=2, oldest_reading_age_s=1.0))
    heartbeat.also.append(CUT)  # and it keeps uploading
    wait_for(driver, lambda d: row_state(d, CUT) == "live", what="live after the backfill")

    # open a node: its charts draw; switch the range, then the language
    click(driver, '#nodes tr[data-node="hk-0042"] a')
    wait_for(driver, lambda d: "/console/nodes/hk-0042" in d.current_url, what="the node page")
    wait_for(driver, lambda d: drawn_pixels(d) > 500, what="a chart with drawn pixels")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline rect.tl-buffered"),
             what="the timeline's buffered stretch")
    assert driver.find_elements(By.CSS_SELECTOR, "#timeline rect.tl-gap")
    wait_for(driver, lambda d: d.execute_script("return document.getElementById('node-state').dataset.state")
             == "live", what="the node page's state")
    screenshot(driver, tmp_path, "console-node.png", 2500)
    # the admin acknowledges the alert from the node page (a form with the CSRF token)
    ack = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#node-alerts button.ack"), what="ack")
    ack[0].click()
    acked_row = '#node-alerts tr[data-state="acknowledged"]'
    acked = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, acked_row), what="acknowledged")
    assert "operator" in acked[0].text and "/console/nodes/hk-0042" in driver.current_url
    driver.find_element(By.ID, "range-7d").click()
    wait_for(driver, lambda d: "range=7d" in d.current_url, what="the 7-day range")
    step = wait_for(driver, lambda d: d.execute_script(
        "const f = document.querySelector('figure.chart[data-step-ms]'); return f && f.dataset.stepMs;"),
        what="a 7-day chart")
    assert step == "900000"  # 7 d in <= 1,000 buckets
    assert drawn_pixels(driver) > 500
    driver.find_element(By.ID, "lang-vi").click()
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "vi", what="vi")
    assert "Trạm" in text_of(driver, "h1") and "range=7d" in driver.current_url
    wait_for(driver, lambda d: drawn_pixels(d) > 500, what="charts in Vietnamese")
    assert "Biểu đồ" in text_of(driver, "#charts-panel h2")
    driver.find_element(By.ID, "back").click()  # the overview in Vietnamese too
    wait_for(driver, lambda d: row_state(d, "hk-0042") == "live", what="the overview in Vietnamese")
    assert "Tổng quan" in text_of(driver, "h1")
    assert "trực tuyến" in text_of(driver, '#nodes tr[data-node="hk-0042"]')
    driver.save_screenshot(str(tmp_path / "console-overview-vi.png"))
