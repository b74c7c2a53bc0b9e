"""Training: the BPR sampler, the trainer and results provenance."""
from .results import hardware, software_versions, write_json
from .sampler import BPRSampler
from .trainer import TrainConfig, set_seed, train

__all__ = ["BPRSampler", "TrainConfig", "hardware", "set_seed", "software_versions", "train", "write_json"]
