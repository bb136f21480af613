#include "index/block_index.h"

#include <algorithm>

#include "format/block.h"
#include "index/packet_parser.h"

namespace steno {

BlockCounts IndexBlock(const uint8_t* block, size_t block_size, uint64_t base, Index* index, std::string* error) {
  BlockReader r(block, block_size);
  PacketView p;
  PacketKeys keys;
  BlockCounts n;
  if (index != nullptr && base == 0 && block_size >= kBlockHeaderSize) index->SetFirstBlockHeader(block);
  while (r.Next(&p)) {
    if (index != nullptr) {
      ParsePacket(p.data, p.snaplen, p.vlan_stripped() ? (p.vlan_tci & 0x0fff) : -1, &keys);
      index->Add(keys, static_cast<uint32_t>(base + p.offset));
    }
    ++n.packets;
    n.bytes += p.snaplen;
    n.end = std::max(n.end, static_cast<uint32_t>(p.data - block) + p.snaplen);
  }
  if (error != nullptr) *error = r.error();
  return n;
}

}  // namespace steno
