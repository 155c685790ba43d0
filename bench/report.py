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
    with_bal = any("bal_identical" in record for record in records)
    if with_bal:
        caption += (
            "bal = the block imported with its EIP-7928 access list (made untimed, first): "
            "bal x = seq s / bal s, bal blk x = seq blk s / bal blk s, bal scal = 1-worker "
            "import / import (mainnet: over the blocks that have a list). "
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
    if with_bal:
        table.add_column("bal s", justify="right")
        table.add_column("bal x", justify="right")
        table.add_column("bal blk x", justify="right")
        table.add_column("bal scal", justify="right")
    table.add_column("ok", justify="center")
    for record in records:
        check = record.get("all_succeeded")
        if record.get("workload") == "mainnet":
            check = record.get("header_ok")
        scaling = []
        if with_scaling:
            scaling = [_seconds(record.get("one_worker_s")), _times(record.get("scaling"))]
        bal: list[Any] = []
        if with_bal:
            bal = [
                _seconds(record.get("bal_execution_s")),
                _bal_times(record, "bal_speedup"),
                _bal_times(record, "bal_block_speedup"),
                _times(record.get("bal_scaling")),
            ]
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
            *bal,
            _yes_no(check),
        )
    return table


def _bal_times(record: dict[str, Any], key: str) -> Text:
    """A bal speedup, red when the import's results differ from sequential's."""
    text = _times(record.get(key))
    if record.get("bal_identical") is False:
        return Text(text if text != "-" else "NO", style="bold red")
    return Text(text)


def build_sync_table(record: dict[str, Any]) -> Table:
    """The executionless sync bench: execute vs apply, each with its LevelDB commits."""
    table = Table(
        title=f"executionless sync: {record['sync_blocks']} blocks of {record['sync_txs']} "
        f"mixed txs, {record['executor']} ({record['workers']} workers) vs the access lists",
        caption="execute / apply = the block run by the executor / its access list folded into "
        f"the state (no EVM); commit = the new state nodes of each sync batch of "
        f"{record.get('blocks_per_commit', 1)} blocks in one fsynced LevelDB write; "
        "speedup = execute total / apply total; roots = every post-state root of both paths "
        "equals the first pass's.",
        caption_justify="left",
    )
    for name in ("path", "total s", "run s", "commit s", "median block s"):
        table.add_column(name, justify="left" if name == "path" else "right")
    table.add_row("execute", _seconds(record.get("execute_s")), _seconds(record.get("execute_only_s")),
                  _seconds(record.get("execute_commit_s")), _seconds(record.get("median_block_execute_s")))
    table.add_row("apply", _seconds(record.get("apply_s")), _seconds(record.get("apply_only_s")),
                  _seconds(record.get("apply_commit_s")), _seconds(record.get("median_block_apply_s")))
    table.add_row(Text("speedup", style="bold"), _times(record.get("sync_speedup")),
                  _times(record.get("apply_only_speedup")), "", "")
    table.add_section()
    table.add_row("roots", _yes_no(record.get("roots_match")), "", "", "")
    table.add_row("bytes/tx", _ratio(record.get("bal_bytes_per_tx")), "", "", "")
    return table


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:+.0f}%"


def _check_cell(entry: Optional[dict[str, Any]]) -> str:
    """predicted / measured (relative error) of one validation run."""
    if not entry:
        return "-"
    star = "*" if entry.get("in_sample") else ""
    return (f"{star}{_seconds(entry.get('predicted_s'))} / {_seconds(entry.get('measured_s'))} "
            f"({_percent(entry.get('relative_error'))})")


