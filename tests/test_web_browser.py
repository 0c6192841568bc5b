"""``plugstore web`` in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) clicks through every page of a console that
``plugstore web`` serves from its own process, on SQLite and PostgreSQL.

The tests write to the store from this process while the console runs in another, so a
"concurrent write from another process" is a real one.  Every page visited is checked
for the XSS payloads (no dialog, no event-handler attribute, the text shown as typed)
and for the URL's password.  With ``PLUGSTORE_WEB_SCREENSHOTS=DIR`` the main pages are
also saved as PNGs there (docs/images holds the ones docs/web.md shows).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import plugstore
from servers import CHROMEDRIVER, CHROMIUM, require_browser, require_server

pytest.importorskip("starlette", reason="the web extra is not installed")

XSS_KEY = "<script>alert('k')</script>"
XSS_FIELD = '" onmouseover="alert(1)'
XSS_VALUE = "<img src=x onerror=alert(2)>"
PASSWORD = "web-s3cret"
CRUMB = "\u203a"  # between a scope path's levels in a listing
PG = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/test"
SCREENSHOTS = os.environ.get("PLUGSTORE_WEB_SCREENSHOTS")


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'web.db'}"
        return
    require_server("PostgreSQL", "127.0.0.1", 5432)
    pg = f"{PG}?table=webb_{uuid.uuid4().hex[:10]}"
    yield pg
    with plugstore.open(pg) as store:
        store.backend.drop()  # type: ignore[attr-defined]


@pytest.fixture
def store(url: str) -> Iterator[plugstore.Store]:
    """The data the console shows, written by this process (not the console's)."""
    with plugstore.open(url) as store:
        karma = store.namespace("karma")
        karma.update({f"user{i:03d}": i for i in range(250)})
        karma[XSS_KEY] = {XSS_FIELD: XSS_VALUE, "when": datetime.date(2026, 1, 2)}
        store.namespace("notes")["a"] = "hello"
        levels = store.namespace("levels")
        levels.scope(guild=1, member=42)["xp"] = 120
        levels.scope(guild=1, member=7)["xp"] = 3
        levels.scope(user=42)["nick"] = XSS_VALUE
        yield store


@contextmanager
def serving(url: str, *options: str) -> Iterator[str]:
    """Run ``plugstore web URL --port 0 OPTIONS`` in its own process; yield the tokened
    address it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "plugstore.cli", "web", url, "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "plugstore web on URL; open:"
        address = proc.stdout.readline().strip()
        assert address.startswith("http://127.0.0.1:"), address + proc.stderr.read()
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Console:
    """A browser on one running console, with the checks every page gets."""

    def __init__(self, driver: Any, address: str) -> None:
        self.driver = driver
        self.address = address
        self.base = address.split("/?", 1)[0]

    def login(self) -> None:
        self.driver.get(self.address)
        assert "token=" not in self.driver.current_url  # the token left the address bar
        self.check()

    def visit(self, path: str) -> None:
        self.driver.get(self.base + path)
        self.check()

    def click(self, css: str, text: str | None = None) -> None:
        """Click the element at ``css`` (whose text is ``text``, if given) and wait for
        the page it leads to."""
        _click_and_wait(self, self.find(css, text).click)

    def find(self, css: str, text: str | None = None) -> Any:
        found = self.driver.find_elements("css selector", css)
        if text is not None:
            found = [element for element in found if element.text == text]
        assert found, f"no {css!r}{f' reading {text!r}' if text else ''} on {self.url}"
        return found[0]

    def texts(self, css: str) -> list[str]:
        return [element.text for element in self.driver.find_elements("css selector", css)]

    def type(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    @property
    def body(self) -> str:
        return str(self.find("body").text)

    def check(self) -> None:
        """No payload ran or became markup, and no password shows."""
        from selenium.common.exceptions import NoAlertPresentException

        try:
            alert = self.driver.switch_to.alert
        except NoAlertPresentException:
            pass
        else:
            text = alert.text
            alert.dismiss()
            pytest.fail(f"a script ran on {self.url}: alert({text!r})")
        handlers = self.driver.execute_script(
            "return [...document.querySelectorAll('*')].flatMap(e => [...e.attributes])"
            ".filter(a => a.name.startsWith('on')).map(a => a.name + '=' + a.value)"
        )
        assert handlers == [], f"event handlers in {self.url}: {handlers}"
        scripts = self.driver.execute_script("return document.scripts.length")
        assert scripts == 0, f"a <script> element in {self.url}"
        assert PASSWORD not in self.driver.page_source

    def shot(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(Path(SCREENSHOTS) / f"web-{name}.png"))


@pytest.fixture
def console(driver: Any, store: plugstore.Store, url: str) -> Iterator[Console]:
    driver.delete_all_cookies()
    with serving(url) as address:
        page = Console(driver, address)
        page.login()
        yield page


def key_page(console: Console, key: str) -> None:
    from urllib.parse import urlencode

    console.visit(f"/ns/karma/key?{urlencode({'k': key})}")


# -- access ---------------------------------------------------------------------------------


def test_without_the_token_the_browser_gets_401_and_no_data(
    driver: Any, store: plugstore.Store, url: str
) -> None:
    driver.delete_all_cookies()
    with serving(url) as address:
        console = Console(driver, address)
        for path in ("/", "/ns/karma", "/ns/karma/key?k=user001", "/?token=wrong"):
            console.visit(path)
            assert console.body.startswith("401 Unauthorized")
            assert "karma" not in console.body
            assert "user001" not in driver.page_source
            assert console.url == console.base + path  # not redirected to a login page
        console.login()
        assert "karma" in console.texts("table.bars a")
    # A new start makes a new token: the old cookie no longer opens anything.
    with serving(url) as address:
        console = Console(driver, address)
        console.visit("/")
        assert console.body.startswith("401 Unauthorized")


def test_two_consoles_on_one_host_keep_their_own_logins(
    driver: Any, store: plugstore.Store, url: str
) -> None:
    driver.delete_all_cookies()
    with serving(url) as first_address, serving(url, "--read-only") as second_address:
        first, second = Console(driver, first_address), Console(driver, second_address)
        first.login()
        second.login()
        first.visit("/ns/notes")
        assert "a" in first.texts(".keys a")
        assert first.texts(".badge") == []
        second.visit("/ns/notes")
        assert second.texts(".badge") == ["read-only"]


# -- reading --------------------------------------------------------------------------------


def test_browse_search_and_page_through_a_namespace(console: Console) -> None:
    rows = console.texts("table.bars tbody tr td:first-child")
    assert rows[:3] == ["karma", "levels", "notes"]  # most keys first
    console.click("table.bars a", "karma")
    assert console.url == console.base + "/ns/karma"
    heading = console.find("h1").text
    assert "251 keys" in heading
    first_page = console.texts(".keys a")
    assert len(first_page) == 100
    assert first_page[:2] == [XSS_KEY, "user000"]  # "<" sorts before "u"
    console.click("a[rel=next]", "Next page")
    second_page = console.texts(".keys a")
    assert second_page[0] == "user099"
    assert len(second_page) == 100
    console.click("a[rel=next]", "Next page")
    third_page = console.texts(".keys a")
    assert third_page[-1] == "user249"
    assert len(third_page) == 51
    assert console.driver.find_elements("css selector", "a[rel=next]") == []
    console.click(".paging a", "First page")
    assert console.texts(".keys a") == first_page
    console.type("input[name=prefix]", "user24")
    console.click("form.search button")
    assert console.texts(".keys a") == [f"user24{i}" for i in range(10)]
    assert "10 keys starting with “user24”" in console.find("h1").text
    console.type("input[name=prefix]", "nobody")
    console.click("form.search button")
    assert "No keys start with “nobody”" in console.body


def test_scoped_keys_link_to_their_scope(console: Console) -> None:
    console.visit("/ns/levels")
    assert console.texts(".keys li")[:1] == [f"guild=1 {CRUMB} member=42 {CRUMB} xp"]
    console.click("a.scope", "guild=1")
    assert "2 keys in scope guild=1" in console.find("h1").text
    console.click("a.scope", "member=7")
    assert console.texts(".keys li") == [f"guild=1 {CRUMB} member=7 {CRUMB} xp"]
    console.click(".keys li a:not(.scope)", "xp")
    assert console.find("textarea").get_attribute("value") == "3"


def test_a_key_shows_its_value_and_the_payloads_stay_text(console: Console) -> None:
    key_page(console, XSS_KEY)
    assert console.find("h1.key").text == XSS_KEY
    value = json.loads(console.find("textarea").get_attribute("value"))
    assert value == {XSS_FIELD: XSS_VALUE, "when": {"$t": "date", "v": "2026-01-02"}}
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(console.driver).move_to_element(console.find("h1.key")).perform()
    ActionChains(console.driver).move_to_element(console.find("textarea")).perform()
    console.check()  # hovering ran nothing either
    console.visit("/users?user=" + "42")
    assert XSS_VALUE in console.find("pre.value").text
    console.check()


# -- writing --------------------------------------------------------------------------------


def test_edit_valid_then_invalid(console: Console, store: plugstore.Store) -> None:
    karma = store.namespace("karma")
    key_page(console, "user001")
    console.type("textarea", '{"$t": "set", "v": [1, 2]}')
    console.click("button[value=save]")
    assert "Saved." in console.find(".notice").text
    assert karma["user001"] == {1, 2}
    console.type("textarea", "{not json")
    console.click("button[value=save]")
    assert console.find(".error").text.startswith("Not saved:")
    assert console.find("textarea").get_attribute("value") == "{not json"  # the edit is kept
    assert karma["user001"] == {1, 2}


def test_a_save_after_another_process_wrote_is_refused_and_nothing_is_lost(
    console: Console, store: plugstore.Store
) -> None:
    karma = store.namespace("karma")
    key_page(console, "user002")
    console.type("textarea", "1000")
    karma["user002"] = "from another process"  # this process is not the console's
    console.click("button[value=save]")
    assert "changed since you opened it" in console.find(".notice").text
    assert console.find("pre.value").text == '"from another process"'
    assert console.find("textarea").get_attribute("value") == "1000"
    assert karma["user002"] == "from another process"
    console.shot("conflict")
    console.click("button[value=save]")  # saved over the value it now shows
    assert "Saved." in console.find(".notice").text
    assert karma["user002"] == 1000


def test_create_delete_and_ttl(console: Console, store: plugstore.Store) -> None:
    karma = store.namespace("karma")
    console.visit("/ns/karma")
    console.type("form.new input[name=k]", "fresh " + XSS_FIELD)
    console.click("form.new button")
    console.type("textarea", '{"$t": "tuple", "v": [1, "two"]}')
    console.click("button[value=create]")
    assert "Saved." in console.find(".notice").text
    assert karma["fresh " + XSS_FIELD] == (1, "two")

    console.type("input[name=ttl]", "3600")
    console.click("button[value=expire]")
    expires = console.find("table.facts").text
    assert re.search(r"expires in 3[56]\d\d s", expires), expires
    deadline = store.backend.bucket("karma").get_with_deadline("fresh " + XSS_FIELD)
    assert deadline is not None
    assert deadline[1] is not None
    console.click("button[value=persist]", "Clear TTL")
    assert "expires never" in console.find("table.facts").text
    assert store.backend.bucket("karma").get_with_deadline("fresh " + XSS_FIELD)[1] is None  # type: ignore[index]

    console.click("button[value=delete]", "Delete")
    assert console.url.startswith(console.base + "/ns/karma")
    assert "fresh " + XSS_FIELD not in karma
    assert "fresh " + XSS_FIELD not in console.texts(".keys a")


def test_a_form_without_its_csrf_token_is_refused(console: Console, store: plugstore.Store) -> None:
    key_page(console, "user003")
    console.driver.execute_script(
        "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())"
    )
    console.type("textarea", '"hijacked"')
    console.click("button[value=save]")
    assert console.body.startswith("403 Forbidden")
    assert store.namespace("karma")["user003"] == 3


def test_read_only_refuses_writes_on_the_server_too(
    driver: Any, store: plugstore.Store, url: str
) -> None:
    driver.delete_all_cookies()
    with serving(url, "--read-only") as address:
        console = Console(driver, address)
        console.login()
        key_page(console, "user004")
        assert console.driver.find_elements("css selector", "form[method=post], textarea") == []
        assert console.find("pre.value").text == "4"
        # A hand-made form (as a stale tab or a script would post) reaches the server.
        post = """const f = document.createElement('form');
            f.method = 'post'; f.action = '/ns/karma/key';
            for (const [n, v] of [['k', 'user004'], ['action', 'delete'], ['csrf', 'x']]) {
                const i = document.createElement('input'); i.name = n; i.value = v;
                f.appendChild(i);
            }
            document.body.appendChild(f); f.submit();"""
        _click_and_wait(console, lambda: console.driver.execute_script(post))
        assert console.body.startswith("403 Forbidden: this console is read-only")
    assert store.namespace("karma")["user004"] == 4


# -- quarantine and users -------------------------------------------------------------------


def test_quarantine_restore_and_discard(console: Console, store: plugstore.Store) -> None:
    bucket = store.backend.bucket("karma")
    guarded = store.namespace("karma", quarantine=True)
    for key in ("broken1", "broken2"):
        bucket.set(key, b"\x80not json")
        assert guarded.get(key) is None  # set aside by the read
    console.click("nav a", "Quarantine")
    assert sorted(console.texts("td.mono")) == ["broken1", "broken2"]
    console.shot("quarantine")
    row = "//tr[td[@class='mono' and text()='broken1']]"
    restore = console.driver.find_element("xpath", row + "//button[@value='restore']")
    _click_and_wait(console, restore.click)
    assert "Restored" in console.find(".notice").text
    assert bucket.get("broken1") == b"\x80not json"
    discard = console.driver.find_element("xpath", "//tr[td='broken2']//button[@value='discard']")
    _click_and_wait(console, discard.click)
    assert "Discarded." in console.find(".notice").text
    assert "Nothing is in quarantine." in console.body
    assert bucket.get("broken2") is None


def test_users_export_download_and_erase(console: Console, store: plugstore.Store) -> None:
    levels = store.namespace("levels")
    console.click("nav a", "Users")
    console.type("input[name=user]", "42")
    console.click("form.search button")
    shown = json.loads(console.find("pre.value").text)
    assert shown["user"] == "42"
    assert "levels" in shown["namespaces"]
    link = console.find("a[download]").get_attribute("href")
    downloaded = console.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.text().then(t => done([r.status, t])));",
        link,
    )
    assert downloaded[0] == 200
    assert json.loads(downloaded[1]) == shown

    console.type("input[name=confirm]", "43")
    console.click("button.danger")
    assert "type the user's id again" in console.find(".error").text
    assert levels.scope(guild=1, member=42)["xp"] == 120
    console.type("input[name=confirm]", "42")
    console.click("button.danger")
    assert console.find(".notice").text.startswith("Erased")
    assert levels.scope(guild=1, member=42).get("xp") is None
    assert levels.scope(user=42).get("nick") is None
    assert levels.scope(guild=1, member=7)["xp"] == 3  # another user's data stays


def test_the_chat_hosts_data_is_read_and_edited_in_the_browser(driver: Any, tmp_path: Path) -> None:
    """The README's main job (``plugstore chat`` on SQLite) keeps its plugins' data;
    the console shows it and an edit there is what the bot says next."""
    url = f"sqlite:///{tmp_path / 'chat.db'}"

    def chat(user: str, *lines: str) -> str:
        said = [part for line in lines for part in ("-c", line)]
        command = [sys.executable, "-m", "plugstore.cli", "--url", url, "chat", "--user", user]
        done = subprocess.run(
            [*command, "--seed", "1", *said], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    chat("alice", "python++", "plugstore++", ".remember standup is 10:00 in #general")
    chat("alice", ".poll", "Tabs or spaces?", "tabs", "spaces", "done")
    chat("bob", "python++", ".play rps rock", ".play dice", ".play dice", ".vote 1 spaces")
    chat("carol", "plugstore++", ".play rps paper")
    driver.delete_all_cookies()
    with serving(url) as address:
        console = Console(driver, address)
        console.login()
        assert {"chat.karma", "chat.games", "chat.remember"} <= set(
            console.texts("table.bars tbody td:first-child")
        )
        stored = console.find("table.bars tbody tr").text
        assert re.search(r"\d+ B", stored), stored  # the largest namespace's stored size
        console.shot("overview")
        console.click("nav a", "Plugins")
        rows = console.texts("table.plugins tbody tr")
        assert any(row.startswith("poll pl_poll") and "up to date" in row for row in rows), rows
        console.shot("plugins")
        console.click("nav a", "Overview")
        console.click("table.bars a", "chat.karma")
        assert f"channel='general' {CRUMB} python" in console.texts(".keys li")
        console.shot("namespace")
        console.click(".keys li a:not(.scope)", "python")
        assert console.find("textarea").get_attribute("value") == "2"
        console.shot("key")
        console.type("textarea", "41")
        console.click("button[value=save]")
        assert "Saved." in console.find(".notice").text
        console.click("nav a", "Users")
        console.type("input[name=user]", "bob")
        console.click("form.search button")
        export = json.loads(console.find("pre.value").text)
        assert "chat.games" in export["namespaces"]
        assert export["plugins"]["poll"]["votes"][0]["option"] == "spaces"  # a relational row
        console.shot("users")
    assert "python has karma 41" in chat("carol", ".karma python")


def _click_and_wait(console: Console, click: Callable[[], None]) -> None:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    old = console.driver.find_element("tag name", "html")
    click()

    def gone(_: Any) -> bool:
        """Whether the old page's root left the document.  Asked mid-navigation,
        chromedriver may answer "Node with given id does not belong to the document"
        (a plain WebDriverException) instead of a stale reference: gone all the same."""
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    WebDriverWait(console.driver, 20).until(gone)
    console.check()
