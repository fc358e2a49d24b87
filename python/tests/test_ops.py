import math

import pytest
import torch

import moerouter
from reference import check_route, route_reference

from conftest import requires_cuda


def make_gate(n, h, e, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, generator=g).bfloat16()
    w = (torch.randn(e, h, generator=g) * (1.5 / math.sqrt(h))).bfloat16()
    bias = 8.08 + 0.02 * torch.randn(e, generator=g)
    return x.to(device), w.to(device), bias.to(device)


def exact_logits(x, w):
    return x.double().cpu() @ w.double().cpu().T


def gemm_bound(x, w):
    h = x.shape[1]
    return h * 2.0**-24 * (x.double().abs().cpu() @ w.double().abs().cpu().T)


@pytest.mark.parametrize("n,e,k", [(0, 64, 6), (1, 256, 6), (7, 384, 6), (64, 256, 8), (300, 1000, 32)])
def test_route_logits_matches_oracle(device, n, e, k):
    g = torch.Generator().manual_seed(n + e)
    logits = (torch.randn(n, e, generator=g) * 2).to(device)
    bias = (8.08 + 0.02 * torch.randn(e, generator=g)).to(device)
    w, ids = moerouter.route_logits(logits, bias, k, 2.5)
    assert w.shape == (n, k) and ids.dtype == torch.int32 and w.device.type == device
    check_route(w, ids, logits.cpu(), bias.cpu(), k, 2.5)


def test_route_logits_bf16_and_ties(device):
    logits = torch.tensor([[0.5, 1.0, 0.5, 1.0, 0.5]], device=device).bfloat16()
    w, ids = moerouter.route_logits(logits, None, 3, 1.0)
    assert ids.cpu().tolist() == [[1, 3, 0]]


@pytest.mark.parametrize(
    "n,h,e,k",
    [(1, 4096, 256, 6), (4, 7168, 384, 6), (2, 1032, 1000, 32), (16, 7168, 384, 6), (65, 512, 64, 4)],
)
def test_route_from_x_matches_oracle(device, n, h, e, k):
    x, w, bias = make_gate(n, h, e, seed=n, device=device)
    weights, ids = moerouter.route(x, w, bias, k, 1.5)
    check_route(weights, ids, exact_logits(x, w), bias.cpu(), k, 1.5, logit_tol=gemm_bound(x, w))


def test_out_variants_write_caller_tensors(device):
    x, w, bias = make_gate(5, 128, 32, device=device)
    weights = torch.full((5, 6), -7.0, device=device)
    ids = torch.full((5, 6), -7, dtype=torch.int64, device=device)
    moerouter.route_out(x, w, bias, 6, 2.5, weights=weights, ids=ids)
    ref_w, ref_ids = moerouter.route(x, w, bias, 6, 2.5)
    assert torch.equal(ids.int(), ref_ids) and torch.equal(weights, ref_w)
    logits = torch.randn(5, 32, device=device)
    moerouter.route_logits_out(logits, bias, 6, 2.5, weights=weights, ids=ids)
    ref_w, ref_ids = moerouter.route_logits(logits, bias, 6, 2.5)
    assert torch.equal(ids.int(), ref_ids) and torch.equal(weights, ref_w)


def test_hash_route_sources(device):
    n, h, e, k, vocab = 9, 256, 64, 6, 100
    x, w, _ = make_gate(n, h, e, device=device)
    g = torch.Generator().manual_seed(3)
    table = torch.stack([torch.randperm(e, generator=g)[:k] for _ in range(vocab)]).to(device)
    tokens = torch.randint(0, vocab, (n,), generator=g).to(device)
    weights, ids = moerouter.hash_route(tokens, table, e, 1.5, x=x, w=w)
    assert torch.equal(ids.long().cpu(), table.cpu()[tokens.cpu()])
    s = torch.sqrt(torch.nn.functional.softplus(torch.gather(exact_logits(x, w), 1, ids.long().cpu()), threshold=1e9))
    assert torch.allclose(weights.double().cpu(), s / s.sum(1, keepdim=True) * 1.5, rtol=1e-4)
    logits = torch.randn(n, e, device=device)
    weights, _ = moerouter.hash_route(tokens, table, e, 1.5, logits=logits)
    s = torch.sqrt(torch.nn.functional.softplus(torch.gather(logits.double().cpu(), 1, ids.long().cpu()), threshold=1e9))
    assert torch.allclose(weights.double().cpu(), s / s.sum(1, keepdim=True) * 1.5, rtol=1e-6)
    weights, _ = moerouter.hash_route(tokens, table, e, 1.5)
    assert torch.all(weights == 1.5 / k)


