"""Where a search's Tune results live: a local directory or any URI pyarrow opens (s3://, gs://, file://).

Every read and write goes through a pyarrow filesystem, so the same code serves a local
path, a directory every node of a cluster mounts, and cloud storage. Ray-free.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from tuner.errors import TunerError, first_line
from tuner.system.secrets import has_credentials, mask_uri, split_userinfo, strip_credentials

# The layout tuner adds to Tune's experiment directory, named once here (Ray-free) so that
# `tuner sync` can read it without importing Ray and torch.
STATE_FILE = "tuner_search.json"  # search_id + resolved spec, beside Tune's own state
PLOTS_DIR = "plots"  # inside a trial's final checkpoint
# What the driver alone knew, kept while MLflow did not answer, for `tuner sync`:
# <spool>/<trial id>/<plot files>, <spool>/search.json (the search's final status).
SPOOL_DIR = "tuner_mlflow_spool"

STORAGE_HINT = (
    "a directory every node of the cluster mounts (e.g. /mnt/shared/ray_results) or a URI "
    "pyarrow can open (s3://bucket/prefix, gs://bucket/prefix, file:///abs/path)"
)


@dataclass(frozen=True)
class ExperimentDir:
    """One search's Tune experiment directory: `uri` is what is shown, logged and given to Tune
    (free of credentials), (`fs`, `path`) what we and Tune read and write. (MLflow's side is the
    tracking *store*; this is Tune's *storage*.)"""

    uri: str
    fs: Any  # pyarrow.fs.FileSystem
    path: str

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent_path(self) -> str:
        """RunConfig(storage_path=..., storage_filesystem=fs): the experiment directory is
        `parent/name`."""
        return self.path.rstrip("/").rsplit("/", 1)[0] or "/"

    @property
    def is_uri(self) -> bool:
        return "://" in self.uri

    def sibling_uri(self, name: str) -> str:
        """The URI of `name` beside this directory (a URI's query, e.g. an S3 endpoint, kept)."""
        base, question, query = self.uri.partition("?")
        return f"{base.rstrip('/').rsplit('/', 1)[0]}/{name}{question}{query}"

    def child(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"

    def read_text(self, name: str) -> str | None:
        if self.fs.get_file_info(self.child(name)).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(self.child(name)) as stream:
            return stream.read().decode(errors="replace")

    def write_text(self, name: str, text: str) -> None:
        self.fs.create_dir(self.path, recursive=True)
        with self.fs.open_output_stream(self.child(name)) as stream:
            stream.write(text.encode())

    def entries(self) -> list[Any]:
        """What the experiment directory holds (nothing when it does not exist)."""
        info = self.fs.get_file_info(self.path)
        if info.type != pafs.FileType.Directory:
            return []
        return self.fs.get_file_info(pafs.FileSelector(self.path))

    def move_aside(self) -> str:
        """Rename the directory to `<name>-<timestamp>`; returns where it went."""
        mtime = self.fs.get_file_info(self.path).mtime
        stamp = time.strftime("%Y%m%d-%H%M%S", (mtime.timetuple() if mtime else time.localtime()))
        moved_name = f"{self.name}-{stamp}"
        moved = f"{self.path.rstrip('/').rsplit('/', 1)[0]}/{moved_name}"
        try:
            self.fs.move(self.path, moved)
        except (OSError, NotImplementedError) as err:  # object stores cannot rename a directory
            raise TunerError(
                f"{self.uri} holds an earlier search and cannot be moved aside "
                f"({mask_uri(first_line(err))}). Continue it with --resume, or pass another "
                f"--experiment or --storage-path."
            ) from None
        return self.sibling_uri(moved_name) if self.is_uri else moved


def check_experiment_name(experiment: str) -> str:
    """The experiment's directory name. Separators and dot names are refused, not rewritten: `..` or
    `a/b` would put the search outside its storage path or inside another search's directory.
    Other characters outside [A-Za-z0-9_.-] become `_` (a space in a name is common and
    harmless)."""
    if (
        not experiment.strip()
        or experiment.strip() in (".", "..")
        or any(c in experiment for c in "/\\\0")
    ):
        raise TunerError(
            f"--experiment {experiment!r}: an experiment name cannot be empty, '.' or '..', or "
            "hold a path separator (/ or \\): it names a directory inside --storage-path. Pick a "
            "plain name such as 'grid-digits'."
        )
    return re.sub(r"[^\w.-]", "_", experiment)


def experiment_dir(storage_path: str | Path | None, experiment: str) -> ExperimentDir:
    """The experiment directory `<storage_path>/<experiment>`; a local default of ./ray_results."""
    root = str(storage_path or "ray_results")
    name = check_experiment_name(experiment)
    if "://" not in root:
        base = Path(root).expanduser().resolve()
        if base.exists() and not base.is_dir():
            raise TunerError(
                f"--storage-path {root!r} is a file, not a directory. Pass a directory (it is "
                f"created when missing), or {STORAGE_HINT}."
            )
        if (base / name).exists() and not (base / name).is_dir():
            raise TunerError(
                f"{base / name} is a file, where the search's directory would be. Move it away, "
                f"or pass another --experiment or --storage-path."
            )
        path = str(base / name)
        return ExperimentDir(path, pafs.LocalFileSystem(), path)
    clean = credential_free(root)
    base, question, query = clean.partition("?")
    uri = f"{base.rstrip('/')}/{name}{question}{query}"
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError, NotImplementedError) as err:
        raise TunerError(
            f"--storage-path {mask_uri(root)!r} cannot be opened: {mask_uri(first_line(err))}. "
            f"Expected {STORAGE_HINT}."
        ) from None
    return ExperimentDir(uri, fs, path)


def credential_free(root: str) -> str:
    """The storage URI without credentials, which Tune, logs and MLflow may then see.

    Tune pickles its RunConfig, filesystem included, into the experiment directory: an S3
    filesystem built from `s3://KEY:SECRET@bucket` would carry the secret there. So the key pair
    moves to this process's environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), where pyarrow,
    and the local Ray's workers started after this, find it; nothing else can hold credentials.
    """
    if not has_credentials(root):
        return root
    clean, user, password = strip_credentials(root)
    scheme = root.split("://", 1)[0].lower()
    if (
        scheme not in ("s3", "s3a")
        or user is None
        or password is None
        or clean != _without_userinfo(root)
    ):
        raise TunerError(
            f"--storage-path {mask_uri(root)!r}: credentials in a storage URI are accepted only as "
            f"s3://KEY:SECRET@bucket/prefix. Give them to pyarrow through the environment instead "
            f"(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, "
            f"HADOOP_USER_NAME) and pass the URI without them."
        )
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = user, password
    return clean


def _without_userinfo(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{split_userinfo(rest)[1]}"


def read_state(exp_dir: ExperimentDir) -> dict[str, Any] | None:
    """tuner's state file (search id, resolved spec); None when there is none; TunerError when
    broken."""
    text = exp_dir.read_text(STATE_FILE)
    if text is None:
        return None
    try:
        state = json.loads(text)
    # garbage, or arrays nested deeper than Python recurses
    except (ValueError, RecursionError) as err:
        state = err
    if (
        not isinstance(state, dict)
        or not isinstance(state.get("search_id"), str)
        or not isinstance(state.get("spec"), dict)
    ):
        raise TunerError(
            f"{mask_uri(exp_dir.uri)}/{STATE_FILE} is broken or empty (expected a JSON object with "
            f"'search_id' and 'spec', as tuner writes it): this directory's search cannot be "
            f"resumed or synced. Start a new search (without --resume), or pass another "
            f"--storage-path / --experiment."
        )
    return state


def open_storage(storage: str) -> ExperimentDir:
    """An experiment directory given as a path or URI (what the tracker is told to spool into)."""
    if "://" in storage:
        fs, path = pafs.FileSystem.from_uri(storage)
        return ExperimentDir(storage, fs, path)
    path = str(Path(storage).resolve())
    return ExperimentDir(path, pafs.LocalFileSystem(), path)


def spool(
    exp_dir: ExperimentDir,
    trial_id: str | None,
    status: str | None,
    artifact_dir: Path | None = None,
) -> None:
    """Keep beside Tune's results what only the driver knew: a trial's plots, the search's final
    status."""
    base = exp_dir.child(SPOOL_DIR) + (f"/{trial_id}" if trial_id else "")
    exp_dir.fs.create_dir(base, recursive=True)
    if artifact_dir is not None and Path(artifact_dir).is_dir():
        pafs.copy_files(
            str(artifact_dir),
            base,
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=exp_dir.fs,
        )
    if status is not None:
        with exp_dir.fs.open_output_stream(f"{base}/search.json") as stream:
            stream.write(json.dumps({"status": status}).encode())


def read_spool(exp_dir: ExperimentDir) -> tuple[str | None, dict[str, str]]:
    """(the search's final status, trial id -> its kept plots) from an offline tracker's spool."""
    text = exp_dir.read_text(f"{SPOOL_DIR}/search.json")
    root = exp_dir.child(SPOOL_DIR)
    is_dir = exp_dir.fs.get_file_info(root).type == pafs.FileType.Directory
    kept = exp_dir.fs.get_file_info(pafs.FileSelector(root)) if is_dir else []
    return (
        _spooled_status(exp_dir, text) if text else None,
        {i.base_name: i.path for i in kept if i.type == pafs.FileType.Directory},
    )


def _spooled_status(exp_dir: ExperimentDir, text: str) -> str:
    try:
        status = json.loads(text).get("status")
    except (ValueError, RecursionError, AttributeError):
        status = None
    if not isinstance(status, str):
        raise TunerError(
            f"{mask_uri(exp_dir.uri)}/{SPOOL_DIR}/search.json is broken (expected a JSON object "
            "with the search's final 'status', as tuner writes it): sync cannot tell how the "
            "search ended. Delete the file to let sync judge the status from the trials' results."
        )
    return status


def delete_checkpoints(fs: Any, trial_path: str, keep: str | None = None) -> None:
    """Remove a trial's `checkpoint_*` directories (its results stay), all but `keep` when given."""
    try:
        found = fs.get_file_info(pafs.FileSelector(trial_path))
    except (OSError, FileNotFoundError):
        return
    for info in found:
        if (
            info.type == pafs.FileType.Directory
            and info.base_name.startswith("checkpoint_")
            and (keep is None or info.path.rstrip("/") != keep.rstrip("/"))
        ):
            fs.delete_dir(info.path)


def download_dir(fs: Any, path: str, local: Path) -> bool:
    """Copy a directory from storage to `local`; False when there is none."""
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return False
    local.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(
        path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
    )
    return True
