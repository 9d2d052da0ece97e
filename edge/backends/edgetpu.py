"""Coral Edge TPU: the LiteRT interpreter with the libedgetpu delegate and an `*_edgetpu.tflite` model.

libedgetpu comes from Coral's apt repository (not PyPI); without it, or without a
Coral device attached, this backend is unavailable and the daemon falls back to
the CPU int8 model with a warning and a status flag.
"""

from __future__ import annotations

import gc
import platform

from . import BackendUnavailable
from .litert import LiteRTBackend

EDGETPU_LIB = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


class EdgeTPUBackend(LiteRTBackend):
    type_key = "edgetpu"

    def _make(self, Interpreter, load_delegate):
        lib = self.options.get("delegate_library") or EDGETPU_LIB.get(platform.system(), "libedgetpu.so.1")
        device = self.options.get("device")  # e.g. "usb", "usb:0", "pci:0"
        try:
            delegate = load_delegate(lib, {"device": device} if device else {})
        except (ValueError, OSError) as exc:
            why = str(exc)
            del exc
            # the runtime's half-built Delegate object has a __del__ that fails (no _library yet): collect it here,
            # at a known point, rather than whenever the garbage collector next runs (mid-import, say)
            gc.collect()
            raise BackendUnavailable(
                "Edge TPU delegate %s could not be loaded (%s): is libedgetpu installed "
                "and a Coral device attached?" % (lib, why)
            )
        return Interpreter(model_path=str(self.model_path), experimental_delegates=[delegate])

    def describe(self) -> str:
        return "edgetpu(%s):%s" % (self.runtime, self.variant.key)
