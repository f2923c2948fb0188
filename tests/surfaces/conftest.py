"""Fixtures of the surface tests: a record of the engines and stores a surface opens."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from selfimprove.engine import SelfImprovementEngine
from selfimprove.store import Store


@dataclasses.dataclass
class Constructed:
    """The engines built and the stores opened since the fixture started (real objects).

    Attributes:
        engines: Every :class:`SelfImprovementEngine` constructed.
        stores: Every :class:`Store` constructed (each one is a connection pool).
    """

    engines: list[SelfImprovementEngine] = dataclasses.field(default_factory=list)
    stores: list[Store] = dataclasses.field(default_factory=list)


@pytest.fixture
def constructed(monkeypatch: pytest.MonkeyPatch) -> Constructed:
    """Record each engine and store constructed; the constructors themselves run unchanged."""
    rec = Constructed()
    engine_init, store_init = SelfImprovementEngine.__init__, Store.__init__

    def record_engine(self: SelfImprovementEngine, *args: Any, **kwargs: Any) -> None:
        engine_init(self, *args, **kwargs)
        rec.engines.append(self)

    def record_store(self: Store, *args: Any, **kwargs: Any) -> None:
        store_init(self, *args, **kwargs)
        rec.stores.append(self)

    monkeypatch.setattr(SelfImprovementEngine, "__init__", record_engine)
    monkeypatch.setattr(Store, "__init__", record_store)
    return rec
