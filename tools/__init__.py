"""Tools beside the node: command-line programs that drive the stages (conformance tests,
replay, benchmarks, load), never imported by the stages themselves."""