def test_hash_route_bad_token_ids_cpu():
    table = torch.tensor([[0, 1], [2, 3]])
    with pytest.raises(RuntimeError, match="kInvalidTokenId"):
        moerouter.hash_route(torch.tensor([0, 5]), table, 4, 1.0)


@pytest.mark.parametrize("k", [1, 6, 32])
def test_topk_matches_reference(device, k):
    g = torch.Generator().manual_seed(k)
    vals = torch.randn(16, 300, generator=g)
    vals[0, :] = 1.0  # all equal: lowest indices first
    vals[1, ::3] = float("nan")
    lengths = torch.randint(0, 301, (16,), generator=g, dtype=torch.int32)
    out_v, idx = moerouter.topk(vals.to(device), k, lengths.to(device))
    for r in range(16):
        row = vals[r, : lengths[r]].double()
        keys = torch.where(torch.isnan(row), torch.full_like(row, -math.inf), row)
        nan_last = torch.isnan(row).double()
        order = sorted(range(len(row)), key=lambda i: (nan_last[i].item(), -keys[i].item(), i))[:k]
        want = order + [-1] * (k - len(order))
        assert idx[r].cpu().tolist() == want, r


def test_bad_inputs_raise(device):
    logits = torch.randn(4, 8, device=device)
    with pytest.raises(ValueError, match="k must be in"):
        moerouter.route_logits(logits, None, 0, 1.0)
    with pytest.raises(TypeError, match="logits must be"):
        moerouter.route_logits(logits.double(), None, 2, 1.0)
    with pytest.raises(ValueError, match="bias must be"):
        moerouter.route_logits(logits, torch.zeros(7, device=device), 2, 1.0)
    with pytest.raises(ValueError, match="2-D"):
        moerouter.route_logits(logits[0], None, 2, 1.0)
    x, w, b = make_gate(2, 64, 16, device=device)
    with pytest.raises(ValueError, match="w must be"):
        moerouter.route(x, w[:, :32].contiguous(), b, 2, 1.0)
    with pytest.raises(TypeError, match="x must be"):
        moerouter.route(x.float(), w, b, 2, 1.0)


@requires_cuda
def test_device_mismatch_raises():
    with pytest.raises(ValueError, match="bias is on"):
        moerouter.route_logits(torch.randn(2, 8, device="cuda"), torch.zeros(8), 2, 1.0)


def test_opcheck(device):
    from torch.library import opcheck

    x, w, b = make_gate(3, 64, 16, device=device)
    logits = torch.randn(3, 16, device=device)
    table = torch.randint(0, 16, (10, 4), device=device)
    tokens = torch.randint(0, 10, (3,), device=device)
    weights = torch.empty(3, 4, device=device)
    ids = torch.empty(3, 4, dtype=torch.int32, device=device)
    opcheck(torch.ops.moerouter.route.default, (x, w, b, 4, 2.5))
    opcheck(torch.ops.moerouter.route_logits.default, (logits, b, 4, 2.5))
    opcheck(torch.ops.moerouter.route_logits_out.default, (logits, b, 4, 2.5, weights, ids))
    opcheck(torch.ops.moerouter.route_out.default, (x, w, b, 4, 2.5, weights, ids))
    opcheck(torch.ops.moerouter.hash_route.default, (tokens, table, 16, 1.5, x, w, None))
    opcheck(torch.ops.moerouter.topk.default, (logits, 5, None))


