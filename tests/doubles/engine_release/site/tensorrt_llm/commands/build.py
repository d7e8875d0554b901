"""Double of `trtllm-build` (tensorrt_llm.commands.build in the real release)."""

from tensorrt_llm._double import build_main as main

if __name__ == "__main__":
    main()
