"""``host_memory.retain_freed_memory``: freed activation-sized buffers are reused, not refaulted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from algoperf_torch import host_memory

# Three training steps of a small CIFAR ResNet at batch 16 (after three to warm up); prints the
# minor page faults they took. Without retaining, glibc hands freed activations back to the
# kernel and each step faults them in again (measured ~46,000 faults; ~1,000 retained).
CHILD = """
import resource, sys, torch
from algoperf_torch.host_memory import retain_freed_memory
from algoperf_torch.workloads.cifar.model import ResNet
if sys.argv[1] == "retain":
    assert retain_freed_memory()
torch.manual_seed(0)
model, x = ResNet(layers=(1, 1, 1, 1)), torch.randn(16, 3, 32, 32)
for i in range(6):
    if i == 3:
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(x).sum().backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(host_memory._glibc() is None, reason="glibc only")
def test_retained_memory_is_reused_without_page_faults():
    plain, retained = _faults("plain"), _faults("retain")
    assert retained * 5 < plain, f"{retained} page faults retained vs {plain} with glibc defaults"


def test_non_glibc_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert host_memory.retain_freed_memory() is False
