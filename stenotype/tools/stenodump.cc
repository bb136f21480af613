// stenodump: inspect stenotype's files.
//
//   stenodump index FILE                     keys and positions of an index
//   stenodump packets [--blocksize_kb=N] PKTFILE [OUT.pcap]
//                                            packets as a nanosecond pcap,
//                                            kernel-stripped VLAN tags restored
//   stenodump positions [--blocksize_kb=N] PKTFILE
//                                            one line per packet
//   stenodump reindex [--blocksize_kb=N] PKTFILE OUTINDEX
//                                            index a packet file with our parser
//
// Errors go to stderr with exit status 1, after whatever could be read.
#include <arpa/inet.h>
#include <fcntl.h>
#include <leveldb/env.h>
#include <leveldb/iterator.h>
#include <leveldb/options.h>
#include <leveldb/table.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/version.h"
#include "format/block.h"
#include "index/block_index.h"
#include "index/index.h"
#include "index/packet_parser.h"

namespace steno {
namespace {

int Fail(const std::string& msg) {
  fprintf(stderr, "stenodump: %s\n", msg.c_str());
  return 1;
}

const char* TypeName(uint8_t t) {
  switch (t) {
    case kKeyProto: return "proto";
    case kKeyPort: return "port";
    case kKeyVlan: return "vlan";
    case kKeyIPv4: return "ipv4";
    case kKeyMpls: return "mpls";
    case kKeyIPv6: return "ipv6";
  }
  return nullptr;
}

// FormatValue renders a key's value as the CLI contract says.
std::string FormatValue(uint8_t type, const std::string& v) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(v.data());
  char buf[INET6_ADDRSTRLEN];
  if (type == kKeyIPv4 && v.size() == 4) return inet_ntop(AF_INET, p, buf, sizeof(buf));
  if (type == kKeyIPv6 && v.size() == 16) return inet_ntop(AF_INET6, p, buf, sizeof(buf));
  uint64_t n = 0;
  for (uint8_t c : v) n = n << 8 | c;
  return std::to_string(n);
}

int DumpIndex(const std::string& path) {
  leveldb::Env* env = leveldb::Env::Default();
  uint64_t size = 0;
  leveldb::Status s = env->GetFileSize(path, &size);
  leveldb::RandomAccessFile* raw = nullptr;
  if (s.ok()) s = env->NewRandomAccessFile(path, &raw);
  std::unique_ptr<leveldb::RandomAccessFile> file(raw);
  leveldb::Table* table_raw = nullptr;
  if (s.ok()) s = leveldb::Table::Open(leveldb::Options(), file.get(), size, &table_raw);
  if (!s.ok()) return Fail("open index " + path + ": " + s.ToString());
  std::unique_ptr<leveldb::Table> table(table_raw);
  leveldb::ReadOptions ro;
  ro.verify_checksums = true;
  std::unique_ptr<leveldb::Iterator> it(table->NewIterator(ro));
  std::string out;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    leveldb::Slice k = it->key(), v = it->value();
    if (k.size() == 1 && k[0] == kKeyVersion) {
      if (v.size() != 8) return Fail("index " + path + ": bad version record");
      const uint8_t* p = reinterpret_cast<const uint8_t*>(v.data());
      uint32_t major = p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
      uint32_t minor = p[4] << 24 | p[5] << 16 | p[6] << 8 | p[7];
      out = "version " + std::to_string(major) + "." + std::to_string(minor) + "\n";
      fputs(out.c_str(), stdout);
      continue;
    }
    // The pair-identity record describes the packet file, not packets.
    if (k == leveldb::Slice(kPacketFileKey, sizeof(kPacketFileKey))) continue;
    if (k == leveldb::Slice(kLiveRangeKey, sizeof(kLiveRangeKey)) && v.size() == 16) {
      uint64_t from = 0, to = 0;
      for (int i = 0; i < 8; ++i) from = from << 8 | static_cast<uint8_t>(v[i]);
      for (int i = 8; i < 16; ++i) to = to << 8 | static_cast<uint8_t>(v[i]);
      out = "live " + std::to_string(from) + "-" + std::to_string(to) + "\n";
      fputs(out.c_str(), stdout);
      continue;
    }
    const char* name = k.size() > 0 ? TypeName(static_cast<uint8_t>(k[0])) : nullptr;
    if (name == nullptr || v.size() % 4 != 0) return Fail("index " + path + ": malformed key or value");
    out = std::string(name) + " " + FormatValue(static_cast<uint8_t>(k[0]), std::string(k.data() + 1, k.size() - 1)) + " ";
    const uint8_t* p = reinterpret_cast<const uint8_t*>(v.data());
    for (size_t i = 0; i < v.size(); i += 4) {
      if (i) out += ',';
      out += std::to_string(static_cast<uint32_t>(p[i] << 24 | p[i + 1] << 16 | p[i + 2] << 8 | p[i + 3]));
    }
    out += '\n';
    fputs(out.c_str(), stdout);
  }
  if (!it->status().ok()) return Fail("read index " + path + ": " + it->status().ToString());
  return 0;
}

