"""``plugstore web``: the browser console's pages, access rules and writes, over HTTP
(Starlette's test client, the app in this process) on SQLite and PostgreSQL, and the
command itself serving on loopback."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")
from starlette.testclient import TestClient

import plugstore
from plugstore.cli.web import is_loopback
from plugstore.web import Access, create_app
from plugstore.web.app import human_size
from servers import require_server

XSS_KEY = "<script>alert('k')</script>"
XSS_FIELD = '" onmouseover="alert(1)'
XSS_VALUE = "<img src=x onerror=alert(2)>"
PG = "postgresql://postgres:web-s3cret@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'web.db'}"
        return
    require_server("PostgreSQL", "127.0.0.1", 5432)
    pg = f"{PG}?table=web_{uuid.uuid4().hex[:10]}"
    yield pg
    with plugstore.open(pg) as store:
        store.backend.drop()  # type: ignore[attr-defined]


@pytest.fixture
def store(url: str) -> Iterator[plugstore.Store]:
    with plugstore.open(url) as store:
        karma = store.namespace("karma")
        karma.update({f"user{i:03d}": i for i in range(250)})
        karma[XSS_KEY] = {XSS_FIELD: XSS_VALUE, "when": datetime.date(2026, 1, 2), "s": {1, 2}}
        store.namespace("notes")["a"] = "hello"
        yield store


def client_for(store: plugstore.Store, **options: Any) -> tuple[TestClient, Access]:
    access = Access(**options)
    client = TestClient(create_app(store, access), follow_redirects=False)
    return client, access


def logged_in(store: plugstore.Store, **options: Any) -> tuple[TestClient, Access]:
    client, access = client_for(store, **options)
    first = client.get(f"/?token={access.token}")
    assert first.status_code == 303
    return client, access


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no write form"
    return found.group(1)


def digest_of(page: str) -> str:
    found = re.search(r'name="digest" value="([0-9a-f]+)"', page)
    assert found
    return found.group(1)


def textarea_of(page: str) -> str:
    import html

    found = re.search(r"<textarea[^>]*>(.*?)</textarea>", page, re.S)
    assert found
    return html.unescape(found.group(1))


def submit(client: TestClient, page: str, key: str, action: str, **fields: str) -> Any:
    """Post a key page's form for ``key``: the page's CSRF token and digest (of the value
    it showed), ``action``, and ``fields`` (``value``, ``ttl``)."""
    data = {"csrf": csrf_of(page), "k": key, "action": action, **fields}
    found = re.search(r'name="digest" value="([0-9a-f]+)"', page)
    if found:
        data["digest"] = found.group(1)
    return client.post("/ns/karma/key", data=data)


# -- access ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/ns/karma", "/ns/karma/key?k=user001", "/static/console.css"]
)
def test_no_or_a_wrong_token_gets_401_and_no_data(store: plugstore.Store, path: str) -> None:
    client, access = client_for(store)
    app = client.app
    attempts = [client.get(path), client.get(path + ("&" if "?" in path else "?") + "token=wrong")]
    for cookie in ("wrong", access.csrf):  # the CSRF token is not the access token
        with TestClient(app, cookies={"plugstore_token": cookie}) as other:
            attempts.append(other.get(path))
    for attempt in attempts:
        assert attempt.status_code == 401
        assert "location" not in attempt.headers  # not a redirect
        body = attempt.text
        assert "karma" not in body
        assert "user001" not in body
        assert "notes" not in body
    denied = client.post("/ns/karma/key", data={"k": "user001", "action": "delete"})
    assert denied.status_code == 401
    assert store.namespace("karma")["user001"] == 1


def test_the_token_becomes_a_strict_http_only_cookie_and_leaves_the_address(
    store: plugstore.Store,
) -> None:
    client, access = client_for(store)
    first = client.get(f"/ns/karma?prefix=user1&token={access.token}")
    assert first.status_code == 303
    assert first.headers["location"] == "/ns/karma?prefix=user1"
    cookie = first.headers["set-cookie"]
    assert f"plugstore_token={access.token}" in cookie
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    page = client.get("/ns/karma?prefix=user1")
    assert page.status_code == 200
    assert access.token not in page.text  # the page never shows the access token


def test_the_cookie_is_named_after_the_port_so_two_consoles_keep_their_logins(
    store: plugstore.Store,
) -> None:
    one, two = Access(), Access()
    clients = {}
    for port, access in ((8765, one), (8766, two)):
        client = TestClient(
            create_app(store, access), base_url=f"http://127.0.0.1:{port}", follow_redirects=False
        )
        first = client.get(f"/?token={access.token}")
        assert first.headers["set-cookie"].startswith(f"plugstore_token_{port}={access.token};")
        clients[port] = client
    assert clients[8765].get("/ns/notes").status_code == 200
    # The browser sends both cookies to both ports: each console reads its own.
    both = {"plugstore_token_8765": one.token, "plugstore_token_8766": two.token}
    for port in (8765, 8766):
        with TestClient(
            clients[port].app, base_url=f"http://127.0.0.1:{port}", cookies=both
        ) as browser:
            assert browser.get("/ns/notes").status_code == 200
    # One console's cookie does not open the other.
    swapped = {"plugstore_token_8766": one.token, "plugstore_token_8765": two.token}
    with TestClient(clients[8765].app, base_url="http://127.0.0.1:8765", cookies=swapped) as c:
        assert c.get("/ns/notes").status_code == 401


def test_each_console_has_its_own_tokens(store: plugstore.Store) -> None:
    one, two = Access(), Access()
    assert one.token != two.token
    assert one.csrf != two.csrf
    assert one.token != one.csrf


def test_a_password_in_the_url_is_masked_on_every_page(tmp_path: Path) -> None:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    url = f"{PG}?table=web_{uuid.uuid4().hex[:10]}"
    with plugstore.open(url) as store:
        try:
            store.namespace("n")["k"] = 1
            client, _ = logged_in(store)
            for path in ("/", "/ns/n", "/ns/n/key?k=k", "/ns/n/key?k=absent"):
                page = client.get(path)
                assert "web-s3cret" not in page.text
            assert "***" in client.get("/").text
        finally:
            store.backend.drop()  # type: ignore[attr-defined]


# -- pages ----------------------------------------------------------------------------------


def test_overview_lists_namespaces_largest_first_with_their_counts(store: plugstore.Store) -> None:
    client, _ = logged_in(store)
    page = client.get("/").text
    assert page.index(">karma<") < page.index(">notes<")
    assert re.search(r">karma</a></td>\s*<td class=\"num\">251<", page)
    assert re.search(r">notes</a></td>\s*<td class=\"num\">1<", page)
    assert "width: 100.0%" in page
    assert store.backend.name in page
    assert f"<th>plugstore</th><td>{plugstore.__version__}, Python " in page
    assert "<th>durable</th><td>yes: a write is kept once it returns" in page
    with plugstore.open("memory://") as memory:
        memory_page = logged_in(memory)[0].get("/").text
        assert "<th>durable</th><td>no: the data lives in process memory" in memory_page
    # the stored bytes of keys and values, read for a person, exact in the title
    karma = store.namespace("karma")
    xss = len(XSS_KEY.encode()) + len(karma.get_raw(XSS_KEY) or b"")
    karma_size = 250 * 7 + (10 + 90 * 2 + 150 * 3) + xss  # user000-249, 0-249 as text
    assert karma_size == sum(len(key.encode()) + len(karma.get_raw(key) or b"") for key in karma)
    assert re.search(
        rf'>karma</a></td>\s*<td class="num">251</td>\s*'
        rf'<td class="num" title="{karma_size} bytes">{karma_size / 1000:.1f} kB<',
        page,
    )
    # "a" and the JSON text "hello" (7 bytes)
    assert re.search(r'>1</td>\s*<td class="num" title="8 bytes">8 B<', page)
    total = karma_size + 8
    assert f'252 keys, <span title="{total} bytes">{total / 1000:.1f} kB</span> stored' in page
    assert "2 namespaces, 252 keys" in page


def test_sizes_read_in_decimal_units() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 1049, 1_234_567, 999_960, 3 * 10**12)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.0 kB",
        "1.2 MB",
        "1.0 MB",
        "3.0 TB",
    ]


def test_a_namespace_pages_through_its_keys_and_searches_by_prefix(
    store: plugstore.Store,
) -> None:
    client, _ = logged_in(store)
    seen: list[str] = []
    path: str | None = "/ns/karma"
    pages = 0
    while path:
        page = client.get(path)
        assert page.status_code == 200
        keys = re.findall(r'<li><a href="/ns/karma/key\?k=[^"]*">([^<]*)</a></li>', page.text)
        assert len(keys) <= 100
        seen += keys
        pages += 1
        found = re.search(r'<a rel="next" href="([^"]+)"', page.text)
        path = found.group(1).replace("&amp;", "&") if found else None
    assert pages == 3
    expected = sorted(
        [f"user{i:03d}" for i in range(250)] + ["&lt;script&gt;alert(&#39;k&#39;)&lt;/script&gt;"]
    )
    assert seen == expected
    found_page = client.get("/ns/karma?prefix=user24").text
    assert "10 keys starting with" in found_page
    assert "user240" in found_page
    assert "user239" not in found_page
    assert "No keys start with" in client.get("/ns/karma?prefix=zzz").text
    assert client.get("/ns/nothing-here").status_code == 404
    assert client.get("/ns/bad%20name!").status_code == 404


def test_a_key_shows_its_value_with_tagged_types_escaped(store: plugstore.Store) -> None:
    client, _ = logged_in(store)
    page = client.get("/ns/karma/key", params={"k": XSS_KEY})
    assert page.status_code == 200
    body = page.text
    assert "<script>alert" not in body
    assert XSS_FIELD not in body
    assert XSS_VALUE not in body
    assert "&lt;script&gt;alert(&#39;k&#39;)&lt;/script&gt;" in body
    shown = textarea_of(body)
    assert '"$t": "set"' in shown
    assert '"$t": "date"' in shown
    assert XSS_VALUE in shown  # as text inside the form, unescaped only by the browser
    assert client.get("/ns/karma/key", params={"k": "absent"}).status_code == 404
    assert client.get("/ns/karma/key").status_code == 400


# -- writes ---------------------------------------------------------------------------------


def test_saving_an_edit_keeps_the_types_and_the_deadline(store: plugstore.Store) -> None:
    client, _ = logged_in(store)
    karma = store.namespace("karma")
    karma.expire(XSS_KEY, 600)
    page = client.get("/ns/karma/key", params={"k": XSS_KEY}).text
    edited = textarea_of(page).replace("2026-01-02", "2027-03-04")
    saved = submit(client, page, XSS_KEY, "save", value=edited)
    assert saved.status_code == 303
    assert "Saved." in client.get(saved.headers["location"]).text
    value = karma[XSS_KEY]
    assert value["when"] == datetime.date(2027, 3, 4)
    assert value["s"] == {1, 2}
    ttl = karma.ttl(XSS_KEY)
    assert ttl is not None
    assert 500 < ttl <= 600


def test_an_edit_that_does_not_parse_is_refused_with_the_reason(store: plugstore.Store) -> None:
    client, _ = logged_in(store)
    page = client.get("/ns/karma/key", params={"k": "user001"}).text
    for text, reason in (
        ("{not json", "not valid JSON"),
        ("unquoted text", "not valid JSON"),
        ('{"$t": "nosuchtype", "v": 1}', "unknown type tag"),
    ):
        refused = submit(client, page, "user001", "save", value=text)
        assert refused.status_code == 400
        assert reason in refused.text
        assert textarea_of(refused.text) == text  # the draft is kept for fixing
    assert store.namespace("karma")["user001"] == 1


def test_a_save_after_another_process_wrote_is_refused_and_shows_the_newer_value(
    store: plugstore.Store, url: str
) -> None:
    client, _ = logged_in(store)
    page = client.get("/ns/karma/key", params={"k": "user002"}).text
    other = textwrap.dedent(
        f"""
        import plugstore
        with plugstore.open({url!r}) as store:
            store.namespace("karma")["user002"] = {{"written": "elsewhere"}}
        """
    )
    subprocess.run([sys.executable, "-c", other], check=True, timeout=60)
    refused = submit(client, page, "user002", "save", value="99")
    assert refused.status_code == 409
    assert "changed since you opened it" in refused.text
    assert "elsewhere" in refused.text  # the newer value is shown
    assert textarea_of(refused.text) == "99"  # and the edit is kept
    assert store.namespace("karma")["user002"] == {"written": "elsewhere"}
    # saving again from the refreshed page goes through
    again = submit(client, refused.text, "user002", "save", value="99")
    assert again.status_code == 303
    assert store.namespace("karma")["user002"] == 99


def test_create_delete_and_ttl(store: plugstore.Store) -> None:
    client, _ = logged_in(store)
    karma = store.namespace("karma")
    form = client.get("/ns/karma/key", params={"k": "fresh", "new": "1"}).text
    assert "Create" in form
    created = submit(client, form, "fresh", "create", value='{"$t": "tuple", "v": [1, "a"]}')
    assert created.status_code == 303
    assert karma["fresh"] == (1, "a")
    clash = submit(client, form, "fresh", "create", value="1")
    assert clash.status_code == 409
    assert karma["fresh"] == (1, "a")

    page = client.get("/ns/karma/key", params={"k": "fresh"}).text
    assert "expires</th><td>never" in page
    set_ttl = submit(client, page, "fresh", "expire", ttl="90")
    assert set_ttl.status_code == 303
    ttl = karma.ttl("fresh")
    assert ttl is not None
    assert 80 < ttl <= 90
    bad_ttl = submit(client, page, "fresh", "expire", ttl="soon")
    assert bad_ttl.status_code == 400
    assert "TTL" in bad_ttl.text
    page = client.get("/ns/karma/key", params={"k": "fresh"}).text
    assert "Clear TTL" in page
    cleared = submit(client, page, "fresh", "persist")
    assert cleared.status_code == 303
    assert karma.ttl("fresh") is None

    page = client.get("/ns/karma/key", params={"k": "fresh"}).text
    deleted = submit(client, page, "fresh", "delete")
    assert deleted.status_code == 303
    assert "fresh" not in karma
    gone = submit(client, page, "fresh", "delete")
    assert gone.status_code == 409
    assert "deleted since you opened it" in gone.text


def test_a_write_without_the_csrf_token_is_refused_with_403(store: plugstore.Store) -> None:
    client, _ = logged_in(store)
    page = client.get("/ns/karma/key", params={"k": "user003"}).text
    for form in (
        {"k": "user003", "digest": digest_of(page), "action": "delete"},
        {"csrf": "forged", "k": "user003", "digest": digest_of(page), "action": "delete"},
        {"csrf": "", "k": "user003", "digest": digest_of(page), "action": "delete"},
    ):
        refused = client.post("/ns/karma/key", data=form)
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    assert store.namespace("karma")["user003"] == 3


def test_read_only_refuses_every_write_on_the_server(store: plugstore.Store) -> None:
    client, access = logged_in(store, read_only=True)
    page = client.get("/ns/karma/key", params={"k": "user004"}).text
    assert "read-only" in page
    assert '<form method="post"' not in page
    assert '<pre class="value">4</pre>' in page
    for action in ("save", "delete", "create", "expire", "persist"):
        refused = client.post(
            "/ns/karma/key",
            data={"csrf": access.csrf, "k": "user004", "value": "5", "ttl": "9", "action": action},
        )
        assert refused.status_code == 403
        assert "read-only" in refused.text
    assert store.namespace("karma")["user004"] == 4
    assert store.namespace("karma").ttl("user004") is None


def test_an_undecodable_value_is_shown_as_such_and_not_offered_for_editing(
    store: plugstore.Store,
) -> None:
    store.backend.bucket("karma").set("broken", b"\x80not json")
    client, _ = logged_in(store)
    page = client.get("/ns/karma/key", params={"k": "broken"}).text
    assert "cannot be decoded with the json codec" in page
    assert 'value="save"' not in page
    assert 'value="delete"' in page


# -- the command ----------------------------------------------------------------------------


def test_loopback_hosts() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):  # noqa: S104
        assert not is_loopback(host)


def test_plugstore_web_serves_on_loopback_and_prints_a_tokened_address(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cmd.db'}"
    with plugstore.open(url) as store:
        store.namespace("n")["k"] = "v"
    proc = subprocess.Popen(
        [sys.executable, "-m", "plugstore.cli", "web", url, "--port", "0", "--read-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "(read-only)" in first
        address = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{40,}", address), address
        base = address.split("/?", 1)[0]
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(base + "/ns/n", timeout=10)  # noqa: S310
        assert denied.value.code == 401
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(address, timeout=10) as page:
            assert "n</a>" in page.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_quarantine_lists_set_aside_values_and_restores_or_discards_them(
    store: plugstore.Store,
) -> None:
    bucket = store.backend.bucket("karma")
    guarded = store.namespace("karma", quarantine=True)
    for key in (XSS_KEY + "q", "broken2", "broken3"):
        bucket.set(key, b"\x80not json")
        assert guarded.get(key) is None  # set aside by the read
    client, access = logged_in(store)
    page = client.get("/quarantine").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page
    rows = re.findall(r'<td class="mono">([^<]*)</td>.*?name="record" value="([^"]+)"', page, re.S)
    records = {key: record for key, record in rows}
    escaped = "&lt;script&gt;alert(&#39;k&#39;)&lt;/script&gt;q"
    assert set(records) == {"broken2", "broken3", escaped}

    def act(record: str, action: str, csrf: str | None = access.csrf) -> Any:
        import html

        data = {"record": html.unescape(record), "action": action}
        if csrf is not None:
            data["csrf"] = csrf
        return client.post("/quarantine", data=data)

    record = records["broken2"]
    assert act(record, "restore", csrf=None).status_code == 403
    assert bucket.get("broken2") is None
    restored = act(record, "restore")
    assert restored.status_code == 303
    assert "restored" in restored.headers["location"]
    assert bucket.get("broken2") == b"\x80not json"
    assert "gone" in act(record, "restore").headers["location"]

    record = records["broken3"]
    store.namespace("karma")["broken3"] = "rewritten"
    occupied = act(record, "restore")
    assert "occupied" in occupied.headers["location"]
    assert store.namespace("karma")["broken3"] == "rewritten"
    assert "holds a value again" in client.get(occupied.headers["location"]).text
    assert "discarded" in act(record, "discard").headers["location"]
    remaining = client.get("/quarantine").text
    assert len(re.findall(r'name="record" value="', remaining)) == 1

    read_only, ro_access = logged_in(store, read_only=True)
    assert 'value="restore"' not in read_only.get("/quarantine").text
    refused = read_only.post(
        "/quarantine", data={"record": "x", "action": "discard", "csrf": ro_access.csrf}
    )
    assert refused.status_code == 403


def test_users_page_exports_and_erases_one_users_data_after_confirmation(
    store: plugstore.Store,
) -> None:
    levels = store.namespace("levels")
    levels.scope(user=42)["xp"] = 120
    levels.scope(guild=1, member="42")["nick"] = XSS_VALUE
    levels.scope(user=7)["xp"] = 3
    client, access = logged_in(store)
    assert "User id" in client.get("/users").text
    page = client.get("/users", params={"user": "42"}).text
    assert XSS_VALUE not in page
    assert "&lt;img src=x" in page
    assert "&#34;xp&#34;" in page
    download = client.get("/users/export.json", params={"user": "42"})
    assert download.status_code == 200
    assert download.headers["content-disposition"] == 'attachment; filename="user-42.json"'
    exported = download.json()
    assert exported["user"] == "42"
    assert {r["key"] for r in exported["namespaces"]["levels"]} == {"xp", "nick"}

    wrong = client.post("/users/forget", data={"csrf": access.csrf, "user": "42", "confirm": "4"})
    assert wrong.status_code == 400
    assert "confirm" in wrong.text
    assert levels.scope(user=42)["xp"] == 120
    no_csrf = client.post("/users/forget", data={"user": "42", "confirm": "42"})
    assert no_csrf.status_code == 403
    assert levels.scope(user=42)["xp"] == 120

    erased = client.post("/users/forget", data={"csrf": access.csrf, "user": "42", "confirm": "42"})
    assert erased.status_code == 200
    assert "Erased 2 entries" in erased.text
    assert "xp" not in levels.scope(user=42)
    assert "nick" not in levels.scope(guild=1, member="42")
    assert levels.scope(user=7)["xp"] == 3  # another user's data stays
    again = client.post("/users/forget", data={"csrf": access.csrf, "user": "42", "confirm": "42"})
    assert "nothing to erase" in again.text

    read_only, ro_access = logged_in(store, read_only=True)
    assert "Erase" not in read_only.get("/users", params={"user": "7"}).text
    refused = read_only.post(
        "/users/forget", data={"csrf": ro_access.csrf, "user": "7", "confirm": "7"}
    )
    assert refused.status_code == 403
    assert levels.scope(user=7)["xp"] == 3


def test_scoped_keys_read_as_their_scope_and_link_to_it(store: plugstore.Store) -> None:
    levels = store.namespace("levels", version=2, migrations={2: lambda migration: None})
    levels.scope(guild=1, member="42")["nick"] = "ana"
    levels.scope(guild=1, member="7")["nick"] = "bob"
    levels.scope(guild=2)["prefix"] = "!"
    levels["plain"] = 1
    client, _ = logged_in(store)
    page = client.get("/ns/levels").text
    assert "data version 2" in page
    assert "\x1f" not in page
    assert "\x1e" not in page
    assert "guild=1</a> \u203a <a" in page
    assert "member=&#39;42&#39;</a> \u203a <a" in page
    assert ">plain</a>" in page
    assert "(meta)" in page  # the version entry, listed as what it is
    links = re.findall(r'<a class="scope" href="(/ns/levels\?prefix=[^"]+)">guild=1</a>', page)
    assert links
    scoped = client.get(links[0].replace("&amp;", "&")).text
    assert "in scope guild=1" in scoped
    assert "ana" not in scoped  # values are not listed, keys are
    assert scoped.count(">nick</a>") == 2
    assert "prefix</a>" not in scoped  # guild 2's key is not in guild 1's scope


def test_the_scope_tree_lists_each_levels_scopes_with_their_key_counts(
    store: plugstore.Store,
) -> None:
    from plugstore.web.scopetree import subscopes

    levels = store.namespace("levels", version=2, migrations={2: lambda migration: None})
    for member in range(3):
        levels.scope(guild=1, member=member).update({"xp": member, "nick": "n"})
    levels.scope(guild=1)["prefix"] = "!"
    levels.scope(guild=1)["\U0010ffff\U0010ffff"] = "sorts last"  # own key past the skip mark
    levels.scope(guild=2, channel=XSS_KEY)["topic"] = XSS_VALUE
    levels.scope(guild="1")["prefix"] = "?"  # a str id is another scope than the int
    levels.scope(user=42)["xp"] = 5
    levels["plain"] = 1
    bucket = store.backend.bucket("levels")
    bucket.set("\x1fguild\x1dibroken", b"1")  # malformed: stepped over, not listed

    top = subscopes(bucket, ())
    assert [(lv.name, [(c.label, c.keys) for c in lv.children]) for lv in top.levels] == [
        ("guild", [("1", 8), ("2", 1), ("'1'", 1)]),
        ("user", [("42", 1)]),
    ]
    assert not top.more
    guild1 = subscopes(bucket, (("guild", 1),))
    assert [(c.id, c.keys) for c in guild1.levels[0].children] == [(0, 2), (1, 2), (2, 2)]
    assert subscopes(bucket, (("guild", 1), ("member", 0))).levels == []
    capped = subscopes(bucket, (("guild", 1),), limit=2)
    assert capped.more
    assert [c.id for c in capped.levels[0].children] == [0, 1]

    client, _ = logged_in(store)
    page = client.get("/ns/levels").text
    section = page[page.index('<section class="scopes">') : page.index("</section>")]
    assert "4 scopes" in section
    assert re.search(r">1</a> <small>8</small>", section)
    assert re.search(r">&#39;1&#39;</a> <small>1</small>", section)
    inner = client.get(f"/ns/levels?{urlencode({'prefix': guild1.levels[0].children[0].prefix})}")
    assert "member=0" in inner.text
    assert "2 keys in scope guild=1 / member=0" in inner.text
    nested = client.get(f"/ns/levels?{urlencode({'prefix': top.levels[0].children[1].prefix})}")
    assert "&lt;script&gt;" in nested.text
    assert "<script>" not in nested.text
    assert "Scopes beneath guild=2" in nested.text
    searched = client.get("/ns/levels?prefix=pl").text
    assert 'class="scopes"' not in searched  # a plain prefix has no scopes beneath it


# -- relational plugins ---------------------------------------------------------------------

NOTES_BY_USER = """
from sqlalchemy import delete, select
from plugstore.relational import RelationalUserData

