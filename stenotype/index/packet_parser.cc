#include "index/packet_parser.h"

#include <string.h>

namespace steno {
namespace {

inline uint16_t BE16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t BE32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

constexpr uint16_t kEtherIPv4 = 0x0800;
constexpr uint16_t kEtherIPv6 = 0x86dd;
constexpr uint16_t kEtherMplsUnicast = 0x8847;
constexpr uint16_t kEtherMplsMulticast = 0x8848;

bool IsVlanTpid(uint16_t t) {
  return t == 0x8100 || t == 0x88a8 || t == 0x9100 || t == 0x9200 || t == 0x9300;
}

// Parser walks one frame. Every read goes through Have(), so a header that
// does not fit in the captured bytes stops the walk before it is touched.
class Parser {
 public:
  Parser(const uint8_t* data, size_t len, PacketKeys* keys) : d_(data), len_(len), k_(keys) {}

  void Ethernet(size_t off, int offloaded_vlan);

 private:
  bool Have(size_t off, size_t n) const { return off <= len_ && n <= len_ - off; }
  void AddVlan(uint16_t tci) {
    if (k_->num_vlans < PacketKeys::kMaxVlans) k_->vlans[k_->num_vlans++] = tci & 0x0fff;
  }
  void AfterEthertype(size_t off, uint16_t type, int depth);
  void Mpls(size_t off, int depth);
  void IPv4(size_t off);
  void IPv6(size_t off);
  void Transport(size_t off, uint8_t proto);

  const uint8_t* d_;
  size_t len_;
  PacketKeys* k_;
};

// A pseudo-wire can carry Ethernet that carries MPLS again; bound the
// nesting so hostile input cannot recurse without end.
constexpr int kMaxEthernetDepth = 8;

void Parser::Ethernet(size_t off, int offloaded_vlan) {
  if (offloaded_vlan >= 0) AddVlan(static_cast<uint16_t>(offloaded_vlan));
  if (!Have(off, 14)) return;
  AfterEthertype(off + 14, BE16(d_ + off + 12), 0);
}

void Parser::AfterEthertype(size_t off, uint16_t type, int depth) {
  while (IsVlanTpid(type)) {
    if (!Have(off, 4)) return;
    AddVlan(BE16(d_ + off));
    type = BE16(d_ + off + 2);
    off += 4;
  }
  switch (type) {
    case kEtherIPv4:
      IPv4(off);
      break;
    case kEtherIPv6:
      IPv6(off);
      break;
    case kEtherMplsUnicast:
    case kEtherMplsMulticast:
      Mpls(off, depth);
      break;
    default:
      break;
  }
}

void Parser::Mpls(size_t off, int depth) {
  for (;;) {
    if (!Have(off, 4)) return;
    uint32_t entry = BE32(d_ + off);
    if (k_->num_mpls < PacketKeys::kMaxMpls) k_->mpls[k_->num_mpls++] = entry >> 12;
    off += 4;
    if (entry & 0x100) break;  // bottom of stack
  }
  if (!Have(off, 1)) return;
  switch (d_[off] >> 4) {
    case 4:
      IPv4(off);
      break;
    case 6:
      IPv6(off);
      break;
    case 0:  // pseudo-wire control word, then a whole Ethernet frame
      if (depth + 1 >= kMaxEthernetDepth || !Have(off + 4, 14)) return;
      AfterEthertype(off + 4 + 14, BE16(d_ + off + 4 + 12), depth + 1);
      break;
    default:
      break;
  }
}

void Parser::IPv4(size_t off) {
  if (!Have(off, 20)) return;
  const uint8_t* ip = d_ + off;
  size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20 || !Have(off, ihl)) return;
  k_->ip_version = 4;
  memcpy(k_->src_ip, ip + 12, 4);
  memcpy(k_->dst_ip, ip + 16, 4);
  k_->has_proto = true;
  k_->proto = ip[9];
  // Ports exist only in the first fragment (offset zero).
  if ((BE16(ip + 6) & 0x1fff) != 0) return;
  Transport(off + ihl, ip[9]);
}

void Parser::IPv6(size_t off) {
  if (!Have(off, 40)) return;
  const uint8_t* ip = d_ + off;
  if ((ip[0] >> 4) != 6) return;
  k_->ip_version = 6;
  memcpy(k_->src_ip, ip + 8, 16);
  memcpy(k_->dst_ip, ip + 24, 16);
  uint8_t next = ip[6];
  off += 40;
  // Skip extension headers. A header that is cut short leaves no protocol:
  // nothing after it can be trusted to be what the chain says.
  for (int hops = 0; hops < 64; ++hops) {
    switch (next) {
      case 0:    // hop-by-hop
      case 43:   // routing
      case 60:   // destination options
      case 135:  // mobility
        {
          if (!Have(off, 8)) return;
          size_t ext_len = (static_cast<size_t>(d_[off + 1]) + 1) * 8;
          if (!Have(off, ext_len)) return;
          next = d_[off];
          off += ext_len;
        }
        continue;
      case 44:  // fragment
        if (!Have(off, 8)) return;
        if ((BE16(d_ + off + 2) & 0xfff8) != 0) {
          // A non-first fragment: its protocol is the fragment header's.
          k_->has_proto = true;
          k_->proto = 44;
          return;
        }
        next = d_[off];
        off += 8;
        continue;
      default:
        break;
    }
    break;
  }
  k_->has_proto = true;
  k_->proto = next;
  Transport(off, next);
}

void Parser::Transport(size_t off, uint8_t proto) {
  size_t need;
  if (proto == 6) {
    need = 20;
  } else if (proto == 17) {
    need = 8;
  } else {
    return;
  }
  if (!Have(off, need)) return;
  k_->num_ports = 2;
  k_->ports[0] = BE16(d_ + off);
  k_->ports[1] = BE16(d_ + off + 2);
}

}  // namespace

void ParsePacket(const uint8_t* data, size_t len, int offloaded_vlan, PacketKeys* keys) {
  keys->Clear();
  Parser(data, len, keys).Ethernet(0, offloaded_vlan);
}

}  // namespace steno
