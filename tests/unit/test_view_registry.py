"""The view registry: the built-in views, and view modules named in CQRS_EXTRA_MODULES."""

from __future__ import annotations

import pytest

from stream_processors.views.registry import RegistrySettings, load, view_spec
from tests.support import toy_view


def test_the_registry_names_each_view_and_its_source() -> None:
    sources = {name: view_spec(name).source for name in ("accounts", "transfers", "statements")}
    assert sources == {"accounts": "account", "transfers": "transfer", "statements": "account"}
    with pytest.raises(ValueError, match="the views are accounts, statements, transfers"):
        view_spec("nope")


def test_the_registry_takes_view_modules_from_the_settings() -> None:
    views = load(RegistrySettings(cqrs_extra_modules=" tests.support.toy_view ,"))
    assert views[toy_view.NAME] is toy_view.VIEW and {"accounts", "transfers", "statements"} <= set(views)
    with pytest.raises(ValueError, match="two views are named"):
        load(RegistrySettings(cqrs_extra_modules="tests.support.toy_view,tests.support.toy_view"))
    # The list is shared with the command side: a module without a VIEW (an aggregate) is not a view.
    assert set(load(RegistrySettings(cqrs_extra_modules="tests.support.toy_counter"))) == set(load())


def test_extra_modules_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQRS_EXTRA_MODULES", "tests.support.toy_view")
    assert toy_view.NAME in load()