def _export(session, user):
    rows = session.execute(select(notes.c.text).where(notes.c.text.like(user + ":%")))
    return [text for (text,) in rows]

def _forget(session, user):
    done = session.execute(delete(notes).where(notes.c.text.like(user + ":%")))
    return {"notes": done.rowcount} if done.rowcount else {}
"""
HOOKED = """
hooked = RelationalPlugin(
    plugin.name, metadata, plugin.migrations, RelationalUserData(_export, _forget)
)
"""


@pytest.fixture
def plugin_names(url: str) -> Iterator[list[str]]:
    """The test's relational plugin names: their schemas are dropped after it (on a
    server; on SQLite they are files in the test's directory)."""
    pytest.importorskip("alembic", reason="the relational extra is not installed")
    from relational_helpers import drop_schemas

    names: list[str] = []
    yield names
    drop_schemas(url.split("?", 1)[0], names)


def notes_plugin(root: Path, names: list[str], label: str) -> Any:
    """A new relational plugin module (tables notes and runs, revisions r1 and r2; its
    ``hooked`` plugin exports and forgets the notes whose text starts ``USER:``)."""
    from relational_helpers import NOTES_TABLE, load, unique_name, write_plugin

    name = unique_name(label)
    names.append(name)
    path = write_plugin(root, name, tables=NOTES_TABLE + NOTES_BY_USER)
    path.write_text(path.read_text() + HOOKED)
    return load(path)


