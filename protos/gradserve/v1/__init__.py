"""Generated gRPC/protobuf code for the gradserve.v1 API (see scripts/gen_protos.py)."""
