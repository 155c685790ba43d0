"""Runs py-libp2p services (pubsub, the GossipSub router) under a task manager whose
parent lookup is a dictionary read instead of a walk of every live task.

py-libp2p 0.8.1's ``TrioManager.run_task`` finds the new task's parent by walking the
whole task tree (``TrioManager._find_parent_task``), and ``Pubsub`` spawns a task for
every message it receives (``self.manager.run_task(self.push_msg, ...)`` in
``continuously_read_stream``). Called from a stream handler, which is no manager task,
the walk never matches and visits every live task. In a burst of 3,000 messages through
four hosts (``python -m bench.gossip``) the process spent 43% less CPU without the walk
(``docs/p2p.md``, "Per-message task spawns").

``IndexedTrioManager`` keeps the trio task each ``FunctionTask`` runs in, from the
moment its ``run`` starts until it returns, and answers the lookup from that index. A
``FunctionTask`` is in the library's tree for the whole of its ``run`` (a child leaves
its parent in ``run``'s ``finally``, a root task after ``run`` returns), so the index
gives the same parent the walk gives. ``tests/test_p2p.py`` checks that against the
library's own walk in a running service: a py-libp2p upgrade must re-check both
private methods overridden here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from libp2p.tools.anyio_service.api import ManagerAPI, ServiceAPI
from libp2p.tools.anyio_service.trio_manager import TrioManager
from libp2p.tools.anyio_service.trio_tasks import FunctionTask, TaskAPI, TaskWithChildrenAPI


class IndexedTrioManager(TrioManager):
    """``TrioManager`` with an O(1) parent lookup (see the module docstring)."""

    def __init__(self, service: ServiceAPI, **kwargs: Any) -> None:
        super().__init__(service, **kwargs)
        self._running_function_tasks: dict[trio.lowlevel.Task, FunctionTask] = {}

    def _find_parent_task(self, trio_task: trio.lowlevel.Task) -> TaskWithChildrenAPI | None:
        return self._running_function_tasks.get(trio_task)

    async def _run_and_manage_task(self, task: TaskAPI) -> None:
        if not isinstance(task, FunctionTask):
            await super()._run_and_manage_task(task)
            return
        # The library runs ``task.run()`` directly in this trio task, which is the
        # ``trio_task`` that ``FunctionTask.run`` records.
        current = trio.lowlevel.current_task()
        self._running_function_tasks[current] = task
        try:
            await super()._run_and_manage_task(task)
        finally:
            del self._running_function_tasks[current]


@asynccontextmanager
async def background_service(service: ServiceAPI) -> AsyncIterator[ManagerAPI]:
    """``libp2p.tools.anyio_service.background_trio_service`` with ``IndexedTrioManager``:
    the service runs for the block's duration and is stopped when it exits."""
    async with trio.open_nursery() as nursery:
        manager = IndexedTrioManager(service)
        service._manager = manager
        nursery.start_soon(manager.run)
        await manager.wait_started()
        try:
            yield manager
        finally:
            await manager.stop()
