"""Present `laminar bench` records: a rich table, a JSON file, a PNG chart."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

MATPLOTLIB_PIN = "matplotlib==3.11.2"


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def _times(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _yes_no(value: Optional[bool]) -> Text:
    if value is None:
        return Text("-", style="dim")
    return Text("yes", style="green") if value else Text("NO", style="bold red")


def build_table(records: Sequence[dict[str, Any]]) -> Table:
    first = records[0] if records else {}
    machine = first.get("machine") or {}
    title = (
        f"laminar bench: {first.get('sequential_executor', '?')} vs "
        f"{first.get('parallel_executor', '?')} ({first.get('workers', '?')} workers)"
    )
    caption = (
        f"{machine.get('cpu_count', '?')} CPUs, {machine.get('cpu_model') or 'unknown CPU'}, "
        f"Python {machine.get('python', '?')}. s = execution seconds (transactions to their final effects); "
        "blk s = whole "
        f"block: execute + tx/receipt tries + LevelDB persist. inc/tx = parallel "
        f"incarnations per tx. ok = all txs succeeded (mainnet: matches the header). "
    )
    with_scaling = any(record.get("scaling") is not None for record in records)
    if with_scaling:
        caption += (
            "1w s = Block-STM with 1 worker; scaling = 1w s / par s, the gain from more "
            "cores alone (speedup / scaling is what Block-STM's read path gains on one core). "
        )
    caption += f"Best of {first.get('repeat', 1)}."
    table = Table(title=title, caption=caption, caption_justify="left")
    table.add_column("workload")
    table.add_column("txs", justify="right")
    table.add_column("seq s", justify="right")
    table.add_column("par s", justify="right")
    table.add_column("speedup", justify="right")
    table.add_column("inc/tx", justify="right")
    table.add_column("identical", justify="center")
    table.add_column("seq blk s", justify="right")
    table.add_column("par blk s", justify="right")
    table.add_column("blk speedup", justify="right")
    if with_scaling:
        table.add_column("1w s", justify="right")
        table.add_column("scaling", justify="right")
    table.add_column("ok", justify="center")
    for record in records:
        check = record.get("all_succeeded")
        if record.get("workload") == "mainnet":
            check = record.get("header_ok")
        scaling = []
        if with_scaling:
            scaling = [_seconds(record.get("one_worker_s")), _times(record.get("scaling"))]
        table.add_row(
            record["workload"],
            str(record["txs"]),
            _seconds(record.get("sequential_s")),
            _seconds(record.get("parallel_s")),
            _times(record.get("speedup")),
            _ratio(record.get("incarnations_per_tx")),
            _yes_no(record.get("identical")),
            _seconds(record.get("sequential_block_s")),
            _seconds(record.get("parallel_block_s")),
            _times(record.get("block_speedup")),
            *scaling,
            _yes_no(check),
        )
    return table


def print_report(records: Sequence[dict[str, Any]], console: Console, notes: Sequence[str] = ()) -> None:
    console.print(build_table(records))
    for note in notes:
        console.print(f"note: {note}", style="yellow", markup=False, highlight=False)
    for record in records:
        if record.get("error"):
            console.print(
                f"error in {record['workload']}: {record['error']}",
                style="red",
                markup=False,
                highlight=False,
            )
        detail = record.get("identical_detail")
        if detail and not all(detail.values()):
            differs = ", ".join(k for k, v in detail.items() if not v)
            console.print(
                f"{record['workload']}: results differ in {differs}",
                style="bold red",
                markup=False,
                highlight=False,
            )
        if record.get("one_worker_identical") is False:
            console.print(
                f"{record['workload']}: Block-STM with 1 worker differs from sequential "
                f"({record.get('one_worker_error') or 'different results'})",
                style="bold red",
                markup=False,
                highlight=False,
            )
        if record.get("all_succeeded") is False:
            console.print(
                f"{record['workload']}: check failed: {record.get('failed_txs')} failed "
                f"transaction(s), least gas of a transaction {record.get('min_tx_gas')}",
                style="bold red",
                markup=False,
                highlight=False,
            )
        for block in record.get("blocks") or ():
            if block.get("error") or not block.get("identical") or not block.get("header_ok"):
                console.print(
                    f"{block['workload']}: identical={block.get('identical')} "
                    f"header_ok={block.get('header_ok')} error={block.get('error')}",
                    style="red",
                    markup=False,
                    highlight=False,
                )


def write_json(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Write the records as a JSON list, atomically (temp file + rename)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(list(records), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plot(records: Sequence[dict[str, Any]], path: Path) -> None:
    """A bar chart of execution and whole-block speedup per workload (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["workload"] for r in records]
    exec_speedup = [r.get("speedup") or 0.0 for r in records]
    block_speedup = [r.get("block_speedup") or 0.0 for r in records]
    positions = range(len(names))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(names) + 2), 4.5), dpi=120)
    bars_exec = ax.bar([p - width / 2 for p in positions], exec_speedup, width, label="execution")
    bars_block = ax.bar([p + width / 2 for p in positions], block_speedup, width, label="whole block")
    for bars in (bars_exec, bars_block):
        for bar in bars:
            height = bar.get_height()
            ax.annotate(
                f"{height:.2f}x",
                (bar.get_x() + bar.get_width() / 2, height),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.axhline(1.0, color="grey", linewidth=1, linestyle="--")
    ax.set_xticks(list(positions))
    ax.set_xticklabels(names)
    ax.set_ylabel("speedup over sequential")
    first = records[0] if records else {}
    machine = first.get("machine") or {}
    ax.set_title(
        f"{first.get('parallel_executor', '?')} vs {first.get('sequential_executor', '?')}, "
        f"{first.get('workers', '?')} workers, {machine.get('cpu_count', '?')} CPUs"
    )
    for i, record in enumerate(records):
        if not record.get("identical"):
            ax.annotate("not identical", (i, 0), ha="center", va="bottom", color="red", fontsize=8)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    if str(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
