"""Finding chat plugins: the built-ins, the ``plugstore.bot_plugins`` entry points, and
``*.py`` files in plugin directories.

An entry point names a :class:`~plugstore.bot.plugin.Plugin` subclass
(``"mypkg.karma:Karma"``) or a module, whose Plugin subclasses are all taken.  A plugin
directory is read file by file; a file that fails to import is reported and skipped, the
others still load.  Loading a plugin runs its code: only the operator names directories.
"""

from __future__ import annotations

import inspect
import logging
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from plugstore.registry import import_file

from .plugin import Plugin

ENTRY_POINT_GROUP = "plugstore.bot_plugins"


def builtin_plugins() -> list[type[Plugin]]:
    """The plugins that come with plugstore, in ``.help`` order."""
    from .plugins.games import Games
    from .plugins.help import Help
    from .plugins.karma import Karma
    from .plugins.privacy import Privacy
    from .plugins.remember import Remember

    plugins: list[type[Plugin]] = [Help, Remember, Karma, Games, Privacy]
    try:  # its tables need SQLAlchemy and Alembic (the "relational" extra)
        from .plugins.poll import Poll
    except ImportError as exc:
        logging.getLogger(__name__).warning(
            'the poll plugin needs %s: pip install "plugstore[relational]"', exc.name
        )
    else:
        plugins.append(Poll)
    return plugins


def entry_point_plugins() -> tuple[list[type[Plugin]], list[str]]:
    """Plugins installed by other packages, and one line per entry point that failed."""
    found: list[type[Plugin]] = []
    problems: list[str] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
            classes = plugins_in(target) if isinstance(target, ModuleType) else [target]
            for cls in classes:
                if not (inspect.isclass(cls) and issubclass(cls, Plugin)):
                    raise TypeError(f"{ep.value} is not a plugstore.bot.Plugin subclass")
            found += classes
        except (Exception, SystemExit) as exc:
            problems.append(f"entry point {ep.name} = {ep.value}: {type(exc).__name__}: {exc}")
    return found, problems


def directory_plugins(directory: Path) -> tuple[list[type[Plugin]], list[str]]:
    """Plugins defined in ``directory/*.py`` (files starting with ``_`` are skipped)."""
    if not directory.is_dir():
        return [], [f"plugin directory {directory} does not exist"]
    found: list[type[Plugin]] = []
    problems: list[str] = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            module = import_file(f"plugstore_chat_plugins.{path.stem}", path)
        except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() at import
            problems.append(f"plugin file {path}: {type(exc).__name__}: {exc}")
            continue
        classes = plugins_in(module)
        if not classes:
            problems.append(f"plugin file {path} defines no plugstore.bot.Plugin subclass")
        found += classes
    return found, problems


def plugins_in(module: ModuleType) -> list[type[Plugin]]:
    """The Plugin subclasses defined (not merely imported) in ``module``.

    A class that another class of the module derives from is a base, not a plugin.
    """
    defined = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Plugin) and cls is not Plugin and cls.__module__ == module.__name__
    ]
    bases = {base for cls in defined for base in cls.__mro__[1:]}
    return [cls for cls in defined if cls not in bases]
