"""Who may touch a search's storage: one search per experiment, no directory others can write to."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tuner.errors import TunerError
from tuner.system.storage_guard import check_private, refuse_if_locked, search_lock
from tuner.system.tune_storage import experiment_dir


def test_a_second_lock_on_one_experiment_is_refused_naming_the_holder(tmp_path) -> None:
    exp = experiment_dir(tmp_path / "ray", "e")
    with search_lock(exp, "e-first"):
        held = json.loads((tmp_path / "ray" / ".e.lock").read_text())
        assert (held["search_id"], held["pid"]) == ("e-first", os.getpid())
        with pytest.raises(TunerError, match=rf"in use by search e-first \(pid {os.getpid()} on "):
            with search_lock(experiment_dir(tmp_path / "ray", "e"), "e-second"):
                pass
        # another experiment: free
        with search_lock(experiment_dir(tmp_path / "ray", "other"), "other-1"):
            pass
    with search_lock(exp, "e-third"):  # released at the end of the block
        assert json.loads((tmp_path / "ray" / ".e.lock").read_text())["search_id"] == "e-third"


@pytest.mark.parametrize("where", ["local", "object store"])
def test_the_early_check_refuses_a_held_lock_and_creates_nothing(tmp_path, where: str) -> None:
    """What a search checks before it starts Ray: the holder named as search_lock names it; a lock
    that is free, or not there, passes and nothing is created."""
    root = tmp_path / "ray"
    exp = experiment_dir(str(root) if where == "local" else f"file://{root}", "e")
    refuse_if_locked(exp)
    assert not root.exists()  # no directory, no lock file: the real lock comes later
    with search_lock(exp, "e-first"):
        with pytest.raises(TunerError, match=r"'e' in .* is in use by search e-first \(pid "):
            refuse_if_locked(exp)
        refuse_if_locked(experiment_dir(str(root), "other"))  # another experiment: free
    if where == "local":  # the file stays behind, released
        assert (root / ".e.lock").exists()
    refuse_if_locked(exp)
    with search_lock(exp, "e-next"):  # the check took no lock of its own
        pass


def test_the_lock_of_a_dead_process_is_free(tmp_path) -> None:
    """flock belongs to the open file: a driver killed with SIGKILL leaves no lock behind."""
    code = (
        "import os,sys; from tuner.system.tune_storage import experiment_dir\n"
        "from tuner.system.storage_guard import search_lock\n"
        f"with search_lock(experiment_dir({str(tmp_path)!r}, 'e'), 'e-dead'): os._exit(0)"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": os.getcwd()}
    )
    assert json.loads((tmp_path / ".e.lock").read_text())["search_id"] == "e-dead"
    with search_lock(experiment_dir(tmp_path, "e"), "e-next"):
        pass


def test_an_object_store_lock_is_refused_while_its_owner_lives_and_taken_over_after(
    tmp_path,
) -> None:
    exp = experiment_dir(f"file://{tmp_path}", "e")  # a URI: the lock is an object, not a flock
    with search_lock(exp, "e-first"):
        with pytest.raises(
            TunerError, match=r"in use by search e-first .*\.e\.lock \(delete it if"
        ):
            with search_lock(experiment_dir(f"file://{tmp_path}", "e"), "e-second"):
                pass
    assert not (tmp_path / ".e.lock").exists()  # deleted at the end
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / ".e.lock").write_text(
        json.dumps(
            {
                "search_id": "e-gone",
                "pid": int(dead.stdout),
                "host": os.uname().nodename,
                "started": 0,
            }
        )
    )
    with search_lock(exp, "e-next"):  # its owner on this host is gone
        assert json.loads((tmp_path / ".e.lock").read_text())["search_id"] == "e-next"


@pytest.mark.parametrize(
    "mode,refused", [(0o700, False), (0o755, False), (0o775, True), (0o777, True), (0o1777, False)]
)  # sticky, like /tmp
def test_a_storage_directory_others_can_write_to_is_refused(
    tmp_path, mode: int, refused: bool
) -> None:
    root = tmp_path / "ray"
    root.mkdir()
    root.chmod(mode)
    if refused:
        with pytest.raises(
            TunerError, match=rf"storage directory {root} can be written by other users"
        ):
            check_private(experiment_dir(root, "e"))
    else:
        check_private(experiment_dir(root, "e"))


def test_an_experiment_directory_of_another_user_is_refused(tmp_path) -> None:
    if os.getuid() != 0:
        pytest.skip("chown to another user needs root")
    (tmp_path / "e").mkdir()
    os.chown(tmp_path / "e", 65534, 65534)
    with pytest.raises(
        TunerError, match=rf"storage directory {tmp_path / 'e'} is owned by uid 65534"
    ):
        check_private(experiment_dir(tmp_path, "e"))


@pytest.mark.parametrize(
    "held",
    [
        {"search_id": "s", "pid": 1, "host": "elsewhere", "started": 1e300},  # beyond localtime
        {
            "search_id": "s",
            "pid": 10**30,
            "host": os.uname().nodename,
            "started": 0,
        },  # beyond os.kill's C int
    ],
)
def test_an_object_store_lock_holding_numbers_out_of_range_is_held(tmp_path, held: dict) -> None:
    exp = experiment_dir(f"file://{tmp_path}", "e")
    (tmp_path / ".e.lock").write_text(json.dumps(held))
    with pytest.raises(
        TunerError, match=rf"in use by search s \(pid {held['pid']} on {held['host']}, started "
    ):
        with search_lock(exp, "mine"):
            pass
    assert json.loads((tmp_path / ".e.lock").read_text()) == held  # left for its owner
