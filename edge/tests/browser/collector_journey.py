#!/usr/bin/env python3
"""A collector's session with the web app in headless Chromium, through the edge over HTTPS.

Run by edge/tests/browser.rs (with the venv of scripts/interop-tools.sh):

    collector_journey.py --base-url https://localhost:PORT --spki HASH --artifacts DIR [--quic]

Registers, sees an API error for a wrong password, logs in, sees a field error for a bad
price, creates a record with every field, checks the stats, finds the record by a
misspelled search, edits it, sees the stats change, deletes it, pages through a longer list,
logs out, and checks that no script error or CSP violation was logged. `--quic` forces
Chromium onto HTTP/3 for the origin. On failure a screenshot, the page source and the
browser console are saved into DIR. Prints one JSON line; exits 1 on failure.
"""

import argparse
import json
import os
import sys
import time
import traceback
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_SECONDS = 30
PASSWORD = "correct horse battery"
ARTIST = "Boards of Canada"
TITLE = "Music Has the Right to Children"
MISSPELLED = "bords of canda"
PAGE_SIZE = 20


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--spki", required=True, help="base64 SHA-256 of the leaf's SPKI")
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--quic", action="store_true", help="force HTTP/3 for the origin")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    return parser.parse_args()


def start_browser(args):
    origin = urllib.parse.urlsplit(args.base_url)
    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    flags = [
        "--headless=new",
        # Tests run as root, where Chromium's sandbox cannot start.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # The SPKI list is honoured only with an explicit profile directory.
        "--user-data-dir=" + os.path.join(args.artifacts, "profile"),
        # Trust exactly the test edge's leaf key, nothing else.
        "--ignore-certificate-errors-spki-list=" + args.spki,
        # Test edges bind 127.0.0.1 only; Chromium would try ::1 for localhost first.
        "--host-resolver-rules=MAP localhost 127.0.0.1",
    ]
    if args.quic:
        flags += ["--enable-quic", "--origin-to-force-quic-on=" + origin.netloc]
    else:
        # Stay on TCP (h2) even though the edge advertises h3 in alt-svc.
        flags.append("--disable-quic")
    for flag in flags:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        executable_path=args.chromedriver,
        log_output=os.path.join(args.artifacts, "chromedriver.log"),
    )
    return webdriver.Chrome(options=options, service=service)


