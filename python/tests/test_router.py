import json
import math

import pytest
import torch
from safetensors.torch import save_file

import moerouter
from reference import check_route


def write_checkpoint(path, hf, layers=4, hash_layers=3, h=128, e=32, k=6, vocab=200, scale=1.5):
    """A DSV4-shaped checkpoint written with the safetensors package itself."""
    g = torch.Generator().manual_seed(1)
    tensors = {}
    gates = []
    for i in range(layers + 1):  # + MTP
        w = (torch.randn(e, h, generator=g) * (1.5 / math.sqrt(h))).bfloat16()
        prefix = (f"model.layers.{i}.mlp.gate." if hf else ("mtp.0.ffn.gate." if i == layers else f"layers.{i}.ffn.gate."))
        tensors[prefix + "weight"] = w
        if i < hash_layers:
            t = torch.stack([torch.randperm(e, generator=g)[:k] for _ in range(vocab)])
            tensors[prefix + "tid2eid"] = t
            gates.append(("hash", w, t))
        else:
            b = 8.08 + 0.02 * torch.randn(e, generator=g)
            tensors[prefix + ("e_score_correction_bias" if hf else "bias")] = b
            gates.append(("dense", w, b))
    save_file(tensors, str(path / "model.safetensors"))
    cfg = ({"hidden_size": h, "n_routed_experts": e, "num_experts_per_tok": k, "routed_scaling_factor": scale,
            "num_hash_layers": hash_layers, "vocab_size": vocab, "num_hidden_layers": layers,
            "scoring_func": "sqrtsoftplus", "topk_method": "noaux_tc"} if hf else
           {"dim": h, "n_routed_experts": e, "n_activated_experts": k, "route_scale": scale,
            "n_hash_layers": hash_layers, "vocab_size": vocab, "n_layers": layers, "score_func": "sqrtsoftplus"})
    (path / "config.json").write_text(json.dumps(cfg))
    return gates


@pytest.mark.parametrize("hf,pdl", [(False, False), (True, False), (False, True)])
def test_router_from_pretrained(tmp_path, device, hf, pdl):
    gates = write_checkpoint(tmp_path, hf)
    router = moerouter.Router.from_pretrained(tmp_path, device=device, pdl=pdl)
    assert router.num_layers == 5 and router.num_hash_layers == 3 and router.top_k == 6
    g = torch.Generator().manual_seed(7)
    for n in (1, 33):
        x = torch.randn(n, 128, generator=g).bfloat16()
        ids_in = torch.randint(0, 200, (n,), generator=g)
        for layer, (kind, w, extra) in enumerate(gates):
            weights, ids = router(x.to(device), ids_in.to(device), layer)
            logits = x.double() @ w.double().T
            if kind == "hash":
                assert torch.equal(ids.long().cpu(), extra[ids_in])
                s = torch.sqrt(torch.nn.functional.softplus(torch.gather(logits, 1, ids.long().cpu()), threshold=1e9))
                assert torch.allclose(weights.double().cpu(), s / s.sum(1, keepdim=True) * 1.5, rtol=1e-4)
            else:
                bound = 128 * 2.0**-24 * (x.double().abs() @ w.double().abs().T)
                check_route(weights, ids, logits, extra, 6, 1.5, logit_tol=bound)


def test_router_errors(tmp_path):
    write_checkpoint(tmp_path, hf=False)
    router = moerouter.Router.from_pretrained(tmp_path, device="cpu")
    x = torch.randn(2, 128).bfloat16()
    with pytest.raises(ValueError, match="hash layer"):
        router(x, None, 0)
    with pytest.raises(ValueError, match="layer must be in"):
        router(x, None, 9)
    with pytest.raises(ValueError, match=r"hidden must be \[n, 128\]"):
        router(torch.randn(2, 64).bfloat16(), None, 4)
    with pytest.raises(ValueError, match="no config.json"):
        moerouter.Router.from_pretrained(tmp_path / "nope", device="cpu")
    with pytest.raises(ValueError, match="device must be"):
        moerouter.Router.from_pretrained(tmp_path, device="meta")


def test_router_in_torch_compile(tmp_path):
    write_checkpoint(tmp_path, hf=True)
    router = moerouter.Router.from_pretrained(tmp_path, device="cpu")
    x = torch.randn(4, 128).bfloat16()
    ids_in = torch.randint(0, 200, (4,))

    def f(x, ids_in):
        return router(x, ids_in, 1), router(x, None, 3)

    got = torch.compile(f, fullgraph=True)(x, ids_in)
    want = f(x, ids_in)
    for (a, b), (c, d) in zip(got, want):
        assert torch.equal(a, c) and torch.equal(b, d)
