#include "format/block.h"

namespace steno {

BlockReader::BlockReader(const uint8_t* block, size_t block_size)
    : block_(block), size_(block_size) {
  if (size_ < kBlockHeaderSize) {
    error_ = "block smaller than its header";
    return;
  }
  header_.version = LoadLE32(block_);
  header_.status = LoadLE32(block_ + 8);
  header_.num_pkts = LoadLE32(block_ + 12);
  header_.offset_to_first_pkt = LoadLE32(block_ + 16);
  header_.blk_len = LoadLE32(block_ + 20);
  header_.seq_num = LoadLE64(block_ + 24);
  header_.first_sec = LoadLE32(block_ + 32);
  header_.first_nsec = LoadLE32(block_ + 36);
  header_.last_sec = LoadLE32(block_ + 40);
  header_.last_nsec = LoadLE32(block_ + 44);
  if (header_.num_pkts == 0) {  // an unused (zero) block ends the file
    header_ok_ = true;
    return;
  }
  if (header_.offset_to_first_pkt < kBlockHeaderSize ||
      header_.offset_to_first_pkt > size_ - kPacketHeaderSize) {
    error_ = "offset_to_first_pkt out of bounds";
    return;
  }
  header_ok_ = true;
  next_offset_ = header_.offset_to_first_pkt;
}

bool BlockReader::Next(PacketView* p) {
  if (!header_ok_ || seen_ >= header_.num_pkts || next_offset_ == 0) return false;
  uint32_t off = next_offset_;
  if (off > size_ || size_ - off < kPacketHeaderSize) {
    error_ = "packet header at offset " + std::to_string(off) + " out of bounds";
    return false;
  }
  const uint8_t* h = block_ + off;
  uint32_t next = LoadLE32(h);
  p->offset = off;
  p->sec = LoadLE32(h + 4);
  p->nsec = LoadLE32(h + 8);
  p->snaplen = LoadLE32(h + 12);
  p->wire_len = LoadLE32(h + 16);
  p->status = LoadLE32(h + 20);
  uint16_t mac = LoadLE16(h + 24);
  p->vlan_tci = static_cast<uint16_t>(LoadLE32(h + 32));
  p->vlan_tpid = LoadLE16(h + 36);
  if (!(p->status & kStatusVlanTpidValid)) p->vlan_tpid = 0x8100;
  uint64_t data_start = static_cast<uint64_t>(off) + mac;
  if (mac < kPacketHeaderSize || data_start + p->snaplen > size_) {
    error_ = "packet data at offset " + std::to_string(off) + " out of bounds";
    return false;
  }
  p->data = block_ + data_start;
  ++seen_;
  if (next == 0) {
    next_offset_ = 0;
  } else {
    uint64_t n = static_cast<uint64_t>(off) + next;
    // The chain only moves forward; a loop or a jump past the end is corrupt.
    if (n >= size_ || next < kPacketHeaderSize) {
      if (seen_ < header_.num_pkts) error_ = "tp_next_offset at offset " + std::to_string(off) + " out of bounds";
      next_offset_ = 0;
    } else {
      next_offset_ = static_cast<uint32_t>(n);
    }
  }
  return true;
}

}  // namespace steno
