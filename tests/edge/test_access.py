"""Signed playback URLs: the token formula, every refusal, key settings, the documented one-liner."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from pydantic import ValidationError

from cascade.contract.settings import (
    EdgeSettings,
    SigningKeyError,
    decode_signing_secret,
    parse_signing_keys,
)
from cascade.edge.access import (
    Denied,
    DenyReason,
    Grant,
    SigningKey,
    check_session_grant,
    key_ring,
    sign_params,
    sign_url,
    signature,
    verify,
)

REPO = Path(__file__).resolve().parents[2]
NOW = 1_767_225_600.0
SECRET_A = bytes(range(32))
SECRET_B = bytes(range(100, 148))
KEYS = key_ring({"ka": SECRET_A, "kb": SECRET_B})


def b64(secret: bytes) -> str:
    return base64.b64encode(secret).decode()


def test_signature_vector() -> None:
    # The formula of docs/signed-urls.md, spelled out with the standard library.
    import hashlib
    import hmac

    mac = hmac.new(SECRET_A, b"cascade-v1:cam1:1767229200", hashlib.sha256).digest()
    expected = base64.urlsafe_b64encode(mac).decode().rstrip("=")
    assert signature("cam1", 1767229200, KEYS["ka"]) == expected
    assert "=" not in expected and "+" not in expected and "/" not in expected


def test_a_signed_url_verifies_with_either_key() -> None:
    for kid in ("ka", "kb"):
        url = sign_url("https://edge.example.com/", "cam1", int(NOW) + 60, KEYS[kid])
        parts = urlsplit(url)
        assert parts.path == "/live/cam1.m3u8"
        params = dict(parse_qsl(parts.query))
        assert verify("cam1", params, KEYS, NOW) == Grant("cam1", int(NOW) + 60, kid)


def test_sign_url_keeps_a_base_path_and_query() -> None:
    url = sign_url("https://cdn.example.com/edge?x=1", "cam1", 5, KEYS["ka"])
    assert url.startswith("https://cdn.example.com/edge/live/cam1.m3u8?x=1&exp=5&kid=ka&sig=")


def denied(result: Grant | Denied) -> Denied:
    assert isinstance(result, Denied), result
    return result


def test_missing_token() -> None:
    result = denied(verify("cam1", {}, KEYS, NOW))
    assert result.reason is DenyReason.MISSING
    assert "cam1" in result.message and "signed URL" in result.message


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"exp": "5", "kid": "ka"}, "sig missing"),
        ({"sig": "x"}, "exp, kid missing"),
        ({"exp": "soon", "kid": "ka", "sig": "x"}, "exp must be Unix seconds"),
        ({"exp": "1" * 13, "kid": "ka", "sig": "x"}, "exp must be Unix seconds"),
        ({"exp": "١٢", "kid": "ka", "sig": "x"}, "exp must be Unix seconds"),
    ],
)
def test_malformed_token(params: dict[str, str], needle: str) -> None:
    result = denied(verify("cam1", params, KEYS, NOW))
    assert result.reason is DenyReason.MALFORMED
    assert needle in result.message


@pytest.mark.parametrize("exp", ["0{}", "00{}", "0" * 12])
def test_exp_has_one_canonical_form(exp: str) -> None:
    # int("0123") == int("123"): without this rule one signature opens many URLs.
    expires_at = int(NOW) + 60
    params = {**sign_params("cam1", expires_at, KEYS["ka"]), "exp": exp.format(expires_at)}
    result = denied(verify("cam1", params, KEYS, NOW))
    assert result.reason is DenyReason.MALFORMED
    assert result.message == "malformed token: exp must be Unix seconds without leading zeros"


def test_unknown_key_id() -> None:
    params = sign_params("cam1", int(NOW) + 60, SigningKey("old", SECRET_A))
    result = denied(verify("cam1", params, KEYS, NOW))
    assert result.reason is DenyReason.UNKNOWN_KEY
    assert result.message == "unknown key id 'old'"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: {**p, "exp": str(int(p["exp"]) + 1)},  # a later expiry
        lambda p: {**p, "sig": p["sig"][:-1] + ("A" if p["sig"][-1] != "A" else "B")},
        lambda p: {**p, "kid": "kb"},  # the other key
        lambda p: {**p, "sig": "é" * 43},  # not even ASCII
    ],
)
def test_bad_signature(tamper: object) -> None:
    params = sign_params("cam1", int(NOW) + 60, KEYS["ka"])
    assert callable(tamper)
    result = denied(verify("cam1", tamper(params), KEYS, NOW))
    assert result.reason is DenyReason.BAD_SIGNATURE


def test_a_token_for_one_stream_does_not_open_another() -> None:
    params = sign_params("cam1", int(NOW) + 60, KEYS["ka"])
    assert denied(verify("cam2", params, KEYS, NOW)).reason is DenyReason.BAD_SIGNATURE


def test_expired_says_when() -> None:
    params = sign_params("cam1", int(NOW) - 12, KEYS["ka"])
    result = denied(verify("cam1", params, KEYS, NOW))
    assert result.reason is DenyReason.EXPIRED
    assert result.message == "token expired at 2025-12-31T23:59:48Z (12 s ago)"
    assert denied(verify("cam1", sign_params("cam1", int(NOW), KEYS["ka"]), KEYS, NOW))


def test_a_forged_expired_token_is_told_only_bad_signature() -> None:
    params = {**sign_params("cam1", int(NOW) - 12, KEYS["ka"]), "sig": "AAAA"}
    assert denied(verify("cam1", params, KEYS, NOW)).reason is DenyReason.BAD_SIGNATURE


def test_the_session_grant() -> None:
    assert check_session_grant("cam1", NOW + 1, NOW) == Grant("cam1", int(NOW) + 1, "")
    assert denied(check_session_grant("cam1", None, NOW)).reason is DenyReason.MISSING
    late = denied(check_session_grant("cam1", NOW - 5, NOW))
    assert late.reason is DenyReason.EXPIRED and "5 s ago" in late.message


def test_secrets_stay_out_of_reprs() -> None:
    assert b64(SECRET_A) not in repr(KEYS) and repr(SECRET_A) not in repr(KEYS)


# ---- keys from the settings ------------------------------------------------------------


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_SIGNING_KEYS", f"ka:{b64(SECRET_A)}, kb:{b64(SECRET_B)}")
    settings = EdgeSettings()
    assert settings.signing_key_ring() == {"ka": SECRET_A, "kb": SECRET_B}
    assert b64(SECRET_A) not in repr(settings)


def test_url_safe_unpadded_base64_is_accepted() -> None:
    text = base64.urlsafe_b64encode(b"\xfb\xff" * 8 + bytes(range(20))).decode().rstrip("=")
    assert parse_signing_keys(f"k:{text}") == {"k": b"\xfb\xff" * 8 + bytes(range(20))}


def test_keys_from_a_mounted_secret(tmp_path: Path) -> None:
    # The layout of a Kubernetes Secret volume: ..data links next to one file per key.
    data = tmp_path / "..2026_01_01_00_00_00.000000001"
    data.mkdir()
    (data / "kb").write_text(b64(SECRET_B) + "\n")
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "kb").symlink_to("..data/kb")
    settings = EdgeSettings(
        signing_keys_dir=tmp_path, signing_keys=f"ka:{b64(SECRET_A)}", signing_key_id="kb"
    )
    assert settings.signing_key_ring() == {"ka": SECRET_A, "kb": SECRET_B}


def test_no_key_by_default() -> None:
    assert EdgeSettings().signing_key_ring() == {}


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (f"short:{b64(b'x' * 31)}", "has 31 bytes: at least 32"),
        (f"zeros:{b64(bytes(32))}", "placeholder"),
        ("k:not base64!", "not base64"),
        (f"bad kid:{b64(SECRET_A)}", "must be 1-64 letters"),
        (f"k:{b64(SECRET_A)},k:{b64(SECRET_B)}", "appears twice"),
        (b64(SECRET_A), "kid:base64secret"),
    ],
)
def test_unsafe_keys_are_refused_without_echoing_them(value: str, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        EdgeSettings(signing_keys=value)
    assert needle in str(info.value)
    secret = value.partition(":")[2] or value
    assert secret not in str(info.value)


def test_a_key_id_with_a_final_newline_is_refused() -> None:
    # A key file named "k1\n" in a mounted Secret: "$" in a pattern lets it through.
    with pytest.raises(SigningKeyError, match="signing key id 'k1\\\\n'"):
        decode_signing_secret("k1\n", b64(SECRET_A))


def test_the_signing_key_id_must_exist() -> None:
    with pytest.raises(ValidationError, match="CASCADE_SIGNING_KEY_ID 'kz'"):
        EdgeSettings(signing_keys=f"ka:{b64(SECRET_A)}", signing_key_id="kz")


def test_a_missing_keys_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is not a directory"):
        EdgeSettings(signing_keys_dir=tmp_path / "nope")


# ---- the documented openssl one-liner ---------------------------------------------------


def documented_one_liner() -> str:
    text = (REPO / "docs" / "signed-urls.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("sig=$(")]
    assert len(lines) == 1, "docs/signed-urls.md must hold one `sig=$(...)` line"
    return lines[0]


@pytest.mark.parametrize(
    "secret",
    [SECRET_A, SECRET_B, bytes(range(16)) * 4, os.urandom(32)],
    ids=["a", "b", "repeated-blocks", "random"],
)
def test_the_openssl_one_liner_matches(secret: bytes) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    env = {
        "PATH": os.environ["PATH"],
        "stream": "cam-1",
        "exp": "1767229200",
        "secret": b64(secret),
    }
    out = subprocess.run(
        ["bash", "-c", f'set -euo pipefail\n{documented_one_liner()}\nprintf %s "$sig"'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == signature("cam-1", 1767229200, SigningKey("k", secret))
