"""The whole conformance suite for the example backend: this is all an author writes."""

from plugstore.testing import StoreConformance


class TestMinimalBackend(StoreConformance):
    url = "minimal://"
    options = {"plugin_dirs": [__file__.rpartition("/")[0]]}  # noqa: RUF012 - read-only
