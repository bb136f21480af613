#!/bin/sh
# Regenerates steno.pb.go and steno_grpc.pb.go from steno.proto. Not run by
# the build or the tests: the generated files are committed.
# Needs protoc (Debian: protobuf-compiler) and the Go plugins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
# Without protoc, Debian's python3-grpc-tools carries one; steno.pb.go is
# then regenerated (steno_grpc.pb.go changes only with the service) by
#   go build -o /tmp/bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
#   PATH=/tmp/bin:$PATH python3 -m grpc_tools.protoc --proto_path=. \
#     --go_out=. --go_opt=paths=source_relative steno.proto
set -eu
cd "$(dirname "$0")"
PATH="$(go env GOPATH)/bin:$PATH"
protoc --proto_path=. \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  steno.proto
