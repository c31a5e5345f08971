"""Every unit in systemd/ passes `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edge.runtime.memory import MALLOC_ENV
from tests.support import REPO, require

UNITS = sorted((REPO / "systemd").glob("*.*"))


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_unit_verifies(unit: Path, tmp_path: Path) -> None:
    require(shutil.which("systemd-analyze"),
            "systemd-analyze is not installed (Debian package systemd)")
    # verify checks that ExecStart exists; point it at a stand-in for the installed venv.
    fake_edge = tmp_path / "edge"
    fake_edge.write_text("#!/bin/sh\n")
    fake_edge.chmod(0o755)
    text = unit.read_text().replace("/opt/edge/venv/bin/edge", str(fake_edge))
    for other in UNITS:  # dependencies must resolve inside the temp dir
        if other != unit:
            (tmp_path / other.name).write_text(
                other.read_text().replace("/opt/edge/venv/bin/edge", str(fake_edge)))
    target = tmp_path / unit.name
    if "@" in unit.name:
        target = tmp_path / unit.name.replace("@.", "@test.")
        (tmp_path / unit.name).write_text(text)
    target.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(target)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    problems = [line for line in r.stderr.splitlines()
                if str(tmp_path) in line or unit.name in line]
    assert r.returncode == 0 and not problems, r.stderr


def test_units_are_hardened() -> None:
    for unit in UNITS:
        if unit.suffix != ".service":
            continue
        text = unit.read_text()
        for key in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes",
                    "ProtectSystem=strict", "PrivateTmp=yes", "CapabilityBoundingSet="):
            assert key in text, f"{unit.name} lacks {key}"


def test_units_run_with_the_runtime_environment() -> None:
    for unit in UNITS:
        if unit.suffix != ".service":
            continue
        text = unit.read_text()
        for key, value in MALLOC_ENV.items():
            assert f"Environment={key}={value}" in text, f"{unit.name} lacks {key}={value}"
