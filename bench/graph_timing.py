"""Shared timing for the Python benchmarks: calls captured in one CUDA graph, median replay."""

import torch


def graph_us(fn, inputs, reps=7):
    """Median microseconds per call of fn(x) for x in inputs, all captured in one CUDA graph
    (after one eager warm-up pass, which also lets allocators and handles settle)."""
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        for x in inputs:
            fn(x)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=s):
            for x in inputs:
                fn(x)
    times = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        g.replay()
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1) * 1000.0 / len(inputs))
    return sorted(times)[len(times) // 2]
