// Packet parser: frame bytes -> the index keys of one packet (SPEC §4).
//
// Follows Ethernet, any number of VLAN tags (0x8100, 0x88a8, 0x9100, 0x9200,
// 0x9300), MPLS label stacks (0x8847, 0x8848; after the bottom label the
// first nibble picks IPv4 (4), IPv6 (6), or 0 = pseudo-wire control word and
// another Ethernet header), IPv4, IPv6 with hop-by-hop, routing, fragment,
// destination-options and mobility headers, then TCP/UDP ports. Tunnels are
// not entered. A header that does not fit in the captured bytes yields no key
// from it or from anything after it. Ports only for the first fragment.
//
// The parser never reads outside [data, data+len). Thread-compatible, no state.
#ifndef STENOTYPE_INDEX_PACKET_PARSER_H_
#define STENOTYPE_INDEX_PACKET_PARSER_H_

#include <stddef.h>
#include <stdint.h>

namespace steno {

// PacketKeys holds every key one packet contributes. Stacks deeper than the
// array sizes are parsed through but only the first entries are kept.
struct PacketKeys {
  static constexpr int kMaxVlans = 16;
  static constexpr int kMaxMpls = 32;

  bool has_proto = false;
  uint8_t proto = 0;
  int num_ports = 0;          // 0 or 2 (source, destination; may be equal)
  uint16_t ports[2] = {0, 0};
  int num_vlans = 0;
  uint16_t vlans[kMaxVlans];  // 12-bit ids, outermost first
  int num_mpls = 0;
  uint32_t mpls[kMaxMpls];    // 20-bit labels, top first
  int ip_version = 0;         // 0 (none), 4 or 6
  uint8_t src_ip[16];         // IPv4 uses the first 4 bytes, network order
  uint8_t dst_ip[16];

  void Clear() { has_proto = false; num_ports = num_vlans = num_mpls = ip_version = 0; }
};

// ParsePacket fills *keys (cleared first) from one captured frame.
// offloaded_vlan is the VLAN id the kernel stripped (from tp_vlan_tci when
// TP_STATUS_VLAN_VALID is set), or -1; it counts as the outermost tag.
void ParsePacket(const uint8_t* data, size_t len, int offloaded_vlan, PacketKeys* keys);

}  // namespace steno

#endif  // STENOTYPE_INDEX_PACKET_PARSER_H_
