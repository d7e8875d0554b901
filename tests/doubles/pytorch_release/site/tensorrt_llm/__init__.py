"""Test double of a PyTorch-only TensorRT-LLM release (after the engine backend's removal)."""

from tensorrt_llm.version import __version__

__all__ = ["__version__"]
