"""The autograd graph behind a tensor, from the server: Graphviz DOT (as torchviz draws it) and
torch's `grad_fn.next_functions`."""

from __future__ import annotations

from typing import Any

from gradserve.surface.compat import short_node_name

from .tensor import Tensor


def _shape(dims: Any) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def to_dot(tensor: Tensor, name: str = "tensor") -> str:
    """Graphviz DOT source for the autograd graph behind `tensor`.

    As torchviz: the tensor in dark olive green, backward nodes in light grey, leaves
    (AccumulateGrad) in light blue with their shapes; edges point from a node to the node
    that produced its input, i.e. along `next_functions`.

    Args:
        tensor: a session tensor.
        name: label of the output tensor.
    """
    graph = tensor._owner.graph(tensor)
    info = tensor._info
    lines = ["digraph autograd {",
             '  graph [rankdir=BT];',
             '  node [style=filled, shape=box, align=left, fontsize=10, '
             'fontname=monospace, height=0.2];']
    out_label = f"{name}\\n{_shape(info.shape) if info is not None else ''}"
    lines.append(f'  out [label="{out_label}", fillcolor=darkolivegreen1];')
    for node in graph.nodes:
        if node.name.endswith("AccumulateGrad"):
            label = f"AccumulateGrad\\n{_shape(node.leaf_shape)}"
            if node.HasField("leaf_handle"):
                label += f"\\nhandle {node.leaf_handle}"
            lines.append(f'  n{node.id} [label="{label}", fillcolor=lightblue];')
        else:
            lines.append(f'  n{node.id} [label="{node.name}", fillcolor=lightgrey];')
    if graph.nodes:
        lines.append("  n0 -> out;")
    for edge in graph.edges:
        lines.append(f"  n{edge.target} -> n{edge.source};")
    lines.append("}")
    return "\n".join(lines) + "\n"


class RemoteNode:
    """A node of a fetched autograd graph, shaped like torch's (`name()`, `next_functions`;
    an AccumulateGrad's `variable`, set by `next_functions`)."""

    def __init__(self, name: str):
        self._name = name
        self.next_functions: tuple[tuple[Any, int], ...] = ()

    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        # torch prints its C++ nodes (name() "torch::autograd::AccumulateGrad") short
        return f"<{short_node_name(self._name)} object at {id(self):#x}>"


def next_functions(tensor: Tensor) -> tuple[tuple[Any, int], ...]:
    """`tensor.grad_fn.next_functions`, built from the graph the server returns: each node's
    `next` entries ((None, 0) included), or its edges from a server that sends none."""
    graph = tensor._owner.graph(tensor)
    nodes = [RemoteNode(n.name) for n in graph.nodes]
    for node, n in zip(nodes, graph.nodes):
        if n.HasField("leaf_handle"):  # an AccumulateGrad: its leaf, the program's own object
            node.variable = tensor._owner.live_tensor(n.leaf_handle)  # type: ignore[attr-defined]
    nexts: dict[int, list[tuple[Any, int]]] = {}
    if any(n.next for n in graph.nodes):
        for i, n in enumerate(graph.nodes):
            nexts[i] = [(nodes[e.node] if e.HasField("node") else None, e.output_nr)
                        for e in n.next]
    else:
        for e in graph.edges:
            nexts.setdefault(e.source, []).append((nodes[e.target], 0))
    for i, node in enumerate(nodes):
        node.next_functions = tuple(nexts.get(i, ()))
    return nodes[0].next_functions if nodes else ()


def reaches_other_leaf(tensor: Tensor, own: list[Any]) -> bool:
    """Whether the graph behind `tensor` reaches a leaf requiring grad that is not in `own`
    (torch.func's unwrapping, surface/func.py): one round trip for the graph, none for a leaf.
    A leaf the program no longer holds has no handle: counted as another leaf."""
    mine = {x._handle for x in own}
    if tensor.grad_fn is None:
        return bool(tensor.requires_grad) and tensor._handle not in mine
    graph = tensor._owner.graph(tensor)
    return any(n.name.endswith("AccumulateGrad")
               and not (n.HasField("leaf_handle") and n.leaf_handle in mine)
               for n in graph.nodes)
