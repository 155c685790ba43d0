"""The post-state root from the final values of the accounts a block changed.

Executionless sync and the access-list importer know, before (or without) executing,
what every changed account and slot holds after the block (`execution.bal.apply`):
each changed storage trie is updated once from those values, then the account trie.
The account trie's part splits by the first nibble of the hashed address: the
importer's workers each work out the accounts under some of the root's sixteen children
(`root_part`, `execution.trie.update_subtries`), and the coordinator only joins them
(`execution.trie.join_subtries`).
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Optional

from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from sha3 import keccak_256  # the trie's hash, without eth-hash's wrappers (execution.trie)

from execution.account_rlp import AccountFields, AccountLike, encode_account, encode_storage_value
from execution.trie import update_subtries, update_trie

SLOT_BYTES = 32
APPLY_CHUNK = 256  # accounts between two yields of the step generators
NO_ACCOUNT = AccountFields(0, 0, BLANK_ROOT_HASH, EMPTY_SHA3)  # what an absent account reads as

# An account as the block leaves it, as far as the state root goes, as a plain tuple (it
# travels to the importer's workers): address, storage root before the block, nonce,
# balance, code hash, {slot: value after the block (0: cleared)}.
RootInput = tuple[bytes, bytes, int, int, bytes, dict[int, int]]
NodeReader = Callable[[bytes], bytes]
AccountTrieChanges = dict[bytes, Optional[bytes]]  # hashed address -> account RLP (None: gone)


def account_trie_change_steps(
    inputs: list[RootInput], read: NodeReader, decoded: Optional[dict[bytes, Any]],
) -> Generator[None, None, tuple[AccountTrieChanges, dict[bytes, bytes], dict[bytes, AccountLike]]]:
    """Each changed storage trie updated once from the final values (yields every
    `APPLY_CHUNK` accounts): the account trie's changes, the new storage-trie nodes, and
    the accounts as the block leaves them. EIP-161: an account exists unless empty."""
    new_nodes: dict[bytes, bytes] = {}
    account_changes: AccountTrieChanges = {}
    post_accounts: dict[bytes, AccountLike] = {}
    for done, (address, storage_root, nonce, balance, code_hash, slots) in enumerate(inputs, 1):
        if done % APPLY_CHUNK == 0:
            yield
        if slots:
            storage_changes = {
                keccak_256(slot.to_bytes(SLOT_BYTES, "big")).digest():
                    encode_storage_value(value) if value else None
                for slot, value in slots.items()
            }
            storage_root, created = update_trie(storage_root, read, storage_changes, decoded)
            new_nodes.update(created)
        if nonce != 0 or balance != 0 or code_hash != EMPTY_SHA3:
            account_changes[keccak_256(address).digest()] = encode_account(
                nonce, balance, storage_root, code_hash)
            post_accounts[address] = AccountFields(nonce, balance, storage_root, code_hash)
        else:
            account_changes[keccak_256(address).digest()] = None
            post_accounts[address] = NO_ACCOUNT
    return account_changes, new_nodes, post_accounts


def run_to_end(steps: Generator[None, None, Any]) -> Any:
    """What a step generator returns, run with nothing in between."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def root_part(pre_root: bytes, inputs: list[RootInput], read: NodeReader,
              decoded: Optional[dict[bytes, Any]]) -> tuple[dict[int, Any], dict[bytes, bytes]]:
    """A share of the post-state root: `inputs` (accounts under some first nibbles of a
    pre-state whose root is a branch) applied to their storage tries and to the account
    trie's children there. Returns {first nibble: new child} and the new nodes."""
    account_changes, nodes, _ = run_to_end(account_trie_change_steps(inputs, read, decoded))
    children, made = update_subtries(pre_root, read, account_changes, decoded)
    nodes.update(made)
    return children, nodes


def first_nibble(address: bytes) -> int:
    """Which child of the account trie's root branch holds `address`."""
    return keccak_256(address).digest()[0] >> 4
