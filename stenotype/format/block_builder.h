// BlockBuilder lays frames into a block exactly as the kernel lays packets
// into a TPACKET_V3 ring block (see format/block.h): the frame at
// tp_mac = 82 after its header, the network header offset 96, a
// sockaddr_ll after the header, each packet aligned to 16 bytes, the last
// packet's tp_next_offset 0. Used by the offline import and by tests.
//
// Not thread-safe. The block memory is owned by the caller.
#ifndef STENOTYPE_FORMAT_BLOCK_BUILDER_H_
#define STENOTYPE_FORMAT_BLOCK_BUILDER_H_

#include <stddef.h>
#include <stdint.h>

namespace steno {

class BlockBuilder {
 public:
  static constexpr uint16_t kMacOffset = 82;  // TPACKET_ALIGN(48 + 20 + 16) - 14
  static constexpr uint16_t kNetOffset = 96;

  // block must hold size bytes; size >= 4096.
  BlockBuilder(uint8_t* block, size_t size, uint64_t seq_num);

  // Add appends a frame captured at sec.nsec with wire length wire_len.
  // Frames too long for an empty block are cut to fit (tp_len keeps the
  // wire length, as the kernel's snaplen cut does). Returns false, adding
  // nothing, when the frame does not fit in what is left of the block.
  bool Add(const uint8_t* data, uint32_t caplen, uint32_t wire_len, uint32_t sec, uint32_t nsec);

  // Finish writes the block header. Unused bytes stay as they were (the
  // caller zeroes the block before building).
  void Finish();

  uint32_t packets() const { return num_pkts_; }
  bool empty() const { return num_pkts_ == 0; }
  // MaxFrame is the largest frame an empty block can hold.
  size_t MaxFrame() const { return size_ - 48 - kMacOffset; }

 private:
  uint8_t* block_;
  size_t size_;
  uint64_t seq_;
  size_t next_ = 48;      // where the next packet header goes
  size_t last_ = 0;       // offset of the last packet header
  uint32_t num_pkts_ = 0;
  uint32_t first_sec_ = 0, first_nsec_ = 0, last_sec_ = 0, last_nsec_ = 0;
};

}  // namespace steno

#endif  // STENOTYPE_FORMAT_BLOCK_BUILDER_H_
