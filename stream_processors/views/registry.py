"""The views a projector can build and the query API can serve: name -> spec (source aggregate,
projection, how the query API treats it). One line per view module here; more view modules, each
with a module-level `VIEW`, can be named in CQRS_EXTRA_MODULES without editing any engine file."""

from __future__ import annotations

import importlib
from types import ModuleType

from pydantic_settings import BaseSettings, SettingsConfigDict

from stream_processors.views import accounts, statements, transfers
from stream_processors.views.base import ViewSpec

BUILT_IN: tuple[ModuleType, ...] = (
    accounts,
    transfers,
    statements,
)


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    # Comma-separated import paths of more modules (e.g. `tests.support.toy_view`); those with a
    # module-level VIEW join the views. The command side reads the same list for aggregates.
    cqrs_extra_modules: str = ""


def load(settings: RegistrySettings | None = None) -> dict[str, ViewSpec]:
    settings = settings or RegistrySettings()
    extra = [importlib.import_module(p.strip()) for p in settings.cqrs_extra_modules.split(",") if p.strip()]
    views: dict[str, ViewSpec] = {}
    for module in (*BUILT_IN, *extra):
        spec = getattr(module, "VIEW", None)
        if spec is None and module not in BUILT_IN:
            continue  # an extra module may declare only an aggregate (producers/aggregates)
        if not isinstance(spec, ViewSpec):
            raise ValueError(f"{module.__name__}.VIEW is not a ViewSpec")
        if spec.name in views:
            raise ValueError(f"two views are named {spec.name!r} ({module.__name__} is the second)")
        views[spec.name] = spec
    return views


VIEWS = load()


def view_spec(name: str) -> ViewSpec:
    try:
        return VIEWS[name]
    except KeyError:
        raise ValueError(f"no view {name!r}; the views are {', '.join(sorted(VIEWS))}") from None
