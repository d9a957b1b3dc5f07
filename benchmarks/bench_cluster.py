"""Cluster benchmark: the same search on one Ray node, then on two, started with `ray start`.

    python -m benchmarks.bench_cluster [--json] [--trials 8] [--iterations 3000]

A head node (`ray start --head --num-cpus 1 ...`) runs the search alone; then a worker node
(`ray start --address ... --num-cpus 1 ...`) joins and the same search runs again. Each node
has 1 CPU, each trial asks for 1: one trial at a time per node. Trials train on digits for a
fixed number of iterations (a few seconds each).

two_node_speedup: trial throughput on two nodes / on one (trials per second from the first
trial's start to the last trial's end, from their MLflow runs). Target >= 1.8. Also printed:
the whole `run_search` wall-time ratio (Ray connect, Tune set-up and baselines included), and
the mean time of one trial on each: when two nodes share one machine's cores with other work,
trials slow down, and speedup_at_equal_trial_speed (the ratio had they not) isolates Ray's part.

Every process it starts is ended by its id (each `ray start --block` leads its own session);
nothing else on the machine is touched. All ray commands and the driver share RAY_AUTH_MODE
(token unless set): the node processes, workers and driver must agree on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.common import Machine, add_json, emit_json
from tuner.system.processes import end_session

RAY = str(Path(sys.executable).with_name("ray"))
NODE_MEMORY = 2 * 1024**3
OBJECT_STORE = 200 * 1024**2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(args: list[str], log: Path) -> subprocess.Popen:
    """`ray start ... --block` in a session of its own; returns once the node is up."""
    cmd = [
        RAY,
        "start",
        *args,
        "--num-cpus",
        "1",
        "--memory",
        str(NODE_MEMORY),
        "--object-store-memory",
        str(OBJECT_STORE),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--metrics-export-port",
        str(free_port()),
        "--runtime-env-agent-port",
        str(free_port()),
        "--disable-usage-stats",
        "--block",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start failed:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def stop_node(proc: subprocess.Popen) -> None:
    """SIGTERM the node's processes (ray start, GCS, raylet, agents, workers), then SIGKILL
    stragglers."""
    end_session(proc.pid, grace=10.0)
    proc.wait()


def run(name: str, root: Path, address: str, trials: int, iterations: int) -> dict[str, float]:
    from mlflow import MlflowClient

    from tuner.runner.search import run_search
    from tuner.space.load import load_spec

    space = root / f"{name}.yaml"
    space.write_text(
        textwrap.dedent(f"""
        name: {name}
        fixed: {{dataset: digits, hidden_dims: [64], batch_size: 64, iterations: {iterations},
                eval_every: {max(1, iterations // 4)}}}
        params:
          seed: {{grid: {list(range(trials))}}}
        """)
    )
    uri = f"sqlite:///{root}/mlflow.db"
    started = time.perf_counter()
    table = run_search(
        load_spec(space),
        tracking_uri=uri,
        storage_path=root / "ray",
        address=address,
        verbose=False,
    ).trials
    wall = time.perf_counter() - started
    assert (table["status"] == "FINISHED").all() and len(table) == trials, table
    client = MlflowClient(tracking_uri=uri)
    runs = [
        r
        for r in client.search_runs([client.get_experiment_by_name(name).experiment_id])
        if r.data.tags.get("tuner.role") == "trial"
    ]
    span = (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000
    nodes = {}
    for path in (root / "ray" / name).glob("run_trial_*/result.json"):
        node = json.loads(path.read_text().splitlines()[-1])["node_id"][:8]
        nodes[node] = nodes.get(node, 0) + 1
    # A trial's own time: longer on two nodes means the CPUs were shared (with other work on
    # this machine), not that Ray scheduled badly.
    trial_s = float(table["seconds"].mean()) if "seconds" in table else float("nan")
    return {"wall_s": wall, "trial_span_s": span, "mean_trial_s": trial_s, "trials_per_node": nodes}


def measure(trials: int, iterations: int) -> tuple[dict, dict]:
    """The search on the head node alone, then with a worker node: (one node, two nodes)."""
    root = Path(tempfile.mkdtemp(prefix="tbc-"))  # short: Ray's socket paths live under it
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(
            start_node(
                [
                    "--head",
                    "--port",
                    str(free_port()),
                    "--include-dashboard",
                    "false",
                    "--temp-dir",
                    str(root / "ray-tmp"),
                ],
                root / "head.log",
            )
        )
        address = head_address(root / "head.log")
        one = run("bench-1node", root, address, trials, iterations)
        nodes.append(start_node(["--address", address], root / "worker.log"))
        return one, run("bench-2node", root, address, trials, iterations)
    finally:
        for proc in reversed(nodes):
            stop_node(proc)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_json(parser)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=3000, help="per trial (~5 s on one core)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # for every ray command and the driver alike
    machine = Machine()
    one, two = measure(args.trials, args.iterations)
    speedup = one["trial_span_s"] / two["trial_span_s"]
    wall = one["wall_s"] / two["wall_s"]
    # The same ratio had each trial run as fast as on one node: what Ray's scheduling gives when
    # the two nodes' CPUs are not shared with other work (on one machine they may be).
    normalized = speedup * two["mean_trial_s"] / one["mean_trial_s"]
    for label, r in (("1 node ", one), ("2 nodes", two)):
        print(
            f"{label}: {args.trials} trials in {r['trial_span_s']:.1f} s of trials "
            f"({args.trials / r['trial_span_s']:.3f} trials/s), run_search {r['wall_s']:.1f} s; "
            f"{r['mean_trial_s']:.1f} s per trial; trials per node {r['trials_per_node']}"
        )
    load = machine.done()
    print(machine.line())
    print(
        f"two_node_speedup (trial throughput) {speedup:.2f} (target >= 1.8); wall-time ratio "
        f"{wall:.2f}; at one-node trial speed {normalized:.2f}"
    )
    if args.json:
        emit_json(
            {
                "two_node_speedup": round(speedup, 3),
                "wall_speedup": round(wall, 3),
                "speedup_at_equal_trial_speed": round(normalized, 3),
                "one_node": one,
                "two_nodes": two,
                "trials": args.trials,
                "iterations": args.iterations,
                **load,
            }
        )
    return 0


def head_address(log: Path) -> str:
    """The address `ray start --head` printed: on Linux Ray puts the machine's IP there, not
    127.0.0.1."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text())
    match = re.search(r"ray start --address='([^']+)'", text)
    if match is None:
        raise RuntimeError(f"no address in {log}:\n{text[-2000:]}")
    return match.group(1)


if __name__ == "__main__":
    sys.exit(main())
