#include "capture/filter.h"

#include <gtest/gtest.h>
#include <linux/if_packet.h>

namespace steno {
namespace {

TEST(Filter, Hex) {
  std::vector<struct sock_filter> f;
  // ldh [12]; jeq #0x800, 0, 1; ret #262144; ret #0
  ASSERT_TRUE(ParseHexFilter("0028000000000000" "0015000100000800" "0006000000040000" "0006000000000000", &f).ok());
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0].code, 0x28);
  EXPECT_EQ(f[1].code, 0x15);
  EXPECT_EQ(f[1].jf, 1);
  EXPECT_EQ(f[1].k, 0x800u);
  EXPECT_EQ(f[2].k, 0x40000u);
  EXPECT_FALSE(ParseHexFilter("", &f).ok());
  EXPECT_FALSE(ParseHexFilter("0028", &f).ok());
  EXPECT_FALSE(ParseHexFilter("002800000000000g", &f).ok());
}

TEST(Filter, Expression) {
  std::vector<struct sock_filter> f;
  ASSERT_TRUE(CompileFilter("tcp port 80", &f).ok());
  EXPECT_GT(f.size(), 4u);
  Status s = CompileFilter("tcp port eighty", &f);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--filter_expr"), std::string::npos);
}

TEST(Fanout, Names) {
  uint32_t v = 0;
  ASSERT_TRUE(ParseFanout("hash", &v).ok());
  EXPECT_EQ(v, static_cast<uint32_t>(PACKET_FANOUT_HASH));
  ASSERT_TRUE(ParseFanout("hash,defrag,rollover", &v).ok());
  EXPECT_EQ(v, static_cast<uint32_t>(PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG | PACKET_FANOUT_FLAG_ROLLOVER));
  ASSERT_TRUE(ParseFanout("lb", &v).ok());
  EXPECT_EQ(v, static_cast<uint32_t>(PACKET_FANOUT_LB));
  ASSERT_TRUE(ParseFanout("rollover", &v).ok());
  EXPECT_EQ(v, static_cast<uint32_t>(PACKET_FANOUT_ROLLOVER));
  ASSERT_TRUE(ParseFanout("2", &v).ok());
  EXPECT_EQ(v, 2u);
  EXPECT_FALSE(ParseFanout("hash,lb", &v).ok());
  EXPECT_FALSE(ParseFanout("fast", &v).ok());
  EXPECT_FALSE(ParseFanout("defrag", &v).ok());
}

}  // namespace
}  // namespace steno
