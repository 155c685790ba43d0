"""py-evm's VM errors in geth's words (as callTracer's `error` and a struct log's `error`)."""

from __future__ import annotations

from eth.exceptions import (
    ContractCreationCollision,
    FullStack,
    InsufficientFunds,
    InsufficientStack,
    InvalidInstruction,
    InvalidJumpDestination,
    OutOfBoundsRead,
    OutOfGas,
    Revert,
    StackDepthLimit,
    WriteProtection,
)

_GETH_WORDS: tuple[tuple[type, str], ...] = (
    (Revert, "execution reverted"),
    (OutOfGas, "out of gas"),
    (InsufficientStack, "stack underflow"),
    (FullStack, "stack limit reached 1024"),
    (InvalidJumpDestination, "invalid jump destination"),
    (WriteProtection, "write protection"),
    (StackDepthLimit, "max call depth exceeded"),
    (ContractCreationCollision, "contract address collision"),
    (InsufficientFunds, "insufficient balance for transfer"),
    (OutOfBoundsRead, "return data out of bounds"),
)


def geth_error(error: BaseException) -> str:
    for error_class, words in _GETH_WORDS:
        if isinstance(error, error_class):
            return words
    if isinstance(error, InvalidInstruction):
        return f"invalid opcode: {error}" if str(error) else "invalid opcode"
    return str(error) or type(error).__name__
