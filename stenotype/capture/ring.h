// Ring: one AF_PACKET socket with a TPACKET_V3 receive ring mapped into
// memory. The kernel fills blocks in ring order; Next() hands them out in
// the same order and Release() gives one back (any order) once its data is
// on disk. Owns the socket and the mapping (RAII).
//
// Not thread-safe: one capture thread per ring.
#ifndef STENOTYPE_CAPTURE_RING_H_
#define STENOTYPE_CAPTURE_RING_H_

#include <linux/filter.h>
#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace steno {

struct RingOptions {
  std::string iface;
  size_t block_size = 1 << 20;
  int blocks = 2048;
  int block_timeout_ms = 10000;
  bool promisc = true;
  bool fanout = false;      // join a fanout group (several threads)
  uint16_t fanout_id = 0;
  uint32_t fanout_type = 0;  // mode | flags, see ParseFanout
  std::vector<struct sock_filter> filter;
};

class Ring {
 public:
  // Use Open; a default-constructed Ring has no socket.
  Ring() = default;
  static Status Open(const RingOptions& opts, std::unique_ptr<Ring>* out);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  enum class Wait {
    kBlock,    // *block is the next filled block
    kTimeout,  // nothing within timeout_ms (or a signal interrupted the wait)
    kError,    // the socket reported an error, now read and cleared: *error
    // The socket polls readable but the next block is still the kernel's:
    // the kernel reports a ring readable while the block before its current
    // one is not back, so while the caller holds that block (its write in
    // flight) every poll returns at once. Wait for a write, not the ring.
    kHeld,
  };
  // Next waits up to timeout_ms for the next filled block. An error such as
  // ENETDOWN (the link went down) is returned once; the kernel reattaches
  // the socket when the link comes back up, so the caller keeps calling
  // Next, which then blocks quietly until packets flow again.
  Wait Next(int timeout_ms, uint8_t** block, Status* error);
  // Detached reports whether the socket no longer belongs to its interface
  // (the interface was deleted): no packets will ever come again.
  bool Detached() const;
  // LastPacketMicros is the capture time of a filled block's last packet.
  static int64_t LastPacketMicros(const uint8_t* block);
  // Release returns a block to the kernel.
  void Release(uint8_t* block);
  // held is how many blocks Next handed out that are not released.
  int held() const { return held_; }

  // Stats adds the kernel's packet and drop counts since the last call
  // (PACKET_STATISTICS resets on read) to the running totals.
  Status UpdateStats();
  uint64_t kernel_packets() const { return kernel_packets_; }
  uint64_t kernel_drops() const { return kernel_drops_; }
  size_t block_size() const { return block_size_; }
  const std::string& iface() const { return iface_; }

 private:
  int fd_ = -1;
  uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  size_t block_size_ = 0;
  int blocks_ = 0;
  int cursor_ = 0;
  int held_ = 0;
  int ifindex_ = 0;
  std::string iface_;
  uint64_t kernel_packets_ = 0, kernel_drops_ = 0;
};

}  // namespace steno

#endif  // STENOTYPE_CAPTURE_RING_H_
