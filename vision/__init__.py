"""wildscan's model contract: taxonomy, preprocessing, model bundles and the ONNX runtime.

Nothing in this package imports torch, ``training`` or ``serving``; importing it is cheap.
"""

__version__ = "0.1.0"
