#include "format/block_builder.h"

#include <gtest/gtest.h>

#include <vector>

#include "format/block.h"

namespace steno {
namespace {

TEST(BlockBuilder, LaysPacketsLikeTheKernel) {
  std::vector<uint8_t> block(1 << 20, 0);
  BlockBuilder b(block.data(), block.size(), 7);
  std::vector<uint8_t> f1(118, 0xaa), f2(314, 0xbb);
  f1[12] = 0x08;  // ethertype 0x0800
  ASSERT_TRUE(b.Add(f1.data(), f1.size(), f1.size(), 100, 5));
  ASSERT_TRUE(b.Add(f2.data(), f2.size(), 1514, 101, 6));
  b.Finish();
  // Header values as in the reference's capture file.
  EXPECT_EQ(LoadLE32(&block[0]), 2u);
  EXPECT_EQ(LoadLE32(&block[4]), 48u);
  EXPECT_EQ(LoadLE32(&block[12]), 2u);
  EXPECT_EQ(LoadLE32(&block[16]), 48u);
  EXPECT_EQ(LoadLE64(&block[24]), 7u);
  EXPECT_EQ(LoadLE32(&block[32]), 100u);
  EXPECT_EQ(LoadLE32(&block[40]), 101u);
  // First packet: next offset AlignUp16(82 + 118) = 208, mac 82, net 96.
  EXPECT_EQ(LoadLE32(&block[48]), 208u);
  EXPECT_EQ(LoadLE16(&block[48 + 24]), 82u);
  EXPECT_EQ(LoadLE16(&block[48 + 26]), 96u);
  EXPECT_EQ(LoadLE32(&block[48 + 208]), 0u);  // last packet
  EXPECT_EQ(LoadLE32(&block[20]), 48u + 208 + 400);  // blk_len: end of the last packet
  BlockReader r(block.data(), block.size());
  PacketView p;
  ASSERT_TRUE(r.Next(&p));
  EXPECT_EQ(p.offset, 48u);
  EXPECT_EQ(p.snaplen, 118u);
  ASSERT_TRUE(r.Next(&p));
  EXPECT_EQ(p.offset, 256u);
  EXPECT_EQ(p.wire_len, 1514u);
  EXPECT_EQ(p.nsec, 6u);
  EXPECT_FALSE(r.Next(&p));
  EXPECT_TRUE(r.error().empty());
}

TEST(BlockBuilder, FullBlockAndHugeFrames) {
  std::vector<uint8_t> block(4096, 0);
  BlockBuilder b(block.data(), block.size(), 1);
  std::vector<uint8_t> f(1000, 1);
  int n = 0;
  while (b.Add(f.data(), f.size(), f.size(), 1, 0)) ++n;
  EXPECT_EQ(n, 3);  // 48 + 3 * AlignUp16(82 + 1000) = 3312; a fourth does not fit
  // A frame larger than a block is cut to what an empty block holds.
  std::vector<uint8_t> huge(70000, 2), block2(4096, 0);
  BlockBuilder b2(block2.data(), block2.size(), 1);
  ASSERT_TRUE(b2.Add(huge.data(), huge.size(), huge.size(), 1, 0));
  b2.Finish();
  BlockReader r(block2.data(), block2.size());
  PacketView p;
  ASSERT_TRUE(r.Next(&p));
  EXPECT_EQ(p.snaplen, 4096u - 48 - 82);
  EXPECT_EQ(p.wire_len, 70000u);
}

}  // namespace
}  // namespace steno
