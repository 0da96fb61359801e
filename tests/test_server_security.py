"""Bearer tokens, foreign sessions, TLS and mutual TLS (certificates made by the test)."""

import datetime
import ipaddress

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gradserve.server.auth import Authenticator, read_tokens
from gradserve.v1 import catalogue_pb2, service_pb2_grpc, session_pb2
from tests.conftest import gradserve_bearer as bearer
from tests.conftest import gradserve_connect, gradserve_error, gradserve_open_session


@pytest.fixture
def auth_server(gradserve_server_factory, tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# two callers\nalice-token\n\nbob-token\n")
    _, port = gradserve_server_factory(auth_token_file=str(path))
    return service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))


def test_calls_without_a_valid_token_are_unauthenticated(auth_server):
    for metadata, text in [((), "missing bearer token"), (bearer("mallory"), "invalid bearer"),
                           ((("authorization", "Basic alice-token"),), "missing bearer")]:
        with pytest.raises(grpc.RpcError) as err:
            auth_server.ListOps(catalogue_pb2.ListOpsRequest(), metadata=metadata, timeout=10)
        code, message, _ = gradserve_error(err)
        assert code == grpc.StatusCode.UNAUTHENTICATED and text in message
    assert auth_server.ListOps(catalogue_pb2.ListOpsRequest(), metadata=bearer("alice-token"),
                               timeout=10).ops


def test_a_session_is_visible_only_to_its_creator(auth_server):
    alice = gradserve_open_session(auth_server, bearer("alice-token"))
    alice.run(alice.create(1, 1.0))
    bob_view = gradserve_open_session(auth_server, bearer("bob-token"))
    bob_view.id, bob_view.metadata = alice.id, (("x-session-id", alice.id),
                                                *bearer("bob-token"))
    for call in (bob_view.describe, lambda: bob_view.run(bob_view.fetch(1)), bob_view.close):
        with pytest.raises(grpc.RpcError) as err:
            call()
        code, message, _ = gradserve_error(err)
        # the same answer as for a session that does not exist: nothing leaks
        assert code == grpc.StatusCode.NOT_FOUND and "not found" in message
    assert alice.describe().tensor_count == 1  # untouched


def test_auth_off_accepts_anonymous_calls(gradserve_stub):
    assert gradserve_stub.ListOps(catalogue_pb2.ListOpsRequest(), timeout=10).ops


def test_token_file_parsing(tmp_path):
    path = tmp_path / "t"
    path.write_text("\n# only comments\n")
    with pytest.raises(ValueError, match="no tokens"):
        read_tokens(path)
    assert not Authenticator().enabled


# --- TLS -----------------------------------------------------------------------------------------

def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject_key, name, issuer_key=None, issuer_name=None, ca=False, server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                          issuer_name or name)]))
               .public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    cert = builder.sign(issuer_key or subject_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key, client_key, server_key = _key(), _key(), _key()
    files = {
        "ca.pem": _cert(ca_key, "test-ca", ca=True),
        "server.pem": _cert(server_key, "localhost", ca_key, "test-ca", server=True),
        "server.key": _pem_key(server_key),
        "client.pem": _cert(client_key, "client", ca_key, "test-ca"),
        "client.key": _pem_key(client_key),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


def _list_ops(port, credentials):
    channel = gradserve_connect(port, credentials)
    with channel:
        return service_pb2_grpc.AutogradServiceStub(channel).ListOps(
            catalogue_pb2.ListOpsRequest(), timeout=10)


def test_tls(gradserve_server_factory, pki):
    _, port = gradserve_server_factory(tls_cert=str(pki / "server.pem"),
                                       tls_key=str(pki / "server.key"))
    creds = grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes())
    assert _list_ops(port, creds).ops
    # plaintext to a TLS port does not get through
    channel = grpc.insecure_channel(f"localhost:{port}")
    with channel, pytest.raises(grpc.RpcError) as err:
        service_pb2_grpc.AutogradServiceStub(channel).ListOps(catalogue_pb2.ListOpsRequest(),
                                                              timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls(gradserve_server_factory, pki):
    _, port = gradserve_server_factory(tls_cert=str(pki / "server.pem"),
                                       tls_key=str(pki / "server.key"),
                                       tls_client_ca=str(pki / "ca.pem"))
    ca = (pki / "ca.pem").read_bytes()
    with_cert = grpc.ssl_channel_credentials(ca, (pki / "client.key").read_bytes(),
                                             (pki / "client.pem").read_bytes())
    assert _list_ops(port, with_cert).ops
    channel = grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(ca))
    with channel, pytest.raises(grpc.RpcError) as err:
        service_pb2_grpc.AutogradServiceStub(channel).ListOps(catalogue_pb2.ListOpsRequest(),
                                                              timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_session_calls_work_over_tls(gradserve_server_factory, pki):
    _, port = gradserve_server_factory(tls_cert=str(pki / "server.pem"),
                                       tls_key=str(pki / "server.key"))
    channel = gradserve_connect(port, grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes()))
    s = gradserve_open_session(service_pb2_grpc.AutogradServiceStub(channel))
    s.run(s.create(1, 3.0, requires_grad=True), s.op("pow", [("h", 1), 2], [2]), s.backward(2))
    assert float(s.grad_of(1)) == 6.0
    s.stub.CloseSession(session_pb2.CloseSessionRequest(session_id=s.id), metadata=s.metadata)
    channel.close()
