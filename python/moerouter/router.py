"""Router: a whole DeepSeek-V4 checkpoint's gates, reached from ops through an integer handle."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

Tensor = torch.Tensor


class Router(torch.nn.Module):
    """The gates of every MoE layer of a DeepSeek-V4 checkpoint.

    Layers below ``num_hash_layers`` are hash layers (routed by ``input_ids``), the rest dense;
    the MTP layer's gate is the last layer. ``router(hidden, input_ids, layer)`` returns
    (weights fp32 [n, k], ids int32 [n, k]). On the GPU the weights are uploaded once and a
    call allocates only its outputs (torch's caching allocator): it can run in a CUDA graph.
    """

    def __init__(self, handle: int):
        super().__init__()
        self.handle = int(handle)
        info = torch.ops.moerouter.router_info(self.handle)
        self.hidden_size, self.num_experts, self.top_k, self.vocab_size = info[0], info[1], info[2], info[3]
        self.num_hash_layers, self.num_layers, self.on_gpu = info[4], info[5], bool(info[6])
        self.routed_scaling_factor = torch.ops.moerouter.router_scale(self.handle)

    @classmethod
    def from_pretrained(cls, path: str, device: str | torch.device = "cuda", max_batch: int = 16384, checked: bool = False,
                        pdl: bool = False) -> "Router":
        """Loads the gate tensors of a Hugging Face model directory (config.json + sharded or
        single safetensors; both naming schemes). ``device`` 'cpu' or 'cuda'; ``max_batch`` is
        the largest n a call takes; ``checked`` makes GPU hash routes raise on bad token ids;
        ``pdl`` launches the GPU routing kernels with programmatic dependent launch (they read
        the layer's parameters and the token ids while the kernel before them still runs, so
        that kernel may write only ``hidden``)."""
        dev = torch.device(device).type
        return cls(torch.ops.moerouter.router_load(str(path), dev, int(max_batch), bool(checked), bool(pdl)))

    def is_hash_layer(self, layer: int) -> bool:
        return 0 <= layer < self.num_hash_layers

    def forward(self, hidden: Tensor, input_ids: Optional[Tensor], layer: int) -> Tuple[Tensor, Tensor]:
        if hidden.dim() > 2:
            hidden = hidden.reshape(-1, hidden.shape[-1])
        if input_ids is not None:
            input_ids = input_ids.reshape(-1)
        return torch.ops.moerouter.router_route(self.handle, int(layer), hidden, input_ids)

    def __del__(self):
        try:
            torch.ops.moerouter.router_free(self.handle)
        except Exception:  # interpreter shutdown
            pass


def make_vllm_routing_function(bias: Optional[Tensor] = None, scale: float = 1.0) -> Callable:
    """A function with the signature of vLLM FusedMoE's ``custom_routing_function``:
    ``(hidden_states, gating_output, topk, renormalize) -> (topk_weights, topk_ids)``.

    ``gating_output`` holds the router logits [n, E]; ``bias`` is the layer's
    e_score_correction_bias and ``scale`` its routed_scaling_factor. DeepSeek-V4 always
    renormalizes, so ``renormalize=False`` is refused.
    """

    def routing(hidden_states: Tensor, gating_output: Tensor, topk: int, renormalize: bool) -> Tuple[Tensor, Tensor]:
        if not renormalize:
            raise ValueError("moerouter: DeepSeek-V4 routing always renormalizes; got renormalize=False")
        b = bias if bias is None or bias.device == gating_output.device else bias.to(gating_output.device)
        return torch.ops.moerouter.route_logits(gating_output, b, int(topk), float(scale))

    return routing
