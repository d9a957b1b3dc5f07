"""Shared test setup: polite to the shared cores, no test writes to the user's caches, and the
fixtures and helpers more than one test folder uses.

Test modules import helpers as `tests.<module>` (tests/ and its folders are packages, so the
same file name in two folders is two modules)."""

from __future__ import annotations

import os
import signal

import pytest


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` (pyproject.toml's addopts): a worker per core, and one more. Tests also wait on
    the processes they start (a paced trial, a server coming up); a third worker on 2 cores fills
    those waits (on 2 cores, time `python -m pytest` against `python -m pytest -n 2`)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist reads it
    return len(os.sched_getaffinity(0)) + 1


# Modules two or more of whose tests share a module-scoped fixture (a local Ray, a finished search,
# a UI, a two-node cluster, trained models): xdist runs each on one worker, so the fixture is set up
# once. Spread over workers, as `--dist worksteal` did, each worker set it up again: in one run the
# UI module's searches and UI twice (about 30 core-s), in another the two-node cluster twice.
# tests/test_scheduling.py checks this list against what the tests use.
SHARED_SETUP_MODULES = frozenset(
    {
        "tests/commands/test_read_only_stores.py",
        "tests/e2e/test_cluster.py",
        "tests/e2e/test_search.py",
        "tests/e2e/test_server.py",
        "tests/e2e/test_ui_browser.py",
        "tests/runner/test_repeats.py",
        "tests/tracking/test_registry.py",
        "tests/tracking/test_search_runs.py",
        "tests/trainer/test_gpu.py",
        "tests/trainer/test_train.py",
        "tests/trainer/test_weak_supervision.py",
    }
)


def module_of(nodeid: str) -> str:
    """The test file a node id names, as SHARED_SETUP_MODULES spells it."""
    return nodeid.split("::", 1)[0]


# The tests `-m`/`-k` left out of this run: with them, tests/test_scheduling.py still sees every
# test of the modules it collected (`-m "not slow"` leaves some modules one fixture user).
DESELECTED: list[pytest.Item] = []


def pytest_deselected(items: list[pytest.Item]) -> None:
    DESELECTED.extend(items)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadgroup` (pyproject.toml's addopts) with its groups named here: each module of
    SHARED_SETUP_MODULES is one unit of work, every other test one of its own. xdist_group marks
    would say the same, but under pytest 9.2 they no longer reach xdist's scheduler: xdist 3.8
    passes a mark on as a suffix of the test's node id, which pytest 9.2 no longer reads, and the
    tests then spread silently."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedSetupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = module_of(nodeid)
            return module if module in SHARED_SETUP_MODULES else super()._split_scope(nodeid)

    return SharedSetupScheduling(config, log)


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_as_in_a_terminal() -> None:
    # Tests send SIGINT to the commands they start, as Ctrl-C would. Started as a background job
    # of a script (`pytest &`) this process inherits SIGINT ignored, and so would every command it
    # starts, so their Ctrl-C tests would test an ignored Ctrl-C. A handler of our own is not
    # inherited across exec (an ignored signal is), so the commands start with Ctrl-C as in a
    # terminal. (tests/e2e/test_stops.py starts commands with SIGINT ignored on purpose.)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_feature_cache(tmp_path_factory: pytest.TempPathFactory):
    # A session-wide cache: tests that load the same data featurize it once, and
    # ~/.cache/tuner stays untouched. Tests that inspect the cache pass their own cache_dir.
    old = os.environ.get("TUNER_CACHE_DIR")
    os.environ["TUNER_CACHE_DIR"] = str(tmp_path_factory.mktemp("feature-cache"))
    yield
    if old is None:
        os.environ.pop("TUNER_CACHE_DIR", None)
    else:
        os.environ["TUNER_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs) for the module's in-process searches: ray.init costs seconds, and
    run_search leaves a Ray it did not start running. address="local": a new instance even when a
    `ray start` cluster runs on this machine."""
    import ray

    from tuner.runner.ray_cluster import init_local_ray

    init_local_ray(num_cpus=2)
    yield
    ray.shutdown()
