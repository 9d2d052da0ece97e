"""res10 full-int8 compiled for the Coral Edge TPU (edgetpu_compiler's `_edgetpu.tflite`), LiteRT + libedgetpu."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from ..backends import BackendUnavailable
from . import DetectorFiles
from .litert import LiteRTNet

LIB = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


class EdgeTPUNet(LiteRTNet):
    type_key = "edgetpu"

    def __init__(self, files: DetectorFiles, options: Optional[Dict[str, Any]] = None) -> None:
        options = dict(options or {}, precision="int8")
        super().__init__(files, options)
        import platform

        # the accelerator first: without it no compiled file helps
        lib = LIB.get(platform.system(), "libedgetpu.so.1")
        device = self.options.get("device")
        try:
            self.delegate = self.load_delegate(lib, {"device": device} if device else {})
        except (ValueError, OSError) as exc:
            raise BackendUnavailable(
                "Edge TPU delegate %s not loadable (%s): install libedgetpu from Coral's "
                "apt repository and plug in the device" % (lib, exc)
            )

    def _variant_key(self, w: int, h: int) -> str:
        return "edgetpu_int8_%dx%d" % (w, h)  # made by edge-export detector where edgetpu_compiler is installed

    def _make(self, path):
        return self.Interpreter(
            model_path=str(path),
            experimental_delegates=[self.delegate],
            num_threads=int(self.options.get("threads", os.cpu_count() or 1)),
        )

    def describe(self) -> str:
        return "edgetpu"
