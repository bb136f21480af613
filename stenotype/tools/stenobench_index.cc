// stenobench_index: offline indexing rate. Loads every Ethernet pcap given
// (or every *.pcap of a directory) into memory, lays the packets into
// kernel-format blocks, then times, on one core:
//   - parse + Index::Add over every block (the capture thread's cost), and
//   - WriteIndexFile of the resulting index (the index thread's cost),
// next to a std::map<key, vector> baseline in the reference's style.
// Prints packets, bytes, CPU seconds and rates so runs can be compared.
#include <dirent.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "format/block.h"
#include "format/block_builder.h"
#include "index/block_index.h"
#include "index/index.h"
#include "index/packet_parser.h"

namespace steno {
namespace {

double CpuSeconds() {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

constexpr size_t kBlock = 1 << 20;

struct Corpus {
  std::vector<std::vector<uint8_t>> blocks;
  uint64_t packets = 0, bytes = 0;
};

void Load(const std::string& path, Corpus* c) {
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  if (p == nullptr) return;
  if (pcap_datalink(p) != DLT_EN10MB) {
    pcap_close(p);
    return;
  }
  struct pcap_pkthdr* h;
  const u_char* d;
  std::vector<uint8_t> block(kBlock, 0);
  BlockBuilder b(block.data(), kBlock, 0);
  auto flush = [&] {
    if (b.empty()) return;
    b.Finish();
    c->blocks.push_back(block);
    std::fill(block.begin(), block.end(), 0);
    b = BlockBuilder(block.data(), kBlock, c->blocks.size());
  };
  while (pcap_next_ex(p, &h, &d) == 1) {
    if (!b.Add(d, h->caplen, h->len, h->ts.tv_sec, h->ts.tv_usec * 1000)) {
      flush();
      b.Add(d, h->caplen, h->len, h->ts.tv_sec, h->ts.tv_usec * 1000);
    }
    c->packets++;
    c->bytes += h->caplen;
  }
  flush();
  pcap_close(p);
}

// MapIndex is the reference's design: one ordered-map insert per key.
void MapIndexBlocks(const Corpus& c, std::map<std::string, std::vector<uint32_t>>* m) {
  PacketKeys k;
  for (size_t bi = 0; bi < c.blocks.size(); ++bi) {
    BlockReader r(c.blocks[bi].data(), kBlock);
    PacketView p;
    while (r.Next(&p)) {
      ParsePacket(p.data, p.snaplen, p.vlan_stripped() ? p.vlan_tci & 0xfff : -1, &k);
      uint32_t pos = static_cast<uint32_t>(bi * kBlock + p.offset);
      auto add = [&](std::string key) { (*m)[std::move(key)].push_back(pos); };
      if (k.has_proto) add(std::string{1, static_cast<char>(k.proto)});
      for (int i = 0; i < k.num_ports; ++i) add(std::string{2, static_cast<char>(k.ports[i] >> 8), static_cast<char>(k.ports[i])});
      if (k.ip_version == 4) {
        add(std::string("\x04", 1) + std::string(reinterpret_cast<char*>(k.src_ip), 4));
        add(std::string("\x04", 1) + std::string(reinterpret_cast<char*>(k.dst_ip), 4));
      } else if (k.ip_version == 6) {
        add(std::string("\x06", 1) + std::string(reinterpret_cast<char*>(k.src_ip), 16));
        add(std::string("\x06", 1) + std::string(reinterpret_cast<char*>(k.dst_ip), 16));
      }
    }
  }
}

int Main(int argc, char** argv) {
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (DIR* d = opendir(a.c_str())) {
      while (struct dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n.size() > 5 && n.substr(n.size() - 5) == ".pcap") files.push_back(a + "/" + n);
      }
      closedir(d);
    } else {
      files.push_back(a);
    }
  }
  if (files.empty()) {
    fprintf(stderr, "usage: stenobench_index DIR_OR_PCAP...\n");
    return 2;
  }
  Corpus c;
  for (const auto& f : files) Load(f, &c);
  printf("corpus: %zu files, %llu packets, %llu bytes, %zu blocks of 1 MiB\n", files.size(),
         static_cast<unsigned long long>(c.packets), static_cast<unsigned long long>(c.bytes), c.blocks.size());

  // Parse + Add, repeated until at least 2 CPU seconds.
  int rounds = 0;
  double t0 = CpuSeconds(), t = 0;
  Index last;
  uint64_t keys = 0;
  while (t < 2.0) {
    Index idx;
    for (size_t bi = 0; bi < c.blocks.size(); ++bi) IndexBlock(c.blocks[bi].data(), kBlock, bi * kBlock, &idx);
    ++rounds;
    t = CpuSeconds() - t0;
    if (t >= 2.0) keys = idx.SortedEntries().size();
  }
  double pkts = static_cast<double>(c.packets) * rounds;
  printf("parse+index: %d rounds, %.0f packets in %.2f CPU s = %.2f M packets/s/core, %.0f MB/s/core (%llu keys)\n",
         rounds, pkts, t, pkts / t / 1e6, static_cast<double>(c.bytes) * rounds / t / 1e6,
         static_cast<unsigned long long>(keys));

  // Index writing (one file for the whole corpus).
  Index idx;
  for (size_t bi = 0; bi < c.blocks.size(); ++bi) IndexBlock(c.blocks[bi].data(), kBlock, bi * kBlock, &idx);
  char path[] = "/tmp/stenobench_index_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  t0 = CpuSeconds();
  Status s = WriteIndexFile(idx, path);
  double tw = CpuSeconds() - t0;
  unlink(path);
  printf("write index: %llu packets' index in %.3f CPU s (%s)\n", static_cast<unsigned long long>(c.packets), tw,
         s.ok() ? "ok" : s.ToString().c_str());

  // Baseline: std::map per key, as the reference does.
  t0 = CpuSeconds();
  rounds = 0;
  t = 0;
  while (t < 2.0) {
    std::map<std::string, std::vector<uint32_t>> m;
    MapIndexBlocks(c, &m);
    ++rounds;
    t = CpuSeconds() - t0;
  }
  pkts = static_cast<double>(c.packets) * rounds;
  printf("baseline std::map: %.0f packets in %.2f CPU s = %.2f M packets/s/core\n", pkts, t, pkts / t / 1e6);
  return 0;
}

}  // namespace
}  // namespace steno

int main(int argc, char** argv) { return steno::Main(argc, argv); }
