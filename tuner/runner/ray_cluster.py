"""Ray itself: a local Ray of our own, or a cluster joined; what a cluster must offer a search."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import ray

from tuner.errors import TunerError
from tuner.space.spec import SearchSpec
from tuner.system.processes import reclaim_termination_signals
from tuner.system.tune_storage import STORAGE_HINT

PRESTART_ENV = "RAY_prestart_worker_first_driver"
_watchdog: list[subprocess.Popen] = []  # the one watching the local Ray this process started


def start_ray(address: str | None, verbose: bool) -> bool:
    """A local Ray sized to this machine, or the given cluster; True when we started it."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        # "local" is Ray's name for a new Ray of our own, as none is
        if address and address != "local":
            probe_address(address)
            ray.init(address=address, logging_level="WARNING", log_to_driver=verbose)
        else:
            init_local_ray(os.cpu_count() or 1, log_to_driver=verbose)
            start_watchdog()
            warn_without_token_auth()
        reclaim_termination_signals()  # ray.init took SIGTERM over: it would abort the driver
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as err:
        stop_ray()
        raise TunerError(
            f"cannot start or join Ray at {address or 'a local instance'!r}: {err}. Check "
            f"`ray status`; with token auth, export RAY_AUTH_MODE=token for every ray "
            f"command and driver."
        ) from None
    except (SystemExit, KeyboardInterrupt):
        # SIGTERM during ray.init meets Ray's own handlers, which exit (SystemExit); SIGHUP, ours.
        # Either way it is a stop, as Ctrl-C: what Ray started so far goes.
        stop_ray()
        raise KeyboardInterrupt from None
    return True


def init_local_ray(num_cpus: int, log_to_driver: bool = False) -> None:
    """A new Ray of our own (address="local": never someone's `ray start` on this machine), with
    no dashboard (nothing listens beyond what Ray itself needs) and no prestarted workers.

    By default the raylet prestarts a worker per CPU for the first driver's tasks. A search runs
    no task, only trial actors, each in a worker started for it, so the prestarted ones sat idle
    from start to end: each a second of imports, then a steady poll. The raylet this call starts
    reads RAY_prestart_worker_first_driver from the environment; a value already set is kept.
    """
    os.environ.setdefault(PRESTART_ENV, "0")
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=log_to_driver,
    )


def stop_ray() -> None:
    """ray.shutdown(), and the watchdog of a local Ray goes with it (it would have nothing to
    do)."""
    ray.shutdown()
    while _watchdog:
        proc = _watchdog.pop()
        proc.terminate()
        proc.wait()


def start_watchdog() -> None:
    """A process that ends this local Ray's processes once this driver is gone, even by SIGKILL
    (tuner/system/watchdog.py says why Ray's own fate-sharing is not enough). Never for a joined
    cluster."""
    # what ray.init started: GCS, raylet, ...
    node = getattr(ray._private.worker, "_global_node", None)
    roots = [
        info.process.pid
        for infos in getattr(node, "all_processes", {}).values()
        for info in infos
        if getattr(info, "process", None) is not None
    ]
    if not roots:
        return
    package_root = str(Path(__file__).resolve().parents[2])  # the watchdog imports this same tuner
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
    }
    _watchdog.append(
        subprocess.Popen(
            [sys.executable, "-m", "tuner.system.watchdog", str(os.getpid()), *map(str, roots)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    )


def probe_address(address: str) -> None:
    """A HOST:PORT nobody answers on: Ray itself retries it for minutes; a TCP probe answers in
    seconds."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # `auto`, ray://, or something Ray reports itself
    try:
        timeout = float(os.environ.get("TUNER_RAY_CONNECT_TIMEOUT", 5))
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, OverflowError) as err:
        raise TunerError(
            f"--address {address!r}: no Ray answers there "
            f"({getattr(err, 'strerror', None) or err}). Start the head with `ray start --head "
            f"--port {port}`, or pass its HOST:PORT (`ray status` on the head shows it), or omit "
            "--address for a local Ray."
        ) from None


def token_auth_enabled() -> bool:
    """What the Ray started by this process enforces (Ray >= 2.59 turns token auth on by default,
    unless RAY_AUTH_MODE=disabled)."""
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    return is_token_auth_enabled()


def warn_without_token_auth() -> None:
    """One line: a local Ray without token auth runs code for anyone who reaches its ports."""
    if not token_auth_enabled():
        print(
            "tuner: warning: the local Ray runs without token auth (RAY_AUTH_MODE="
            f"{os.environ.get('RAY_AUTH_MODE', 'unset')}): anyone who can reach this machine's Ray "
            "ports can run code as you. Unset RAY_AUTH_MODE or set it to token.",
            file=sys.stderr,
            flush=True,
        )


def check_cluster(spec: SearchSpec, storage_path: str | Path | None, verbose: bool) -> None:
    """Refuse what could never work, before any run exists: no shared storage across nodes,
    a trial larger than every node (it would wait forever)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and storage_path is None:
        raise TunerError(
            f"the Ray cluster has {len(nodes)} nodes, and trials on one node must read the "
            f"checkpoints and results written on another: pass --storage-path with {STORAGE_HINT}."
        )
    for key, need, name in (("CPU", spec.cpus, "cpus"), ("GPU", spec.gpus, "gpus")):
        have = max((n.get("Resources", {}).get(key, 0) for n in nodes), default=0)
        if need > have:
            where = (
                "the Ray cluster has"
                if len(nodes) == 1
                else "the largest node of the Ray cluster has"
            )
            raise TunerError(
                f"{spec.path}: resources.{name}: each trial asks for {need:g} {key}, {where} "
                f"{have:g}. Lower it, or join a larger cluster (--address)."
            )
    if len(nodes) > 1 and spec.max_failures == 0 and verbose:
        print(
            "note: max_failures is 0, so a node lost mid-search fails the trials on it; with "
            "max_failures >= 1 they resume from their last checkpoint on another node."
        )
