"""Preparing a model: the checkpoint from the Hub, the engine built for its parallelism, the cache they live in.

`prepare` drives the others (`hub` downloads, `converters` and `build` turn a checkpoint into
engines through `trtllm`, `gpu` reads the device, `cache` keeps entries locked and atomic,
`inventory` lists and removes them);
`capacity` sizes GPUs for a model (`llmprep plan`). Library use:

    from llmprep.artifacts.prepare import Options, find_prepared, prepare

Nothing here imports the CLI, the lab or the serving path.
"""
