#include "format/block_builder.h"

#include <string.h>

#include "format/block.h"

namespace steno {

BlockBuilder::BlockBuilder(uint8_t* block, size_t size, uint64_t seq_num)
    : block_(block), size_(size), seq_(seq_num) {}

bool BlockBuilder::Add(const uint8_t* data, uint32_t caplen, uint32_t wire_len, uint32_t sec, uint32_t nsec) {
  if (caplen > MaxFrame()) caplen = static_cast<uint32_t>(MaxFrame());
  size_t need = AlignPacket(kMacOffset + caplen);
  if (next_ + kMacOffset + caplen > size_) return false;
  uint8_t* h = block_ + next_;
  memset(h, 0, kMacOffset);
  StoreLE32(h + 4, sec);
  StoreLE32(h + 8, nsec);
  StoreLE32(h + 12, caplen);
  StoreLE32(h + 16, wire_len < caplen ? caplen : wire_len);
  StoreLE32(h + 20, kStatusUser);
  StoreLE16(h + 24, kMacOffset);
  StoreLE16(h + 26, kNetOffset);
  // struct sockaddr_ll, as the kernel fills it for an Ethernet frame.
  uint8_t* sll = h + kPacketHeaderSize;
  StoreLE16(sll, 17);  // AF_PACKET
  if (caplen >= 14) memcpy(sll + 2, data + 12, 2);  // sll_protocol: the ethertype, network order
  StoreLE16(sll + 8, 1);  // ARPHRD_ETHER
  sll[11] = 6;            // sll_halen
  if (caplen >= 12) memcpy(sll + 12, data + 6, 6);  // source address
  memcpy(h + kMacOffset, data, caplen);
  if (num_pkts_ > 0) {
    StoreLE32(block_ + last_, static_cast<uint32_t>(next_ - last_));
  } else {
    first_sec_ = sec;
    first_nsec_ = nsec;
  }
  last_sec_ = sec;
  last_nsec_ = nsec;
  last_ = next_;
  next_ += need;
  ++num_pkts_;
  return true;
}

void BlockBuilder::Finish() {
  StoreLE32(block_ + 0, kTPacketV3);
  StoreLE32(block_ + 4, 48);
  StoreLE32(block_ + 8, kStatusUser);
  StoreLE32(block_ + 12, num_pkts_);
  StoreLE32(block_ + 16, 48);
  StoreLE32(block_ + 20, static_cast<uint32_t>(next_ > size_ ? size_ : next_));
  StoreLE64(block_ + 24, seq_);
  StoreLE32(block_ + 32, first_sec_);
  StoreLE32(block_ + 36, first_nsec_);
  StoreLE32(block_ + 40, last_sec_);
  StoreLE32(block_ + 44, last_nsec_);
}

}  // namespace steno
