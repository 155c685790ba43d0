"""Block-STM parallel execution (see docs/blockstm.md)."""

from execution.blockstm.config import BlockSTMConfig
from execution.blockstm.executor import BlockSTMExecutor

__all__ = ["BlockSTMConfig", "BlockSTMExecutor"]
