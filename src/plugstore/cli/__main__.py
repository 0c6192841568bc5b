"""``python -m plugstore.cli``: the same as the ``plugstore`` script."""

from plugstore.cli import main

if __name__ == "__main__":
    main()