def console_of(store: plugstore.Store, **options: Any) -> tuple[TestClient, Access]:
    """A logged-in client of ``create_app(store, access, **options)``."""
    access = Access()
    client = TestClient(create_app(store, access, **options), follow_redirects=False)
    assert client.get(f"/?token={access.token}").status_code == 303
    return client, access


def tables_host(store: plugstore.Store, plugins: list[Any]) -> Any:
    """A RelationalHost on ``store``'s tables database, as plugstore web makes one."""
    from plugstore.bot.host import tables_database
    from plugstore.relational import RelationalHost

    return RelationalHost(tables_database(store), plugins)


def rows_of(page: str) -> dict[str, list[str]]:
    """The plugins table: each plugin's cells (schema, revision, head, pending, state)."""
    import html

    found = {}
    for row in re.findall(r"<tr>\s*(<td>.*?)</tr>", page, re.S):
        cells = [
            html.unescape(re.sub(r"<[^>]+>|\s+", " ", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        found[cells[0]] = [" ".join(cell.split()) for cell in cells[1:]]
    return found


def test_the_plugins_page_shows_each_plugins_revision_head_and_pending_ones(
    store: plugstore.Store, tmp_path: Path, plugin_names: list[str]
) -> None:
    current = notes_plugin(tmp_path, plugin_names, "current").plugin
    behind = notes_plugin(tmp_path, plugin_names, "behind").plugin
    with tables_host(store, [current, behind]) as host:
        host.upgrade([current.name])
        host.upgrade([behind.name], "r1")
        client, _ = console_of(store, relational=host)
        page = client.get("/plugins")
        assert page.status_code == 200
        rows = rows_of(page.text)
        assert rows[current.name] == [f"pl_{current.name}", "r2", "r2", "0", "up to date"]
        assert rows[behind.name] == [
            f"pl_{behind.name}",
            "r1",
            "r2",
            "1",
            "1 pending r2 revision 2",
        ]
        shown = str(host.url)
        assert f'<code class="database">{shown}</code>' in page.text
        assert (
            f"1 pending: run\n<code>plugstore db upgrade {shown} --plugin {behind.name}</code>"
            in page.text
        )
        assert "web-s3cret" not in page.text  # the tables database's password is masked
        if store.backend.name == "postgresql":
            assert "postgres:***@" in page.text
            assert "with the password where *** stands" in page.text
        assert '<a href="/plugins">Plugins</a>' in client.get("/").text

        host.upgrade([behind.name])  # as plugstore db upgrade would
        page = client.get("/plugins")
        assert rows_of(page.text)[behind.name][1:4] == ["r2", "r2", "0"]
        assert "Every plugin is up to date." in page.text
        assert "plugstore db upgrade" not in page.text


def test_a_plugin_never_migrated_has_no_tables_and_every_revision_pending(
    store: plugstore.Store, tmp_path: Path, plugin_names: list[str]
) -> None:
    fresh = notes_plugin(tmp_path, plugin_names, "fresh").plugin
    with tables_host(store, [fresh]) as host:
        client, _ = console_of(store, relational=host)
        page = client.get("/plugins").text
        assert rows_of(page)[fresh.name] == [
            f"pl_{fresh.name}",
            "-",
            "r2",
            "2",
            "2 pending (no tables yet) r1 revision 1 r2 revision 2",
        ]
        assert "2 pending: run" in page
        assert host.status()[0].current is None  # the page migrated nothing


def test_the_plugins_page_without_relational_plugins_says_how_they_are_found(
    store: plugstore.Store,
) -> None:
    client, _ = logged_in(store)  # create_app(store, access): no relational host
    page = client.get("/plugins")
    assert page.status_code == 200
    assert "No relational plugins: this console was given no relational host." in page.text
    assert "plugstore web --load MODULE:ATTR" in page.text
    assert "<table" not in page.text
    pytest.importorskip("alembic", reason="the relational extra is not installed")
    with tables_host(store, []) as host:
        client, _ = console_of(store, relational=host)
        page = client.get("/plugins")
        assert page.status_code == 200
        assert "No relational plugins." in page.text
        assert "entry points" in page.text


def test_the_plugins_page_says_when_the_tables_database_cannot_be_reached(
    tmp_path: Path,
) -> None:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed")
    from plugstore.relational import RelationalHost
    from relational_helpers import load, write_plugin

    plugin = load(write_plugin(tmp_path, "unreached")).plugin
    tables = "postgresql://bot:tables-s3cret@127.0.0.1:1/db?connect_timeout=1"
    with plugstore.open("memory://") as store, RelationalHost(tables, [plugin]) as host:
        client, _ = console_of(store, relational=host)
        page = client.get("/plugins")
        assert page.status_code == 503
        assert "cannot reach the plugin database postgresql://bot:***@127.0.0.1:1/db" in page.text
        assert "Traceback" not in page.text
        assert "tables-s3cret" not in page.text
        assert '<a href="/plugins">Plugins</a>' in page.text  # the console's own page


def test_the_users_page_exports_and_erases_relational_plugins_rows(
    store: plugstore.Store, tmp_path: Path, plugin_names: list[str]
) -> None:
    module = notes_plugin(tmp_path, plugin_names, "users")
    name = module.plugin.name
    store.namespace("levels").scope(user="ana")["xp"] = 5
    with tables_host(store, [module.hooked]) as host:
        host.start()
        with host[name].session() as session:
            session.execute(
                module.notes.insert(), [{"text": "ana:1"}, {"text": "ana:2"}, {"text": "bob:1"}]
            )
        without, _ = logged_in(store)  # the default hooks: the relational rows are missed
        assert without.get("/users/export.json", params={"user": "ana"}).json()["plugins"] == {}

        client, access = console_of(store, hooks=[], relational=host)
        assert f"Plugin hooks run: {name}" in client.get("/users").text
        page = client.get("/users", params={"user": "ana"}).text
        assert "ana:1" in page
        assert "bob:1" not in page
        exported = client.get("/users/export.json", params={"user": "ana"}).json()
        assert exported["plugins"] == {name: ["ana:1", "ana:2"]}
        assert [r["key"] for r in exported["namespaces"]["levels"]] == ["xp"]

        erased = client.post(
            "/users/forget", data={"csrf": access.csrf, "user": "ana", "confirm": "ana"}
        )
        assert erased.status_code == 200
        assert f"Erased 1 entry (1 in levels) and plugin data: {name} (notes: 2)." in erased.text
        with host[name].session(readonly=True) as session:
            left = session.execute(module.notes.select()).all()
        assert [row.text for row in left] == ["bob:1"]
        assert client.get("/users/export.json", params={"user": "ana"}).json()["plugins"] == {}


WINS_CHAT_PLUGIN = """
from plugstore.bot import Plugin
from plugstore.userdata import UserData

def export(store, user):
    return store.namespace("chat.wins").get("wins:" + user)

def forget(store, user, dry_run):
    ns = store.namespace("chat.wins")
    found = ("wins:" + user) in ns
    if found and not dry_run:
        del ns["wins:" + user]
    return {"wins": int(found)}

class Wins(Plugin):
    \"\"\"Wins under plain keys.\"\"\"
    user_data = UserData("wins", export, forget)
"""


def test_plugstore_web_finds_the_plugins_plugstore_user_finds(tmp_path: Path) -> None:
    """-p, --db and -l reach the served console: the poll plugin's votes (cast by the
    chat host on the --db database), a -p chat plugin's key-value hook and a loaded
    relational plugin behind its head."""
    pytest.importorskip("alembic", reason="the relational extra is not installed")
    import html
    import http.cookiejar
    import os

    from plugstore.bot import ChatHost, builtin_plugins
    from plugstore.relational import RelationalHost
    from relational_helpers import load, unique_name, write_plugin

    url = f"sqlite:///{tmp_path / 'cmd.db'}"
    tables = f"sqlite:///{tmp_path / 'tables.db'}"
    name = unique_name("loaded")
    module = write_plugin(tmp_path, name)
    with RelationalHost(tables, [load(module).plugin]) as host:
        host.upgrade([name], "r1")
    with plugstore.open(url) as store, ChatHost(store, builtin_plugins(), database=tables) as chat:
        for user, line in [
            ("bob", ".poll"),
            ("bob", "Lunch where?"),
            ("bob", "pizza"),
            ("bob", "sushi"),
            ("bob", "done"),
            ("ana", ".vote 1 pizza"),
        ]:
            (reply,) = chat.handle(user, line)
            assert not reply.error, reply.text
        store.namespace("chat.wins")["wins:ana"] = 4
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "wins.py").write_text(WINS_CHAT_PLUGIN)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "plugstore.cli", "web", url, "--port", "0"]
    command += ["--db", tables, "-l", f"{module.stem}:plugin", "-p", str(plugins)]
    proc = subprocess.Popen(
        [*command, "--no-entry-points"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        address = proc.stdout.readline().strip()
        assert address.startswith("http://127.0.0.1:"), address
        base = address.split("/?", 1)[0]
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

        def get(path: str, data: dict[str, str] | None = None) -> str:
            body = urllib.parse.urlencode(data).encode() if data else None
            with opener.open(base + path, body, timeout=30) as page:
                return str(page.read().decode())

        opener.open(address, timeout=30).close()
        page = get("/plugins")
        rows = rows_of(page)
        assert rows["poll"][1:4] == [rows["poll"][2], rows["poll"][2], "0"]  # at its head
        assert rows[name][1:4] == ["r1", "r2", "1"]
        assert f'<code class="database">{tables}</code>' in page
        exported = json.loads(get("/users/export.json?user=ana"))
        assert exported["plugins"]["wins"] == 4
        assert "pizza" in json.dumps(exported["plugins"]["poll"])
        csrf = csrf_of(get("/users?user=ana"))
        erased = html.unescape(
            get("/users/forget", {"csrf": csrf, "user": "ana", "confirm": "ana"})
        )
        assert "Erased" in erased
        assert "poll (votes: 1)" in erased
        assert "wins (wins: 1)" in erased
        assert json.loads(get("/users/export.json?user=ana"))["plugins"] == {}
        assert "poll" in json.loads(get("/users/export.json?user=bob"))["plugins"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_plugstore_web_without_entry_points_runs_none_of_their_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installed hooks (and a broken relational entry point) reach the console, and
    --no-entry-points leaves them out, as it does for plugstore user."""
    pytest.importorskip("alembic", reason="the relational extra is not installed")
    from importlib.metadata import EntryPoint

    import uvicorn
    from click.testing import CliRunner

    import plugstore.relational.plugin as relational_plugin
    import plugstore.userdata as userdata
    from plugstore.cli import cli

    (tmp_path / "web_hooks.py").write_text(
        "from plugstore.userdata import UserData\n"
        "quotes = UserData('quotes', lambda store, user: store.namespace('quotes').get(user),"
        " lambda store, user, dry_run: {})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    installed = {
        "plugstore.user_data": [EntryPoint("quotes", "web_hooks:quotes", "plugstore.user_data")],
        "plugstore.relational": [
            EntryPoint("gone", "no_such_module_web:plugin", "plugstore.relational")
        ],
    }

    def entry_points(group: str) -> list[EntryPoint]:
        return installed.get(group, [])

    monkeypatch.setattr(userdata.importlib_metadata, "entry_points", entry_points)
    monkeypatch.setattr(relational_plugin.importlib_metadata, "entry_points", entry_points)
    url = f"sqlite:///{tmp_path / 'ep.db'}"
    with plugstore.open(url) as store:
        store.namespace("quotes")["ana"] = "hello"
    pages: dict[str, Any] = {}

    def serve(server: Any, sockets: Any = None) -> None:  # instead of listening
        app = server.config.app
        with TestClient(app) as client:
            client.get(f"/?token={app.state.access.token}")
            pages["plugins"] = client.get("/plugins").text
            pages["export"] = client.get("/users/export.json?user=ana")

    monkeypatch.setattr(uvicorn.Server, "run", serve)
    runner = CliRunner()

    def web(*options: str) -> str:
        done = runner.invoke(cli, ["web", url, "--port", "0", *options], catch_exceptions=False)
        assert done.exit_code == 0, done.output
        return str(done.stderr)

    warned = web()
    assert "warning: relational plugin no_such_module_web:plugin not loaded" in warned
    assert "Not loaded: relational plugin no_such_module_web:plugin" in pages["plugins"]
    assert pages["export"].status_code == 503  # as plugstore user export fails
    assert "plugin &#39;entry point gone&#39; failed" in pages["export"].text

    assert "no_such_module_web" not in web("--no-entry-points") + pages["plugins"]
    assert ">poll</td>" in pages["plugins"]  # the built-in chat plugin's tables still
    assert pages["export"].json()["plugins"] == {}

    del installed["plugstore.relational"]
    web()
    assert pages["export"].json()["plugins"] == {"quotes": "hello"}


def test_a_failing_hook_is_a_503_page_naming_it(store: plugstore.Store) -> None:
    from plugstore.userdata import failing_hook

    for read_only in (False, True):
        access = Access(read_only=read_only)
        app = create_app(store, access, hooks=[failing_hook("quotes", "the service is down")])
        client = TestClient(app, follow_redirects=False)
        client.get(f"/?token={access.token}")
        page = client.get("/users", params={"user": "ana"})
        assert page.status_code == 503
        assert "plugin &#39;quotes&#39; failed: the service is down" in page.text
        assert ("read-only</span>" in page.text) is read_only
