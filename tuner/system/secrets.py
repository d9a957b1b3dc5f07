"""Credentials in URIs: found in any text and masked, or taken out of a URI. Pure, no Ray, no
MLflow.

Every message, param and tag that can hold a tracking or storage URI goes through `mask_uri`.
It works on tokens rather than one regex over the whole text, because a password may hold any
character a URL parser would treat as the end of the host (`/`, `@`, `:`, `#`, `?`): the whole
`user:password` part up to the *last* `@` of a token is masked, and the values of query keys that
carry secrets (`?token=`, `X-Amz-Signature=`, ...) too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"
# A URI starts with `scheme://` and runs to the next whitespace: a password typed raw may hold
# quotes, so a quote cannot end it. When a quote (or `<`) opens it, as repr() quotes URIs in
# messages, it ends at the last closing quote before that whitespace. Cutting too late only
# masks more; cutting too early would show the rest of a password.
_URI = re.compile(r"(?P<open>['\"`<]?)(?P<uri>[A-Za-z][A-Za-z0-9+.\-]*://\S*)")
_CLOSING = {"'": "'", '"': '"', "`": "`", "<": ">"}
_SECRET_KEYS = {
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "session_token",
    "security_token",
    "key",
    "api_key",
    "apikey",
    "access_key",
    "secret",
    "secret_key",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "pass",
    "signature",
    "sig",
    "credential",
    "credentials",
    "auth",
    "authorization",
    "sas",
    "sv_token",
}
_SECRET_WORDS = ("token", "secret", "password", "signature", "credential", "apikey", "api_key")


def secret_key(name: str) -> bool:
    """Whether a query key carries a secret: `token`, `X-Amz-Signature`, `client_secret`, ..."""
    key = name.strip().lower().replace("-", "_")
    for prefix in ("x_amz_", "x_goog_", "x_ms_"):
        key = key.removeprefix(prefix)
    return key in _SECRET_KEYS or any(word in key for word in _SECRET_WORDS)


def _mask_pairs(text: str) -> str:
    """`a=1&token=x` -> `a=1&token=***`, kept as written otherwise (no re-encoding)."""
    pairs = []
    for pair in text.split("&"):
        name, sep, _ = pair.partition("=")
        pairs.append(f"{name}={MASK}" if sep and secret_key(name) else pair)
    return "&".join(pairs)


def split_userinfo(rest: str) -> tuple[str | None, str]:
    """(`user:password`, what follows the last `@`) of what follows `scheme://`; (None, rest)
    without one.

    The last `@` wins because a password may hold `@`, `/`, `#` or `?`. A text after `://` with an
    `@` only inside its path (`host/users/a@b`) holds no `:` before that `@` and is left alone.
    """
    at = rest.rfind("@")
    if at < 0:
        return None, rest
    userinfo = rest[:at]
    if ":" in userinfo or "/" not in userinfo:
        return userinfo, rest[at + 1 :]
    return None, rest


def _mask_one(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    userinfo, rest = split_userinfo(rest)
    head, hash_, fragment = rest.partition("#")
    base, question, query = head.partition("?")
    masked = f"{scheme}://{MASK + '@' if userinfo is not None else ''}{base}"
    if question:
        masked += "?" + _mask_pairs(query)
    if hash_:
        masked += "#" + (_mask_pairs(fragment) if "=" in fragment else fragment)
    return masked


def _mask_match(match: re.Match[str]) -> str:
    opening, token = match.group("open"), match.group("uri")
    end = token.rfind(_CLOSING[opening]) if opening else -1
    uri, tail = (token[:end], token[end:]) if end > 0 else (token, "")
    return opening + _mask_one(uri) + tail


def mask_uri(text: object) -> str:
    """Every URI in `text` with its credentials masked: `s3://KEY:SECRET@bucket` -> `s3://***@bucket`."""
    return _URI.sub(_mask_match, str(text))


def has_credentials(uri: str) -> bool:
    """Whether one URI holds credentials: the whole of it is taken apart, whatever its password
    holds."""
    return _mask_one(uri) != uri if "://" in uri else False


def strip_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without `user:password@` and secret query keys, user, password), percent-decoded.

    urlsplit is given the URI with its user part cut at the last `@` already, so a password with
    `/` or `#` cannot move the host into the path.
    """
    from urllib.parse import unquote

    scheme, rest = uri.split("://", 1)
    userinfo, rest = split_userinfo(rest)
    parts = urlsplit(f"{scheme}://{rest}")
    query = "&".join(p for p in parts.query.split("&") if p and not secret_key(p.partition("=")[0]))
    clean = parts._replace(query=query).geturl()
    if userinfo is None:
        return clean, None, None
    user, _, password = userinfo.partition(":")
    return clean, unquote(user), unquote(password) if password else None
