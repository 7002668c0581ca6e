"""``cascade sign``: a signed URL the edge's verifier accepts, and clear refusals."""

from __future__ import annotations

import argparse
import base64
from urllib.parse import parse_qsl, urlsplit

import pytest

from cascade.cli import sign
from cascade.edge.access import Grant, key_ring, verify

NOW = 1_767_225_600.0
SECRET_A = bytes(range(32))
SECRET_B = bytes(range(100, 132))
BOTH = f"ka:{base64.b64encode(SECRET_A).decode()},kb:{base64.b64encode(SECRET_B).decode()}"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cascade")
    sign.add_parser(parser.add_subparsers(dest="command", required=True))
    return sign.run(parser.parse_args(["sign", *argv]), clock=lambda: NOW)


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CASCADE_SIGNING_KEYS", "CASCADE_SIGNING_KEYS_DIR", "CASCADE_SIGNING_KEY_ID"):
        monkeypatch.delenv(name, raising=False)


def test_prints_a_url_the_edge_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CASCADE_SIGNING_KEYS", BOTH)
    monkeypatch.setenv("CASCADE_SIGNING_KEY_ID", "kb")
    assert run(["cam1", "--ttl", "600", "--base", "https://edge.example.com"]) == 0
    url = capsys.readouterr().out.strip()
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "edge.example.com",
        "/live/cam1.m3u8",
    )
    params = dict(parse_qsl(parts.query))
    keys = key_ring({"ka": SECRET_A, "kb": SECRET_B})
    assert verify("cam1", params, keys, NOW) == Grant("cam1", int(NOW) + 600, "kb")


def test_kid_option_wins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CASCADE_SIGNING_KEYS", BOTH)
    monkeypatch.setenv("CASCADE_SIGNING_KEY_ID", "kb")
    assert run(["cam1", "--kid", "ka"]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("http://127.0.0.1:8080/live/cam1.m3u8?exp=1767229200&kid=ka&sig=")


@pytest.mark.parametrize(
    ("env", "argv", "needle"),
    [
        ({}, ["cam1"], "no signing key: set CASCADE_SIGNING_KEYS"),
        ({"CASCADE_SIGNING_KEYS": BOTH}, ["cam1"], "several signing keys (ka, kb)"),
        ({"CASCADE_SIGNING_KEYS": BOTH}, ["cam1", "--kid", "kz"], "no signing key 'kz'"),
        ({"CASCADE_SIGNING_KEYS": "k:c2hvcnQ="}, ["cam1"], "has 5 bytes"),
        ({"CASCADE_SIGNING_KEYS": BOTH}, ["Not_A_Name", "--kid", "ka"], "not a stream name"),
        ({"CASCADE_SIGNING_KEYS": BOTH}, ["cam1", "--kid", "ka", "--ttl", "0"], "--ttl"),
    ],
)
def test_refusals(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    argv: list[str],
    needle: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert needle in captured.err
    assert "c2hvcnQ" not in captured.err
