"""Run the tutorial plugin: migrate it, store a row, read it back, use its settings.

python use_it.py sqlite:////tmp/tutorial.sqlite3
python use_it.py postgresql://postgres@127.0.0.1/test
"""

import sys

from sqlalchemy import func, select
from tutorial_plugin.tables import plugin, settings, string_ints

from plugstore.relational import RelationalHost


def main(url: str) -> None:
    with RelationalHost(url, [plugin]) as host:
        for applied in host.start():  # nothing the second time: already at the head
            print(f"migrated {applied.plugin}: {applied.start} -> {applied.end}")
        tutorial = host["tutorial"]
        with tutorial.session() as session:  # committed when the block ends
            session.execute(string_ints.insert().values(string1="apples", int1=3))
            settings.set(session, "greeting", "hi there")
        with tutorial.session() as session:
            rows = session.execute(select(func.count()).select_from(string_ints)).scalar()
            print(f"{rows} string_ints rows")
            print(f"greeting={settings.get(session, 'greeting')!r}")
            print(f"max_rows={settings.get(session, 'max_rows')!r}")  # the default


if __name__ == "__main__":
    main(sys.argv[1])
