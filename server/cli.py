"""The `gradserve` command: `serve`, `health`, `ops`, `demo`.

Subcommands live in `COMMANDS` (name -> (configure parser, run)); a subcommand whose code needs
other layers imports them inside its run function, so `gradserve serve` never loads the client.

Every expected failure is one line on stderr naming the cause and the setting, and a documented
exit status (`EXIT_*`, README "The gradserve command"); never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import config as config_mod
from . import numpy_cpu

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]

# the subcommands that run the engine in this process (numpy_cpu.pin: torch's roundings)
ENGINE_COMMANDS = ("serve", "demo")

EXIT_OK = 0
EXIT_UNHEALTHY = 1  # health: not SERVING, or not reachable
EXIT_USAGE = 2  # a bad flag or GRADSERVE_* value; an unreadable or invalid file; TLS settings
EXIT_CANNOT_LISTEN = 3  # serve: the port is in use or the address is not available
EXIT_UNREACHABLE = 4  # demo: the target cannot be reached, or refused the call


class Failure(Exception):
    """An expected failure of a command: printed as one line, then exit with `status`."""

    def __init__(self, message: str, status: int = EXIT_USAGE):
        super().__init__(message)
        self.status = status


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage text is what --help is for)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _read(path: str, setting: str) -> bytes:
    """The bytes of a file a setting names, or a Failure naming the setting."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise Failure(f"{setting} {path}: cannot read it: {exc.strerror or exc}") from None


def _check_files(cfg: config_mod.ServerConfig) -> None:
    """Read and check every file the settings name before the server starts."""
    from .auth import read_tokens

    if cfg.auth_token_file:
        _read(cfg.auth_token_file, "--auth-token-file")
        try:
            read_tokens(cfg.auth_token_file)
        except ValueError:
            raise Failure(f"--auth-token-file {cfg.auth_token_file}: holds no token") from None
    if cfg.tls_cert and cfg.tls_key:
        _check_pem(cfg.tls_cert, "--tls-cert", cfg.tls_key, "--tls-key")
    if cfg.tls_client_ca:
        _check_ca(cfg.tls_client_ca, "--tls-client-ca")


def _check_pem(cert: str, cert_setting: str, key: str, key_setting: str) -> None:
    """A certificate chain and its private key: readable, PEM, and belonging together."""
    _read(cert, cert_setting)
    _read(key, key_setting)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise Failure(f"{key_setting} {key} does not match {cert_setting} {cert} (TLS "
                          "certificate and key of different pairs)") from None
        raise Failure(f"{cert_setting} {cert} / {key_setting} {key}: not a PEM certificate "
                      f"chain and private key ({exc.reason or exc})") from None


def _check_ca(path: str, setting: str) -> None:
    _read(path, setting)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise Failure(f"{setting} {path}: not a PEM CA certificate ({exc.reason or exc})") from None


def _check_port(host: str, port: int, setting: str) -> None:
    """Fail with EXIT_CANNOT_LISTEN when `host:port` cannot be bound (grpc's own error names
    neither the cause nor the setting)."""
    if port == 0:
        return
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((bare or "0.0.0.0", port))
    except OSError as exc:
        if exc.errno == errno.EAFNOSUPPORT:
            return  # no IPv6 here: grpc falls back to IPv4 itself
        cause = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise Failure(f"cannot listen on {host}:{port} ({setting}): {cause}",
                      EXIT_CANNOT_LISTEN) from None


def _serve_args(parser: argparse.ArgumentParser) -> None:
    config_mod.add_arguments(parser)


def _serve(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args)
    _check_files(cfg)
    _check_port(cfg.host, cfg.port, "--host/--port, GRADSERVE_HOST/GRADSERVE_PORT")
    if cfg.metrics_port is not None:
        for i in range(cfg.processes):  # with --processes, process i serves on port + i
            _check_port("0.0.0.0", cfg.metrics_port + i if cfg.metrics_port else 0,
                        "--metrics-port, GRADSERVE_METRICS_PORT")
    logging.basicConfig(stream=sys.stderr, level=cfg.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .app import serve

    try:
        return serve(cfg)
    except RuntimeError as exc:  # grpc's bind failure, if the port was taken since the check
        if "Failed to bind" not in str(exc):
            raise
        raise Failure(f"cannot listen on {cfg.host}:{cfg.port} (--host/--port, "
                      "GRADSERVE_HOST/GRADSERVE_PORT)", EXIT_CANNOT_LISTEN) from None


def _health_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="localhost:50051", help="host:port to check")
    parser.add_argument("--service", default="", help="service name ('' = the whole server)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds")
    parser.add_argument("--tls-ca", help="PEM CA to verify the server (enables TLS)")
    parser.add_argument("--tls-cert", help="client certificate for mutual TLS")
    parser.add_argument("--tls-key", help="client key for mutual TLS")
    parser.add_argument("--tls-server-name", help="expected name in the server certificate")