def test_torch_compile_fullgraph(device):
    x, w, b = make_gate(8, 64, 16, device=device)

    def f(x, w, b):
        logits = x.float() @ w.float().T
        weights, ids = moerouter.route_logits(logits, b, 4, 2.5)
        w2, ids2 = moerouter.route(x, w, b, 4, 2.5)
        vals, idx = moerouter.topk(logits, 3)
        return weights * 2, ids, w2, ids2, vals, idx

    compiled = torch.compile(f, fullgraph=True)
    got = compiled(x, w, b)
    want = f(x, w, b)
    for a, c in zip(got, want):
        assert torch.equal(a, c)


@requires_cuda
def test_cuda_graph_capture_and_replay():
    x, w, b = make_gate(16, 512, 64, device="cuda")
    logits = torch.randn(16, 64, device="cuda")
    table = torch.randint(0, 64, (50, 6), device="cuda")
    tokens = torch.randint(0, 50, (16,), device="cuda")
    moerouter.route(x, w, b, 6, 2.5)  # first call outside capture (creates the cuBLASLt handle)
    big = torch.randn(200, 512, device="cuda").bfloat16()
    moerouter.route(big, w, b, 6, 2.5)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = (moerouter.route(x, w, b, 6, 2.5), moerouter.route_logits(logits, b, 6, 2.5),
               moerouter.hash_route(tokens, table, 64, 1.5, x=x, w=w), moerouter.route(big, w, b, 6, 2.5))
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x.copy_(torch.randn(16, 512, generator=g).bfloat16())
        logits.copy_(torch.randn(16, 64, generator=g))
        big.copy_(torch.randn(200, 512, generator=g).bfloat16())
        tokens.copy_(torch.randint(0, 50, (16,), generator=g))
        graph.replay()
        torch.cuda.synchronize()
        for (wt, ids), eager in zip(out, (moerouter.route(x, w, b, 6, 2.5), moerouter.route_logits(logits, b, 6, 2.5),
                                          moerouter.hash_route(tokens, table, 64, 1.5, x=x, w=w), moerouter.route(big, w, b, 6, 2.5))):
            assert torch.equal(ids, eager[1]) and torch.equal(wt, eager[0])


def test_vllm_routing_function(device):
    logits = torch.randn(5, 32, device=device)
    bias = torch.randn(32, device=device)
    fn = moerouter.make_vllm_routing_function(bias=bias, scale=2.5)
    tw, tid = fn(None, logits, 6, True)
    check_route(tw, tid, logits.cpu(), bias.cpu(), 6, 2.5)
    with pytest.raises(ValueError, match="renormalize"):
        fn(None, logits, 6, False)


@pytest.mark.parametrize("k", [6, 512])
def test_topk_unsorted_and_large_k(device, k):
    g = torch.Generator().manual_seed(k)
    vals = torch.randn(4, 3000, generator=g)
    vals[2] = torch.randint(0, 8, (3000,), generator=g).float()  # few levels: many ties
    sv, si = moerouter.topk(vals.to(device), k)
    uv, ui = moerouter.topk(vals.to(device), k, sorted=False)
    want = torch.sort(-vals.double(), dim=1, stable=True).indices[:, :k]
    assert torch.equal(si.long().cpu(), want)
    assert torch.equal(ui.long().cpu(), torch.sort(want, dim=1).values)
    assert torch.equal(uv.cpu(), torch.gather(vals, 1, ui.long().cpu()))


@pytest.mark.parametrize("length", [262144, 524288])
def test_topk_few_long_rows(device, length):
    # One or two decode queries over a long context: on the GPU, rows of 2^19 and more get a
    # workspace from the op and the rows' blocks cooperate through it (grid mode); shorter
    # ones take a cluster of blocks a row. Same results as a stable sort.
    g = torch.Generator().manual_seed(7)
    vals = torch.randn(2, length, generator=g)
    vals[1, ::5] = 0.25  # ties across the row
    for k, srt in ((512, False), (1024, True)):
        v, i = moerouter.topk(vals.to(device), k, sorted=srt)
        want = torch.sort(-vals.double(), dim=1, stable=True).indices[:, :k]
        if not srt:
            want = torch.sort(want, dim=1).values
        assert torch.equal(i.long().cpu(), want)
        assert torch.equal(v.cpu(), torch.gather(vals, 1, want))
