"""Fake (meta) implementations: shapes and dtypes only, so torch.compile can trace the ops."""

from __future__ import annotations

import torch


def _outputs(like: torch.Tensor, n, k):
    return (like.new_empty((n, k), dtype=torch.float32), like.new_empty((n, k), dtype=torch.int32))


@torch.library.register_fake("moerouter::route")
def _route_fake(x, w, bias, k, scale):
    torch._check(x.dim() == 2, lambda: "moerouter.route: x must be 2-D")
    return _outputs(x, x.shape[0], k)


@torch.library.register_fake("moerouter::route_out")
def _route_out_fake(x, w, bias, k, scale, weights, ids):
    return None


@torch.library.register_fake("moerouter::route_logits")
def _route_logits_fake(logits, bias, k, scale):
    torch._check(logits.dim() == 2, lambda: "moerouter.route_logits: logits must be 2-D")
    return _outputs(logits, logits.shape[0], k)


@torch.library.register_fake("moerouter::route_logits_out")
def _route_logits_out_fake(logits, bias, k, scale, weights, ids):
    return None


@torch.library.register_fake("moerouter::hash_route")
def _hash_route_fake(token_ids, tid2eid, num_experts, scale, x, w, logits):
    return _outputs(token_ids, token_ids.shape[0], tid2eid.shape[1])


@torch.library.register_fake("moerouter::topk")
def _topk_fake(values, k, lengths=None, sorted=True):
    n = values.shape[0]
    return (values.new_empty((n, k), dtype=torch.float32), values.new_empty((n, k), dtype=torch.int32))


@torch.library.register_fake("moerouter::router_route")
def _router_route_fake(handle, layer, x, token_ids):
    k = torch.ops.moerouter.router_info(handle)[2]
    return _outputs(x, x.shape[0], k)
