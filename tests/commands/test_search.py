"""Mistakes around a search's storage, names and flags: exit 2 with one paragraph, never a
traceback.

Each case runs the real CLI in-process (`main`), which returns 2 only through its TunerError
handler: an exception of any other type would fail the test with its traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drivers import run_cli
from tests.paths import SPACES
from tuner.cli import main
from tuner.system.tune_storage import STATE_FILE

SPACE = str(SPACES / "grid.yaml")


def refusal(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.splitlines()[-1]  # libraries may log before; the error is one paragraph, last
    assert last.startswith(f"tuner {args[0]}: error: ") and err.endswith(last + "\n"), err
    return last


@pytest.mark.parametrize(
    "content", ["", "{bro", "[1, 2]", '{"search_id": 7, "spec": {}}', "\xff\xfe"]
)
def test_a_broken_state_file_stops_resume_and_sync(tmp_path: Path, capsys, content: str) -> None:
    (tmp_path / "ray" / "grid-digits").mkdir(parents=True)
    (tmp_path / "ray" / "grid-digits" / STATE_FILE).write_text(content, errors="surrogateescape")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    want = f"{tmp_path}/ray/grid-digits/{STATE_FILE} is broken or empty"
    assert want in refusal(
        capsys,
        "search",
        "--space",
        SPACE,
        "--storage-path",
        str(tmp_path / "ray"),
        "--tracking-uri",
        uri,
        "--resume",
    )
    assert want in refusal(
        capsys, "sync", "--storage-path", str(tmp_path / "ray"), "--tracking-uri", uri
    )
    assert not (tmp_path / "mlflow.db").exists()  # refused before any store was touched


def test_a_storage_path_that_is_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "f").write_text("x")
    err = refusal(capsys, "search", "--space", SPACE, "--storage-path", str(tmp_path / "f"))
    assert f"--storage-path '{tmp_path}/f' is a file, not a directory" in err
    err = refusal(capsys, "sync", "--storage-path", str(tmp_path / "f"))
    assert f"--storage-path '{tmp_path}/f' is a file" in err


@pytest.mark.parametrize("name", [".", "..", "", "a/b", "../escape", "a\\b"])
def test_an_experiment_name_that_is_not_a_plain_name_is_refused(
    tmp_path: Path, capsys, name: str
) -> None:
    err = refusal(
        capsys,
        "search",
        "--space",
        SPACE,
        "--storage-path",
        str(tmp_path / "ray"),
        "--experiment",
        name,
    )
    assert (
        f"--experiment {name!r}: an experiment name cannot be empty, '.' or '..', or hold a path "
        "separator" in err
    )
    assert not (tmp_path / "ray").exists() and not (tmp_path / "escape").exists()
    err = refusal(capsys, "sync", "--storage-path", str(tmp_path / "ray"), "--experiment", name)
    assert f"--experiment {name!r}: an experiment name cannot be empty" in err


def test_resume_of_an_unknown_experiment(tmp_path: Path, capsys) -> None:
    err = refusal(
        capsys,
        "search",
        "--space",
        SPACE,
        "--storage-path",
        str(tmp_path / "ray"),
        "--experiment",
        "nosuch",
        "--resume",
        "--tracking-uri",
        f"sqlite:///{tmp_path}/mlflow.db",
    )
    assert f"--resume: no search to resume in {tmp_path}/ray/nosuch" in err


@pytest.mark.parametrize(
    "value,want",
    [
        ("mu=&a 0.5", "YAML anchors and aliases (&a, *a) are not accepted in --set"),
        ("hidden_dims=&a [*a]", "YAML anchors and aliases"),
        ("hidden_dims=" + "[" * 100 + "]" * 100, "nested more than 64 deep"),
        ("mu=[", "the value is not valid YAML"),
    ],
)
def test_hostile_set_values(capsys, value: str, want: str) -> None:
    err = refusal(capsys, "validate", "--space", SPACE, "--set", value)
    assert err.startswith(f"tuner validate: error: --set {value!r}: ") and want in err


def test_storage_others_can_write_to_is_refused_before_resume_reads_it(
    tmp_path: Path, capsys
) -> None:
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray").chmod(0o777)
    err = refusal(
        capsys, "search", "--space", SPACE, "--storage-path", str(tmp_path / "ray"), "--resume"
    )
    assert (
        f"storage directory {tmp_path}/ray can be written by other users (mode drwxrwxrwx)" in err
    )


def test_credentials_in_a_refused_storage_uri_are_not_shown(capsys) -> None:
    err = refusal(
        capsys, "search", "--space", SPACE, "--storage-path", "gs://me:hunter2/x@bucket/p"
    )
    assert (
        "--storage-path 'gs://***@bucket/p': credentials in a storage URI" in err
        and "hunter2" not in err
    )


def test_an_address_where_no_ray_answers(tmp_path: Path, capsys) -> None:
    err = refusal(
        capsys,
        "search",
        "--space",
        SPACE,
        "--address",
        "127.0.0.1:1",
        "--storage-path",
        str(tmp_path / "ray"),
        "--tracking-uri",
        f"sqlite:///{tmp_path}/mlflow.db",
    )
    assert "--address '127.0.0.1:1': no Ray answers there (Connection refused)" in err


def test_ui_on_a_port_that_is_taken_or_out_of_range(capsys) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = refusal(
            capsys, "ui", "--port", str(port), "--tracking-uri", "sqlite:////nonexistent/mlflow.db"
        )
        assert (
            f"tuner ui --host 127.0.0.1 --port {port}: cannot listen there (Address already in use)"
            in err
        )
    with pytest.raises(SystemExit) as exited:  # argparse's own usage error, exit 2
        main(["ui", "--port", "99999"])
    assert (
        exited.value.code == 2
        and "expected a TCP port 1-65535, got '99999'" in capsys.readouterr().err
    )


def test_a_subprocess_cli_error_has_no_traceback(tmp_path: Path) -> None:
    """The installed entry point path: stderr holds exactly the one-line error."""
    (tmp_path / "ray" / "grid-digits").mkdir(parents=True)
    (tmp_path / "ray" / "grid-digits" / STATE_FILE).write_text("")
    done = run_cli("sync", "--storage-path", str(tmp_path / "ray"), timeout=120)
    assert (
        done.returncode == 2
        and done.stderr.startswith("tuner sync: error: ")
        and "Traceback" not in done.stderr
    )


@pytest.mark.parametrize(
    "text, want",
    [
        (
            "name: s\nsearch: optuna\nseed: 5000000000\nparams:\n  mu: {uniform: [0.2, 0.8]}\n",
            "s.yaml:3: seed: 5000000000 is not valid: expected an integer in 0..4294967295",
        ),
        (
            'name: "grid:v2"\nparams:\n  mu: {grid: [0.5]}\n',
            "s.yaml:1: name: 'grid:v2' is also the registered model name",
        ),
        (
            'name: "runs/v2"\nparams:\n  mu: {grid: [0.5]}\n',
            "s.yaml:1: name: 'runs/v2' is not valid: an experiment name",
        ),
        (
            "name: s\nsearch: random\nparams:\n"
            "  latent_dim: {randint: [1, 100000000000000000000]}\n",
            "s.yaml:4: params.latent_dim: randint bound value 100000000000000000000 is not valid",
        ),
        (
            "name: s\nsearch: random\nscheduler: {type: asha, brackets: 1000000000}\n"
            "params:\n  mu: {uniform: [0, 1]}\n",
            "s.yaml:3: scheduler.brackets: 1000000000 is not valid",
        ),
        (
            "name: s\nrequire: {knn_accuracy: 1.5}\nparams:\n  mu: {grid: [0.5]}\n",
            "s.yaml:2: require.knn_accuracy: 1.5 is not valid: knn_accuracy is always in [0, 1], "
            "so expected a number in [0, 1]",
        ),
    ],
    ids=["searcher-seed", "model-name", "name-slash", "randint-wide", "brackets", "require"],
)
def test_search_refuses_what_validate_refuses_before_mlflow_or_ray(
    tmp_path: Path, capsys, text: str, want: str
) -> None:
    space = tmp_path / "s.yaml"
    space.write_text(text)
    assert want in refusal(capsys, "validate", "--space", str(space))
    assert want in refusal(
        capsys,
        "search",
        "--space",
        str(space),
        "--storage-path",
        str(tmp_path / "ray"),
        "--tracking-uri",
        f"sqlite:///{tmp_path}/mlflow.db",
    )
    assert not (tmp_path / "ray").exists() and not (tmp_path / "mlflow.db").exists()
