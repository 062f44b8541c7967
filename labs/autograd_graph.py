"""The computation graph autograd recorded for an output, with the gradient that flowed back
along each edge: plain data (nodes, edges, numbers) that a component can draw.

Autograd keeps the graph as `grad_fn` nodes linked by `next_functions`. A hook on each node
sees the gradients it passes to its inputs during backward, so one `backward()` fills in
every edge.
"""

from __future__ import annotations

import torch

READABLE = {  # autograd's node names, in words a learner knows
    "AccumulateGrad": "leaf",
    "AddBackward0": "+",
    "AddBackward1": "+ const",
    "SubBackward0": "−",
    "SubBackward1": "− const",
    "RsubBackward1": "const −",
    "MulBackward0": "×",
    "MulBackward1": "× const",
    "DivBackward0": "÷",
    "DivBackward1": "÷ const",
    "PowBackward0": "power",
    "PowBackward1": "power",
    "PowBackward2": "const ^",
    "NegBackward0": "negate",
    "MeanBackward0": "mean",
    "SumBackward0": "sum",
    "MvBackward0": "Φ · c (matrix × vector)",
    "SinBackward0": "sin",
    "CosBackward0": "cos",
    "ExpBackward0": "exp",
    "LogBackward0": "log",
    "SqrtBackward0": "sqrt",
    "TanhBackward0": "tanh",
    "IndexBackward0": "select batch",
}


def autograd_graph(output: torch.Tensor, leaf_names: dict[int, str]) -> dict:
    """Run backward from a scalar `output` and return {"nodes": [...], "edges": [...]}.

    nodes: {"id", "op" (autograd's name), "label", "depth" (0 = the output)}
    edges: {"src", "dst", "grad_norm"}: gradient sent from node src (nearer the output) to its
    input dst. `leaf_names` maps id(tensor) of leaves to names ("c", "x").
    """
    nodes, edges, order, sent = {}, [], [output.grad_fn], {}
    depth = {output.grad_fn: 0}
    handles = []
    while order:
        fn = order.pop(0)
        if fn in nodes:
            continue
        name = type(fn).__name__
        label = READABLE.get(name, name.removesuffix("Backward0"))
        if name == "AccumulateGrad":
            label = leaf_names.get(id(fn.variable), "leaf")
        nodes[fn] = {"id": len(nodes), "op": name, "label": label, "depth": depth[fn]}
        handles.append(fn.register_hook(_sender(sent, fn)))
        for child, _ in fn.next_functions:
            if child is not None:
                depth[child] = max(depth.get(child, 0), depth[fn] + 1)
                order.append(child)
    try:
        output.backward()
    finally:
        for handle in handles:
            handle.remove()
    for fn, info in nodes.items():
        for i, (child, _) in enumerate(fn.next_functions):
            if child is not None and child in nodes:
                grad = sent.get(fn, [None] * (i + 1))[i]
                norm = float(grad.detach().norm()) if grad is not None else 0.0
                edges.append({"src": info["id"], "dst": nodes[child]["id"], "grad_norm": norm})
    for fn in nodes:
        nodes[fn]["depth"] = depth[fn]
    return {"nodes": list(nodes.values()), "edges": edges}


def _sender(sent: dict, fn):
    def hook(grad_inputs, grad_outputs):  # grad_inputs: what this node passes to its inputs
        sent[fn] = list(grad_inputs)

    return hook