def build_simulation_table(records: Sequence[dict[str, Any]]) -> Optional[Table]:
    """The model: its check against the timed runs, and its predictions at N workers."""
    simulated = [r for r in records if isinstance(r.get("simulated"), dict)]
    if not simulated:
        return None
    workers: list[int] = next((r["simulated"].get("workers") for r in simulated
                               if not r["simulated"].get("error")), []) or []
    k = simulated[0].get("workers", "K")
    cores = next((r["simulated"]["validation"].get("cores") for r in simulated
                  if "validation" in r["simulated"]), "?")
    table = Table(
        title="model: predicted execution seconds at N workers (coordinator utilisation)",
        caption=(
            f"check: predicted / measured execution s (relative error) with "
            f"{'1 worker' if str(k) == '1' else f'1 and {k} workers'} on "
            f"this machine's {cores} CPUs; measured = the fastest of the bench's rounds and the "
            "calibration runs; * = the run the model was calibrated on (not an independent "
            "check). Predictions: a core per worker plus one for the coordinator. "
            "n = the contention judge narrowed the block to one worker. ~100% at = the fewest "
            "workers whose coordinator is busy >= 90% of the block: more workers cannot help; "
            "fastest = where the predicted time is least."
        ),
        caption_justify="left",
    )
    table.add_column("workload")
    table.add_column("executor")
    table.add_column("check 1w", justify="right")
    if str(k) != "1":
        table.add_column(f"check {k}w", justify="right")
    for n in workers:
        table.add_column(f"N={n}", justify="right")
    table.add_column("~100% at", justify="right")
    table.add_column("fastest", justify="right")
    for record in simulated:
        sim = record["simulated"]
        if sim.get("error"):
            table.add_row(record["workload"], Text(f"model failed: {sim['error']}", style="red"))
            continue
        validation = sim.get("validation") or {}
        for side, label, times, utilisation, saturated, fastest in (
            ("blockstm", "blockstm", "blockstm_s", "coordinator_utilisation",
             "coordinator_saturated_at", "blockstm_fastest_at"),
            ("bal", "bal import", "bal_s", "bal_coordinator_utilisation",
             "bal_coordinator_saturated_at", "bal_fastest_at"),
        ):
            checks = validation.get(side) or {}
            if not checks and all(t is None for t in sim.get(times) or []):
                continue
            cells = []
            narrowed = sim.get("blockstm_narrowed_at") if side == "blockstm" else None
            for i, (t, u) in enumerate(zip(sim.get(times) or [], sim.get(utilisation) or [])):
                mark = "n" if narrowed and i < len(narrowed) and narrowed[i] is not None else ""
                cells.append("-" if t is None else f"{t:.3f}{mark} ({100 * (u or 0):.0f}%)")
            more = [_check_cell(checks.get(str(k)))] if str(k) != "1" else []
            table.add_row(
                record["workload"], label, _check_cell(checks.get("1")), *more, *cells,
                str(sim.get(saturated) or "-"), str(sim.get(fastest) or "-"),
            )
    return table


