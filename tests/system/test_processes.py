"""The mechanisms under tests/e2e/test_stops.py, fast: SIGTERM as Ctrl-C whatever SIGINT's
disposition, the watchdog ending a SIGKILLed driver's processes, a full disk found in an error."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT
from tuner.system.disk import NEARLY_FULL, full_filesystems, is_disk_full, mount_point
from tuner.system.processes import interrupt_handler_kept, session_pids, terminate_as_interrupt


@pytest.fixture
def sigint_restored():
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def hangup_restored():
    before = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, before)


def _wait_raises(sig: int) -> None:
    os.kill(os.getpid(), sig)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the handler runs at the next bytecode boundary
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_interrupts_even_with_sigint_ignored(
    sigint_restored, hangup_restored, sig: int
) -> None:
    # as `trap '' INT` or `cmd &` in a script leaves it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # as a terminal leaves it, even under a nohup'ed pytest
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    with terminate_as_interrupt(), pytest.raises(KeyboardInterrupt):
        _wait_raises(sig)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_sigterm_calls_whatever_handles_ctrl_c(sigint_restored) -> None:
    calls = []
    signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))  # as Ray Tune's does
    with terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
    assert calls == [signal.SIGINT]


def test_the_sigint_handler_left_by_a_block_is_undone(sigint_restored) -> None:
    with interrupt_handler_kept():
        signal.signal(signal.SIGINT, lambda *_: None)  # Tune's fit leaves its handler behind
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_watchdog_ends_what_a_sigkilled_driver_started(tmp_path: Path) -> None:
    """A driver starts a child that ignores SIGTERM (as Ray's agents do) and a grandchild in
    another session; kill -9 of the driver alone: the watchdog ends both, and leaves a bystander."""
    script = tmp_path / "driver.py"
    script.write_text(f"""
import os, signal, subprocess, sys, time
sys.path.insert(0, {str(REPO_ROOT)!r})
deaf = "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \\
       "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], " \\
       "start_new_session=True); time.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", deaf])
watchdog = subprocess.Popen([sys.executable, "-m", "tuner.system.watchdog", str(os.getpid()), \
str(child.pid)],
                            start_new_session=True, \
env={{**os.environ, "PYTHONPATH": {str(REPO_ROOT)!r}}})
print(child.pid, watchdog.pid, flush=True)
time.sleep(600)
""")
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    driver = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        child, watchdog = map(int, driver.stdout.readline().split())
        deadline = time.monotonic() + 20  # the grandchild exists, and the watchdog has seen it
        while len(_descendants(child)) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        grandchild = _descendants(child)[0]
        # Whether or not the watchdog walked the tree since: the deaf child still lives when the
        # driver dies, and the watchdog walks it once more before it ends anything.
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 15
        while (
            _alive(child) or _alive(grandchild) or _alive(watchdog)
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child) and not _alive(grandchild) and not _alive(watchdog)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        for pid in session_pids(driver.pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.isdigit() and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def test_a_full_disk_is_found_in_an_error_and_its_causes() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:
            raise RuntimeError("Tune failed") from err
    except RuntimeError as err:
        assert is_disk_full(err)
    assert is_disk_full("sqlite3.OperationalError: database or disk is full")
    assert is_disk_full(
        "OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on "
        "device"
    )
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full("ValueError: loss is nan at iteration 280")


def test_the_full_filesystem_is_named_with_its_mount_point(tmp_path: Path) -> None:
    assert mount_point(tmp_path / "not" / "yet") == mount_point(tmp_path)
    text = full_filesystems({"the MLflow store": tmp_path / "m.db", "Tune's storage path": None})
    assert text.startswith(
        f"the filesystem mounted at {mount_point(tmp_path)} (the MLflow store {tmp_path}/m.db: "
    )
    assert " free of " in text


def test_a_filesystem_with_space_is_not_called_the_full_one(tmp_path: Path) -> None:
    # ENOSPC met on another filesystem (a trial's /dev/shm or /tmp), or space freed since: the
    # message must not leave the storage path, which has room, as the one to free.
    stat = os.statvfs(mount_point(tmp_path))
    if stat.f_bavail * stat.f_frsize < NEARLY_FULL:
        pytest.skip(f"{mount_point(tmp_path)} is itself nearly full")
    text = full_filesystems({"Tune's storage path": tmp_path})
    assert text.startswith(
        f"the filesystem mounted at {mount_point(tmp_path)} (Tune's storage path {tmp_path}: "
    )
    assert "none of these is full now" in text and "/dev/shm" in text


def test_a_hangup_ignored_by_nohup_stays_ignored(hangup_restored) -> None:
    # `nohup tuner search ... &`: the search must outlive the terminal, SIGINT's disposition aside;
    # neither the block nor the reclaim after ray.init may turn the ignored SIGHUP into a stop.
    from tuner.system.processes import reclaim_termination_signals

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with terminate_as_interrupt():
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as ray.init leaves it
        reclaim_termination_signals()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # SIGTERM still stops it
        os.kill(os.getpid(), signal.SIGHUP)  # ignored by the kernel: nothing is raised
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


# Run in a driver of its own: the Ray it starts, its watchdog and the raylet's idle workers (the
# workers' titles, from /proc, as `ps` shows them). The raylet prestarts its workers within a second
# or two of ray.init: 20 s of polling is ample for them to show, when they are to show at all.
RAY_DRIVER = """
import os, sys, time
import ray
from tuner.runner import ray_cluster as rc
from tuner.system.processes import proc_stat
own = rc.start_ray(None, False)
raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid

def title(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")[0]
    except OSError:
        return b""

def idle_workers():
    children = [p for p in os.listdir("/proc") if (f := proc_stat(p)) and int(f[1]) == raylet]
    return [p for p in children if title(p).startswith(b"ray::IDLE")]

deadline = time.monotonic() + float(sys.argv[1])
while not idle_workers() and time.monotonic() < deadline:
    time.sleep(0.25)
print(own, len(rc._watchdog), len(idle_workers()), flush=True)
rc.stop_ray()
"""


@pytest.mark.slow  # starts a local Ray
@pytest.mark.parametrize("prestart", [None, "1"], ids=["default", "prestart-kept"])
def test_a_local_ray_asked_for_by_name_is_watched_and_starts_no_idle_worker(
    prestart: str | None,
) -> None:
    # `--address local` (or RAY_ADDRESS=local) starts a Ray of this driver's own, as no address
    # does: it must get the watchdog that ends it after a SIGKILL; a joined cluster (an address)
    # never does. Its raylet prestarts no worker a search would leave idle, unless the user's
    # environment asks for them (then they show, which proves the wait long enough to see them).
    from tuner.runner.ray_cluster import PRESTART_ENV

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_ADDRESS": "local"}
    env.pop(PRESTART_ENV, None)
    if prestart:
        env[PRESTART_ENV] = prestart
    wait = "20" if prestart else "5"
    done = subprocess.run(
        [sys.executable, "-c", RAY_DRIVER, wait],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    own, watchdogs, idle = done.stdout.split()
    assert (own, watchdogs) == ("True", "1"), done.stdout + done.stderr[-2000:]
    assert (int(idle) > 0) == bool(prestart), done.stdout
