"""`edge sim camera --onvif-credentials-file`: the ONVIF user and password from a camera's
`credentials` file ("user:password"); a file or flags that do not fit are one line.
(That the simulator then asks for them is checked through the demo,
tests/edge/runtime/test_demo_gb_onvif.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import run_edge

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(("content", "extra", "says"), [
    ("no-colon\n", [], 'expected "user:password"'),
    (":password\n", [], 'expected "user:password"'),
    ("admin:\n", [], 'expected "user:password"'),
    ("\n", [], "is empty"),
    ("admin:pw\n", ["--onvif-user", "admin", "--onvif-password-file", "x"],
     "give one or the other"),
])
async def test_a_credentials_file_that_does_not_fit_is_one_line(
        tmp_path: Path, content: str, extra: list[str], says: str) -> None:
    secret = tmp_path / "credentials"
    secret.write_text(content)
    code, _, err = await run_edge("sim", "camera", "--name", "cam1", "--onvif", "8080",
                                  "--onvif-credentials-file", str(secret), *extra)
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err


@pytest.mark.parametrize(("args", "says"), [
    (["--onvif-credentials-file", "/nonexistent/c"], "need --onvif PORT"),
    (["--onvif", "8080", "--onvif-credentials-file", "/nonexistent/c"], "/nonexistent/c"),
])
async def test_bad_credentials_flags_are_one_line(args: list[str], says: str) -> None:
    code, _, err = await run_edge("sim", "camera", "--name", "cam1", *args)
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
