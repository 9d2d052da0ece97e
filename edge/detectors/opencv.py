"""res10 through OpenCV DNN from the Caffe files (the reference); `opencv-cuda` asks for its CUDA target."""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import numpy as np

from ..errors import AssetError
from . import DetectorFiles, DetectorNet

log = logging.getLogger(__name__)


class OpenCVNet(DetectorNet):
    type_key = "opencv"
    needs = "caffe"

    def __init__(self, files: DetectorFiles, options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(files, options)
        import cv2

        try:
            self.net = cv2.dnn.readNetFromCaffe(str(files.prototxt), str(files.caffemodel))
        except cv2.error as exc:
            raise AssetError(
                "cannot load the res10 detector from %s / %s: %s"
                % (files.prototxt, files.caffemodel, str(exc).strip().splitlines()[-1])
            )
        self.in_use = "opencv"
        self._cuda()

    def _cuda(self) -> None:
        pass

    def forward(self, blob: np.ndarray, min_score: float = 0.0) -> np.ndarray:
        self.net.setInput(blob)
        return self.net.forward()

    def describe(self) -> str:
        return self.in_use


class OpenCVCudaNet(OpenCVNet):
    """cv2.dnn on the GPU: needs an OpenCV built with CUDA (JetPack's is not); else the CPU, said once."""

    type_key = "opencv-cuda"

    def _cuda(self) -> None:
        import cv2

        if hasattr(cv2, "cuda") and cv2.cuda.getCudaEnabledDeviceCount() > 0:
            self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
            self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CUDA_FP16)
            self.in_use = "opencv-cuda"
        else:
            log.warning("detector.backend is opencv-cuda but this OpenCV has no CUDA device; using the CPU")
            self.in_use = "opencv"
