"""edge/ must run on JetPack 5 (Python 3.8) and never pull in TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


def test_edge_modules_do_not_import_tensorflow():
    code = (
        "import sys, edge.cli, edge.pipeline, edge.bench, controlroom.alerts_cli, edge.classifier, edge.backends;"
        "edge.backends.available_types();"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('tensorflow','keras','tf2onnx')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    assert r.returncode == 0, r.stdout + r.stderr


def test_backends_are_discovered_plugins():
    from edge import backends

    types = backends.available_types()
    assert {"litert", "edgetpu", "onnxruntime", "tensorrt"} <= set(types)


def test_edge_keeps_python38_syntax():
    exe = Path(sys.executable).parent / "vermin"
    if not exe.exists():
        pytest.fail("vermin is not installed (it is in the dev extra)")
    r = subprocess.run(
        [
            str(exe),
            "-t=3.8-",
            "--no-tips",
            "--violations",
            "--eval-annotations",
            "--backport",
            "typing",
            str(ROOT / "edge"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
