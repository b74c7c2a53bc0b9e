"""Training: the run configuration, the BPR sampler, the trainer, checkpoints and run folders."""
from .checkpoint import Checkpointer, TrainState
from .config import RunConfig, TrainConfig, resolve_run_config, run_key
from .run import RunFolder, build_model, finished_run, hardware, load_run_data, resolve_device, run, software_versions
from .sampler import BPRSampler
from .trainer import Trainer, TrainResult, set_seed, train, use_deterministic_algorithms

__all__ = ["BPRSampler", "Checkpointer", "RunConfig", "RunFolder", "TrainConfig", "TrainResult", "TrainState", "Trainer",
           "build_model", "finished_run", "hardware", "load_run_data", "resolve_device", "resolve_run_config", "run", "run_key",
           "set_seed", "software_versions", "train", "use_deterministic_algorithms"]
