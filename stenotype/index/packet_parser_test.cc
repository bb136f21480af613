#include "index/packet_parser.h"

#include <gtest/gtest.h>
#include <string.h>

#include <vector>

namespace steno {
namespace {

using Bytes = std::vector<uint8_t>;

void Put16(Bytes* b, uint16_t v) {
  b->push_back(v >> 8);
  b->push_back(v & 0xff);
}
void Append(Bytes* b, const Bytes& x) { b->insert(b->end(), x.begin(), x.end()); }

Bytes Mac() { return Bytes{0, 1, 2, 3, 4, 5, 0, 6, 7, 8, 9, 10}; }

Bytes Eth(uint16_t type) {
  Bytes b = Mac();
  Put16(&b, type);
  return b;
}

// Tag returns a VLAN tag (TCI) followed by the inner ethertype.
Bytes Tag(uint16_t vid, uint16_t inner) {
  Bytes b;
  Put16(&b, vid);
  Put16(&b, inner);
  return b;
}

Bytes Mpls(uint32_t label, bool bottom) {
  uint32_t e = label << 12 | (bottom ? 0x100 : 0) | 64;
  return Bytes{static_cast<uint8_t>(e >> 24), static_cast<uint8_t>(e >> 16), static_cast<uint8_t>(e >> 8),
               static_cast<uint8_t>(e)};
}

Bytes IPv4(uint8_t proto, uint16_t frag = 0, uint8_t ihl = 5) {
  Bytes b(ihl < 5 ? 20 : ihl * 4, 0);
  b[0] = 0x40 | ihl;
  b[6] = frag >> 8;
  b[7] = frag & 0xff;
  b[8] = 64;
  b[9] = proto;
  uint8_t src[4] = {10, 0, 0, 1}, dst[4] = {10, 0, 0, 2};
  memcpy(&b[12], src, 4);
  memcpy(&b[16], dst, 4);
  return b;
}

Bytes IPv6(uint8_t next) {
  Bytes b(40, 0);
  b[0] = 0x60;
  b[6] = next;
  b[7] = 64;
  b[8] = 0x20;  // 2001:db8::1 -> 2001:db8::2
  b[9] = 0x01;
  b[10] = 0x0d;
  b[11] = 0xb8;
  b[23] = 1;
  b[24] = 0x20;
  b[25] = 0x01;
  b[26] = 0x0d;
  b[27] = 0xb8;
  b[39] = 2;
  return b;
}

// Ext returns an IPv6 extension header of 8*(len+1) bytes.
Bytes Ext(uint8_t next, uint8_t len = 0) {
  Bytes b(8 * (len + 1), 0);
  b[0] = next;
  b[1] = len;
  return b;
}

Bytes Frag(uint8_t next, uint16_t offset_units) {
  Bytes b(8, 0);
  b[0] = next;
  uint16_t v = offset_units << 3;
  b[2] = v >> 8;
  b[3] = v & 0xff;
  return b;
}

Bytes Tcp(uint16_t sport, uint16_t dport) {
  Bytes b(20, 0);
  b[0] = sport >> 8;
  b[1] = sport & 0xff;
  b[2] = dport >> 8;
  b[3] = dport & 0xff;
  b[12] = 0x50;
  return b;
}

Bytes Udp(uint16_t sport, uint16_t dport) {
  Bytes b(8, 0);
  b[0] = sport >> 8;
  b[1] = sport & 0xff;
  b[2] = dport >> 8;
  b[3] = dport & 0xff;
  return b;
}

Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) Append(&out, p);
  return out;
}

struct Want {
  int proto = -1;  // -1: none
  std::vector<uint16_t> ports;
  std::vector<uint16_t> vlans;
  std::vector<uint32_t> mpls;
  int ip_version = 0;
};

void Expect(const Bytes& frame, int offloaded, const Want& w, const char* name) {
  PacketKeys k;
  ParsePacket(frame.data(), frame.size(), offloaded, &k);
  SCOPED_TRACE(name);
  EXPECT_EQ(k.has_proto ? k.proto : -1, w.proto);
  EXPECT_EQ(std::vector<uint16_t>(k.ports, k.ports + k.num_ports), w.ports);
  EXPECT_EQ(std::vector<uint16_t>(k.vlans, k.vlans + k.num_vlans), w.vlans);
  EXPECT_EQ(std::vector<uint32_t>(k.mpls, k.mpls + k.num_mpls), w.mpls);
  EXPECT_EQ(k.ip_version, w.ip_version);
}

struct Case {
  const char* name;
  Bytes frame;
  int offloaded;
  Want want;
};

