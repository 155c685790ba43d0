"""The execution stage: runs blocks on py-evm (sequential reference, Block-STM).

Importing py-evm imports py_ecc, which raises the process's recursion limit to 100,000
frames. That is deeper than the C stack can hold: C-level recursion (the json parser,
repr, pickle) would overrun it and the process would die with SIGSEGV instead of raising
RecursionError. py-evm itself needs 12 frames per EVM call level (1,024 levels), so the
limit goes back to py-evm's own figure, which the C stack does hold.
"""

import sys

import eth

sys.setrecursionlimit(eth.EVM_RECURSION_LIMIT)

from execution import evm_fixes  # noqa: E402,F401  (py-evm corrections, see the module)
