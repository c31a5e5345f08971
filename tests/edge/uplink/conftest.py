"""Fixtures for the uplink's tests; the helpers they share are in tests/support/uplink.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.uplink import SMALL


@pytest.fixture
def small() -> dict[str, Any]:
    return dict(SMALL)