def _health(args: argparse.Namespace) -> int:
    """Exit 0 when the server reports SERVING, 1 otherwise (unreachable included)."""
    _quiet_grpc()
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    options = []
    if (args.tls_cert is None) != (args.tls_key is None):
        raise Failure("--tls-cert and --tls-key go together (mutual TLS)")
    if (args.tls_cert or args.tls_server_name) and not args.tls_ca:
        raise Failure("--tls-cert, --tls-key and --tls-server-name need --tls-ca (TLS)")
    if args.tls_ca:
        _check_ca(args.tls_ca, "--tls-ca")
        if args.tls_cert:
            _check_pem(args.tls_cert, "--tls-cert", args.tls_key, "--tls-key")
        creds = grpc.ssl_channel_credentials(
            _read(args.tls_ca, "--tls-ca"),
            _read(args.tls_key, "--tls-key") if args.tls_key else None,
            _read(args.tls_cert, "--tls-cert") if args.tls_cert else None)
        if args.tls_server_name:
            options.append(("grpc.ssl_target_name_override", args.tls_server_name))
        channel = grpc.secure_channel(args.target, creds, options=options)
    else:
        channel = grpc.insecure_channel(args.target)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
        except grpc.RpcError as exc:
            hint = " (TLS: is the server plaintext, or the CA wrong?)" if args.tls_ca and (
                exc.code() is grpc.StatusCode.UNAVAILABLE) else ""
            print(f"gradserve health: {args.target} (--target): {exc.code().name}: "
                  f"{_one_line(exc.details())}{hint}", file=sys.stderr)
            return EXIT_UNHEALTHY
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return EXIT_OK if reply.status == health_pb2.HealthCheckResponse.SERVING else EXIT_UNHEALTHY


def _ops_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the ListOps message as JSON")


def _ops(args: argparse.Namespace) -> int:
    """Print the op catalogue this server build offers (from the engine's registry)."""
    from google.protobuf import json_format

    from gradserve.v1 import tensor_pb2

    from .catalogue import list_ops

    cat = list_ops()
    if args.json:
        print(json.dumps(json_format.MessageToDict(cat), indent=2))
        return 0
    print(f"op-set version {cat.opset_version}; dtypes "
          + ", ".join(tensor_pb2.DType.Name(d) for d in cat.dtypes))
    for op in cat.ops:
        inputs = f"*{op.inputs[0]}" if op.variadic else ", ".join(op.inputs)
        attrs = ", ".join(a.name for a in op.attrs)
        sig = f"{op.name}({inputs}{'; ' + attrs if attrs else ''})"
        print(f"{sig:<44} {op.backward_name or '-':<22} {op.doc}")
    print("in-place: " + " ".join(cat.inplace_ops))
    return 0


def _demo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", help="run against this server instead of an in-process one")


def _demo(args: argparse.Namespace) -> int:
    """Start a server on a free port (unless --target) and run the seed through the client."""
    _quiet_grpc()
    from gradserve.client import GradserveError
    from gradserve.client.demo import run

    if args.target:
        try:
            return run(args.target)
        except GradserveError as exc:
            raise Failure(f"{args.target} (--target): {_one_line(str(exc))}",
                          EXIT_UNREACHABLE) from None
    from .app import create_server

    server, port = create_server(config_mod.ServerConfig(host="127.0.0.1", port=0))
    server.start()
    try:
        return run(f"127.0.0.1:{port}")
    finally:
        server.stop(0)


COMMANDS: dict[str, tuple[str, Configure, Run]] = {
    "serve": ("run the gRPC server", _serve_args, _serve),
    "health": ("check a server's gRPC health (exit 0 when SERVING)", _health_args, _health),
    "ops": ("print the op catalogue", _ops_args, _ops),
    "demo": ("run the seed walkthrough through the client against an in-process server",
             _demo_args, _demo),
}


def _quiet_grpc() -> None:
    """Keep grpc core's own log lines (a failed TLS handshake is logged at INFO) off stderr:
    the command prints the failure itself, in one line. GRPC_VERBOSITY, when set, wins."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_parser() -> argparse.ArgumentParser:
    from gradserve.v1 import PROTOCOL_VERSION

    from . import package_version

    parser = OneLineParser(prog="gradserve", description="Autograd as a service.")
    parser.add_argument("--version", action="version",
                        version=f"gradserve {package_version()} (wire protocol {PROTOCOL_VERSION})")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gradserve` console script."""
    args = build_parser().parse_args(argv)
    if argv is None and args.command in ENGINE_COMMANDS:
        numpy_cpu.pin()  # the console script: numpy off its AVX512 kernels (torch's roundings)
    try:
        code = COMMANDS[args.command][2](args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except Failure as exc:
        print(f"gradserve {args.command}: {_one_line(str(exc))}", file=sys.stderr)
        return exc.status
    except ValueError as exc:  # bad configuration
        print(f"gradserve {args.command}: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `gradserve ops | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second BrokenPipeError at interpreter exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
