"""Where the tests find the repository's own files, wherever a test module sits in tests/."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SPACES = REPO_ROOT / "search_spaces"
# A torchvision-layout MNIST directory (docs/data.md's MNIST t10k split), looked for beside the
# checkout; tests that use it skip when it is absent.
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist-t10k-split"
