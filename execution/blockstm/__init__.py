"""Block-STM parallel execution (see docs/blockstm.md)."""

from execution.blockstm.executor import BlockSTMExecutor

__all__ = ["BlockSTMExecutor"]
