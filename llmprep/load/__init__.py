"""`llmprep load`: a streaming load generator for Triton (gRPC or HTTP), closed or open loop.

Library entry points (another program drives a run in-process and reads it live):

    from llmprep.load import LoadConfig, run_load, constant
    result = run_load(LoadConfig(targets=["127.0.0.1:8001"], profile=constant("clients", 4, 30)),
                      on_second=print)

`LoadGenerator(config).run(...)` is the same as a coroutine; its `snapshot()` returns the last
completed second from any thread.
"""

from llmprep.load.profile import Profile, Stage, constant, load_profile, parse_profile
from llmprep.load.prompts import Prompt, load_prompts, synthetic_prompts
from llmprep.load.runner import LoadConfig, LoadGenerator, LoadResult, run_load
from llmprep.load.stats import Sample, SecondStats, percentile, summarize

__all__ = [
    "LoadConfig",
    "LoadGenerator",
    "LoadResult",
    "Profile",
    "Prompt",
    "Sample",
    "SecondStats",
    "Stage",
    "constant",
    "load_profile",
    "load_prompts",
    "parse_profile",
    "percentile",
    "run_load",
    "summarize",
    "synthetic_prompts",
]
