"""One error type per kind of failure; cli.py turns them into one-line messages and exit codes."""

from __future__ import annotations


class LlmprepError(Exception):
    """Base of every error a user should read; `exit_code` 2 means bad input, 1 failed work."""

    exit_code = 1


class SpecError(LlmprepError):
    """The model spec (values file or flags) is invalid."""

    exit_code = 2


class UsageError(LlmprepError):
    """A command-line argument or input file is invalid."""

    exit_code = 2


class HubError(LlmprepError):
    """Downloading from the Hugging Face Hub failed."""


class BuildError(LlmprepError):
    """TensorRT-LLM conversion or engine build failed, or cannot run here."""


class CacheError(LlmprepError):
    """The artifact cache is unusable (lock timeout, corrupt entry that cannot be rebuilt)."""


class RepoError(LlmprepError):
    """Writing the Triton model repository failed."""


class ServeError(LlmprepError):
    """Starting the inference server failed or was refused."""


class ProcessError(LlmprepError):
    """A subprocess failed; the message carries the tail of its output."""


class LoadError(LlmprepError):
    """The load generator could not run or the run failed its error budget."""


class LabError(LlmprepError):
    """The local autoscaling lab could not run."""
