"""The table a search prints at its end."""

from __future__ import annotations

import pandas as pd

from tuner.runner.summary import print_summary, status_counts
from tuner.space.load import load_spec


def test_iterations_print_as_whole_numbers_and_an_interrupt_says_how_to_resume(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nsearch: grid\nparams:\n  latent_dim: {grid: [2, 3]}\n")
    spec = load_spec(path)
    # As read back from MLflow: every metric a float, an unfinished trial without a final row.
    table = pd.DataFrame(
        {
            "trial_id": ["a", "b"],
            "status": ["UNFINISHED", "FINISHED"],
            "latent_dim": [3, 2],
            "knn_accuracy": [0.91, 0.88],
            "recon_error": [0.042, 0.05],
            "iteration": [14400.0, 24000.0],
        }
    )
    print_summary(spec, table, "s", "sqlite:///m.db", str(tmp_path / "ray"), 32.4, "KILLED")
    out = capsys.readouterr().out
    assert "search interrupted: 2 trials (1 finished, 1 unfinished) in 32 s" in out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.split()[:1] in (["a"], ["b"])
    }
    assert rows["a"][-1] == "14400" and rows["b"][-1] == "24000"
    assert f"tuner search --space {path} --resume" in out


def test_statuses_are_counted_in_one_order_whichever_is_most_common() -> None:
    # ASHA may stop more trials than it lets finish: the line still reads finished, killed, ...
    statuses = pd.Series(["KILLED"] * 4 + ["UNFINISHED", "ERROR", "FINISHED", "FINISHED"])
    assert status_counts(statuses) == "2 finished, 4 killed, 1 error, 1 unfinished"
    assert status_counts(pd.Series(["KILLED", "KILLED"])) == "2 killed"
