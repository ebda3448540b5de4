"""Fixtures shared by several test modules."""

from __future__ import annotations

import os

import pytest

from tests.captures import Capture, record_direct, record_proxied


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("live capture on lo needs root (a raw packet socket)")


@pytest.fixture(scope="session")
def direct(tmp_path_factory) -> Capture:
    """Ann and Bob chat through a server, captured live (tests/captures.py)."""
    _needs_root()
    return record_direct(tmp_path_factory)


@pytest.fixture(scope="session")
def proxied(tmp_path_factory) -> Capture:
    """Ann messages Bob through the lossy proxy, captured live (tests/captures.py)."""
    _needs_root()
    return record_proxied(tmp_path_factory)
