"""`python -m llmprep.cli …`, as the chart's containers and the lab start commands."""

from llmprep.cli.app import main

main()