std::vector<Case> Cases() {
  const Bytes pw_inner = Cat({Eth(0x0800), IPv4(6), Tcp(1, 2)});
  return {
      {"ipv4 tcp", Cat({Eth(0x0800), IPv4(6), Tcp(80, 1234)}), -1, {6, {80, 1234}, {}, {}, 4}},
      {"ipv4 udp", Cat({Eth(0x0800), IPv4(17), Udp(53, 53)}), -1, {17, {53, 53}, {}, {}, 4}},
      {"ipv4 icmp", Cat({Eth(0x0800), IPv4(1), Bytes(8, 0)}), -1, {1, {}, {}, {}, 4}},
      {"ipv4 options", Cat({Eth(0x0800), IPv4(6, 0, 6), Tcp(22, 2222)}), -1, {6, {22, 2222}, {}, {}, 4}},
      {"ipv4 ihl below 5", Cat({Eth(0x0800), IPv4(6, 0, 3), Tcp(22, 2222)}), -1, {-1, {}, {}, {}, 0}},
      {"ipv4 first fragment", Cat({Eth(0x0800), IPv4(17, 0x2000), Udp(5, 6)}), -1, {17, {5, 6}, {}, {}, 4}},
      {"ipv4 later fragment", Cat({Eth(0x0800), IPv4(17, 0x0010), Udp(5, 6)}), -1, {17, {}, {}, {}, 4}},
      {"ipv6 tcp", Cat({Eth(0x86dd), IPv6(6), Tcp(443, 5555)}), -1, {6, {443, 5555}, {}, {}, 6}},
      {"ipv6 hop-by-hop", Cat({Eth(0x86dd), IPv6(0), Ext(58), Bytes(8, 0)}), -1, {58, {}, {}, {}, 6}},
      {"ipv6 routing+dstopts", Cat({Eth(0x86dd), IPv6(43), Ext(60, 1), Ext(17), Udp(7, 8)}), -1, {17, {7, 8}, {}, {}, 6}},
      {"ipv6 mobility", Cat({Eth(0x86dd), IPv6(135), Ext(59)}), -1, {59, {}, {}, {}, 6}},
      {"ipv6 first fragment", Cat({Eth(0x86dd), IPv6(44), Frag(17, 0), Udp(9, 10)}), -1, {17, {9, 10}, {}, {}, 6}},
      {"ipv6 later fragment", Cat({Eth(0x86dd), IPv6(44), Frag(17, 100), Udp(9, 10)}), -1, {44, {}, {}, {}, 6}},
      {"ipv6 ext length past frame", Cat({Eth(0x86dd), IPv6(0), Bytes{6, 200, 0, 0, 0, 0, 0, 0}, Tcp(1, 2)}), -1,
       {-1, {}, {}, {}, 6}},
      {"vlan", Cat({Eth(0x8100), Tag(100, 0x0800), IPv4(6), Tcp(1, 2)}), -1, {6, {1, 2}, {100}, {}, 4}},
      {"qinq 88a8", Cat({Eth(0x88a8), Tag(10, 0x8100), Tag(20, 0x0800), IPv4(17), Udp(3, 4)}), -1,
       {17, {3, 4}, {10, 20}, {}, 4}},
      {"triple 9100", Cat({Eth(0x9100), Tag(1, 0x9200), Tag(2, 0x8100), Tag(0xf003, 0x86dd), IPv6(6), Tcp(5, 6)}), -1,
       {6, {5, 6}, {1, 2, 3}, {}, 6}},
      {"offloaded vlan + in-packet tag", Cat({Eth(0x8100), Tag(10, 0x0800), IPv4(6), Tcp(1, 2)}), 118,
       {6, {1, 2}, {118, 10}, {}, 4}},
      {"offloaded vlan only", Cat({Eth(0x0800), IPv4(1)}), 7, {1, {}, {7}, {}, 4}},
      {"mpls", Cat({Eth(0x8847), Mpls(29, true), IPv4(6), Tcp(1, 2)}), -1, {6, {1, 2}, {}, {29}, 4}},
      {"mpls stack v6", Cat({Eth(0x8848), Mpls(1, false), Mpls(2, false), Mpls(0xfffff, true), IPv6(17), Udp(1, 2)}),
       -1, {17, {1, 2}, {}, {1, 2, 0xfffff}, 6}},
      {"mpls in vlan", Cat({Eth(0x8100), Tag(5, 0x8847), Mpls(16, true), IPv4(17), Udp(1, 2)}), -1,
       {17, {1, 2}, {5}, {16}, 4}},
      {"mpls pseudowire", Cat({Eth(0x8847), Mpls(77, true), Bytes(4, 0), pw_inner}), -1, {6, {1, 2}, {}, {77}, 4}},
      {"mpls pseudowire vlan", Cat({Eth(0x8847), Mpls(77, true), Bytes(4, 0), Eth(0x8100), Tag(9, 0x0800), IPv4(6), Tcp(1, 2)}),
       -1, {6, {1, 2}, {9}, {77}, 4}},
      {"mpls unknown nibble", Cat({Eth(0x8847), Mpls(3, true), Bytes{0x90, 0, 0, 0}}), -1, {-1, {}, {}, {3}, 0}},
      {"arp", Cat({Eth(0x0806), Bytes(28, 0)}), -1, {-1, {}, {}, {}, 0}},
      {"ipv4 ethertype, version 6", Cat({Eth(0x0800), IPv6(6)}), -1, {-1, {}, {}, {}, 0}},
      {"gre not entered", Cat({Eth(0x0800), IPv4(47), Bytes{0, 0, 0x08, 0}, IPv4(6), Tcp(1, 2)}), -1, {47, {}, {}, {}, 4}},
  };
}

