"""landscape.hessian.distributed: products summed over gloo ranks give the one-process analysis (eigenvalues within
1e-8 relative, same trace and density with the same seeds); the operator equals the dense Hessian; one rank writes."""

from __future__ import annotations

import pytest
import torch

from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.errors import ConfigError
from fedtrain.models import build_model
from landscape.hessian.analysis import analyze_checkpoint, cross_entropy
from landscape.hessian.distributed import analyze_checkpoint_parallel, rank_operator_factory, shard
from landscape.hessian.exact import dense_hessian
from landscape.hessian.operator import split_batches
from landscape.settings import HessianSettings
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)

MLP_KWARGS = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [4]}
# 5 batches: the two ranks hold 2 and 3 of them, of unequal sizes (50, 50 | 50, 50, 30)
SETTINGS = HessianSettings(num_examples=230, batch_size=50, top_k=3, trace_matvecs=12, density_probes=2, density_steps=12,
                           device="cpu")


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    model = build_model("mlp", seed=0, **MLP_KWARGS)
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs=MLP_KWARGS, weights=model.state_dict(), dataset="synthetic"), path)
    return path


def test_shard_partitions_in_order_with_sizes_within_one():
    items = list(range(7))
    blocks = [shard(items, r, 3) for r in range(3)]
    assert sum(blocks, []) == items and sorted(len(b) for b in blocks) == [2, 2, 3]


def test_the_ranks_shares_sum_to_the_dense_hessian():
    """In one process: the two ranks' operators (unequal shards) and their shares, summed as the all-reduce sums them."""
    torch.manual_seed(0)
    model = build_model("mlp", seed=0, input_shape=[1, 4, 4], num_classes=3, hidden=[2]).double()
    inputs, labels = torch.randn(23, 1, 4, 4, dtype=torch.float64), torch.randint(0, 3, (23,))
    batches = split_batches(inputs, labels, 5)  # 5 batches of 5, 5, 5, 5, 3: ranks hold 2 and 3
    ranks = [rank_operator_factory(r, 2)(model, batches, torch.device("cpu")) for r in range(2)]
    assert [op.local.num_examples for op in ranks] == [10, 13] and all(op.total_examples == 23 for op in ranks)
    eye = torch.eye(ranks[0].dim, dtype=torch.float64)
    torch.testing.assert_close(sum(op.share(eye) for op in ranks), dense_hessian(model, cross_entropy, [(inputs, labels)]),
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sum(op.share(eye[:, 3]) for op in ranks), sum(op.share(eye) for op in ranks)[:, 3])


def test_fewer_batches_than_ranks_is_refused():
    model = build_model("mlp", seed=0, **MLP_KWARGS)
    batches = split_batches(torch.randn(60, 1, 16, 16), torch.randint(0, 10, (60,)), 50)
    with pytest.raises(ConfigError, match="--nproc 3 needs at least 3 batches of samples, the analysis has 2"):
        rank_operator_factory(0, 3)(model, batches, torch.device("cpu"))


def test_two_ranks_give_the_one_process_analysis(checkpoint_path, tmp_path):
    one = analyze_checkpoint(checkpoint_path, SETTINGS, eigenvectors_out=tmp_path / "one.pt")
    two = analyze_checkpoint_parallel(checkpoint_path, SETTINGS, nproc=2, eigenvectors_out=tmp_path / "two.pt")
    assert two.config["nproc"] == 2 and "nproc" not in one.config
    torch.testing.assert_close(torch.tensor(two.eigenvalues), torch.tensor(one.eigenvalues), rtol=1e-8, atol=0)
    assert two.hvps == one.hvps
    assert two.trace["estimate"] == pytest.approx(one.trace["estimate"], rel=1e-8)
    assert two.trace["stderr"] == pytest.approx(one.trace["stderr"], rel=1e-6)
    torch.testing.assert_close(torch.tensor(two.density["nodes"]), torch.tensor(one.density["nodes"]), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(torch.tensor(two.density["weights"]), torch.tensor(one.density["weights"]), rtol=1e-7, atol=1e-9)
    saved = [torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("one", "two")]
    for a, b in zip(saved[0]["vectors"], saved[1]["vectors"]):  # eigenvectors up to sign
        sign = torch.sign(sum((a[k] * b[k]).sum() for k in a))
        assert all(torch.allclose(a[k], sign * b[k], atol=1e-5) for k in a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.pt", "two.pt"]  # rank 1 wrote nothing


def test_nproc_one_is_the_plain_analysis(checkpoint_path):
    assert analyze_checkpoint_parallel(checkpoint_path, SETTINGS, nproc=1).eigenvalues == analyze_checkpoint(checkpoint_path, SETTINGS).eigenvalues


def test_bad_requests_are_refused(checkpoint_path):
    with pytest.raises(ConfigError, match="--nproc must be at least 1"):
        analyze_checkpoint_parallel(checkpoint_path, SETTINGS, nproc=0)
    with pytest.raises(ConfigError, match="fedlandscape backend"):
        analyze_checkpoint_parallel(checkpoint_path, HessianSettings(backend="pyhessian", device="cpu"), nproc=2)
    with pytest.raises(ConfigError, match="needs at least 2 batches of samples, the analysis has 1"):  # raised in the ranks, re-raised here
        analyze_checkpoint_parallel(checkpoint_path, HessianSettings(num_examples=50, batch_size=50, top_k=2, trace=False,
                                                                     density=False, device="cpu"), nproc=2)
