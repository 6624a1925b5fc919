"""``python -m algoperf_torch`` that SIGKILLs itself at a chosen moment (for the resume tests).

    python tests/kill_harness.py MOMENT [key=value ...]
    torchrun --standalone --nproc_per_node=2 tests/kill_harness.py MOMENT [key=value ...]

MOMENT is one of
    none          run normally;
    step:N        inside the N-th training step (its forward pass);
    eval:N        inside the N-th eval, after its first split;
    ckpt:N        half-way through writing the N-th checkpoint's data file (a temp file is left);
    ckptjson:N    after the N-th checkpoint's data file, before its JSON.
Only the process whose ``RANK`` (default 0) equals ``KILL_RANK`` (default 0) kills itself. The
kill is ``os.kill(os.getpid(), SIGKILL)``: no handler, no flush, no cleanup runs, as in a
preemption. Everything else is the real entry point.
"""

from __future__ import annotations

import inspect
import os
import signal
import sys
import tempfile


def _die() -> None:
    sys.stderr.write(f"kill_harness: SIGKILL at {MOMENT}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _install(kind: str, n: int) -> None:
    from algoperf_torch import checkpoint, evaluation, runner
    from algoperf_torch.spec import ForwardPassMode
    from algoperf_torch.workload import Workload

    count = {"n": 0}
    if kind == "step":
        model_fn = Workload.model_fn
        signature = inspect.signature(model_fn)

        def counted_model_fn(*args, **kwargs):
            if signature.bind(*args, **kwargs).arguments["mode"] == ForwardPassMode.TRAIN:
                count["n"] += 1
                if count["n"] == n:
                    _die()
            return model_fn(*args, **kwargs)

        Workload.model_fn = counted_model_fn
    elif kind == "eval":
        evaluate, evaluate_split = runner.evaluate, evaluation.evaluate_split
        splits = {"n": 0}

        def counted_evaluate(*args, **kwargs):
            count["n"] += 1
            splits["n"] = 0
            return evaluate(*args, **kwargs)

        def counted_split(*args, **kwargs):
            splits["n"] += 1
            if count["n"] == n and splits["n"] == 2:
                _die()
            return evaluate_split(*args, **kwargs)

        runner.evaluate, evaluation.evaluate_split = counted_evaluate, counted_split
    elif kind == "ckpt":
        write = checkpoint.atomic_write_bytes

        def half_write(path: str, data: bytes) -> None:
            count["n"] += 1
            if count["n"] == n:
                fd, _ = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".ckpt.", suffix=".tmp")
                os.write(fd, data[: len(data) // 2])
                os.fsync(fd)
                _die()
            write(path, data)

        checkpoint.atomic_write_bytes = half_write
    elif kind == "ckptjson":
        write_json = checkpoint.atomic_write_json

        def no_json(path: str, obj) -> None:
            count["n"] += 1
            if count["n"] == n:
                _die()
            write_json(path, obj)

        checkpoint.atomic_write_json = no_json
    else:
        raise SystemExit(f"kill_harness: unknown moment {MOMENT!r}; see the module docstring")


if __name__ == "__main__":
    MOMENT = sys.argv[1]
    if MOMENT != "none" and os.environ.get("RANK", "0") == os.environ.get("KILL_RANK", "0"):
        kind, _, number = MOMENT.partition(":")
        _install(kind, int(number))
    from algoperf_torch.__main__ import main

    sys.argv = [sys.argv[0], *sys.argv[2:]]
    main()
