// The packet-file block format: one TPACKET_V3 ring block exactly as the
// kernel filled it (host byte order, little-endian on x86).
//
//  block (block_size bytes)
//  +0   tpacket_block_desc (48 bytes)
//         u32 version (=2, TPACKET_V3)   u32 offset_to_priv (=48)
//         u32 block_status               u32 num_pkts
//         u32 offset_to_first_pkt        u32 blk_len (bytes used)
//         u64 seq_num
//         u32 ts_first_pkt.sec  u32 ts_first_pkt.nsec
//         u32 ts_last_pkt.sec   u32 ts_last_pkt.nsec
//  +offset_to_first_pkt: packet chain, each packet:
//  +0   tpacket3_hdr (48 bytes)
//         u32 tp_next_offset (0 on the last packet)  u32 tp_sec  u32 tp_nsec
//         u32 tp_snaplen  u32 tp_len  u32 tp_status  u16 tp_mac  u16 tp_net
//         u32 tp_rxhash  u32 tp_vlan_tci  u16 tp_vlan_tpid  u16 pad  u8 pad[8]
//  +48  struct sockaddr_ll (20 bytes, informational)
//  +tp_mac  the frame: tp_snaplen bytes (tp_len on the wire)
//
// A packet's position in a file is block_index * block_size + offset of its
// tpacket3_hdr within the block. Nothing read from a block is trusted: the
// iterator checks every offset and length against the block size.
#ifndef STENOTYPE_FORMAT_BLOCK_H_
#define STENOTYPE_FORMAT_BLOCK_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <string>

namespace steno {

constexpr size_t kBlockHeaderSize = 48;
constexpr size_t kPacketHeaderSize = 48;   // sizeof(struct tpacket3_hdr)
constexpr size_t kSockaddrLLSize = 20;     // sizeof(struct sockaddr_ll)
constexpr size_t kPacketAlign = 16;        // TPACKET_ALIGNMENT
constexpr uint32_t kTPacketV3 = 2;         // TPACKET_V3 as the kernel writes it

// tp_status / block_status bits (<linux/if_packet.h>).
constexpr uint32_t kStatusUser = 0x1;
constexpr uint32_t kStatusBlockTimeout = 0x20;
constexpr uint32_t kStatusVlanValid = 0x10;
constexpr uint32_t kStatusVlanTpidValid = 0x40;

inline uint16_t LoadLE16(const uint8_t* p) { uint16_t v; memcpy(&v, p, 2); return v; }
inline uint32_t LoadLE32(const uint8_t* p) { uint32_t v; memcpy(&v, p, 4); return v; }
inline uint64_t LoadLE64(const uint8_t* p) { uint64_t v; memcpy(&v, p, 8); return v; }
inline void StoreLE16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }
inline void StoreLE32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
inline void StoreLE64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }

inline size_t AlignPacket(size_t n) { return (n + kPacketAlign - 1) & ~(kPacketAlign - 1); }

// The fields of a block header a reader needs.
struct BlockHeader {
  uint32_t version;
  uint32_t status;
  uint32_t num_pkts;
  uint32_t offset_to_first_pkt;
  uint32_t blk_len;
  uint64_t seq_num;
  uint32_t first_sec, first_nsec, last_sec, last_nsec;
};

// One packet of a block, pointing into the block's memory.
struct PacketView {
  uint32_t offset;       // of its tpacket3_hdr from the block start
  uint32_t sec, nsec;    // capture time
  uint32_t snaplen;      // bytes captured (data has this many)
  uint32_t wire_len;     // original length on the wire
  uint32_t status;       // tp_status
  uint16_t vlan_tci;     // valid if status & kStatusVlanValid
  uint16_t vlan_tpid;    // valid if status & kStatusVlanTpidValid (else 0x8100)
  const uint8_t* data;   // the frame as captured (tag stripped if offloaded)

  bool vlan_stripped() const { return status & kStatusVlanValid; }
};

// BlockReader walks the packets of one block with full bounds checks.
// Not thread-safe; the block memory must outlive the reader.
//
//   BlockReader r(mem, block_size);
//   if (!r.header_ok()) ...;  // r.error() says why
//   PacketView p;
//   while (r.Next(&p)) { ... }
//   if (!r.error().empty()) ...;  // chain broke: the rest of the block is skipped
class BlockReader {
 public:
  BlockReader(const uint8_t* block, size_t block_size);

  bool header_ok() const { return header_ok_; }
  const BlockHeader& header() const { return header_; }
  // Next fills *p with the next packet; false at the end or on a bad header.
  bool Next(PacketView* p);
  // Empty unless the block or a packet header was inconsistent.
  const std::string& error() const { return error_; }

 private:
  const uint8_t* block_;
  size_t size_;
  BlockHeader header_{};
  bool header_ok_ = false;
  uint32_t next_offset_ = 0;
  uint32_t seen_ = 0;
  std::string error_;
};

}  // namespace steno

#endif  // STENOTYPE_FORMAT_BLOCK_H_
