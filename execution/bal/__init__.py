"""Block-level access lists (EIP-7928): the format, how executors build them, and the
executor that imports a block with its list (see docs/bal.md)."""
