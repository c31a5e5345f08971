"""Every `edge` process (each service, simulator and `edge --help`) builds the whole
command parser first: building it must import none of the heavy libraries, which only
the commands that use them load (issue 17: a service imports aiortc, PyAV, OpenCV or
Textual only if it uses them)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO

HEAVY = ("aiortc", "aiohttp", "av", "cv2", "mcap", "nats", "numpy", "pymavlink", "sqlite3",
         "textual")


def test_building_the_parser_imports_no_heavy_library() -> None:
    # A fresh interpreter: this one has imported everything the other tests needed.
    code = ("import json, sys\nfrom edge.cli import build_parser\nbuild_parser()\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = {name.partition(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_bench_modules_load_with_edge_bench_only() -> None:
    code = ("import json, sys\nfrom edge.cli import build_parser\n"
            "build_parser().parse_args(['run', 'bus'])\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('edge.bench'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
