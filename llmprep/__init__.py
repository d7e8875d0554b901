"""llmprep: prepare, serve, load-test and autoscale TensorRT-LLM models on Triton."""

from llmprep import _moved

__version__ = "0.1.0"

_moved.install()
