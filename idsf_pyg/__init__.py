"""idsf-pyg: IDSF and multimodal recommendation baselines on PyTorch Geometric.

* :mod:`idsf_pyg.data`   — the user–item ``HeteroData`` schema, readers, splits, synthetic data
* :mod:`idsf_pyg.nn`     — :class:`~idsf_pyg.nn.IDSFConv` (eq. 7–8), the attention unit (eq. 1–2)
* :mod:`idsf_pyg.models` — IDSF and the baselines, one shared interface
* :mod:`idsf_pyg.losses` — BPR, the contrastive loss (eq. 3–6), L2
* :mod:`idsf_pyg.train`  — the run config (validated, keyed), negative sampling, the trainer, checkpoints, run folders
* :mod:`idsf_pyg.eval`   — ranking metrics and the full-ranking evaluator
* :func:`load_run`       — a trained model back from its run folder: recommend, export embeddings
"""
__version__ = "0.1.0"


def load_run(folder, device: str = "cpu"):
    """Rebuilds the best model of a finished run folder (see :func:`idsf_pyg.trained.load_run`)."""
    from .trained import load_run as _load_run  # imported on use: `import idsf_pyg` stays light
    return _load_run(folder, device)
