"""A data directory written by a real Errbot on Shelf, moved to plugstore and back."""

from __future__ import annotations

from pathlib import Path

from conftest import PLUGSTORE, plugin, run, running_bot, say


def test_shelf_bot_moves_to_plugstore_and_back(
    tmp_path: Path, store_url: str, clean_env: dict[str, str]
) -> None:
    shelf_dir = tmp_path / "shelf-data"
    with running_bot(shelf_dir, storage="Shelf") as bot:
        assert "configuration done" in say(bot, "!plugin config Memo {'GREETING': 'ahoy'}")
        say(bot, "!memo set meeting tomorrow")
        say(bot, "!memo keep from the shelf days")  # a custom class + an identifier
        say(bot, "!memo append one")
        # Errbot's Shelf names the file by the raw plugin name: "Test hooks ....db".
        assert say(bot, "!hooks set url https://example.org/hook") == "hooked url"
    assert (shelf_dir / "core.db.dat").exists() or (shelf_dir / "core.db").exists()

    done = run(PLUGSTORE, "import-errbot", str(shelf_dir), store_url, env=clean_env)
    assert done.returncode == 0, done.stderr
    assert "Memo" in done.stdout
    assert "MISMATCH" not in done.stdout
    assert "Test%20hooks%20for%20webhooks%20testing" in done.stdout

    with running_bot(tmp_path / "plugstore-data", storage_config={"url": store_url}) as bot:
        assert say(bot, "!memo get meeting") == "meeting = tomorrow"
        assert say(bot, "!memo show") == "Keepsake from gbin@localhost: from the shelf days"
        assert say(bot, "!memo append two") == "log has 2"
        assert "ahoy" in say(bot, "!plugin config Memo")  # the plugin config came along
        say(bot, "!memo set added after-import")
        assert say(bot, "!hooks get url") == "url = https://example.org/hook"
        assert say(bot, "!hooks count") == "hooks 1"
        memo = plugin(bot)
        assert memo["last_speaker"] == bot.bot.build_identifier("gbin@localhost")

    back_dir = tmp_path / "shelf-again"
    done = run(PLUGSTORE, "export-errbot", store_url, str(back_dir), env=clean_env)
    assert done.returncode == 0, done.stderr
    with running_bot(back_dir, storage="Shelf") as bot:
        assert say(bot, "!memo get added") == "added = after-import"
        assert say(bot, "!memo show") == "Keepsake from gbin@localhost: from the shelf days"
        assert say(bot, "!memo append three") == "log has 3"
        assert "ahoy" in say(bot, "!plugin config Memo")
        assert say(bot, "!hooks get url") == "url = https://example.org/hook"
        assert say(bot, "!hooks get count") == "count = 1"  # a counter, pickled back