class Journey:
    def __init__(self, driver, base_url):
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.wait = WebDriverWait(driver, WAIT_SECONDS)
        self.steps = []
        self.email = "collector-%d-%d@example.com" % (os.getpid(), time.time_ns())

    # --- helpers ---

    def step(self, name):
        self.steps.append(name)
        print("step:", name, file=sys.stderr, flush=True)

    def by_id(self, element_id):
        return self.driver.find_element(By.ID, element_id)

    def until(self, what, condition):
        try:
            return self.wait.until(lambda driver: condition())
        except TimeoutException:
            raise AssertionError("timed out waiting for: " + what) from None

    def visible(self, element_id):
        return self.until(element_id + " visible", lambda: self.by_id(element_id).is_displayed())

    def view(self, name):
        self.visible("view-" + name)

    def text_of(self, element_id):
        return self.by_id(element_id).text

    def text_contains(self, element_id, text):
        self.until(
            "%s to contain %r (has %r)" % (element_id, text, self.text_of(element_id)),
            lambda: self.by_id(element_id).is_displayed() and text in self.text_of(element_id),
        )

    def text_is(self, element_id, text):
        self.until(
            "%s to read %r" % (element_id, text),
            lambda: self.text_of(element_id).strip() == text,
        )

    def type(self, element_id, text):
        element = self.by_id(element_id)
        element.clear()
        element.send_keys(text)

    def set_value(self, element_id, value):
        # Date inputs take keystrokes in the locale's order; the value is what matters.
        self.driver.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
            self.by_id(element_id),
            value,
        )

    def click(self, element_id):
        self.until(element_id + " clickable", lambda: self.by_id(element_id).is_enabled())
        self.by_id(element_id).click()

    def rows(self):
        return self.driver.find_elements(By.CSS_SELECTOR, "#records-body tr")

    def open_first_row(self):
        """Clicks the first row's link; a list re-rendered under the click is retried."""

        def attempt():
            try:
                self.rows()[0].find_element(By.TAG_NAME, "a").click()
                return True
            except (StaleElementReferenceException, IndexError):
                return False

        self.until("the first record row opens", attempt)

    def rows_are(self, count):
        self.until(
            "%d record rows (have %d)" % (count, len(self.rows())),
            lambda: len(self.rows()) == count,
        )

    def count_rows(self, table_id):
        cells = self.driver.find_elements(By.CSS_SELECTOR, "#%s tr[data-key]" % table_id)
        return {
            cell.get_attribute("data-key"): cell.find_element(By.CSS_SELECTOR, "td.num").text
            for cell in cells
        }

    def counts_are(self, table_id, expected):
        self.until(
            "%s to show %r (has %r)" % (table_id, expected, self.count_rows(table_id)),
            lambda: self.count_rows(table_id) == expected,
        )

    def error_is(self, code):
        self.text_contains("error-code", "(" + code + ")")

    def notice_contains(self, text):
        self.text_contains("notice", text)

    # --- the journey ---

    def run(self):
        driver = self.driver

        self.step("open the app: the login page")
        driver.get(self.base_url + "/")
        self.view("login")
        assert "Record Platform" in driver.title, driver.title

        self.step("register")
        self.click("to-register")
        self.view("register")
        self.type("register-email", self.email)
        self.type("register-password", PASSWORD)
        self.click("register-submit")
        self.view("login")
        self.notice_contains("Account created for " + self.email)

        self.step("a wrong password shows the API's error")
        self.type("login-password", "not the password")
        self.click("login-submit")
        self.error_is("invalid_credentials")
        self.view("login")

        self.step("log in")
        self.type("login-password", PASSWORD)
        self.click("login-submit")
        self.view("records")
        self.text_is("account-email", self.email)
        self.visible("records-empty")

        self.step("a bad price shows the field's error")
        self.click("nav-new")
        self.view("editor")
        self.type("f-artist", ARTIST)
        self.type("f-name", TITLE)
        self.type("f-format", "LP")
        self.type("f-pricePaid", "12,50")
        self.click("record-save")
        self.error_is("invalid_price")
        self.until(
            "price field marked invalid",
            lambda: self.by_id("f-pricePaid").get_attribute("aria-invalid") == "true",
        )

        self.step("create a record with every field")
        self.type("f-pricePaid", "24.99")
        self.type("f-label", "Warp Records")
        self.type("f-catalogNumber", "WARPCD55")
        Select(self.by_id("f-recordGrade")).select_by_value("NM")
        Select(self.by_id("f-sleeveGrade")).select_by_value("VG+")
        self.set_value("f-purchasedAt", "2024-03-09")
        self.click("f-hasInsert")
        self.click("f-hasObiStrip")
        self.type("f-notes", "First pressing.\nSlight ring wear.")
        self.click("record-save")
        self.view("records")
        self.notice_contains("Saved “%s – %s”" % (ARTIST, TITLE))
        self.rows_are(1)
        row = self.rows()[0].text
        assert ARTIST in row and "24.99" in row and "NM / VG+" in row, row

        self.step("the stats count it")
        self.click("nav-stats")
        self.view("stats")
        self.text_is("stat-total", "1")
        self.text_is("stat-spent", "24.99")
        self.counts_are("stat-formats", {"LP": "1"})
        self.counts_are("stat-record-grades", {"NM": "1"})
        self.counts_are("stat-sleeve-grades", {"VG+": "1"})

        self.step("a misspelled search finds it")
        self.click("nav-records")
        self.view("records")
        self.by_id("search").send_keys(MISSPELLED)
        self.text_contains("records-summary", "1 match for “%s”" % MISSPELLED)
        self.rows_are(1)
        assert ARTIST in self.rows()[0].text, self.rows()[0].text

        self.step("edit it: every field came back")
        self.open_first_row()
        self.view("editor")
        self.until("the record loaded", lambda: self.by_id("f-artist").get_attribute("value") == ARTIST)
        fields = {
            name: self.by_id("f-" + name).get_attribute("value")
            for name in ["name", "format", "label", "catalogNumber", "recordGrade",
                         "sleeveGrade", "purchasedAt", "pricePaid", "notes"]
        }
        assert fields == {
            "name": TITLE, "format": "LP", "label": "Warp Records",
            "catalogNumber": "WARPCD55", "recordGrade": "NM", "sleeveGrade": "VG+",
            "purchasedAt": "2024-03-09", "pricePaid": "24.99",
            "notes": "First pressing.\nSlight ring wear.",
        }, fields
        flags = {
            name: self.by_id("f-" + name).is_selected()
            for name in ["hasInsert", "hasBooklet", "hasObiStrip", "hasFactorySleeve", "isPromo"]
        }
        assert flags == {
            "hasInsert": True, "hasBooklet": False, "hasObiStrip": True,
            "hasFactorySleeve": False, "isPromo": False,
        }, flags
        self.type("f-pricePaid", "30")
        Select(self.by_id("f-recordGrade")).select_by_value("VG+")
        self.click("f-isPromo")
        self.click("record-save")
        self.view("records")
        self.notice_contains("Saved")
        self.rows_are(1)
        self.until("the edited price in the list", lambda: "30.00" in self.rows()[0].text)

        self.step("the stats change")
        self.click("nav-stats")
        self.view("stats")
        self.text_is("stat-spent", "30.00")
        self.counts_are("stat-record-grades", {"VG+": "1"})

        self.step("delete it")
        self.click("nav-records")
        self.view("records")
        self.by_id("search").send_keys(Keys.CONTROL, "a")
        self.by_id("search").send_keys(ARTIST)
        # The list shown before the search has one row too: wait for the search's own.
        self.text_contains("records-summary", "1 match for “%s”" % ARTIST)
        self.rows_are(1)
        self.open_first_row()
        self.view("editor")
        self.until("the record loaded", lambda: self.by_id("f-artist").get_attribute("value") == ARTIST)
        self.click("record-delete")
        self.click("record-delete-confirm")
        self.view("records")
        self.notice_contains("Deleted")
        self.click("nav-stats")
        self.text_is("stat-total", "0")
        self.text_is("stat-spent", "0.00")

        self.step("page through a longer list")
        self.seed_records(PAGE_SIZE + 1)
        self.click("nav-records")
        self.view("records")
        # Emptying the search box as a person does (keystrokes) brings the list back.
        self.by_id("search").send_keys(Keys.CONTROL, "a")
        self.by_id("search").send_keys(Keys.BACKSPACE)
        self.rows_are(PAGE_SIZE)
        assert self.by_id("page-next").is_enabled()
        self.click("page-next")
        self.rows_are(1)
        self.text_is("page-number", "Page 2")
        self.click("page-prev")
        self.rows_are(PAGE_SIZE)

        self.step("log out")
        self.click("logout")
        self.view("login")
        self.notice_contains("Logged out")
        assert not self.by_id("nav").is_displayed()

        self.step("the token was only in memory: a reload asks to log in")
        driver.get(self.base_url + "/stats")
        self.view("login")

    def seed_records(self, count):
        """Creates `count` records through the page's origin (the same protocol the app
        uses), logged in as the same collector in a session of its own."""
        result = self.driver.execute_async_script(
            """
            const [email, password, count, done] = arguments;
            (async () => {
              const json = {'content-type': 'application/json'};
              const login = await fetch('/api/auth/login', {method: 'POST', headers: json,
                body: JSON.stringify({email, password})});
              const {token} = await login.json();
              const headers = {...json, authorization: 'Bearer ' + token};
              for (let i = 0; i < count; i++) {
                const r = await fetch('/api/records', {method: 'POST', headers,
                  body: JSON.stringify({artist: 'Seeded Artist ' + i, name: 'Album ' + i, format: 'CD'})});
                if (r.status !== 201) return done('create ' + i + ': ' + r.status);
              }
              done('ok');
            })().catch((err) => done(String(err)));
            """,
            self.email,
            PASSWORD,
            count,
        )
        assert result == "ok", result


