"""Data: readers, splits, the synthetic dataset and the user–item graph schema."""
from .errors import DataFormatError
from .graph import (EDGE, ITEM, REV_EDGE, USER, add_item_features, build_graph, describe, modality_names,
                    split_fingerprint)
from .datasets import AmazonDataset, InteractionDataset, MovieLens100K, SyntheticDataset
from .load import default_data_root, load_dataset, parse_dataset
from .readers import (Interactions, read_atomic_inter, read_feature_matrix, read_id_map, read_lattice_json,
                      read_lattice_split)
from .split import held_out_counts, random_split_per_user
from .synthetic import make_scale_graph, make_synthetic

__all__ = [
    "AmazonDataset", "DataFormatError", "EDGE", "ITEM", "InteractionDataset", "Interactions", "MovieLens100K",
    "REV_EDGE", "SyntheticDataset", "USER", "add_item_features", "build_graph", "default_data_root", "describe",
    "held_out_counts", "load_dataset", "make_scale_graph", "make_synthetic", "modality_names", "parse_dataset",
    "random_split_per_user", "read_atomic_inter", "read_feature_matrix", "read_id_map", "read_lattice_json",
    "read_lattice_split", "split_fingerprint",
]
