"""maskwatch edge runtime: capture -> detect -> classify -> track -> publish.

Nothing in this package imports TensorFlow: it has to install on a Jetson
(JetPack 5, Python 3.8) or a Raspberry Pi with only the LiteRT/tflite runtime.
"""

__version__ = "0.1.0"
