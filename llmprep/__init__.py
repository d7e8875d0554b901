"""llmprep: prepare, serve, load-test and autoscale TensorRT-LLM models on Triton."""

__version__ = "0.1.0"
