"""Trial directories and files in the reference's layout (RULES.md §2.9), written atomically.

``<experiment_dir>/<experiment_name>/<workload>_pytorch/trial_<k>/`` holds
``eval_measurements.csv`` (one row per eval: the only file scoring reads), ``measurements.csv``
(eval rows plus what the submission logs through ``workload.metrics_logger``), ``hparams.json``,
``meta_data_0.json``, ``flags_0.json`` (our resolved config) and, at the end, ``summary.json``.
Every write goes to a temporary file in the same folder that is then renamed over the old one,
so a killed run leaves the previous complete file, never a truncated one. Only rank 0 writes.

    python -m algoperf_torch max_steps=50 && ls experiments/*/digits_pytorch/trial_1
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, whole."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    if hasattr(value, "item"):
        value = value.item()
    return repr(value) if isinstance(value, float) else str(value)


class CsvTable:
    """A CSV rewritten whole (atomically) at each new row, as the reference's ``write_to_csv``.

    Columns of the first row are sorted alphabetically; a column first seen later is appended
    after the existing ones, with empty cells in the earlier rows [algoperf/logger_utils.py].
    Re-opening an existing file continues it (resumed trials).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.columns: list[str] = []
        self.rows: list[dict[str, Any]] = []
        if os.path.exists(path):
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or [])
                self.rows = [dict(r) for r in reader]

    def append(self, row: Mapping[str, Any]) -> None:
        if not self.columns:
            self.columns = sorted(row)
        else:
            self.columns += [k for k in row if k not in self.columns]
        self.rows.append(dict(row))
        self._write()

    def truncate(self, num_rows: int) -> None:
        """Keep the first ``num_rows`` rows (a resumed trial drops what its lost future wrote)."""
        if num_rows > len(self.rows):
            raise ValueError(
                f"{self.path} has {len(self.rows)} rows, the checkpoint expects at least "
                f"{num_rows}: was the file replaced since the checkpoint was written?"
            )
        if num_rows < len(self.rows):
            self.rows = self.rows[:num_rows]
            self._write()

    def _write(self) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        for r in self.rows:
            writer.writerow([_cell(r.get(c)) for c in self.columns])
        atomic_write_text(self.path, buf.getvalue())


class MetricsLogger:
    """``workload.metrics_logger``: what submissions call to log training scalars.

    Args:
        measurements: the trial's ``measurements.csv`` table.
        sinks: extra receivers (e.g. W&B) with a ``log(metrics, step)`` method.
    """

    def __init__(self, measurements: CsvTable, sinks: list[Any] | None = None) -> None:
        self._table = measurements
        self._sinks = sinks or []
        self.last_scalars: dict[str, Any] = {}

    def append_scalar_metrics(
        self,
        metrics: Mapping[str, Any],
        global_step: int,
        preemption_count: int | None = None,
        is_eval: bool = False,
    ) -> None:
        row = {k: _scalar(v) for k, v in metrics.items()}
        row["global_step"] = global_step
        self.last_scalars = dict(row)  # with its step: the progress display marks a stale loss
        if preemption_count is not None:
            row["preemption_count"] = preemption_count
        self._table.append(row)
        for sink in self._sinks:
            sink.log({k: v for k, v in row.items() if k != "global_step"}, global_step)


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class TrialLog:
    """The files of one trial directory (rank 0 only; other ranks get ``enabled=False``)."""

    def __init__(self, trial_dir: str, enabled: bool = True) -> None:
        self.trial_dir = trial_dir
        self.enabled = enabled
        self.eval_table: CsvTable | None = None
        self.measurements: CsvTable | None = None
        if enabled:
            os.makedirs(trial_dir, exist_ok=True)
            self.eval_table = CsvTable(os.path.join(trial_dir, "eval_measurements.csv"))
            self.measurements = CsvTable(os.path.join(trial_dir, "measurements.csv"))

    def path(self, name: str) -> str:
        return os.path.join(self.trial_dir, name)

    def write_json(self, name: str, obj: Any) -> None:
        if self.enabled:
            atomic_write_json(self.path(name), obj)

    def append_eval(self, row: Mapping[str, Any]) -> None:
        if self.enabled:
            self.eval_table.append(row)
            self.measurements.append(row)

    def append_final(self, row: Mapping[str, Any]) -> None:
        if self.enabled:
            self.measurements.append(row)

    def row_counts(self) -> dict[str, int]:
        """How many rows each CSV holds now (stored in a checkpoint)."""
        if not self.enabled:
            return {}
        return {"measurements": len(self.measurements.rows), "eval": len(self.eval_table.rows)}

    def truncate(self, row_counts: Mapping[str, int]) -> None:
        """Cut both CSVs back to ``row_counts`` (from ``row_counts()`` at a checkpoint)."""
        if self.enabled and row_counts:
            self.measurements.truncate(row_counts["measurements"])
            self.eval_table.truncate(row_counts["eval"])


def git_commit(folder: str) -> str | None:
    """The commit of the git checkout holding ``folder``, or None outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def meta_data(workload_attrs: Mapping[str, Any], rng_seed: int, extra: Mapping[str, Any]) -> dict:
    """Hardware, software and workload facts of a trial (the reference's ``meta_data_*.json``)."""
    import torch

    import algoperf_torch

    meta: dict[str, Any] = {f"workload.{k}": v for k, v in workload_attrs.items()}
    meta.update(
        {
            "rng_seed": rng_seed,
            "hostname": socket.gethostname(),
            "os_platform": platform.platform(),
            "python_version": platform.python_version(),
            "torch_version": torch.__version__,
            "cpu_model": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "git_commit": git_commit(os.path.dirname(os.path.abspath(algoperf_torch.__file__))),
        }
    )
    if torch.cuda.is_available():
        meta["gpu_model"] = torch.cuda.get_device_name(0)
        meta["gpu_count"] = torch.cuda.device_count()
        meta["cuda_version"] = torch.version.cuda
    meta.update(extra)
    return meta
