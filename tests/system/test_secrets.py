"""Credentials in tracking and storage URIs: masked in any text, kept out of what Tune is given."""

from __future__ import annotations

import os
import pickle

import pytest

from tests.paths import SPACES
from tuner.errors import TunerError
from tuner.system.secrets import mask_uri, strip_credentials
from tuner.system.tune_storage import experiment_dir

# (text, the secret that must vanish, what must stay readable)
HOSTILE = [
    ("http://user:pass@host:5000", "pass", "http://***@host:5000"),
    ("s3://AKIAKEY:SECRET@bucket/prefix", "SECRET", "s3://***@bucket/prefix"),
    ("https://u:pa/ss@mlflow.example/api", "pa/ss", "https://***@mlflow.example/api"),
    ("https://u:p@ss@host/x", "p@ss", "https://***@host/x"),
    ("https://u:p:a:ss@host", "p:a:ss", "https://***@host"),
    ("https://u:pa#ss@host/x", "pa#ss", "https://***@host/x"),
    ("https://u:pa?ss=1@host/x", "pa?ss", "https://***@host/x"),
    ("https://u:p%2Fa%40ss%23@host", "p%2Fa%40ss%23", "https://***@host"),
    ("s3://K:/+x/@y#?z@bucket/p", "/+x/@y#?z", "s3://***@bucket/p"),
    ("https://ghp_tokenonly@github.com/org", "ghp_tokenonly", "https://***@github.com/org"),
    ("http://h/x?token=t0k&run=1", "t0k", "http://h/x?token=***&run=1"),
    ("http://h/x?access_token=t0k", "t0k", "http://h/x?access_token=***"),
    ("http://h/x?a=1&key=k3y", "k3y", "http://h/x?a=1&key=***"),
    ("http://h/x?secret=s3c&password=pw9", "s3c", "http://h/x?secret=***&password=***"),
    (
        "https://b.s3.amazonaws.com/o?X-Amz-Credential=AK%2F1&X-Amz-Signature=5ig",
        "5ig",
        "https://b.s3.amazonaws.com/o?X-Amz-Credential=***&X-Amz-Signature=***",
    ),
    (
        "https://acct.blob.core.windows.net/c?sv=2020&sig=abc%3D",
        "abc%3D",
        "https://acct.blob.core.windows.net/c?sv=2020&sig=***",
    ),
    ("http://h/cb#access_token=frag&x=1", "frag", "http://h/cb#access_token=***&x=1"),
]


@pytest.mark.parametrize("uri,secret,masked", HOSTILE)
def test_credentials_are_masked_whatever_the_password_holds(
    uri: str, secret: str, masked: str
) -> None:
    assert mask_uri(uri) == masked
    # Inside a message, quoted as repr() quotes it, beside other text and another URI.
    text = f"MLflow tracking URI {uri!r} cannot be used: ConnectionError({uri}) (see http://docs/x)"
    shown = mask_uri(text)
    assert secret not in shown and masked in shown and "(see http://docs/x)" in shown
    assert shown.startswith("MLflow tracking URI '")


@pytest.mark.parametrize(
    "password", ["pa'ss", 'se"cret', "se`cret", "se<cret", "se>cret", "a'b\"c<d>e`f"]
)
def test_passwords_with_quotes_or_angle_brackets_are_masked_and_taken_out(
    password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuner.system.secrets import has_credentials

    uri = f"s3://AKIAKEY:{password}@bucket/prefix"
    assert has_credentials(uri) and mask_uri(uri) == "s3://***@bucket/prefix"
    for text in (
        f"error opening {uri!r}: refused",
        f"error opening {uri}",
        f"<{uri}>",
        f"[{uri!r}, 'x']",
    ):
        shown = mask_uri(text)
        assert (
            password not in shown
            and "cret" not in shown
            and "ss@" not in shown
            and "s3://***@bucket" in shown
        )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    exp = experiment_dir(uri + "?region=us-east-1&endpoint_override=127.0.0.1:9&scheme=http", "e")
    assert (
        exp.uri.startswith("s3://bucket/prefix/e?")
        and os.environ["AWS_SECRET_ACCESS_KEY"] == password
    )
    with pytest.raises(TunerError) as err:
        experiment_dir(f"gs://user:{password}@bucket/x", "e")
    assert password not in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "http://host/users/a@b.com",
        "file:///tmp/x",
        "s3://bucket/p?region=eu-west-1",
        "no uri here: user:pass@host",
        "sqlite:////abs/mlflow.db",
    ],
)
def test_text_without_credentials_is_left_as_it_is(text: str) -> None:
    assert mask_uri(text) == text


