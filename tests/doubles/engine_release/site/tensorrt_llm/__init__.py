"""Test double of TensorRT-LLM 1.2.1 (engine-capable): records what it is asked to do."""

from tensorrt_llm.version import __version__

__all__ = ["__version__"]