def console_problems(entries):
    """Script errors and CSP/Trusted Types violations. Failed requests the journey asks for
    (401 wrong password, 422 bad price) are console errors too, and expected."""
    problems = []
    for entry in entries:
        message = entry.get("message", "")
        if entry.get("level") != "SEVERE":
            continue
        if "Failed to load resource: the server responded with a status of 4" in message:
            continue
        problems.append(message)
    return problems


def save_artifacts(driver, directory, console):
    saved = []

    def write_text(text):
        return lambda path: open(path, "w").write(text())

    for name, write in [
        ("screenshot.png", driver.save_screenshot),
        ("page.html", write_text(lambda: driver.page_source)),
        ("console.json", write_text(lambda: json.dumps(console + driver.get_log("browser"), indent=1))),
    ]:
        path = os.path.join(directory, name)
        try:
            write(path)
            saved.append(path)
        except Exception as err:  # the browser may be gone; keep what can be kept
            print("could not save %s: %s" % (path, err), file=sys.stderr)
    return saved


def main():
    args = parse_args()
    os.makedirs(args.artifacts, exist_ok=True)
    driver = start_browser(args)
    journey = Journey(driver, args.base_url)
    # Reading the log empties it: kept for the artifacts.
    console = []
    try:
        journey.run()
        console = driver.get_log("browser")
        problems = console_problems(console)
        assert not problems, "browser console errors: %r" % problems
    except Exception as err:
        traceback.print_exc()
        saved = save_artifacts(driver, args.artifacts, console)
        print(json.dumps({
            "ok": False,
            "failed_step": journey.steps[-1] if journey.steps else None,
            "error": str(err),
            "url": driver.current_url,
            "artifacts": saved,
        }))
        driver.quit()
        return 1
    print(json.dumps({
        "ok": True,
        "steps": journey.steps,
        "browser": driver.capabilities.get("browserVersion"),
    }))
    driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
