"""The stateless call with a hand-built graph: y = sum(sin(x * w)), its value and dy/dx, dy/dw.

No session and no tracing: the graph is written as the wire messages (`gradserve.v1`), as a
client in another language would, and sent with `Client.run_graph`.

    gradserve serve --port 50051 &
    python examples/stateless_graph.py localhost:50051
"""

import sys

import numpy as np

import gradserve.client
from gradserve.v1 import graph_pb2, service_pb2, tensor_pb2


def tensor(values):
    arr = np.asarray(values, dtype="<f4")
    return tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT32, shape=arr.shape, raw=arr.tobytes())


def ref(node_id):
    return graph_pb2.Value(ref=graph_pb2.NodeOutput(id=node_id))


graph = graph_pb2.Graph(
    inputs=[graph_pb2.GraphInput(name="x"), graph_pb2.GraphInput(name="w")],
    nodes=[graph_pb2.Node(id="xw", op="mul", inputs=[ref("x"), ref("w")]),
           graph_pb2.Node(id="s", op="sin", inputs=[ref("xw")]),
           graph_pb2.Node(id="y", op="sum", inputs=[ref("s")])],
    outputs=[graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="y"))])
request = service_pb2.RunGraphRequest(
    graph=graph, inputs={"x": tensor([0.1, 0.2, 0.3]), "w": tensor([1.0, 2.0, 3.0])},
    wrt=["x", "w"])

target = sys.argv[1] if len(sys.argv) > 1 else "localhost:50051"
with gradserve.client.connect(target) as client:
    response = client.run_graph(request)
    for out in response.outputs:
        value = np.frombuffer(out.tensor.raw, dtype="<f4").reshape(out.tensor.shape)
        print(out.name, "=", value)
    for g in response.gradients:
        d = g.derivatives[0].tensor
        print(f"d{response.outputs[0].name}/d{g.name} =",
              np.frombuffer(d.raw, dtype="<f4").reshape(d.shape))
