"""Double of the release's examples/models/core/<family>/convert_checkpoint.py."""

from tensorrt_llm._double import convert_main

if __name__ == "__main__":
    convert_main()
