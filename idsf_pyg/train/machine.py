"""The machine a run trains on, as far as it decides the bits of the numbers.

"Same seed, same numbers" holds on one kind of machine. Another CPU makes torch's math libraries pick other
kernels (by instruction set: AVX2, AVX-512, AMX), another GPU or torch release sums in another order: the same
seed then gives sums that differ in the last bits, and over the epochs the curve drifts apart like another draw.
So a run records each machine it trained on and from which epoch (a run resumed elsewhere has two), and says so
when it continues a checkpoint written on another machine.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Dict

import torch


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name: the first ``model name`` of ``/proc/cpuinfo`` on Linux, else what
    :func:`platform.processor` gives, else the architecture (``x86_64``)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device | str = "cpu") -> Dict[str, str]:
    """What decides the rounding of a run's arithmetic: the CPU's model and the instruction set torch's CPU
    kernels use (``torch.backends.cpu.get_cpu_capability()``), the accelerator, the torch release."""
    device = torch.device(device)
    return {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "accelerator": torch.cuda.get_device_name(device) if device.type == "cuda" else "none",
            "torch": str(torch.__version__)}


def describe(m: Dict[str, str]) -> str:
    """One line for a :func:`machine` record."""
    accel = "" if m.get("accelerator", "none") == "none" else f", {m['accelerator']}"
    return f"{m.get('cpu', '?')} ({m.get('cpu_capability', '?')}){accel}, torch {m.get('torch', '?')}"
