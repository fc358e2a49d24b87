"""The float64 oracle of SPEC.md in torch, for the tests (the math, not another router)."""

import torch


def sqrt_softplus64(logits: torch.Tensor) -> torch.Tensor:
    z = logits.double()
    return torch.sqrt(torch.clamp(z, min=0) + torch.log1p(torch.exp(-z.abs())))


def route_reference(logits: torch.Tensor, bias, k: int, scale: float):
    """(weights float64 [n, k], ids int64 [n, k], biased float64 [n, E]) by SPEC.md."""
    s = sqrt_softplus64(logits)
    biased = s + (bias.double() if bias is not None else 0.0)
    n, e = biased.shape
    # Ranking: biased descending, lower index first (stable sort of the negated keys).
    order = torch.sort(-biased, dim=1, stable=True).indices[:, :k]
    chosen = torch.gather(s, 1, order)
    denom = chosen.sum(dim=1, keepdim=True).clamp(min=1e-20)
    return chosen / denom * scale, order, biased


def check_route(weights, ids, logits, bias, k, scale, logit_tol=None):
    """Asserts SPEC.md's tolerances: ids equal except in near-tie rows; weights 1e-6 relative
    (from logits) or within the propagated GEMM bound (logit_tol [n, E])."""
    w_ref, ids_ref, biased = route_reference(logits, bias, k, scale)
    ids = ids.long().cpu()
    weights = weights.double().cpu()
    n = ids.shape[0]
    srt = torch.sort(biased, dim=1, descending=True).values
    for r in range(n):
        if torch.equal(ids[r], ids_ref[r]):
            continue
        if k < biased.shape[1]:
            kth, nxt = srt[r, k - 1].item(), srt[r, k].item()
            margin = 1e-6 * max(abs(kth), abs(nxt))
            if logit_tol is not None:
                margin += 2 * float(logit_tol[r].max())
            assert abs(kth - nxt) <= margin, f"row {r}: ids {ids[r].tolist()} vs oracle {ids_ref[r].tolist()}"
            assert set(ids[r].tolist()) - set(ids_ref[r].tolist()), "ids differ only in order"
        else:
            raise AssertionError(f"row {r}: ids {ids[r].tolist()} vs {ids_ref[r].tolist()}")
    # Weights against the oracle's formula on the backend's own ids.
    logits = logits.double().cpu()
    s = sqrt_softplus64(logits)
    chosen = torch.gather(s, 1, ids)
    denom = chosen.sum(dim=1, keepdim=True).clamp(min=1e-20)
    expect = chosen / denom * scale
    tol = 1e-6 * expect.abs() + 1e-12
    if logit_tol is not None:
        # The GEMM bound of each chosen logit, propagated exactly through sqrt(softplus)
        # (monotonic) and then through the renormalization.
        l = torch.gather(logits, 1, ids)
        d = torch.gather(logit_tol.double().cpu(), 1, ids)
        ds = torch.maximum((sqrt_softplus64(l + d) - chosen).abs(), (sqrt_softplus64(l - d) - chosen).abs())
        tol = tol + abs(scale) * (ds / denom + chosen * ds.sum(dim=1, keepdim=True) / denom**2)
    assert torch.all((weights - expect).abs() <= tol), f"max weight error {(weights - expect).abs().max().item()}"
