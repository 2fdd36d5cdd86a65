"""The aggregates this system serves: one line each. An aggregate is a module with a module-level
`AGGREGATE` (producers.engine.aggregate.Aggregate); processors, topics, services and the command
API's routes derive from this list. Modules named in CQRS_EXTRA_MODULES join it (e.g. a test's toy
aggregate), with no engine file edited."""

from __future__ import annotations

import importlib
from functools import cache

from pydantic_settings import BaseSettings, SettingsConfigDict

from producers.engine.aggregate import Aggregate

REGISTERED = (
    "producers.aggregates.account",
    "producers.aggregates.transfer",
)


class ExtensionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    cqrs_extra_modules: str = ""  # comma-separated import paths of extra aggregate (or view) modules


@cache
def aggregates() -> dict[str, Aggregate]:
    extra = [m.strip() for m in ExtensionSettings().cqrs_extra_modules.split(",") if m.strip()]
    found: dict[str, Aggregate] = {}
    for path in (*REGISTERED, *extra):
        declared = getattr(importlib.import_module(path), "AGGREGATE", None)
        if declared is None:
            if path in REGISTERED:
                raise TypeError(f"{path} declares no AGGREGATE")
            continue  # an extra module may declare only a view
        if declared.name in found:
            raise ValueError(f"two aggregates are named {declared.name!r}")
        found[declared.name] = declared
    return found


def aggregate(name: str) -> Aggregate:
    try:
        return aggregates()[name]
    except KeyError:
        raise ValueError(
            f"no aggregate {name!r}; the aggregates are {', '.join(sorted(aggregates()))}"
        ) from None
