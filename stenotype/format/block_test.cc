#include "format/block.h"

#include <gtest/gtest.h>

#include <vector>

namespace steno {
namespace {

// MakeBlock lays frames of the given sizes into a block as the kernel does.
std::vector<uint8_t> MakeBlock(size_t size, const std::vector<size_t>& frames) {
  std::vector<uint8_t> b(size, 0);
  StoreLE32(&b[0], kTPacketV3);
  StoreLE32(&b[4], 48);
  StoreLE32(&b[8], kStatusUser);
  StoreLE32(&b[12], static_cast<uint32_t>(frames.size()));
  StoreLE32(&b[16], 48);
  size_t off = 48;
  for (size_t i = 0; i < frames.size(); ++i) {
    uint8_t* h = &b[off];
    StoreLE32(h + 4, 1700000000 + i);
    StoreLE32(h + 12, frames[i]);
    StoreLE32(h + 16, frames[i] + 10);
    StoreLE32(h + 20, kStatusUser);
    StoreLE16(h + 24, 82);
    size_t next = AlignPacket(82 + frames[i]);
    if (i + 1 < frames.size()) StoreLE32(h, next);
    off += next;
  }
  StoreLE32(&b[20], off);
  return b;
}

TEST(BlockReader, WalksPackets) {
  auto b = MakeBlock(4096, {60, 100, 1500});
  BlockReader r(b.data(), b.size());
  ASSERT_TRUE(r.header_ok());
  PacketView p;
  std::vector<uint32_t> offsets, lens;
  while (r.Next(&p)) {
    offsets.push_back(p.offset);
    lens.push_back(p.snaplen);
    EXPECT_EQ(p.wire_len, p.snaplen + 10);
  }
  EXPECT_TRUE(r.error().empty());
  EXPECT_EQ(offsets, (std::vector<uint32_t>{48, 48 + 144, 48 + 144 + 192}));
  EXPECT_EQ(lens, (std::vector<uint32_t>{60, 100, 1500}));
}

TEST(BlockReader, ZeroBlockHasNoPackets) {
  std::vector<uint8_t> b(4096, 0);
  BlockReader r(b.data(), b.size());
  PacketView p;
  EXPECT_TRUE(r.header_ok());
  EXPECT_FALSE(r.Next(&p));
  EXPECT_TRUE(r.error().empty());
}

struct Corruption {
  const char* name;
  size_t field;  // byte offset of a u32 to overwrite
  uint32_t value;
  int packets;  // packets still returned
};

TEST(BlockReader, CorruptHeadersEndTheBlock) {
  const Corruption cases[] = {
      {"first offset past block", 16, 5000, 0},
      {"first offset inside header", 16, 8, 0},
      {"first offset at last bytes", 16, 4090, 0},
      {"snaplen past block", 48 + 12, 1u << 31, 0},
      {"mac offset tiny", 48 + 24, 2, 0},
      {"next offset past block", 48, 100000, 1},
      {"next offset too small", 48, 4, 1},
      {"huge num_pkts", 12, 0xffffffff, 3},
  };
  for (const Corruption& c : cases) {
    auto b = MakeBlock(4096, {60, 100, 1500});
    StoreLE32(&b[c.field], c.value);
    BlockReader r(b.data(), b.size());
    PacketView p;
    int n = 0;
    while (r.Next(&p)) {
      ASSERT_LE(p.data + p.snaplen, b.data() + b.size()) << c.name;
      ++n;
    }
    EXPECT_EQ(n, c.packets) << c.name;
  }
}

TEST(BlockReader, TinyBuffer) {
  std::vector<uint8_t> b(10, 0);
  BlockReader r(b.data(), b.size());
  EXPECT_FALSE(r.header_ok());
  EXPECT_FALSE(r.error().empty());
}

}  // namespace
}  // namespace steno
