"""Consensus timeouts: the per-round schedule (pure) and a trio helper that fires them.

Timeouts grow linearly with the round: timeout(step, r) = base(step) + delta(step) * r.
Once the network is synchronous with some unknown bound on delay, a late enough round has
timeouts longer than that bound, which is what gives Tendermint liveness after GST. There
is deliberately no cap: a cap below the real message delay would break liveness.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

import trio

from consensus.events import ScheduleTimeout, TimeoutFired
from consensus.messages import Step

if TYPE_CHECKING:
    # trio.TaskStatus is hidden from mypy by trio-typing's stubs: see consensus/engine.py.
    from trio_typing import TaskStatus


@dataclass(frozen=True)
class TimeoutConfig:
    propose: float = 3.0
    propose_delta: float = 0.5
    prevote: float = 1.0
    prevote_delta: float = 0.5
    precommit: float = 1.0
    precommit_delta: float = 0.5

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"timeout {name} must be a finite number >= 0, got {value!r}")


def timeout_propose(config: TimeoutConfig, round_: int) -> float:
    return config.propose + config.propose_delta * round_


def timeout_prevote(config: TimeoutConfig, round_: int) -> float:
    return config.prevote + config.prevote_delta * round_


def timeout_precommit(config: TimeoutConfig, round_: int) -> float:
    return config.precommit + config.precommit_delta * round_


def timeout_duration(config: TimeoutConfig, step: Step, round_: int) -> float:
    if step == Step.PROPOSE:
        return timeout_propose(config, round_)
    if step == Step.PREVOTE:
        return timeout_prevote(config, round_)
    if step == Step.PRECOMMIT:
        return timeout_precommit(config, round_)
    raise ValueError(f"no timeout for step {step!r}")


class TimeoutScheduler:
    """Turns `ScheduleTimeout` actions into `TimeoutFired` events, on trio's clock.

    One task (`run`) owns every pending timeout: it sleeps in a cancel scope whose deadline
    is the earliest pending timeout and is moved earlier when an earlier one is scheduled.
    No task per timeout, nothing left behind when `run` is cancelled.

        scheduler = TimeoutScheduler()
        nursery.start_soon(scheduler.run, deliver)   # deliver: async (TimeoutFired) -> None
        ... for action in machine.handle(event):
                if isinstance(action, ScheduleTimeout): scheduler.schedule(action)
    """

    def __init__(self) -> None:
        self._heap: list = []
        self._seq = 0
        self._scope: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, action: ScheduleTimeout) -> None:
        """Call from the trio thread."""

        deadline = trio.current_time() + action.duration
        self._seq += 1
        heapq.heappush(
            self._heap,
            (deadline, self._seq, TimeoutFired(action.height, action.round, action.step)),
        )
        if self._scope is not None and deadline < self._scope.deadline:
            self._scope.deadline = deadline

    def discard_below(self, height: int) -> None:
        """Drop pending timeouts of heights below `height` (they would be no-ops anyway)."""
        self._heap = [item for item in self._heap if item[2].height >= height]
        heapq.heapify(self._heap)

    async def run(
        self, deliver: Callable[[object], Awaitable[None]],
        *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        while True:
            deadline = self._heap[0][0] if self._heap else math.inf
            with trio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, event = heapq.heappop(self._heap)
                await deliver(event)
