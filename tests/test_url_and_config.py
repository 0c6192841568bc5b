"""URL parsing, credential masking, store resolution and options."""

from __future__ import annotations

from pathlib import Path

import pytest

import plugstore
from plugstore.config import default_path, default_url, resolve_url
from plugstore.errors import ConfigurationError
from plugstore.url import StoreURL, mask_text

SECRET = "s3cr3t-p@ss"


def test_parse_file_urls_like_sqlalchemy() -> None:
    assert StoreURL.parse("sqlite:///rel/x.db").path == "rel/x.db"
    assert StoreURL.parse("sqlite:////abs/x.db").path == "/abs/x.db"
    assert StoreURL.parse("shelf:///~/data").file_path == str(Path.home() / "data")
    assert StoreURL.parse("postgresql+psycopg://h/db").backend_name == "postgresql"


def test_password_is_masked_everywhere() -> None:
    text = "postgresql://bob:s3cr3t-p%40ss@db.local:5432/test?sslmode=require&secret=abc"
    url = StoreURL.parse(text)
    assert url.password == SECRET
    assert url.port == 5432
    assert url.query == {"sslmode": "require", "secret": "abc"}
    for shown in (str(url), repr(url), url.render(), f"{url}", str([url])):
        assert SECRET not in shown
        assert "s3cr3t" not in shown
        assert "abc" not in shown
    assert url.render(mask=False) == text
    assert "s3cr3t" not in mask_text("redis://:s3cr3t@h:99999999/0")


def test_bad_urls_fail_clearly_without_the_password() -> None:
    for text in ("postgresql://u:s3cr3t@h:notaport/db", "://nohost"):
        with pytest.raises(ConfigurationError) as err:
            StoreURL.parse(text)
        assert "s3cr3t" not in str(err.value)


def test_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PLUGSTORE_URL", raising=False)
    assert default_url() == f"sqlite:///{default_path()}"
    assert default_path().name == "plugstore.sqlite3"
    monkeypatch.setenv("PLUGSTORE_URL", "memory://from-env")
    assert resolve_url(None, {}).host == "from-env"
    assert resolve_url("memory://explicit", {}).host == "explicit"
    assert resolve_url("Memory", {}).scheme == "memory"
    with pytest.raises(ConfigurationError):
        resolve_url("some/relative/path.db", {})


def test_open_by_name_with_errbot_style_options(tmp_path: Path) -> None:
    with plugstore.open("sqlite", path=str(tmp_path / "by-name.db")) as store:
        store.namespace("n")["k"] = 1
        assert store.backend.path == tmp_path / "by-name.db"  # type: ignore[attr-defined]
    assert (tmp_path / "by-name.db").exists()


def test_open_with_no_argument_uses_plugstore_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLUGSTORE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    with plugstore.open() as store:
        store.namespace("n")["k"] = "v"
    assert (tmp_path / "env.db").exists()


def test_unknown_and_bad_options_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option.*tiemout"):
        plugstore.open(f"sqlite:///{tmp_path / 'x.db'}?tiemout=3")
    with pytest.raises(ConfigurationError, match="timeout"):
        plugstore.open(f"sqlite:///{tmp_path / 'x.db'}", timeout="soon")
    with pytest.raises(ConfigurationError, match="synchronous"):
        plugstore.open(f"sqlite:///{tmp_path / 'x.db'}?synchronous=maybe")
    with pytest.raises(ConfigurationError, match="table"):
        plugstore.open(f"sqlite:///{tmp_path / 'x.db'}", table="kv; DROP TABLE x")
    with pytest.raises(ConfigurationError, match="path"):
        plugstore.open("sqlite://")


def test_max_value_size_option_lowers_the_limit() -> None:
    with plugstore.open("memory://", max_value_size=10) as store:
        ns = store.namespace("n")
        ns["ok"] = "12345678"
        with pytest.raises(plugstore.ValueTooLargeError):
            ns["big"] = "123456789"
        assert "big" not in ns


def test_store_repr_masks_and_reports_state() -> None:
    store = plugstore.open("memory://")
    assert "open" in repr(store)
    store.close()
    assert "closed" in repr(store)


@pytest.mark.parametrize("option", ["sslpassword", "api_token", "client_secret", "PASSWD"])
def test_secret_looking_options_are_masked(option: str) -> None:
    url = StoreURL.parse(f"postgresql://u:pw@h/db?{option}=KEYPASS123&sslmode=require")
    assert "KEYPASS123" not in str(url)
    assert "KEYPASS123" not in repr(url)
    assert "sslmode=require" in str(url)


def test_plugin_dirs_cannot_come_from_a_url(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil.plug").write_text("[Core]\nName = evil\nModule = evilmod\n")
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(ConfigurationError, match="plugin_dirs"):
        plugstore.open(f"evil://x?plugin_dirs={tmp_path}")
    assert not marker.exists()


def test_max_value_size_must_be_positive() -> None:
    for bad in (0, -1):
        with pytest.raises(ConfigurationError):
            plugstore.open("memory://", max_value_size=bad)


def test_host_keeps_its_case_and_ipv6_brackets_come_off() -> None:
    from plugstore.url import StoreURL

    assert StoreURL.parse("dynamodb://MyTable?region=eu-west-1").host == "MyTable"
    assert StoreURL.parse("redis://u:p@[::1]:6379/0").host == "::1"
    assert StoreURL.parse("redis://u:p@[::1]:6379/0").port == 6379
    assert StoreURL.parse("postgresql://User@DB.Example.com:5/x").host == "DB.Example.com"
    assert StoreURL.parse("sqlite:////abs/path.db").host is None
    assert str(StoreURL.parse("redis://[::1]:6379/0")) == "redis://[::1]:6379/0"
