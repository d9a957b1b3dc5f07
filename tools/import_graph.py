"""Print tuner's package-to-package import edges with their counts.

    python tools/import_graph.py            # edges between tuner's packages, most imports first
    python tools/import_graph.py --modules  # the module-to-module imports behind each edge
    python tools/import_graph.py --checkout /tmp/old  # another checkout's tuner/

A "package" is a folder under tuner/ (tuner.trainer) or a module directly in it (tuner.cli).
Imports inside functions count as much as those at a module's top (grimp reads both). Two packages
that import each other are marked "both ways": no order of layers can hold both.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import grimp


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def edges(root: str = "tuner") -> dict[tuple[str, str], list[tuple[str, str]]]:
    graph = grimp.build_graph(root, cache_dir=None)
    found: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            source, target = package_of(importer), package_of(imported)
            if source != target and target != root:
                found[(source, target)].append((importer, imported))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="list the module imports per edge")
    parser.add_argument(
        "--checkout",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="the checkout whose tuner/ is read (default: this one), e.g. an older "
        "commit's: git worktree add /tmp/old COMMIT",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(args.checkout.resolve()))
    found = edges()
    counts = Counter({edge: len(pairs) for edge, pairs in found.items()})
    for (source, target), count in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1])):
        mutual = "  both ways" if (target, source) in counts else ""
        print(f"{source:<22} -> {target:<22} {count:>3}{mutual}")
        if args.modules:
            for importer, imported in found[(source, target)]:
                print(f"      {importer} -> {imported}")
    mutual = sum(1 for source, target in counts if (target, source) in counts) // 2
    print(
        f"{len(counts)} edges, {sum(counts.values())} module imports between packages, "
        f"{mutual} pairs of packages importing each other"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
