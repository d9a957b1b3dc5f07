"""Where a search's Tune results live: a local directory or any URI pyarrow opens (s3://, gs://, file://).

Every read and write goes through a pyarrow filesystem, so the same code serves a local
path, a directory every node of a cluster mounts, and cloud storage. Ray-free.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from tuner.errors import TunerError

# The layout tuner adds to Tune's experiment directory, named once here (Ray-free) so that
# `tuner sync` can read it without importing Ray and torch.
STATE_FILE = "tuner_search.json"  # search_id + resolved spec, beside Tune's own state
PLOTS_DIR = "plots"  # inside a trial's final checkpoint
# What the driver alone knew, kept while MLflow did not answer, for `tuner sync`:
# <spool>/<trial id>/<plot files>, <spool>/search.json (the search's final status).
SPOOL_DIR = "tuner_mlflow_spool"

STORAGE_HINT = ("a directory every node of the cluster mounts (e.g. /mnt/shared/ray_results) or a URI "
                "pyarrow can open (s3://bucket/prefix, gs://bucket/prefix, file:///abs/path)")


@dataclass(frozen=True)
class ExperimentDir:
    """One search's Tune experiment directory: `uri` is what Tune is given, (`fs`, `path`) what we
    read and write. (MLflow's side is the tracking *store*; this is Tune's *storage*.)"""

    uri: str
    fs: Any  # pyarrow.fs.FileSystem
    path: str

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent_uri(self) -> str:
        """RunConfig(storage_path=...): the experiment directory is `parent_uri/name`."""
        return self.uri.rstrip("/").rsplit("/", 1)[0] if self.is_uri else str(Path(self.uri).parent)

    @property
    def is_uri(self) -> bool:
        return "://" in self.uri

    def child(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"

    def read_text(self, name: str) -> str | None:
        if self.fs.get_file_info(self.child(name)).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(self.child(name)) as stream:
            return stream.read().decode()

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
            raise TunerError(f"{self.uri} holds an earlier search and cannot be moved aside ({_first_line(err)}). "
                             f"Continue it with --resume, or pass another --experiment or --storage-path.") from None
        return f"{self.parent_uri}/{moved_name}" if self.is_uri else moved


def experiment_dir(storage_path: str | Path | None, experiment: str) -> ExperimentDir:
    """The experiment directory `<storage_path>/<experiment>`; a local default of ./ray_results."""
    root = str(storage_path or "ray_results")
    name = re.sub(r"[^\w.-]", "_", experiment)
    if "://" not in root:
        path = str(Path(root).expanduser().resolve() / name)
        return ExperimentDir(path, pafs.LocalFileSystem(), path)
    uri = f"{root.rstrip('/')}/{name}"
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError, NotImplementedError) as err:
        raise TunerError(f"--storage-path {root!r} cannot be opened: {_first_line(err)}. Expected "
                         f"{STORAGE_HINT}.") from None
    return ExperimentDir(uri, fs, path)


def open_storage(storage: str) -> ExperimentDir:
    """An experiment directory given as a path or URI (what the tracker is told to spool into)."""
    if "://" in storage:
        fs, path = pafs.FileSystem.from_uri(storage)
        return ExperimentDir(storage, fs, path)
    path = str(Path(storage).resolve())
    return ExperimentDir(path, pafs.LocalFileSystem(), path)


def spool(exp_dir: ExperimentDir, trial_id: str | None, status: str | None, artifact_dir: Path | None = None) -> None:
    """Keep beside Tune's results what only the driver knew: a trial's plots, the search's final status."""
    base = exp_dir.child(SPOOL_DIR) + (f"/{trial_id}" if trial_id else "")
    exp_dir.fs.create_dir(base, recursive=True)
    if artifact_dir is not None and Path(artifact_dir).is_dir():
        pafs.copy_files(str(artifact_dir), base, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=exp_dir.fs)
    if status is not None:
        with exp_dir.fs.open_output_stream(f"{base}/search.json") as stream:
            stream.write(json.dumps({"status": status}).encode())


def read_spool(exp_dir: ExperimentDir) -> tuple[str | None, dict[str, str]]:
    """(the search's final status, trial id -> its kept plots) from an offline tracker's spool."""
    text = exp_dir.read_text(f"{SPOOL_DIR}/search.json")
    root = exp_dir.child(SPOOL_DIR)
    is_dir = exp_dir.fs.get_file_info(root).type == pafs.FileType.Directory
    kept = exp_dir.fs.get_file_info(pafs.FileSelector(root)) if is_dir else []
    return (json.loads(text)["status"] if text else None,
            {i.base_name: i.path for i in kept if i.type == pafs.FileType.Directory})


def delete_checkpoints(fs: Any, trial_path: str, keep: str | None = None) -> None:
    """Remove a trial's `checkpoint_*` directories (its results stay), all but `keep` when given."""
    try:
        found = fs.get_file_info(pafs.FileSelector(trial_path))
    except (OSError, FileNotFoundError):
        return
    for info in found:
        if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_") \
                and (keep is None or info.path.rstrip("/") != keep.rstrip("/")):
            fs.delete_dir(info.path)


def download_dir(fs: Any, path: str, local: Path) -> bool:
    """Copy a directory from storage to `local`; False when there is none."""
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return False
    local.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return True


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
