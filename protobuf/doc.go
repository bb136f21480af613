// Package protobuf holds the gRPC interface of stenographer: steno.proto
// (SPEC §8, wire-compatible with the reference) and the Go code protoc
// generated from it (regenerate with generate.sh).
package protobuf
