"""`laminar bench`: the sequential and the parallel executor side by side.

Kept light on purpose: `tools.cli` imports `bench.cli` to register the subcommand, and
only the constants below are needed for that; the builders (`bench.workloads`), the
runner (`bench.runner`) and the report (`bench.report`) load when the bench runs.
"""

# Transactions per synthetic workload by default.
DEFAULT_SIZES = {"transfers": 2000, "erc20": 2000, "amm": 500, "mixed": 2000}
# Mixed workload: share of transactions on hot state.
DEFAULT_HOT_SHARE = 0.1
