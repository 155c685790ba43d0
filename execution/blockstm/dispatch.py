"""Handing ready transactions to workers: sender affinity, tasks in flight, and what each
worker must learn with its next WORK message (other workers' write sets, fetched nodes)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from execution.blockstm import messages as m
from execution.blockstm.config import BlockSTMConfig
from execution.blockstm.messages import TxIndex
from execution.blockstm.scheduler import Scheduler


class Dispatcher:
    def __init__(self, config: BlockSTMConfig, workers: int, senders: list[Optional[bytes]],
                 shared_nodes: list[dict]) -> None:
        self.config = config
        self.senders = senders  # by transaction, when known up front (BlockInput.senders)
        # sender -> [worker, incarnations in flight there]
        self.sender_owner: dict[bytes, list[int]] = {}
        self.in_flight = [0] * workers
        self.active_workers = workers  # the workers that get tasks
        self.depth = config.tasks_in_flight  # tasks a worker may hold (the run sets it)
        self.sent: list[set] = [set() for _ in range(workers)]  # txs each worker holds
        self.pending_updates: list[list] = [[] for _ in range(workers)]
        # Nodes fetched by one worker, to send to the others with their next WORK
        # message (kept by the pool across blocks: content-addressed, always valid).
        self.pending_nodes = shared_nodes

    # ---- what workers must learn ----------------------------------------------------------

    def share_update(self, from_worker: int, update: tuple) -> None:
        """A finished incarnation's write set, for every worker but the one that ran it."""
        for other, queue in enumerate(self.pending_updates):
            if other != from_worker:
                queue.append(update)

    def share_estimate(self, tx: TxIndex) -> None:
        """An aborted incarnation: its writes are ESTIMATEs everywhere."""
        estimate = (tx, None, None, None)
        for queue in self.pending_updates:
            queue.append(estimate)

    def share_nodes(self, from_worker: int, keys: Sequence[bytes], values: Sequence) -> None:
        for other, share in enumerate(self.pending_nodes):
            if other != from_worker:
                for key, value in zip(keys, values):
                    if value is not None:
                        share[key] = value

    # ---- in flight ------------------------------------------------------------------------

    @property
    def tasks_in_flight(self) -> int:
        return sum(self.in_flight)

    def landed(self, worker: int, tx: TxIndex) -> None:
        """A result of `tx` came back from `worker` (current or superseded)."""
        self.in_flight[worker] -= 1
        sender = self.senders[tx]
        if sender is None:
            return
        owner = self.sender_owner.get(sender)
        if owner is not None:
            owner[1] -= 1
            if owner[1] <= 0:
                del self.sender_owner[sender]

    def narrow(self) -> None:
        """From now on only worker 0 gets tasks."""
        self.active_workers = 1

    # ---- dispatch -------------------------------------------------------------------------

    def dispatch(self, sched: Scheduler, block_id: int, txs: Sequence,
                 send: Callable[[int, tuple], None]) -> None:
        config = self.config
        sent = self.sent
        active = self.active_workers
        if active < len(self.in_flight) and any(self.in_flight[active:]):
            # Narrowed to one worker: first let the others' last tasks come back, so that
            # the one worker's run in index order starts from a settled state (what they
            # ran on stale reads is validated and aborted before it goes on).
            return
        load = self.in_flight[:active]
        batches: list[list] = [[] for _ in range(active)]
        skipped: list[TxIndex] = []
        while min(load) < self.depth and len(skipped) < config.affinity_lookahead:
            tx = sched.next_task()
            if tx < 0:
                break
            w = self._worker_for(tx, load)
            if w < 0:
                skipped.append(tx)
                continue
            load[w] += 1
            sender = self.senders[tx]
            if sender is not None:
                owner = self.sender_owner.get(sender)
                if owner is None:
                    self.sender_owner[sender] = [w, 1]
                else:
                    owner[1] += 1
            # The decoded transaction object itself (pickling it costs ~6 us, an
            # encode + decode ~50 us), once per worker: later incarnations refer to
            # the worker's copy.
            if tx in sent[w]:
                batches[w].append((tx, sched.incarnation[tx], None))
            else:
                sent[w].add(tx)
                batches[w].append((tx, sched.incarnation[tx], txs[tx]))
        for tx in skipped:
            sched.put_back(tx)
        for w in range(active):
            tasks = batches[w]
            updates = self.pending_updates[w]
            if tasks or updates:
                nodes = self.pending_nodes[w]
                if nodes:
                    self.pending_nodes[w] = {}  # the same list object as the pool's
                send(w, m.wire(m.Work(block_id, updates, tasks, nodes)))
                self.pending_updates[w] = []
                self.in_flight[w] += len(tasks)

    def _worker_for(self, tx: TxIndex, load: list[int]) -> int:
        """The worker that runs its sender's transaction in flight, if any (it sees that
        one's writes at once; another worker would read a stale nonce), else the least
        loaded one with room; -1: none for now."""
        config = self.config
        sender = self.senders[tx]
        if sender is not None and len(load) > 1:
            owner = self.sender_owner.get(sender)
            if owner is not None:
                w = owner[0]
                return w if load[w] < self.depth + config.affinity_slack else -1
        w = min(range(len(load)), key=load.__getitem__)
        return w if load[w] < self.depth else -1
