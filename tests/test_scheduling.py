"""The suite's own scheduling: tests/conftest.py's SHARED_SETUP_MODULES names exactly the modules
two or more of whose tests share a module-scoped fixture, so that xdist sets each up once."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import DESELECTED, SHARED_SETUP_MODULES, module_of


def sharing_a_module_fixture(items: list[pytest.Item]) -> set[str]:
    """Modules with two or more collected tests that use a module-scoped fixture."""
    users = Counter(
        module_of(item.nodeid)
        for item in items
        if any(
            defs and defs[-1].scope == "module"
            for defs in item._fixtureinfo.name2fixturedefs.values()
        )
    )
    return {module for module, n in users.items() if n >= 2}


def test_the_modules_scheduled_whole_are_those_sharing_a_module_fixture(
    request: pytest.FixtureRequest,
) -> None:
    # What this run collected: the whole suite (as CI runs it), or the files asked for, with the
    # tests a mark or keyword expression deselected.
    items = [*request.session.items, *DESELECTED]
    collected = {module_of(item.nodeid) for item in items}
    assert sharing_a_module_fixture(items) == SHARED_SETUP_MODULES & collected