def workload_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the main table and the plot (not the sync bench's)."""
    return [r for r in records if r.get("workload") != "sync"]


def print_report(records: Sequence[dict[str, Any]], console: Console, notes: Sequence[str] = ()) -> None:
    main = workload_records(records)
    if main:
        console.print(build_table(main))
    model = build_simulation_table(main)
    if model is not None:
        console.print(model)
    for record in records:
        if record.get("workload") == "sync":
            console.print(build_sync_table(record))
            if record.get("root_mismatches"):
                console.print(
                    f"sync: post-state roots differ: {record['root_mismatches']}",
                    style="bold red", markup=False, highlight=False,
                )
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
        if record.get("bal_identical") is False:
            console.print(
                f"{record['workload']}: the block-access-list import differs from sequential "
                f"({record.get('bal_error') or _differs(record.get('bal_identical_detail'))})",
                style="bold red",
                markup=False,
                highlight=False,
            )
        if record.get("bal_skipped") and record.get("workload") == "mainnet":
            console.print(
                f"mainnet: {record.get('bal_blocks')} blocks imported with their access list; "
                f"skipped (no list possible before Cancun): "
                f"{', '.join(str(b) for b in record['bal_skipped'])}",
                style="dim",
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
            if (block.get("error") or not block.get("identical") or not block.get("header_ok")
                    or block.get("bal_identical") is False):
                console.print(
                    f"{block['workload']}: identical={block.get('identical')} "
                    f"header_ok={block.get('header_ok')} error={block.get('error')} "
                    f"bal_identical={block.get('bal_identical')} "
                    f"bal_error={block.get('bal_error')}",
                    style="red",
                    markup=False,
                    highlight=False,
                )


def _differs(detail: Optional[dict[str, bool]]) -> str:
    if not detail:
        return "different results"
    return "differs in " + ", ".join(k for k, v in detail.items() if not v)


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


def _plot_model(ax: Any, records: Sequence[dict[str, Any]]) -> None:
    """Predicted speedup over sequential against workers (log scale), measured points."""
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for record, colour in zip(records, colours * 4):
        sim = record["simulated"]
        curve = sim.get("curve") or {}
        workers = curve.get("workers") or []
        sequential = record.get("sequential_s")
        if not sequential:
            continue
        for key, style, label in (("blockstm_s", "-", "Block-STM"), ("bal_s", "--", "bal import")):
            seconds = curve.get(key) or []
            points = [(n, sequential / t) for n, t in zip(workers, seconds) if t]
            if not points:
                continue
            ax.plot([n for n, _ in points], [x for _, x in points], style, color=colour,
                    marker=".", label=f"{record['workload']}: {label}")
            side = "blockstm" if key == "blockstm_s" else "bal"
            measured = [(v["workers"], sequential / v["measured_s"])
                        for v in (sim.get("validation") or {}).get(side, {}).values()
                        if v.get("measured_s")]
            if measured:
                ax.scatter([n for n, _ in measured], [x for _, x in measured], color=colour,
                           marker="o" if side == "blockstm" else "s", facecolors="none", zorder=3)
            checked = [(v["workers"], sequential / v["predicted_s"])
                       for v in (sim.get("validation") or {}).get(side, {}).values()
                       if v.get("predicted_s")]
            if checked:  # the model on this machine's CPUs, for the measured points
                ax.scatter([n for n, _ in checked], [x for _, x in checked], color=colour,
                           marker="+", s=50, zorder=3)
            saturated = sim.get("coordinator_saturated_at" if side == "blockstm"
                                else "bal_coordinator_saturated_at")
            if saturated in workers:
                t = seconds[workers.index(saturated)]
                if t:
                    ax.scatter([saturated], [sequential / t], color=colour, marker="x", s=60, zorder=4)
    ax.set_xscale("log", base=2)
    ticks = sorted({n for r in records for n in (r["simulated"].get("curve") or {}).get("workers", [])})
    if ticks:
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(n) for n in ticks])
    ax.axhline(1.0, color="grey", linewidth=1, linestyle=":")
    ax.set_xlabel("workers (lines: a core each + one for the coordinator)")
    ax.set_ylabel("speedup over sequential")
    cores = next((r["simulated"]["validation"].get("cores") for r in records), "?")
    ax.set_title(f"model (lines), measured here (o Block-STM, \u25a1 bal import),\n"
                 f"+ model on this machine's {cores} CPUs, x coordinator ~100% busy", fontsize=9)
    ax.legend(fontsize=6, loc="best")


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

    records = workload_records(records)
    names = [r["workload"] for r in records]
    series = [
        ("execution", [r.get("speedup") or 0.0 for r in records]),
        ("whole block", [r.get("block_speedup") or 0.0 for r in records]),
    ]
    if any("bal_identical" in r for r in records):
        series += [
            ("bal import, execution", [r.get("bal_speedup") or 0.0 for r in records]),
            ("bal import, whole block", [r.get("bal_block_speedup") or 0.0 for r in records]),
        ]
    positions = range(len(names))
    width = 0.8 / len(series)
    simulated = [r for r in records
                 if isinstance(r.get("simulated"), dict) and not r["simulated"].get("error")]
    bars_width = max(6.0, 0.45 * len(series) * len(names) + 3)
    if simulated:
        fig, (ax, model_ax) = plt.subplots(
            1, 2, figsize=(bars_width + 6.5, 4.8), dpi=120,
            gridspec_kw={"width_ratios": [bars_width, 6.5]},
        )
        _plot_model(model_ax, simulated)
    else:
        fig, ax = plt.subplots(figsize=(bars_width, 4.5), dpi=120)
    all_bars = []
    for k, (label, values) in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        all_bars.append(ax.bar([p + offset for p in positions], values, width, label=label))
    for bars in all_bars:
        for bar in bars:
            height = bar.get_height()
            ax.annotate(
                f"{height:.2f}x",
                (bar.get_x() + bar.get_width() / 2, height),
                ha="center",
                va="bottom",
                fontsize=7 if len(all_bars) > 2 else 8,
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
        if not record.get("identical") or record.get("bal_identical") is False:
            ax.annotate("not identical", (i, 0), ha="center", va="bottom", color="red", fontsize=8)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    if str(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
