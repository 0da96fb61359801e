"""Security properties beyond tests/test_server_security.py (which covers tokens, a foreign
session's describe/batch/close, server TLS and mutual TLS with raw stubs):

- token comparison is constant-time (source review, held by a test);
- a foreign session is indistinguishable from a missing one on every rpc that names a session;
- the SDK over TLS and mutual TLS, a client certificate from another CA refused;
- no request field reaches eval/exec/pickle or attribute lookup by name (an AST scan of
  server/ and client/ that fails on any new occurrence);
- oversized metadata and messages get RESOURCE_EXHAUSTED, and the server keeps serving.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grpc
import numpy as np
import pytest

import gradserve.client as gc
from gradserve.v1 import catalogue_pb2, graph_pb2, service_pb2, service_pb2_grpc, session_pb2
from tests.conftest import gradserve_connect, gradserve_error, gradserve_open_session
from tests.test_server_security import _cert, _key, _pem_key, pki  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent


def bearer(token):
    return (("authorization", f"Bearer {token}"),)


# --- tokens --------------------------------------------------------------------------------------

def test_tokens_are_compared_in_constant_time():
    source = (ROOT / "server" / "auth.py").read_text()
    tree = ast.parse(source)
    # every comparison that involves the presented token goes through hmac.compare_digest ...
    assert "hmac.compare_digest(candidate, token)" in source
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert not names & {"candidate", "presented", "token", "header"} or all(
                isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops), ast.unparse(node)
        # ... and the loop over accepted tokens does not stop at the first match
        if isinstance(node, ast.For) and "compare_digest" in ast.unparse(node):
            assert not any(isinstance(n, (ast.Break, ast.Return)) for n in ast.walk(node))
    # sessions are found by (owner, id), owner being the token's digest: no comparison of a
    # session's owner with the caller's that could take longer the more of it matches
    owner = (ROOT / "server" / "sessions.py").read_text()
    assert "self._sessions.get((owner, session_id))" in owner


@pytest.fixture
def auth_stub(gradserve_server_factory, tmp_path):
    path = tmp_path / "tokens"
    path.write_text("alice\nbob\n")
    _, port = gradserve_server_factory(auth_token_file=str(path))
    channel = gradserve_connect(port)
    yield service_pb2_grpc.AutogradServiceStub(channel), port
    channel.close()


def _not_found(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    code, message, meta = gradserve_error(err)
    assert code == grpc.StatusCode.NOT_FOUND
    return message, meta.get("gradserve-error-class")


def test_a_foreign_session_answers_exactly_like_a_missing_one(auth_stub):
    stub, _ = auth_stub
    alice = gradserve_open_session(stub, bearer("alice"))
    alice.run(alice.create(1, 2.0, requires_grad=True))
    missing = "0123456789abcdef0123456789abcdef"

    def calls(session_id):
        meta = (("x-session-id", session_id), *bearer("bob"))
        graph = graph_pb2.Graph(
            nodes=[graph_pb2.Node(id="y", op="neg", inputs=[graph_pb2.Value(handle=1)])],
            outputs=[graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="y"))])
        return [
            lambda: stub.DescribeSession(session_pb2.DescribeSessionRequest(
                session_id=session_id), metadata=meta, timeout=10),
            lambda: stub.ExecuteBatch(session_pb2.BatchRequest(
                session_id=session_id, request_id="r1",
                instructions=[alice.fetch(1)]), metadata=meta, timeout=10),
            lambda: stub.RunGraph(service_pb2.RunGraphRequest(
                graph=graph, session_id=session_id), metadata=meta, timeout=10),
            lambda: stub.CloseSession(session_pb2.CloseSessionRequest(
                session_id=session_id), metadata=meta, timeout=10),
        ]

    for foreign, absent in zip(calls(alice.id), calls(missing)):
        f_message, f_class = _not_found(foreign)
        a_message, a_class = _not_found(absent)
        # the same words and error class; only the id the caller sent differs
        assert f_message.replace(alice.id, "<id>") == a_message.replace(missing, "<id>")
        assert f_class == a_class
    assert alice.describe().tensor_count == 1  # bob's attempts changed nothing
    assert float(alice.value_of(1)) == 2.0


def test_sdk_with_a_foreign_session_id_gets_not_found(auth_stub):
    stub, port = auth_stub
    with gc.connect(f"localhost:{port}", token="alice") as a, gc.connect(
            f"localhost:{port}", token="bob") as b:
        with a.session() as torch:
            x = torch.tensor(1.0, requires_grad=True)
            x.item()
            with pytest.raises(gc.NotFoundError, match="not found"):
                b.describe(torch.id)
        with pytest.raises(gc.UnauthenticatedError):
            gc.connect(f"localhost:{port}", token="mallory").list_ops()


# --- TLS through the SDK -------------------------------------------------------------------------

def test_sdk_over_tls_and_mutual_tls(gradserve_server_factory, pki, tmp_path):  # noqa: F811
    _, port = gradserve_server_factory(tls_cert=str(pki / "server.pem"),
                                       tls_key=str(pki / "server.key"),
                                       tls_client_ca=str(pki / "ca.pem"))
    tls = gc.TLS(root_certificates=pki / "ca.pem", private_key=pki / "client.key",
                 certificate_chain=pki / "client.pem")
    with gc.connect(f"localhost:{port}", tls=tls) as client, client.session() as torch:
        x = torch.tensor(3.0, requires_grad=True)
        (x * x).backward()
        assert x.grad.item() == 6.0
    # a client certificate signed by another CA, and no client certificate, are both refused
    other_ca, other_key = _key(), _key()
    (tmp_path / "other.pem").write_bytes(_cert(other_key, "client", other_ca, "other-ca"))
    (tmp_path / "other.key").write_bytes(_pem_key(other_key))
    for bad in (gc.TLS(root_certificates=pki / "ca.pem", private_key=tmp_path / "other.key",
                       certificate_chain=tmp_path / "other.pem"),
                gc.TLS(root_certificates=pki / "ca.pem")):
        with gc.connect(f"localhost:{port}", tls=bad, timeout=5, retries=0) as client:
            with pytest.raises(gc.UnavailableError, match=f"localhost:{port}"):
                client.list_ops()
    # a server certificate from an untrusted CA is refused by the client
    (tmp_path / "other-ca.pem").write_bytes(_cert(other_ca, "other-ca", ca=True))
    with gc.connect(f"localhost:{port}", tls=gc.TLS(root_certificates=tmp_path / "other-ca.pem",
                                                     private_key=pki / "client.key",
                                                     certificate_chain=pki / "client.pem"),
                    timeout=5, retries=0) as client:
        with pytest.raises(gc.UnavailableError):
            client.list_ops()


# --- no dynamic evaluation of request data -------------------------------------------------------

DANGEROUS_CALLS = {"eval", "exec", "compile", "__import__", "import_module"}
DANGEROUS_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "importlib",
                     "yaml"}
# Reviewed uses of attribute access by a computed name; none takes a name from a request.
# (file, the call as written) -> why it is safe.
REVIEWED = {
    ("surface/distributions.py", "getattr(type(self), param, None)"):
        "param is a key of a distribution class's literal arg_constraints (torch's parameter "
        "names: probs, logits)",
    ("surface/distributions.py", "getattr(self, param)"):
        "param is a key of a distribution class's literal arg_constraints",
    ("client/compat.py", "getattr(session, name)"):
        "name is a value of gradserve.surface.runtime.SPECIAL_ALIASES, a literal dict (the "
        "functions torch.special aliases)",
    ("server/batch.py", "getattr(ins, kind)"):
        "kind is Instruction.WhichOneof('kind'): one of the schema's field names, and "
        "HANDLERS[kind] (a dict) picks the method",
    ("server/config.py", "getattr(args, field.name, None)"): "dataclass field names",
    ("server/config.py", "getattr(config, name)"): "a literal tuple of setting names",
    ("client/codec.py", "getattr(msg, encoding)"):
        "encoding is Tensor.WhichOneof('data') of a server response: a schema field name",
    ("client/connection.py", "getattr(self.stub, method)"):
        "method names are literals in the client's own code",
    ("client/errors.py", "getattr(exc, attr)"): "attr from a literal tuple",
    ("client/errors.py", "hasattr(exc, attr)"): "attr from a literal tuple",
    ("client/tensor.py", "setattr(Tensor, _dunder, "):
        "operator methods installed at import from the client's literal operator tables",
    ("client/tensor.py", "setattr(Tensor, name, _OpMethod(name))"):
        "install_methods: op names of the catalogue the server sent (ListOps), never a request's; "
        "private and non-identifier names are skipped and names Tensor defines are left alone; "
        "the descriptor only forwards to the session's `method`, which answers from the "
        "session's own tables as `__getattr__` did",
    ("client/tensor.py", "hasattr(Tensor, name)"):
        "install_methods: whether Tensor defines a catalogue name itself (then it is left alone)",
    ("client/errors.py", "setattr(new, attr, getattr(exc, attr))"): "attr from a literal tuple",
    ("client/session.py", "setattr(self, name, d)"):
        "dtype names from the client's own codec table",
    ("server/errors.py", "getattr(msg, kind)"):
        "kind is Instruction.WhichOneof('kind') of the failing instruction: a schema field name",
    ("server/errors.py", "getattr(sub, field)"):
        "field from the literal tuple ('op', *_HANDLE_FIELDS), checked against the descriptor",
    ("client/errors.py", "setattr(exc, attr, value)"): "attr from _rich's literal keys",
    ("server/optimizers.py", "getattr(o, k)"):
        "k from the literal ADAM_/RMSPROP_/ADAGRAD_DEFAULTS keys",
    ("server/optimizers.py", "getattr(m, kind)"):
        "kind is WhichOneof('algorithm') / WhichOneof('hyperparameters') of the request: a "
        "schema field name (None refused first)",
    ("server/optimizers.py", "setattr(out.adagrad, k, group[k])"):
        "k from the literal ADAGRAD_DEFAULTS keys (the engine optimizer's own group)",
    ("server/optimizers.py", "getattr(e, kind)"):
        "kind is CreateOptimizer.WhichOneof('algorithm') (a schema field name), and the entry's "
        "own WhichOneof('state') was checked equal to it first",
    ("server/optimizers.py", "getattr(s, name)"): "name from the literal STATE_FIELDS table",
    ("server/optimizers.py", "getattr(out.state.add(param=i), kind)"):
        "kind is a literal chosen by the optimizer's class",
    ("server/optimizers.py", "getattr(entry, name)"): "name from the literal STATE_FIELDS table",
    ("client/optim.py", "getattr(entry, name)"):
        "name is a key of the program's own loaded state dict, checked to be a field of the "
        "state message first",
    ("client/optim.py", "getattr(entry, kind)"):
        "kind is WhichOneof('state') of the server's reply: a schema field name",
    ("client/optim.py", "getattr(create.state.add(param=j), kind)"):
        "kind from the literal _KIND table",
    ("client/optim.py", "getattr(m, _KIND[options.DESCRIPTOR.name])"):
        "the literal _KIND table",
    ("client/optim.py", "getattr(create, kind)"):
        "kind is WhichOneof('algorithm') of the message the client itself just built",
    ("client/snapshot.py", "getattr(state, kind)"):
        "kind is WhichOneof('algorithm') of the saved state (a schema field name; None refused)",
    ("client/snapshot.py", "getattr(c, kind)"): "the same schema field name",
    ("client/optim.py", "getattr(options, f.name)"):
        "f iterates the client's own optimizer message descriptor: schema field names",
    ("client/optim.py", "setattr(options, key, _GROUP_FIELDS[key](value))"):
        "key is a param-group key of the user's own program, set only when it is in the "
        "literal _GROUP_FIELDS table and a field of the message",
}


def _scan(path: Path) -> list[tuple[str, str]]:
    rel = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(), filename=rel)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(
                node, ast.ImportFrom) and node.module else [])
            for name in names:
                if name.split(".")[0] in DANGEROUS_MODULES:
                    found.append((rel, f"import {name}"))
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else (
            func.attr if isinstance(func, ast.Attribute) else "")
        if name in DANGEROUS_CALLS and isinstance(func, ast.Name):
            found.append((rel, ast.unparse(node)))
        if name in ("getattr", "setattr", "delattr", "hasattr") and len(node.args) >= 2 \
                and not isinstance(node.args[1], ast.Constant):
            text = ast.unparse(node)
            key = next((k for k in REVIEWED if k[0] == rel and k[1] in text), None)
            if key is None:
                found.append((rel, text))
    return found


def test_no_request_field_reaches_eval_pickle_or_getattr_by_name():
    files = sorted((ROOT / "server").rglob("*.py")) + sorted((ROOT / "client").rglob("*.py"))
    assert len(files) > 10
    findings = [f for path in files for f in _scan(path)]
    assert not findings, (
        "new eval/exec/pickle/import or attribute lookup by a computed name: review it and, if "
        f"no request data can reach it, add it to REVIEWED with the reason: {findings}")
    # and the op name from the wire is looked up in the registry dict, never with getattr
    ops = (ROOT / "server" / "ops.py").read_text()
    assert "ge.registry.OPS.get(name)" in ops
    assert not re.search(r"getattr\(ge,\s*(name|op)", ops)


def test_client_tensors_refuse_pickling(gradserve_server):
    import pickle

    with gc.connect(f"localhost:{gradserve_server[1]}") as client, client.session() as torch:
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(torch.tensor(1.0))


# --- metadata and message sizes ------------------------------------------------------------------

def test_oversized_metadata_is_refused(gradserve_server, gradserve_stub):
    for meta in [(("authorization", "Bearer " + "x" * 65536),),
                 (("x-session-id", "s" * 30000),),
                 tuple((f"k{i}", "v" * 100) for i in range(400))]:
        with pytest.raises(grpc.RpcError) as err:
            gradserve_stub.ListOps(catalogue_pb2.ListOpsRequest(), metadata=meta, timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "metadata" in err.value.details()
    assert gradserve_stub.ListOps(catalogue_pb2.ListOpsRequest(), timeout=10).ops


def test_oversized_message_is_refused_with_a_clear_error(gradserve_server_factory):
    _, port = gradserve_server_factory(max_message_bytes=1 << 20)
    with gc.connect(f"localhost:{port}") as client, client.session() as torch:
        with pytest.raises(gc.RemoteError, match="RESOURCE_EXHAUSTED") as err:
            torch.tensor(np.ones(400_000, np.float32)).sum().item()  # 1.6 MB request
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # the session is still usable afterwards
        x = torch.tensor(2.0, requires_grad=True)
        (x * x).backward()
        assert x.grad.item() == 4.0
    # raw stub: the same limit for every rpc
    channel = gradserve_connect(port)
    stub = service_pb2_grpc.AutogradServiceStub(channel)
    with pytest.raises(grpc.RpcError) as e:
        stub.RunGraph(service_pb2.RunGraphRequest(graph=graph_pb2.Graph(
            nodes=[graph_pb2.Node(id="x" * (2 << 20), op="neg")])), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    channel.close()


def test_tokens_of_any_length_are_compared_at_one_length(monkeypatch):
    """`hmac.compare_digest` may take a time that depends on its inputs' lengths when they
    differ, so the presented and accepted tokens are compared as SHA-256 digests: a presented
    token of any length is compared, against every token, at one length."""
    from gradserve.server import auth

    lengths = []
    real = auth.hmac.compare_digest

    def recording(a, b):
        lengths.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    authenticator = auth.Authenticator(["short", "a-much-longer-token-" * 4])

    class Context:
        def __init__(self, token):
            self.token = token

        def invocation_metadata(self):
            return (("authorization", f"Bearer {self.token}"),)

    for presented in ("x", "short!", "y" * 300):
        with pytest.raises(auth.UnauthenticatedError):
            authenticator.identify(Context(presented))
    assert authenticator.identify(Context("short")) == auth.identity("short")
    assert len(lengths) == 8 and set(lengths) == {(32, 32)}
