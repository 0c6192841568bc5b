"""The directory Errbot scans for ``plugstore.plug`` (see :func:`..plugin_dir`)."""
