"""The `gradserve` command: `serve`, `health`, `ops`, `demo`.

Subcommands live in `COMMANDS` (name -> (configure parser, run)); a subcommand whose code needs
other layers imports them inside its run function, so `gradserve serve` never loads the client.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from . import config as config_mod

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


def _serve_args(parser: argparse.ArgumentParser) -> None:
    config_mod.add_arguments(parser)


def _serve(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args)
    logging.basicConfig(stream=sys.stderr, level=cfg.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .app import serve

    return serve(cfg)


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
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    options = []
    if args.tls_ca:
        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()

        creds = grpc.ssl_channel_credentials(read(args.tls_ca), read(args.tls_key),
                                             read(args.tls_cert))
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
            print(f"{args.target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


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
    from gradserve.client.demo import run

    if args.target:
        return run(args.target)
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


def build_parser() -> argparse.ArgumentParser:
    from gradserve.v1 import PROTOCOL_VERSION

    from . import package_version

    parser = argparse.ArgumentParser(prog="gradserve", description="Autograd as a service.")
    parser.add_argument("--version", action="version",
                        version=f"gradserve {package_version()} (wire protocol {PROTOCOL_VERSION})")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gradserve` console script."""
    args = build_parser().parse_args(argv)
    try:
        code = COMMANDS[args.command][2](args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except ValueError as exc:  # bad configuration
        print(f"gradserve {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `gradserve ops | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second BrokenPipeError at interpreter exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
