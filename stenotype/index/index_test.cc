#include "index/index.h"

#include <gtest/gtest.h>
#include <leveldb/env.h>
#include <leveldb/iterator.h>
#include <leveldb/options.h>
#include <leveldb/table.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "format/block.h"
#include "index/block_index.h"
#include "testutil/read_table.h"
#include "testutil/shared.h"
#include "testutil/temp_dir.h"

namespace steno {
namespace {

KeyMap ToMap(const Index& idx) {
  KeyMap m;
  for (const Index::Entry& e : idx.SortedEntries()) m[e.key] = *e.positions;
  return m;
}

PacketKeys V4Keys(uint8_t a, uint8_t b, uint16_t sport, uint16_t dport) {
  PacketKeys k;
  k.has_proto = true;
  k.proto = 6;
  k.num_ports = 2;
  k.ports[0] = sport;
  k.ports[1] = dport;
  k.ip_version = 4;
  uint8_t src[4] = {10, 0, 0, a}, dst[4] = {10, 0, 0, b};
  memcpy(k.src_ip, src, 4);
  memcpy(k.dst_ip, dst, 4);
  return k;
}

TEST(Index, DedupesAndOrdersKeys) {
  Index idx;
  idx.Add(V4Keys(1, 1, 80, 80), 48);    // src == dst, sport == dport
  idx.Add(V4Keys(2, 1, 443, 80), 200);
  PacketKeys v;
  v.num_vlans = 2;
  v.vlans[0] = 7;
  v.vlans[1] = 7;
  v.num_mpls = 1;
  v.mpls[0] = 0x12345;
  idx.Add(v, 400);
  KeyMap m = ToMap(idx);
  EXPECT_EQ(m[std::string("\x02\x00\x50", 3)], (std::vector<uint32_t>{48, 200}));
  EXPECT_EQ(m[std::string("\x04\x0a\x00\x00\x01", 5)], (std::vector<uint32_t>{48, 200}));
  EXPECT_EQ(m[std::string("\x03\x00\x07", 3)], (std::vector<uint32_t>{400}));
  EXPECT_EQ(m[std::string("\x05\x00\x01\x23\x45", 5)], (std::vector<uint32_t>{400}));
  EXPECT_EQ(idx.packets(), 3u);
  std::vector<Index::Entry> entries = idx.SortedEntries();
  for (size_t i = 1; i < entries.size(); ++i) EXPECT_LT(entries[i - 1].key, entries[i].key);
}

TEST(Index, ManyAddressesGrowTheTable) {
  Index idx;
  for (uint32_t i = 0; i < 100000; ++i) {
    PacketKeys k = V4Keys(0, 0, 1, 2);
    k.src_ip[1] = i >> 16;
    k.src_ip[2] = i >> 8;
    k.src_ip[3] = i;
    idx.Add(k, i * 16);
  }
  KeyMap m = ToMap(idx);
  size_t v4 = 0;
  for (auto& kv : m) v4 += kv.first[0] == kKeyIPv4;
  EXPECT_EQ(v4, 100000u);  // 10.0.0.0 appears as source of i=0 and as every destination
}

TEST(Index, WriteReadRoundTrip) {
  Index idx;
  for (uint32_t i = 0; i < 5000; ++i) idx.Add(V4Keys(i % 7, 100 + i % 3, 1000 + i % 50, 53), 48 + i * 64);
  TempDir tmp;
  std::string path = tmp.path() + "/idx";
  ASSERT_TRUE(WriteIndexFile(idx, path).ok());
  KeyMap want = ToMap(idx);
  want[std::string("\0", 1)] = {2, 0};  // version 2.0 as two BE u32
  EXPECT_EQ(ReadTable(path), want);
}

// The header of the block indexed at offset 0 becomes the pair-identity
// record (key 00 01, the 48 header bytes as the value); a first block that
// was not written (DropFrom(0)) leaves no record.
TEST(Index, PairIdentityRecord) {
  std::vector<uint8_t> block(4096);
  for (size_t i = 0; i < kBlockHeaderSize; ++i) block[i] = static_cast<uint8_t>(0xa0 + i);
  const std::string header(reinterpret_cast<const char*>(block.data()), kBlockHeaderSize);
  Index later;
  IndexBlock(block.data(), block.size(), 4096, &later);
  EXPECT_TRUE(later.first_block_header().empty());
  Index idx;
  IndexBlock(block.data(), block.size(), 0, &idx);
  EXPECT_EQ(idx.first_block_header(), header);
  TempDir tmp;
  std::string path = tmp.path() + "/idx";
  ASSERT_TRUE(WriteIndexFile(idx, path).ok());
  KeyMap m = ReadTable(path);
  std::vector<uint32_t> want;
  for (size_t i = 0; i < kBlockHeaderSize; i += 4)
    want.push_back(static_cast<uint32_t>(block[i] << 24 | block[i + 1] << 16 | block[i + 2] << 8 | block[i + 3]));
  EXPECT_EQ(m[std::string(kPacketFileKey, sizeof(kPacketFileKey))], want);
  idx.DropFrom(100);
  EXPECT_EQ(idx.first_block_header(), header);
  idx.DropFrom(0);
  EXPECT_TRUE(idx.first_block_header().empty());
}

TEST(Index, WriteToMissingDirectoryFails) {
  Index idx;
  Status s = WriteIndexFile(idx, "/nonexistent/dir/idx");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/dir/idx"), std::string::npos) << s.message();
}

// Index a packet file the reference wrote with our parser: the keys must
// equal the reference's own index, plus the VLAN keys of the packets whose
// outer tag the kernel stripped (the reference missed those).
TEST(Index, MatchesReferenceIndex) {
  SHARED_OR_SKIP(shared);
  const std::string name = "1795335446956521";
  std::ifstream in(shared + "/upstream-testdata/capture/PKT0/" + name, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(data.size(), 7u << 20);
  Index ours, ours_without_offload;
  PacketKeys k;
  int stripped = 0;
  const size_t kBlock = 1 << 20;
  for (size_t off = 0; off < data.size(); off += kBlock) {
    BlockReader r(reinterpret_cast<const uint8_t*>(data.data()) + off, kBlock);
    ASSERT_TRUE(r.header_ok()) << r.error();
    PacketView p;
    while (r.Next(&p)) {
      uint32_t pos = static_cast<uint32_t>(off + p.offset);
      ParsePacket(p.data, p.snaplen, -1, &k);
      ours_without_offload.Add(k, pos);
      if (p.vlan_stripped()) ++stripped;
      ParsePacket(p.data, p.snaplen, p.vlan_stripped() ? (p.vlan_tci & 0xfff) : -1, &k);
      ours.Add(k, pos);
    }
    ASSERT_TRUE(r.error().empty()) << r.error();
  }
  EXPECT_EQ(stripped, 24);
  EXPECT_EQ(ours.packets(), 11896u);

  const std::string ref_path = shared + "/upstream-testdata/capture/IDX0/" + name;
  KeyMap ref = ReadTable(ref_path);
  KeyMap mine = ToMap(ours);
  mine[std::string("\0", 1)] = {2, 0};
  size_t extra_positions = 0;
  for (auto& kv : mine) {
    auto it = ref.find(kv.first);
    if (it == ref.end()) {
      EXPECT_EQ(kv.first[0], kKeyVlan) << "unexpected extra key type";
      extra_positions += kv.second.size();
      continue;
    }
    EXPECT_EQ(kv.second, it->second) << "key type " << int(kv.first[0]);
  }
  for (auto& kv : ref) EXPECT_TRUE(mine.count(kv.first)) << "missing key type " << int(kv.first[0]);
  EXPECT_EQ(extra_positions, 24u);

  // Without the offloaded tags our table is the reference's, byte for byte.
  TempDir tmp;
  std::string path = tmp.path() + "/ref";
  ASSERT_TRUE(WriteIndexFile(ours_without_offload, path).ok());
  std::ifstream a(path, std::ios::binary), b(ref_path, std::ios::binary);
  std::stringstream sa, sb;
  sa << a.rdbuf();
  sb << b.rdbuf();
  EXPECT_TRUE(sa.str() == sb.str()) << "index bytes differ from the reference's";
}

}  // namespace
}  // namespace steno