def test_credentials_are_taken_out_with_the_last_at_sign_as_the_end_of_the_password() -> None:
    assert strip_credentials("s3://KEY:SE%2FCR@ET@bucket/p?region=x&token=1") == (
        "s3://bucket/p?region=x",
        "KEY",
        "SE/CR@ET",
    )
    assert strip_credentials("s3://bucket/p") == ("s3://bucket/p", None, None)


def test_an_s3_key_pair_leaves_the_uri_for_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    root = "s3://AKIAKEY:se%2Fcr%40et@bucket/pre?region=us-east-1&endpoint_override=127.0.0.1:9&scheme=http"
    exp = experiment_dir(root, "my exp")
    assert (
        exp.uri
        == "s3://bucket/pre/my_exp?region=us-east-1&endpoint_override=127.0.0.1:9&scheme=http"
    )
    assert (exp.path, exp.parent_path) == ("bucket/pre/my_exp", "bucket/pre")
    assert (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]) == (
        "AKIAKEY",
        "se/cr@et",
    )
    # Tune pickles the filesystem it is given into its saved state: no secret may ride along.
    assert b"se/cr@et" not in pickle.dumps(exp.fs) and b"AKIAKEY" not in pickle.dumps(exp.fs)


@pytest.mark.parametrize(
    "root",
    [
        "gs://user:pw@bucket/x",
        "s3://bucket/x?token=pw",
        "hdfs://user:pw@nn:8020/x",
        "s3://K:pw@bucket/x?secret_key=pw",
    ],
)
def test_other_credentials_in_a_storage_uri_are_refused_without_showing_them(root: str) -> None:
    with pytest.raises(TunerError) as err:
        experiment_dir(root, "e")
    assert "pw" not in str(err.value) and "AWS_ACCESS_KEY_ID" in str(err.value)


def test_what_tune_saves_and_mlflow_logs_holds_no_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tune pickles its RunConfig (storage path and filesystem) into tuner.pkl; the search's params
    go to MLflow. Neither may hold the key pair of an s3:// storage URI."""
    import json

    from ray import cloudpickle

    from tuner.runner.callback import TrackingCallback
    from tuner.runner.search import search_params
    from tuner.runner.trials import TrialLedger
    from tuner.runner.tune_setup import make_run_config
    from tuner.space.load import load_spec

    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    spec = load_spec(SPACES / "grid.yaml")
    exp = experiment_dir(
        "s3://AKIAXYZ:hunter%2F2@bucket/pre?region=us-east-1&endpoint_override=127.0.0.1:9"
        "&scheme=http",
        "e",
    )
    callback = TrackingCallback("e-1", tracker=None, ledger=TrialLedger(spec))  # type: ignore[arg-type]
    blob = cloudpickle.dumps(make_run_config(spec, exp, callback, 0))
    # The callback goes in as its search id alone: no client, thread or console is pickled.
    assert vars(cloudpickle.loads(blob).callbacks[0]) == {"search_id": "e-1"}
    assert b"bucket/pre" in blob  # the storage is in there, as a path
    for secret in (b"hunter/2", b"hunter%2F2", b"AKIAXYZ"):
        assert secret not in blob
    params = json.dumps(search_params(spec, exp))
    assert (
        "s3://bucket/pre/e?region=us-east-1" in params
        and "hunter" not in params
        and "AKIAXYZ" not in params
    )
