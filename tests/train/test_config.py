"""One place resolves a run's configuration: precedence, routing of --set, validation, the run key."""
from pathlib import Path

import pytest

from experiments.train import CONFIG_DIR, model_config_file
from idsf_pyg.errors import ConfigError
from idsf_pyg.models import MODELS
from idsf_pyg.train import RunConfig, TrainConfig, resolve_run_config, run_key
from idsf_pyg.train.config import key_differences, key_material

DATASET_CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", DATASET_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_validates_with_every_model(path):
    base = resolve_run_config(path)
    assert base.model in MODELS
    for model in MODELS:
        cfg = resolve_run_config(path, model=model, model_file=model_config_file(model))
        assert cfg.model == model and cfg.train.lr > 0


def test_precedence_dataset_then_model_file_then_command_line():
    synthetic = CONFIG_DIR / "synthetic.yaml"
    cfg = resolve_run_config(synthetic)
    assert cfg.train.lr == 5e-3 and cfg.model_args["embedding_dim"] == 64 and cfg.train.epochs == 300
    # Another model: its file replaces the model arguments and updates the optimizer settings;
    # the dataset's protocol settings (epochs, eval_every) stay.
    cfg = resolve_run_config(synthetic, model="lightgcn", model_file=model_config_file("lightgcn"))
    assert cfg.model_args == {"embedding_dim": 64, "num_layers": 3, "reg_weight": 1e-4}
    assert cfg.train.lr == 1e-3 and cfg.train.batch_size == 2048 and cfg.train.epochs == 300
    # The command line wins over both; --set routes training keys to the trainer.
    cfg = resolve_run_config(synthetic, model="lightgcn", model_file=model_config_file("lightgcn"),
                             sets={"lr": 0.02, "num_layers": 1, "patience": 0}, train={"epochs": 7, "lr": None})
    assert cfg.train.lr == 0.02 and cfg.train.patience == 0 and cfg.train.epochs == 7
    assert cfg.model_args["num_layers"] == 1 and "lr" not in cfg.model_args
    assert cfg.sources[-1] == "command line"


def test_values_are_checked_and_converted():
    synthetic = CONFIG_DIR / "synthetic.yaml"
    cfg = resolve_run_config(synthetic, sets={"lr": "1e-3", "gamma": 1, "embedding_dim": 32.0})
    assert cfg.train.lr == 1e-3 and isinstance(cfg.model_args["structure"]["gamma"], float)
    assert cfg.model_args["embedding_dim"] == 32 and isinstance(cfg.model_args["embedding_dim"], int)
    with pytest.raises(ConfigError, match="model_args.contrast.tau.*> 0"):
        resolve_run_config(synthetic, sets={"tau": 0})
    with pytest.raises(ConfigError, match="model_args.no_content.*true or false"):
        resolve_run_config(synthetic, sets={"no_content": 1})
    with pytest.raises(ConfigError, match="must be an integer"):
        resolve_run_config(synthetic, sets={"num_layers": 1.5})
    with pytest.raises(ConfigError, match="dropout.*< 1"):
        resolve_run_config(synthetic, model="ngcf", model_file=model_config_file("ngcf"), sets={"node_dropout": 1.0})
    with pytest.raises(ConfigError, match="layer_sizes.*>= 1"):
        resolve_run_config(synthetic, model="ngcf", model_file=model_config_file("ngcf"), sets={"layer_sizes": [64, 0]})
    with pytest.raises(ConfigError, match="max_seconds"):
        resolve_run_config(synthetic, train={"max_seconds": -5})
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)


def test_model_file_keys_are_checked(tmp_path):
    bad = tmp_path / "bpr.yaml"
    bad.write_text("model: bpr\nmodel_args: {embedding_dim: 8}\nfeatures: {x: y}\n")
    with pytest.raises(ConfigError, match=r"bpr.yaml, key 'features'"):
        resolve_run_config(CONFIG_DIR / "synthetic.yaml", model="bpr", model_file=bad)
    other = tmp_path / "other.yaml"
    other.write_text("model: lightgcn\n")
    with pytest.raises(ConfigError, match="is for model 'lightgcn', not 'bpr'"):
        resolve_run_config(CONFIG_DIR / "synthetic.yaml", model="bpr", model_file=other)


def test_round_trip_through_plain_data():
    cfg = resolve_run_config(CONFIG_DIR / "baby_random.yaml", sets={"gamma": 0.5})
    again = RunConfig.from_dict(cfg.to_dict(), "config.yaml")
    assert again.to_dict() == cfg.to_dict()
    with pytest.raises(ConfigError, match="config.yaml, key 'trian'"):
        RunConfig.from_dict({**cfg.to_dict(), "trian": {}}, "config.yaml")


def test_the_run_key_depends_on_what_defines_the_numbers_only():
    synthetic = CONFIG_DIR / "synthetic.yaml"
    fp, feats = "f" * 64, {"view_a": "synthetic", "view_b": "synthetic"}
    base = resolve_run_config(synthetic)
    key = run_key(base, fp, feats)
    # Setting an argument to its default, or changing what does not change numbers, keeps the key.
    same = resolve_run_config(synthetic, sets={"tau": 0.5, "contrast_kernel": "dense", "contrast_block_size": 64})
    assert run_key(same, fp, feats) == key
    assert run_key(resolve_run_config(synthetic, sets={"eval_batch_size": 7}), fp, feats) == key
    # Seed, a hyper-parameter, the data or the features change it.
    for other in (run_key(resolve_run_config(synthetic, train={"seed": 1}), fp, feats),
                  run_key(resolve_run_config(synthetic, sets={"gamma": 0.31}), fp, feats),
                  run_key(base, "e" * 64, feats),
                  run_key(base, fp, {**feats, "view_b": "file:x.npy sha256:00"})):
        assert other != key
    diffs = key_differences(key_material(base, fp, feats),
                            key_material(resolve_run_config(synthetic, train={"seed": 1}), fp, feats))
    assert diffs == ["train.seed: 0 -> 1"]