TEST(PacketParser, Encapsulations) {
  for (const Case& c : Cases()) Expect(c.frame, c.offloaded, c.want, c.name);
}

TEST(PacketParser, Addresses) {
  PacketKeys k;
  Bytes f = Cat({Eth(0x0800), IPv4(6), Tcp(1, 2)});
  ParsePacket(f.data(), f.size(), -1, &k);
  EXPECT_EQ(0, memcmp(k.src_ip, "\x0a\x00\x00\x01", 4));
  EXPECT_EQ(0, memcmp(k.dst_ip, "\x0a\x00\x00\x02", 4));
  f = Cat({Eth(0x86dd), IPv6(17), Udp(1, 2)});
  ParsePacket(f.data(), f.size(), -1, &k);
  EXPECT_EQ(k.src_ip[15], 1);
  EXPECT_EQ(k.dst_ip[15], 2);
  EXPECT_EQ(k.src_ip[0], 0x20);
}

// Every encapsulation cut at every length: never a read past the end
// (ASan checks that in the sanitizer build), and keys only from headers
// that fit: a cut frame yields a subset of the whole frame's keys, and the
// transport ports appear only once the whole TCP/UDP header is there.
TEST(PacketParser, TruncatedAtEveryByte) {
  for (const Case& c : Cases()) {
    PacketKeys full;
    ParsePacket(c.frame.data(), c.frame.size(), c.offloaded, &full);
    for (size_t n = 0; n <= c.frame.size(); ++n) {
      // A heap copy of exactly n bytes, so ASan sees any overread.
      std::vector<uint8_t> cut(c.frame.begin(), c.frame.begin() + n);
      PacketKeys k;
      ParsePacket(cut.data(), cut.size(), c.offloaded, &k);
      SCOPED_TRACE(std::string(c.name) + " cut at " + std::to_string(n));
      EXPECT_LE(k.num_vlans, full.num_vlans);
      EXPECT_LE(k.num_mpls, full.num_mpls);
      if (k.ip_version != 0) {
        EXPECT_EQ(k.ip_version, full.ip_version);
      }
      if (k.num_ports) {
        ASSERT_EQ(full.num_ports, 2);
        EXPECT_EQ(k.ports[0], full.ports[0]);
        EXPECT_EQ(k.ports[1], full.ports[1]);
      }
      if (n < c.frame.size() && full.num_ports && c.frame.size() - n > 0) {
        // Cutting into the transport header removes the ports.
        size_t tail = c.frame.size() - n;
        bool cut_in_transport = tail <= 20 && full.proto == 6;
        if (cut_in_transport) {
          EXPECT_EQ(k.num_ports, 0);
        }
      }
    }
  }
}

TEST(PacketParser, DeepStacksAreBounded) {
  Bytes f = Eth(0x8100);
  for (int i = 0; i < 100; ++i) Append(&f, Tag(i, 0x8100));
  Append(&f, Tag(100, 0x0800));
  Append(&f, IPv4(6));
  Append(&f, Tcp(1, 2));
  PacketKeys k;
  ParsePacket(f.data(), f.size(), -1, &k);
  EXPECT_EQ(k.num_vlans, PacketKeys::kMaxVlans);
  EXPECT_EQ(k.proto, 6);  // still parsed through
  Bytes m = Eth(0x8847);
  for (int i = 0; i < 100; ++i) Append(&m, Mpls(i, false));
  ParsePacket(m.data(), m.size(), -1, &k);
  EXPECT_EQ(k.num_mpls, PacketKeys::kMaxMpls);
  // Pseudo-wires nested without end stop at a fixed depth.
  Bytes pw = Eth(0x8847);
  for (int i = 0; i < 50; ++i) {
    Append(&pw, Mpls(i, true));
    Append(&pw, Bytes(4, 0));
    Append(&pw, Eth(0x8847));
  }
  ParsePacket(pw.data(), pw.size(), -1, &k);
  EXPECT_LE(k.num_mpls, 8);
}

}  // namespace
}  // namespace steno
