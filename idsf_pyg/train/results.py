"""Provenance for results files: software versions, hardware, data fingerprint."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict

import torch


def software_versions() -> Dict[str, str]:
    import numpy
    import torch_geometric
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "torch_geometric": torch_geometric.__version__, "numpy": numpy.__version__}
    try:
        import torch_scatter
        out["torch_scatter"] = torch_scatter.__version__
    except ImportError:
        out["torch_scatter"] = "absent (PyG pure-PyTorch scatter)"
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        if rev.returncode == 0:
            out["idsf_pyg_git"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def hardware(device: torch.device) -> Dict[str, Any]:
    info: Dict[str, Any] = {"device": str(device), "cpu": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "platform": platform.platform()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def write_json(path: Path, obj: Dict[str, Any]) -> None:
    """Writes atomically, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str))
    os.replace(tmp, path)
