"""moerouter: DeepSeek-V4 MoE routing as PyTorch custom ops over a C++/CUDA core.

Ops (``torch.ops.moerouter.*``, also wrapped here) are pure functions of tensors and ints, with
fake implementations so ``torch.compile(fullgraph=True)`` traces them, and ``*_out`` variants
that write caller-owned outputs (for CUDA-graph reuse):

- ``route(x, w, bias, k, scale)``: dense route from hidden states x (bf16 [n, H]) and the gate
  weight w (bf16 [E, H]) -> (weights fp32 [n, k], ids int32 [n, k]).
- ``route_logits(logits, bias, k, scale)``: from fp32/bf16 logits [n, E].
- ``hash_route(token_ids, tid2eid, num_experts, scale, x=None, w=None, logits=None)``: ids from
  the table row of each token; weights from x and w (k dot products per token), from logits, or
  uniform (scale / k) when neither is given.
- ``topk(values, k, lengths=None)``: per-row top-k (sorted, ties to the lower index, NaN last),
  -1 / -inf padded past each row's length.

``Router.from_pretrained(dir, device=...)`` holds a whole checkpoint's gates; see router.py.
"""

from __future__ import annotations

import os as _os

import torch as _torch

_LIB = _os.path.join(_os.path.dirname(__file__), "_moerouter_ops.so")
if not hasattr(_torch.ops.moerouter, "route"):
    _torch.ops.load_library(_LIB)

from . import _fake  # noqa: E402,F401  (registers the fake implementations)
from .ops import hash_route, route, route_logits, route_logits_out, route_out, topk  # noqa: E402
from .router import Router, make_vllm_routing_function  # noqa: E402

__all__ = [
    "Router",
    "hash_route",
    "make_vllm_routing_function",
    "route",
    "route_logits",
    "route_logits_out",
    "route_out",
    "topk",
]
__version__ = "0.1.0"
