"""Shared test setup: polite to the shared cores, and no test writes to the user's caches."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# A torchvision-layout MNIST directory (docs/data.md's MNIST t10k split), looked for beside the
# checkout; tests that use it skip when it is absent.
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist-t10k-split"


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_as_in_a_terminal() -> None:
    # Tests send SIGINT to the commands they start, as Ctrl-C would. Started as a background job
    # of a script (`pytest &`) this process inherits SIGINT ignored, and so would every command it
    # starts, so their Ctrl-C tests would test an ignored Ctrl-C. A handler of our own is not
    # inherited across exec (an ignored signal is), so the commands start with Ctrl-C as in a
    # terminal. (tests/test_stops_e2e.py starts commands with SIGINT ignored on purpose.)
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
