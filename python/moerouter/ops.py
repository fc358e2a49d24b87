"""Thin Python wrappers over torch.ops.moerouter (documented signatures, keyword arguments)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

Tensor = torch.Tensor


def route(x: Tensor, w: Tensor, bias: Optional[Tensor], k: int, scale: float = 1.0) -> Tuple[Tensor, Tensor]:
    """Dense DSV4 route from hidden states x (bf16 [n, H]) and gate weight w (bf16 [E, H]).

    Returns (weights fp32 [n, k], ids int32 [n, k]): the k experts with the largest
    sqrt(softplus(x w^T)) + bias, sorted descending (ties to the lower id), weighted by the
    unbiased score renormalized over the k and multiplied by scale.
    """
    return torch.ops.moerouter.route(x, w, bias, k, scale)


def route_out(x: Tensor, w: Tensor, bias: Optional[Tensor], k: int, scale: float, *, weights: Tensor, ids: Tensor) -> None:
    """route() into caller-owned weights (fp32 [n, k]) and ids (int32 or int64 [n, k])."""
    torch.ops.moerouter.route_out(x, w, bias, k, scale, weights, ids)


def route_logits(logits: Tensor, bias: Optional[Tensor], k: int, scale: float = 1.0) -> Tuple[Tensor, Tensor]:
    """Dense DSV4 route from precomputed logits (fp32 or bf16 [n, E])."""
    return torch.ops.moerouter.route_logits(logits, bias, k, scale)


def route_logits_out(logits: Tensor, bias: Optional[Tensor], k: int, scale: float, *, weights: Tensor, ids: Tensor) -> None:
    """route_logits() into caller-owned weights and ids."""
    torch.ops.moerouter.route_logits_out(logits, bias, k, scale, weights, ids)


def hash_route(
    token_ids: Tensor,
    tid2eid: Tensor,
    num_experts: int,
    scale: float = 1.0,
    *,
    x: Optional[Tensor] = None,
    w: Optional[Tensor] = None,
    logits: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """DSV4 hash route: ids = tid2eid[token_ids] (table order); weights from x and w (DSV4's
    math, k dot products per token), from logits, or uniform scale / k when neither is given.

    A token id outside [0, vocab) or a table entry outside [0, num_experts) gives that row ids -1
    and weights 0; on the CPU the call then raises RuntimeError (kInvalidTokenId).
    """
    return torch.ops.moerouter.hash_route(token_ids, tid2eid, num_experts, scale, x, w, logits)


def topk(values: Tensor, k: int, lengths: Optional[Tensor] = None, sorted: bool = True) -> Tuple[Tensor, Tensor]:
    """Per-row top-k of fp32/bf16 values [n, L] -> (values fp32 [n, k], indices int32 [n, k]):
    ties to the lower index, NaN below every number; rows shorter than k (or than
    lengths[row], int32, clamped to [0, L]) pad with -inf / -1. sorted=True: rank order;
    sorted=False: the same elements in ascending index order (cheaper; what sparse attention
    needs). GPU: k <= 2048 (radix select above k = 32)."""
    return torch.ops.moerouter.topk(values, k, lengths, sorted)
