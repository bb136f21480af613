"""A RetrievePcap client over code generated from protobuf/steno.proto with
grpcio-tools, as a reference user would write it.

usage: client.py GENDIR ADDR CA CERT KEY QUERY CHUNK_SIZE MAX_SIZE OUT
Prints the trailing metadata as key=value lines; on an RPC error prints
"error CODE: details" and exits 3.
"""
import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import steno_pb2  # noqa: E402
import steno_pb2_grpc  # noqa: E402


def main(addr, ca, cert, key, query, chunk, max_size, out):
    def read(path):
        with open(path, 'rb') as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
    with grpc.secure_channel(addr, creds) as channel:
        stub = steno_pb2_grpc.StenographerStub(channel)
        req = steno_pb2.PcapRequest(uid='py-client', chunk_size=int(chunk),
                                    max_size=int(max_size), query=query)
        call = stub.RetrievePcap(req)
        try:
            with open(out, 'wb') as f:
                for resp in call:
                    if resp.uid != req.uid:
                        sys.exit('response uid %r' % resp.uid)
                    f.write(resp.pcap)
        except grpc.RpcError as e:
            print('error %s: %s' % (e.code().name, e.details()))
            sys.exit(3)
        for md in call.trailing_metadata():
            print('%s=%s' % (md.key, md.value))


if __name__ == '__main__':
    main(*sys.argv[2:])