// ForEachBlock calls fn(offset, block) for every used block of a packet
// file; fn returns an error message or "". Returns an error message, or ""
// when the file was whole.
std::string ForEachBlock(const std::string& path, size_t block_size,
                         const std::function<std::string(uint64_t, const uint8_t*)>& fn) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open", path).ToString();
  std::vector<uint8_t> block(block_size);
  std::string err;
  for (uint64_t off = 0;; off += block_size) {
    ssize_t n = pread(fd, block.data(), block_size, static_cast<off_t>(off));
    if (n < 0) {
      err = Status::FromErrno(errno, "pread", path).ToString();
      break;
    }
    if (n == 0) break;
    if (static_cast<size_t>(n) < block_size) {
      // A crash between a sparse block's short write and the file's cut to
      // its block multiple leaves this; the missing tail is the block's
      // hole, zeros once the file is whole.
      fprintf(stderr, "stenodump: %s: partial block of %zd bytes at offset %llu, read as zero-padded\n", path.c_str(),
              n, static_cast<unsigned long long>(off));
      memset(block.data() + n, 0, block_size - static_cast<size_t>(n));
    }
    BlockReader r(block.data(), block_size);
    if (r.header_ok() && r.header().num_pkts == 0) break;  // preallocated tail
    std::string e = r.header_ok() ? fn(off, block.data()) : r.error();
    if (!e.empty()) {
      err = path + ": block at offset " + std::to_string(off) + ": " + e;
      break;
    }
  }
  close(fd);
  return err;
}

// ForEachPacket calls fn(position, packet) for every packet of a file.
std::string ForEachPacket(const std::string& path, size_t block_size,
                          const std::function<void(uint64_t, const PacketView&)>& fn) {
  return ForEachBlock(path, block_size, [&](uint64_t off, const uint8_t* block) {
    BlockReader r(block, block_size);
    PacketView p;
    while (r.Next(&p)) fn(off + p.offset, p);
    return r.error();
  });
}

void PutLE32(FILE* f, uint32_t v) { fwrite(&v, 4, 1, f); }

int DumpPackets(const std::string& path, size_t block_size, const std::string& out_path) {
  FILE* out = stdout;
  if (!out_path.empty()) {
    out = fopen(out_path.c_str(), "wb");
    if (out == nullptr) return Fail(Status::FromErrno(errno, "fopen", out_path).ToString());
  }
  PutLE32(out, 0xa1b23c4d);  // nanosecond pcap
  uint16_t ver[2] = {2, 4};
  fwrite(ver, 2, 2, out);
  PutLE32(out, 0);
  PutLE32(out, 0);
  PutLE32(out, 262144);
  PutLE32(out, 1);
  std::string err = ForEachPacket(path, block_size, [&](uint64_t, const PacketView& p) {
    bool tag = p.vlan_stripped() && p.snaplen >= 12;
    uint32_t extra = tag ? 4 : 0;
    PutLE32(out, p.sec);
    PutLE32(out, p.nsec);
    PutLE32(out, p.snaplen + extra);
    PutLE32(out, p.wire_len + extra);
    if (tag) {
      fwrite(p.data, 1, 12, out);
      uint8_t t[4] = {static_cast<uint8_t>(p.vlan_tpid >> 8), static_cast<uint8_t>(p.vlan_tpid),
                      static_cast<uint8_t>(p.vlan_tci >> 8), static_cast<uint8_t>(p.vlan_tci)};
      fwrite(t, 1, 4, out);
      fwrite(p.data + 12, 1, p.snaplen - 12, out);
    } else {
      fwrite(p.data, 1, p.snaplen, out);
    }
  });
  if (fflush(out) != 0) err = Status::FromErrno(errno, "write", out_path.empty() ? "stdout" : out_path).ToString();
  if (out != stdout) fclose(out);
  return err.empty() ? 0 : Fail(err);
}

int DumpPositions(const std::string& path, size_t block_size) {
  std::string err = ForEachPacket(path, block_size, [](uint64_t pos, const PacketView& p) {
    printf("%llu %u.%09u %u %u\n", static_cast<unsigned long long>(pos), p.sec, p.nsec, p.snaplen, p.wire_len);
  });
  return err.empty() ? 0 : Fail(err);
}

int Reindex(const std::string& path, size_t block_size, const std::string& out_path) {
  Index index;
  std::string err = ForEachBlock(path, block_size, [&](uint64_t off, const uint8_t* block) {
    std::string e;
    IndexBlock(block, block_size, off, &index, &e);
    return e;
  });
  Status s = WriteIndexFile(index, out_path);
  if (!s.ok()) return Fail(s.ToString());
  return err.empty() ? 0 : Fail(err);
}

int Usage() {
  fprintf(stderr,
          "usage: stenodump index FILE\n"
          "       stenodump --version\n"
          "       stenodump packets [--blocksize_kb=N] PKTFILE [OUT.pcap]\n"
          "       stenodump positions [--blocksize_kb=N] PKTFILE\n"
          "       stenodump reindex [--blocksize_kb=N] PKTFILE OUTINDEX\n");
  return 2;
}

int Main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    fputs(VersionLine("stenodump").c_str(), stdout);
    return 0;
  }
  if (argc < 3) return Usage();
  std::string cmd = argv[1];
  size_t block_size = 1 << 20;
  std::vector<std::string> args;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--blocksize_kb=", 0) == 0) {
      long kb = strtol(a.c_str() + 15, nullptr, 10);
      if (kb < 4 || kb % 4 != 0) return Fail("--blocksize_kb must be a positive multiple of 4");
      block_size = static_cast<size_t>(kb) * 1024;
    } else {
      args.push_back(a);
    }
  }
  if (cmd == "index" && args.size() == 1) return DumpIndex(args[0]);
  if (cmd == "packets" && (args.size() == 1 || args.size() == 2))
    return DumpPackets(args[0], block_size, args.size() == 2 ? args[1] : "");
  if (cmd == "positions" && args.size() == 1) return DumpPositions(args[0], block_size);
  if (cmd == "reindex" && args.size() == 2) return Reindex(args[0], block_size, args[1]);
  return Usage();
}

}  // namespace
}  // namespace steno

int main(int argc, char** argv) { return steno::Main(argc, argv); }