def test_the_official_preset_applies_after_the_model_file_and_before_the_command_line():
    from experiments.train import preset_file
    ml100k = CONFIG_DIR / "ml100k.yaml"
    cfg = resolve_run_config(ml100k, preset_file=preset_file("official"), sets={"reg_weight": 3e-5})
    structure = cfg.model_args["structure"]
    assert structure["init"] == "preference" and structure["normalization"] == "row_self_loop"
    assert structure["user_id_self_term"] is True and cfg.model_args["linear_init"] == "torch"
    assert cfg.model_args["reg_weight"] == 3e-5                   # the command line still wins
    assert structure["gamma"] == 0.3 and cfg.model_args["beta"] == 0.3  # the dataset's values stay
    assert cfg.train.sampler == "users" and cfg.train.lr_decay == 0.96 and cfg.train.patience == 20
    with pytest.raises(ConfigError, match="preset for model 'idsf'"):
        resolve_run_config(ml100k, model="lightgcn", model_file=model_config_file("lightgcn"),
                           preset_file=preset_file("official"))
    with pytest.raises(ConfigError, match="no preset 'fast'"):
        preset_file("fast")


def test_every_dataset_config_uses_the_anchors_stopping_rule():
    for path in DATASET_CONFIGS:
        if path.stem == "synthetic":  # the quick built-in demo
            continue
        cfg = resolve_run_config(path)
        assert cfg.train.patience == 20 and cfg.train.eval_every == 1, path.name


def test_idsf_options_nest_by_part_and_the_flat_names_of_earlier_versions_still_work():
    synthetic = CONFIG_DIR / "synthetic.yaml"
    cfg = resolve_run_config(synthetic, sets={"content.trainable_features": True, "structure.gamma": 1.0,
                                              "contrast.scope": "batch", "beta": 0.1})
    assert cfg.model_args["content"] == {"trainable_features": True}
    assert cfg.model_args["structure"] == {"num_layers": 2, "gamma": 1.0}   # the config's K kept, γ replaced
    assert cfg.model_args["contrast"] == {"tau": 0.5, "scope": "batch"} and cfg.model_args["beta"] == 0.1
    flat = resolve_run_config(synthetic, sets={"trainable_features": True, "gamma": 1.0, "contrast_scope": "batch",
                                               "beta": 0.1})
    assert flat.model_args == cfg.model_args and run_key(flat, "fp", {}) == run_key(cfg, "fp", {})
    # Ablations are values; the switches of earlier versions set them.
    for switch, path, value in (("no_content", ("item_score",), "structure"), ("content_no_id", ("content", "enhance"), False),
                                ("structure_no_id", ("structure", "gamma"), 0.0), ("no_contrast", ("beta",), 0.0)):
        args = resolve_run_config(synthetic, sets={switch: True}).model_args
        assert (args[path[0]][path[1]] if len(path) == 2 else args[path[0]]) == value, switch
    # A config.yaml written before the parts existed reads back as the same run.
    old = {**cfg.to_dict(), "model_args": {"embedding_dim": 64, "num_layers": 2, "gamma": 1.0, "beta": 0.1,
                                           "tau": 0.5, "reg_weight": 1e-4, "trainable_features": True,
                                           "contrast_scope": "batch"}}
    again = RunConfig.from_dict(old, "config.yaml")
    assert again.model_args == cfg.model_args and run_key(again, "fp", {}) == run_key(cfg, "fp", {})
    # Each part's options are checked against its own signature.
    with pytest.raises(ConfigError, match=r"model_args.structure.gama.*did you mean 'gamma'"):
        resolve_run_config(synthetic, sets={"structure.gama": 1.0})
    with pytest.raises(ConfigError, match=r"model_args.structure.normalization.*sym, row_self_loop"):
        resolve_run_config(synthetic, sets={"structure.normalization": "rows"})
    with pytest.raises(ConfigError, match=r"model_args.contrast.*mapping"):
        resolve_run_config(synthetic, sets={"contrast": 3})
    with pytest.raises(ConfigError, match=r"model_args.item_score.*content_and_structure, structure"):
        resolve_run_config(synthetic, sets={"item_score": "content"})


def test_the_sampler_stream_is_keyed_only_when_independent_so_stored_runs_keep_their_keys():
    synthetic = CONFIG_DIR / "synthetic.yaml"
    fp, feats = "f" * 64, {"view_a": "synthetic", "view_b": "synthetic"}
    base = resolve_run_config(synthetic)
    assert base.train.sampler_stream == "shared"
    assert "sampler_stream" not in key_material(base, fp, feats)["train"]   # the key of every earlier run
    shared = resolve_run_config(synthetic, sets={"sampler_stream": "shared"})
    assert run_key(shared, fp, feats) == run_key(base, fp, feats)
    independent = resolve_run_config(synthetic, sets={"sampler_stream": "independent"})
    assert key_differences(key_material(base, fp, feats), key_material(independent, fp, feats)) == \
        ["train.sampler_stream: <unset> -> independent"]
    with pytest.raises(ConfigError, match="sampler_stream.*shared, independent"):
        resolve_run_config(synthetic, sets={"sampler_stream": "own"})
