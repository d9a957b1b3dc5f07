"""Hostile search files exit 2 from `tuner validate` naming the file; wide ranges are never
listed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.space.load import load_spec

VALID = "name: ok\nsearch: random\nsamples: 2\nparams:\n  mu: {uniform: [0.0, 1.0]}\n"


def validate(capsys, path: Path) -> tuple[int, str, str]:
    code = main(["validate", "--space", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def laughs() -> str:
    # Nine aliases of nine aliases of ...: 9**9 "lol"s wherever the value is walked.
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n" + VALID


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            VALID.encode() + "# café\n".encode("latin-1"),
            "{path}:6: the search-space file is not UTF-8 text (byte 0xe9 at offset {offset}). "
            "Save it as UTF-8.",
        ),
        (
            (VALID + "fixed: &f {lr: 0.01}\nx: *f\n").encode(),
            "{path}:6: YAML anchors and aliases (&f, *f) are not accepted in search files",
        ),
        (
            b"params: &p [*p]\n",
            "{path}:1: YAML anchors and aliases (&p, *p) are not accepted",
        ),  # refers to itself
        (laughs().encode(), "{path}:1: YAML anchors and aliases (&a, *a) are not accepted"),
        (
            b"params: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
            "{path}:1: lists and mappings nested more than 64 deep",
        ),
        (
            b"fixed:\n"
            + b"".join(b"  " * i + b"k%d:\n" % i for i in range(1, 80))
            + b"name: deep\n",
            "{path}:65: lists and mappings nested more than 64 deep",
        ),
        (
            VALID.encode() + b"#" * (1024 * 1024) + b"\n",
            "{path}: the search-space file is larger than 1 MiB; search files are a few KiB of "
            "settings",
        ),
    ],
    ids=["not-utf8", "alias", "self-alias", "billion-laughs", "deep-flow", "deep-block", "huge"],
)
def test_hostile_search_files_exit_2_naming_the_file(tmp_path, capsys, content, fragment):
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    start = time.perf_counter()
    code, out, err = validate(capsys, path)
    assert code == 2 and out == ""
    assert fragment.format(path=path, offset=len(VALID) + len("# caf")) in err
    assert time.perf_counter() - start < 10  # refused, not expanded


def test_a_file_without_anchors_and_with_some_nesting_still_validates(tmp_path, capsys):
    path = tmp_path / "ok.yaml"
    path.write_text(
        "# décor: UTF-8 comments are fine\n"
        + VALID
        + "  hidden_dims: {choice: [[64, 32], [[1]]]}\n".replace("[[1]]", "[128, 64, 32]")
    )
    code, out, _err = validate(capsys, path)
    assert code == 0 and "hidden_dims" in out


@pytest.mark.parametrize(
    "high", [10**4, 65536]
)  # 65536: latent_dim's cap, a valid range of 65536 values
def test_a_randint_range_too_wide_to_list(tmp_path, capsys, high):
    from tuner.runner.summary import baseline_dims

    path = tmp_path / "wide.yaml"
    path.write_text(
        f"name: wide\nsearch: random\nsamples: 2\nparams:\n  latent_dim: {{randint: [1, {high}]}}\n"
        f"  margin: {{uniform: [0.5, 2.0]}}\n"
    )
    code, out, _err = validate(capsys, path)
    assert code == 0 and f"latent_dim         randint [1, {high}]" in out
    assert baseline_dims(load_spec(path)) == [1, high]
    path.write_text(
        f"name: wide\nsearch: random\nparams:\n  latent_dim: {{qrandint: [2, {high}, 2]}}\n"
    )
    assert baseline_dims(load_spec(path)) == [2, high]
    path.write_text("name: narrow\nsearch: random\nparams:\n  latent_dim: {qrandint: [2, 14, 4]}\n")
    assert baseline_dims(load_spec(path)) == [2, 6, 10, 14]


@pytest.mark.parametrize(
    ("param", "fragment"),
    [
        # Beyond a field's cap: its valid range, not the allocator's error once the trial runs.
        (
            "latent_dim: {randint: [1, 100000000000000000000]}",
            "{path}:4: params.latent_dim: randint bound value 100000000000000000000 is not valid: "
            "latent_dim = 100000000000000000000 is not valid: expected an integer in 1..65536",
        ),
        # No cap, but past float64's exact integers (and int64, where Tune's randint gets high + 1).
        (
            "iterations: {randint: [1, 100000000000000000000]}",
            "{path}:4: params.iterations: randint bound value 100000000000000000000 is not valid: "
            "iterations = 100000000000000000000 is not valid: expected integers within 64 bits",
        ),
        (
            "iterations: {randint: [1, 9223372036854775807]}",
            "{path}:4: params.iterations: randint range [1, 9223372036854775807] is too wide: Tune "
            "and Optuna draw integers through floating-point numbers, exact only between -2**53 "
            "and 2**53 (9007199254740992)",
        ),
        (
            "iterations: {qrandint: [2, 18014398509481984, 2]}",
            "{path}:4: params.iterations: qrandint range",
        ),
    ],
    ids=["beyond-cap", "beyond-int64", "beyond-2**53", "qrandint-beyond-2**53"],
)
def test_an_int_range_a_sampler_cannot_draw_exits_2(tmp_path, capsys, param, fragment):
    path = tmp_path / "wide.yaml"
    path.write_text(f"name: wide\nsearch: random\nparams:\n  {param}\n")
    code, out, err = validate(capsys, path)
    assert code == 2 and out == "" and fragment.format(path=path) in err


def test_the_widest_exact_int_range_still_validates(tmp_path, capsys):
    path = tmp_path / "wide.yaml"
    path.write_text(
        "name: wide\nsearch: optuna\nparams:\n  iterations: {randint: [1, 9007199254740992]}\n"
    )
    code, out, _err = validate(capsys, path)
    assert code == 0 and "iterations         randint [1, 9007199254740992]" in out
