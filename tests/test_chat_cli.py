"""``plugstore chat`` run as a user runs it: separate processes, a terminal, pipes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import plugstore
from servers import require_server

PLUGSTORE = [sys.executable, "-m", "plugstore.cli"]


def chat(
    *args: str,
    url: str | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    options: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``plugstore [options] chat [args]`` in a new process."""
    environ = {**os.environ, **(env or {})}
    if url is not None:
        environ["PLUGSTORE_URL"] = url
    return subprocess.run(
        [*PLUGSTORE, *options, "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


def plugin_dir(tmp_path: Path, name: str, source: str) -> Path:
    """A plugins directory holding one file, ``name.py``."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / f"{name}.py").write_text(source)
    return plugins


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chat.db'}"


def test_readme_demo_on_the_default_store(tmp_path: Path) -> None:
    """The README's scripted demo, with no URL at all: the embedded default store."""
    env = {k: v for k, v in os.environ.items() if k != "PLUGSTORE_URL"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["HOME"] = str(tmp_path / "home")

    def run(line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["plugstore", "chat", "-c", line],
            capture_output=True,
            text=True,
            env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
            timeout=120,
            check=False,
        )

    first = run(".remember meeting is tomorrow")
    assert first.returncode == 0, first.stderr
    second = run(".whatis meeting")
    assert (second.returncode, second.stdout, second.stderr) == (0, "tomorrow\n", "")
    assert (tmp_path / "data" / "plugstore" / "plugstore.sqlite3").is_file()


def test_chat_migrates_the_poll_tables_on_the_default_store(tmp_path: Path) -> None:
    """The first start creates pl_poll beside the default store file and brings it to
    its head; `plugstore db current` then reports nothing pending."""
    env = {k: v for k, v in os.environ.items() if k != "PLUGSTORE_URL"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["PLUGSTORE_CHAT_USER"] = "ana"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PLUGSTORE, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )

    opened = run("chat", "-c", ".poll", "-c", "Lunch?", "-c", "pizza", "-c", "sushi", "-c", "done")
    assert opened.returncode == 0, opened.stderr
    assert "Poll 1 is open: Lunch? [1] pizza [2] sushi" in opened.stdout
    store_dir = tmp_path / "data" / "plugstore"
    assert (store_dir / "plugstore.pl_poll.sqlite3").is_file()
    current = run("db", "current")
    assert current.returncode == 0, current.stderr
    assert re.search(r"^poll\s+pl_poll\s+0003\s+0003\s+0$", current.stdout, re.M), current.stdout
    again = run("chat", "-c", ".poll 1")  # a new process: at head, nothing to migrate
    assert again.stdout.splitlines()[0] == "Poll 1 (open, by ana): Lunch?"


def test_chat_migrates_the_poll_tables_on_postgresql() -> None:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    from sqlalchemy import create_engine, text

    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        with engine.begin() as conn:  # as on a server that never ran the poll plugin
            conn.execute(text("DROP SCHEMA IF EXISTS pl_poll CASCADE"))
        url = "postgresql://postgres@127.0.0.1:5432/test"
        opened = chat("-c", ".poll", "-c", "Q?", "-c", "a", "-c", "b", "-c", "done", url=url)
        assert opened.returncode == 0, opened.stderr
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM pl_poll.alembic_version"))
            assert version.scalars().all() == ["0003"]
            assert conn.execute(text("SELECT count(*) FROM pl_poll.polls")).scalar() == 1
            in_public = conn.execute(
                text(
                    "SELECT count(*) FROM pg_tables"
                    " WHERE tablename = 'polls' AND schemaname <> 'pl_poll'"
                )
            )
            assert in_public.scalar() == 0
    finally:
        engine.dispose()


def test_one_shot_commands_pipes_and_exit_status(url: str) -> None:
    result = chat("-c", ".remember a is 1", "-c", ".whatis a", url=url)
    assert (result.returncode, result.stdout) == (0, "OK, a is 1.\n1\n")
    missing = chat("-c", ".whatis nothing", url=url)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr == "I don't know what nothing is (.remember nothing is ...)\n"
    piped = chat("--user", "bob", url=url, stdin=".whatis a\npython++\n\n.nope\n.karma python\n")
    assert piped.returncode == 1  # .nope failed; the lines after it still ran
    assert piped.stdout == "1\npython has karma 1\npython has karma 1\n"
    assert "unknown command .nope" in piped.stderr
    assert "Traceback" not in piped.stderr


def test_user_option_and_bad_user(url: str) -> None:
    assert chat("--user", "ana", "-c", "bob++", url=url).stdout == "bob has karma 1\n"
    assert "no karma for yourself" in chat("--user", "bob", "-c", "bob++", url=url).stdout
    env_user = chat("-c", "bob++", url=url, env={"PLUGSTORE_CHAT_USER": "bob"})
    assert "no karma for yourself" in env_user.stdout
    empty = chat("--user", " ", "-c", ".help", url=url)
    assert empty.returncode == 1
    assert empty.stderr == "error: --user: a user name must not be empty\n"


def test_storage_option_wins_and_a_dead_server_is_one_line(url: str, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert chat("--storage", other, "-c", ".remember x is 2", url=url).returncode == 0
    with plugstore.open(other) as store:
        assert store.namespace("chat.remember")["x"]["value"] == "2"
    with plugstore.open(url) as store:
        assert "chat.remember" not in store.namespaces()
    dead = chat("--storage", "postgresql://bot:s3cr3t@127.0.0.1:1/db", "-c", ".help")
    assert dead.returncode == 1
    assert dead.stderr.startswith("error: ")
    assert dead.stderr.count("\n") == 1
    assert "127.0.0.1:1" in dead.stderr
    assert "s3cr3t" not in dead.stderr


def test_poll_resumes_across_processes(url: str) -> None:
    for line, expected in [
        (".poll", "What is the question?"),
        ("Tabs or spaces?", "Send the options"),
        ("tabs", "Option 1: tabs"),
        ("spaces", "Option 2: spaces"),
        ("done", "Poll 1 is open: Tabs or spaces? [1] tabs [2] spaces"),
    ]:
        result = chat("--user", "ana", "-c", line, url=url)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(expected)
    chat("--user", "bob", "-c", ".vote 1 spaces", url=url)
    assert "2. spaces: 1 vote" in chat("-c", ".poll 1", url=url).stdout


PLUGIN = '''
from plugstore.bot import Context, Plugin, command

class Greeter(Plugin):
    """Says hello and counts it."""

    @command(usage="[NAME]")
    def hello(self, ctx: Context, args: str) -> str:
        """Say hello."""
        return f"hello {args or ctx.user} #{self.data.incr('greetings')}"
'''


def test_plugins_directory(url: str, tmp_path: Path) -> None:
    plugins = plugin_dir(tmp_path, "greeter", PLUGIN)
    (plugins / "broken.py").write_text("def oops(:\n")
    (plugins / "empty.py").write_text("X = 1\n")
    (plugins / "_private.py").write_text("raise SystemExit('must not be imported')\n")
    first = chat("--user", "ana", "-p", str(plugins), "-c", ".hello", "-c", ".hello you", url=url)
    assert (first.returncode, first.stdout) == (0, "hello ana #1\nhello you #2\n"), first.stderr
    warnings = first.stderr.splitlines()
    assert any(
        w.startswith("warning: plugin file") and "broken.py: SyntaxError" in w for w in warnings
    )
    assert any("empty.py defines no plugstore.bot.Plugin subclass" in w for w in warnings)
    assert not any("_private" in w for w in warnings)
    with plugstore.open(url) as store:
        assert store.namespace("chat.greeter")["greetings"] == 2
    helped = chat("-p", str(plugins), "-c", ".help", url=url)
    assert re.search(r"^\.hello \[NAME\]\s+Say hello\.$", helped.stdout, re.MULTILINE)
    missing = chat("-p", str(tmp_path / "nope"), "-c", ".help", url=url)
    assert missing.returncode == 0
    assert "does not exist" in missing.stderr


def test_entry_point_plugins(url: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "greeterpkg").mkdir(parents=True)
    (site / "greeterpkg" / "__init__.py").write_text(PLUGIN)
    dist = site / "greeterpkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: greeterpkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[plugstore.bot_plugins]\ngreeter = greeterpkg:Greeter\nbad = greeterpkg:nothing\n"
    )
    env = {"PYTHONPATH": str(site)}
    result = chat("--user", "ana", "-c", ".hello", url=url, env=env)
    assert (result.returncode, result.stdout) == (0, "hello ana #1\n")
    assert "warning: entry point bad = greeterpkg:nothing: AttributeError" in result.stderr
    skipped = chat("--no-entry-points", "-c", ".hello", url=url, env=env)
    assert skipped.returncode == 1
    assert "unknown command .hello" in skipped.stderr


def test_debug_shows_the_traceback_of_a_failing_plugin(url: str, tmp_path: Path) -> None:
    plugins = plugin_dir(
        tmp_path,
        "boom",
        "from plugstore.bot import Plugin, command\n"
        "class Boom(Plugin):\n"
        '    """Fails."""\n'
        "    @command()\n"
        "    def boom(self, ctx, args):\n"
        '        """Fail."""\n'
        "        return 1 / 0\n",
    )
    plain = chat("-p", str(plugins), "-c", ".boom", url=url)
    assert plain.returncode == 1
    assert plain.stderr == (
        "plugin 'boom' failed in .boom: ZeroDivisionError: division by zero "
        "(run with --debug for the traceback)\n"
    )
    debug = chat("-p", str(plugins), "-c", ".boom", url=url, options=["--debug"])
    assert "Traceback" in debug.stderr
    assert "return 1 / 0" in debug.stderr


def test_interactive_session_in_a_terminal(url: str, tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    state_home = tmp_path / "state"
    env = {
        **os.environ,
        "PLUGSTORE_URL": url,
        "XDG_STATE_HOME": str(state_home),
        "TERM": "dumb",
        "COLUMNS": "200",
    }

    def session() -> pexpect.spawn:
        child = pexpect.spawn(
            sys.executable,
            [*PLUGSTORE[1:], "chat", "--user", "ana"],
            env=env,
            encoding="utf-8",
            timeout=30,
        )
        child.expect_exact("commands start with '.': try .help")
        child.expect_exact("ana> ")
        return child

    child = session()
    child.sendline(".remember meeting is tomorrow")
    child.expect_exact("OK, meeting is tomorrow.")
    child.expect_exact("ana> ")
    child.sendline(".whatis meeting")
    child.expect_exact("tomorrow")
    child.expect_exact("ana> ")
    child.sendline(".nope")
    child.expect_exact("unknown command .nope")
    child.expect_exact("ana> ")
    child.sendcontrol("c")
    child.expect_exact("(Ctrl-C again, Ctrl-D or .quit to leave)")
    child.expect_exact("ana> ")
    child.sendline(".quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    history = (state_home / "plugstore" / "chat_history").read_text()
    assert ".remember meeting is tomorrow" in history

    child = session()  # a new session: readline history (up arrow) and the data are back
    child.send("\x1b[A" * 3 + "\r")  # up 3 times: past ".quit" and ".nope" to ".whatis"
    child.expect_exact("tomorrow")
    child.expect_exact("ana> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in (child.before or "")


# -- 4 processes x 500 games on one store: exact totals ---------------------------------

PROCESSES, GAMES = 4, 500


def play_concurrently(url: str) -> None:
    """4 consoles (2 as ana, 2 as bob) pipe 500 games each into one store at once."""
    moves = "".join(f".play rps {('rock', 'paper', 'scissors')[i % 3]}\n" for i in range(GAMES))
    env = {**os.environ, "PLUGSTORE_URL": url}
    procs = [
        subprocess.Popen(
            [*PLUGSTORE, "chat", "--user", ("ana", "bob")[i % 2]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(PROCESSES)
    ]
    # Let every console start and block reading stdin, then feed all four at once (the
    # moves fit in a pipe buffer), so their games really overlap.
    time.sleep(2)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(moves)
        proc.stdin.close()
    seen: dict[str, Counter[str]] = {"ana": Counter(), "bob": Counter()}
    verdicts = {"you win": "wins", "a draw": "draws", "I win": "losses"}
    for i, proc in enumerate(procs):
        assert proc.stdout is not None
        assert proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=300)
        assert proc.returncode == 0, err
        lines = out.splitlines()
        assert len(lines) == GAMES, err
        for line in lines:
            verdict = re.match(r"I play \w+: (you win|a draw|I win) ", line)
            assert verdict, line
            seen[("ana", "bob")[i % 2]][verdicts[verdict.group(1)]] += 1
    with plugstore.open(url) as store:
        games = store.namespace("chat.games")
        for user, counts in seen.items():
            player = games.scope(channel="general", user=user)
            for outcome in ("wins", "draws", "losses"):
                assert player.get(outcome, 0) == counts[outcome], (user, outcome)
    leaderboard = chat("-c", ".leaderboard", url=url)
    assert leaderboard.returncode == 0, leaderboard.stderr
    board = leaderboard.stdout
    assert sum(int(n) for n in re.findall(r"(\d+) games:", board)) == PROCESSES * GAMES
    assert re.findall(r"(\d+) games:", board) == [str(GAMES * 2)] * 2


@pytest.mark.slow
def test_four_processes_play_exact_totals_on_sqlite(url: str) -> None:
    play_concurrently(url)


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    schema = f"chat_{uuid.uuid4().hex[:12]}"
    yield f"postgresql://postgres@127.0.0.1:5432/test?schema={schema}"
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres") as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.slow
def test_four_processes_play_exact_totals_on_postgresql(pg_url: str) -> None:
    play_concurrently(pg_url)


def test_chat_help_text_documents_the_options() -> None:
    result = chat("--help")
    assert result.returncode == 0, result.stderr
    text = textwrap.dedent(result.stdout)
    for option in ("--command", "--storage", "--user", "--plugins-dir", "--seed"):
        assert option in text


def test_quit_ends_a_script_and_a_closed_stdin_says_nothing(url: str) -> None:
    piped = chat(url=url, stdin=".remember a is 1\n.quit\n.remember b is 2\n")
    assert (piped.returncode, piped.stdout) == (0, "OK, a is 1.\n")
    assert chat("-c", ".exit", url=url).returncode == 0
    closed = subprocess.run(
        [*PLUGSTORE, "chat"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "PLUGSTORE_URL": url},
        timeout=60,
        check=False,
    )
    assert (closed.returncode, closed.stderr) == (0, "")
    really_closed = subprocess.run(
        [*PLUGSTORE, "chat"],
        capture_output=True,
        text=True,
        env={**os.environ, "PLUGSTORE_URL": url},
        timeout=60,
        check=False,
        preexec_fn=lambda: os.close(0),
    )
    assert (really_closed.returncode, really_closed.stderr) == (0, "")


def test_a_user_name_with_control_characters_is_refused(url: str) -> None:
    result = chat("--user", "eve\n  1. mallory", "-c", ".play dice", url=url)
    assert result.returncode == 1
    assert result.stderr.startswith("error: --user: a user name must not contain control")


def test_known_secrets_never_reach_the_output(url: str, tmp_path: Path) -> None:
    plugins = plugin_dir(
        tmp_path,
        "leak",
        "import os\n"
        "from plugstore.bot import Plugin, command\n"
        "class Leak(Plugin):\n"
        '    """Leaks."""\n'
        "    @command()\n"
        "    def leak(self, ctx, args):\n"
        '        """Leak."""\n'
        "        secret = os.environ['PLUGSTORE_SECRET']\n"
        "        if args:\n"
        "            raise RuntimeError(f'failed with {secret}')\n"
        "        return f'the secret is {secret}'\n",
    )
    for debug in ([], ["--debug"]):
        result = chat(
            "-p",
            str(plugins),
            "-c",
            ".leak",
            "-c",
            ".leak x",
            url=url,
            env={"PLUGSTORE_SECRET": "hunter2hunter2"},
            options=debug,
        )
        assert "the secret is ***" in result.stdout
        assert "failed with ***" in result.stderr
        assert "hunter2" not in result.stdout + result.stderr


def test_ctrl_c_abandons_a_slow_command_and_the_session_goes_on(url: str, tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    plugins = plugin_dir(
        tmp_path,
        "slow",
        "import time\n"
        "from plugstore.bot import Plugin, command\n"
        "class Slow(Plugin):\n"
        '    """Slow."""\n'
        "    @command()\n"
        "    def slow(self, ctx, args):\n"
        '        """Wait (like a command blocked on a locked store)."""\n'
        "        print('waiting', flush=True)\n"
        "        time.sleep(60)\n",
    )
    env = {**os.environ, "PLUGSTORE_URL": url, "XDG_STATE_HOME": str(tmp_path / "s")}
    child = pexpect.spawn(
        sys.executable,
        [*PLUGSTORE[1:], "chat", "--user", "ana", "-p", str(plugins)],
        env=env,
        encoding="utf-8",
        timeout=30,
    )
    child.expect_exact("ana> ")
    child.sendline(".slow")
    child.expect_exact("waiting")
    child.sendcontrol("c")
    child.expect_exact("(interrupted)")
    child.expect_exact("ana> ")
    child.sendline(".remember still is here")
    child.expect_exact("OK, still is here.")
    child.sendline(".quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
