import torch

from idsf_pyg.train import BPRSampler


def test_each_edge_once_per_epoch_and_negatives_are_unobserved():
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, 20, (300,), generator=g)
    items = torch.randint(0, 15, (300,), generator=g)
    pairs = torch.unique(torch.stack([users, items]), dim=1)
    sampler = BPRSampler(pairs, 15, batch_size=32, generator=torch.Generator().manual_seed(1))
    seen, positives = [], set(map(tuple, pairs.t().tolist()))
    for u, i, j in sampler:
        seen += list(zip(u.tolist(), i.tolist()))
        assert not any((a, b) in positives for a, b in zip(u.tolist(), j.tolist()))
    assert sorted(seen) == sorted(positives)
    assert len(sampler) == (pairs.size(1) + 31) // 32


def test_negatives_are_uniform_over_unobserved_items():
    # User 0 has items 0..4 of 10: negatives must be uniform over 5..9.
    ei = torch.tensor([[0] * 5, list(range(5))])
    sampler = BPRSampler(ei, 10, generator=torch.Generator().manual_seed(0))
    neg = sampler.negatives(torch.zeros(20000, dtype=torch.long))
    counts = torch.bincount(neg, minlength=10)
    assert counts[:5].sum() == 0
    assert (counts[5:].float() / 20000 - 0.2).abs().max() < 0.02


def test_user_uniform_mode_draws_users_uniformly_then_their_items():
    # User 0 has 12 items, users 1 and 2 one each: edge shuffling gives user 0 12/14 of the triples,
    # the official sampler 1/3 of them, and each of user 0's items equally often.
    ei = torch.tensor([[0] * 12 + [1, 2], list(range(12)) + [3, 5]])
    sampler = BPRSampler(ei, 20, batch_size=2, generator=torch.Generator().manual_seed(0), mode="users")
    assert len(sampler) == 14 // 2 + 1
    users, items = [], []
    for _ in range(3000):
        u, i, j = next(iter(sampler))
        assert u.unique().numel() == u.numel()           # distinct users inside a batch
        assert not set(zip(u.tolist(), j.tolist())) & set(map(tuple, ei.t().tolist()))
        users += u.tolist()
        items += [it for us, it in zip(u.tolist(), i.tolist()) if us == 0]
        assert all((a, b) in set(map(tuple, ei.t().tolist())) for a, b in zip(u.tolist(), i.tolist()))
    share = torch.bincount(torch.tensor(users), minlength=3).float() / len(users)
    assert (share - 1 / 3).abs().max() < 0.02
    per_item = torch.bincount(torch.tensor(items), minlength=12).float() / len(items)
    assert (per_item - 1 / 12).abs().max() < 0.02
    # A batch larger than the number of users draws with replacement.
    big = BPRSampler(ei, 20, batch_size=7, generator=torch.Generator().manual_seed(1), mode="users")
    u, _, _ = next(iter(big))
    assert u.numel() == 7 and set(u.tolist()) <= {0, 1, 2}


def test_a_shared_stream_repeats_the_initialization_draws_and_an_independent_one_does_not():
    """``sampler_stream="shared"`` (every run before the option) seeds the sampler's generator with the seed that
    torch's global generator, which initializes the model, got: the sampler then redraws the very numbers that
    set the initial weights. ``"independent"`` starts elsewhere, the same for the same seed."""
    from idsf_pyg.train.trainer import sampler_seed, set_seed
    for seed in (0, 3):
        shared = set_seed(seed, "shared")
        init_draws = torch.empty(1000).uniform_()                  # what an initializer would draw first
        assert torch.equal(torch.rand(1000, generator=shared), init_draws)
        independent = set_seed(seed, "independent")
        init_draws = torch.empty(1000).uniform_()
        mine = torch.rand(1000, generator=independent)
        assert (mine != init_draws).all()
        assert torch.equal(mine, torch.rand(1000, generator=set_seed(seed, "independent")))
    assert sampler_seed(0, "shared") == 0 and sampler_seed(0, "independent") != sampler_seed(1, "independent")
    assert 0 <= sampler_seed(5, "independent") < 2**32      # torch's CPU generator keeps 32 bits of a seed


def test_the_trainer_seeds_its_sampler_from_the_stream_and_the_initialization_does_not_depend_on_it():
    from experiments.train import CONFIG_DIR
    from idsf_pyg.data import EDGE, ITEM
    from idsf_pyg.train import Trainer, resolve_run_config
    from idsf_pyg.train.run import build_model, load_run_data
    from idsf_pyg.train.trainer import sampler_seed, set_seed
    first, init = {}, {}
    for stream in ("shared", "independent"):
        cfg = resolve_run_config(CONFIG_DIR / "synthetic.yaml", sets={"sampler_stream": stream}, train={"seed": 2})
        data = load_run_data(cfg)
        set_seed(2, stream)                                  # as a run does, before the model is built
        model = build_model(cfg, data)
        init[stream] = [p.detach().clone() for p in model.parameters()]
        first[stream] = next(iter(Trainer(model, data, cfg.train, progress=False).sampler))
        reference = BPRSampler(data[EDGE].edge_index, int(data[ITEM].num_nodes), cfg.train.batch_size,
                               torch.Generator().manual_seed(sampler_seed(2, stream)), mode=cfg.train.sampler)
        assert all(torch.equal(a, b) for a, b in zip(first[stream], next(iter(reference))))
    assert all(torch.equal(a, b) for a, b in zip(init["shared"], init["independent"]))
    assert not torch.equal(first["shared"][0], first["independent"][0])
