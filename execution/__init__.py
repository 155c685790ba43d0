"""The execution stage: runs blocks on py-evm (sequential reference, Block-STM).

Importing py-evm imports py_ecc, which raises the process's recursion limit to 100,000
frames. That is deeper than the C stack can hold: C-level recursion (the json parser,
repr, pickle) would overrun it and the process would die with SIGSEGV instead of raising
RecursionError. py-evm itself needs 12 frames per EVM call level (1,024 levels), so the
limit goes back to py-evm's own figure, which the C stack does hold.

Every keccak in the process (py-evm, trie, eth-utils, Laminar's own) goes through
eth-hash's shared `eth_hash.auto.keccak`, which would pick pycryptodome (about 9 us for a
100-byte input here); safe-pysha3 gives the same digests in about 1.6 us. It is selected
once, here, whether or not a hash was already taken. pyrlp's raw decoder is replaced the
same way (rusty-rlp's costs 15 ns per input byte: `execution/rlp_decoding.py`).
"""

import sys

import eth
from eth_hash.auto import keccak
from eth_hash.backends.pysha3 import backend as pysha3_backend

sys.setrecursionlimit(eth.EVM_RECURSION_LIMIT)
# setattr, as eth-hash itself does: the attributes are its first-run trampolines.
setattr(keccak, "hasher", pysha3_backend.keccak256)  # noqa: B010
setattr(keccak, "preimage", pysha3_backend.preimage)  # noqa: B010

from execution import (  # noqa: E402
    evm_fixes,  # noqa: F401  (py-evm corrections, see the module)
    rlp_decoding,
)

rlp_decoding.install()
