// Index: the in-memory index of one packet file, built by the capture thread
// while it walks each block and handed whole to the index-writer thread at
// rotation.
//
// Add() is on the capture hot path, so it only appends a position to a
// per-key vector. Positions arrive in ascending order, so each vector stays
// sorted, and a duplicate (a packet whose source and destination port are
// equal) is dropped by comparing with the last element. Small key spaces
// (protocol, port, VLAN) are arrays indexed by value; addresses and MPLS
// labels go through open-addressing hash tables. Keys are sorted once, when
// the file is written.
//
// Not thread-safe: one owner at a time (capture thread, then index thread).
#ifndef STENOTYPE_INDEX_INDEX_H_
#define STENOTYPE_INDEX_INDEX_H_

#include <stdint.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "index/packet_parser.h"

namespace leveldb {
class WritableFile;
}

namespace steno {

// Key type bytes of the index file (SPEC §4).
enum KeyType : uint8_t {
  kKeyVersion = 0x00,
  kKeyProto = 0x01,
  kKeyPort = 0x02,
  kKeyVlan = 0x03,
  kKeyIPv4 = 0x04,
  kKeyMpls = 0x05,
  kKeyIPv6 = 0x06,
};

// The key of the pair-identity record: the packet file's first block
// header (48 bytes), so that a reader can tell that an index and a packet
// file of the same name belong together. It sorts after the version
// record and before every packet key, so readers that only look keys up
// (the reference's included) never meet it.
inline constexpr char kPacketFileKey[] = {0x00, 0x01};

// The key of the live-range record, only in the delta tables of a file
// still being written (write/index_thread.h): the byte offsets [from, to)
// of the packet file's blocks whose positions the table lists, as two
// big-endian u64. Like the pair-identity record it sorts before every
// packet key, and visible index files never hold it.
inline constexpr char kLiveRangeKey[] = {0x00, 0x02};

struct LiveRange {
  uint64_t from = 0, to = 0;
};

using Positions = std::vector<uint32_t>;

// KeyTable maps fixed-size keys (N bytes) to position lists with open
// addressing and linear probing. Slots hold an index into lists_, so growth
// moves 4-byte slots, not vectors.
template <size_t N>
class KeyTable {
 public:
  using Key = std::array<uint8_t, N>;
  KeyTable();
  // Returns the list for key, creating it empty.
  Positions* Find(const uint8_t* key);
  // ForEachList calls fn on every list, for bulk edits.
  template <typename Fn>
  void ForEachList(Fn fn) {
    for (Positions& l : lists_) fn(&l);
  }
  size_t size() const { return keys_.size(); }
  const Key& key(size_t i) const { return keys_[i]; }
  const Positions& list(size_t i) const { return lists_[i]; }

 private:
  void Grow();
  static uint64_t Hash(const uint8_t* key);
  std::vector<uint32_t> slots_;  // 0 = empty, else 1 + index into keys_/lists_
  std::vector<Key> keys_;
  std::vector<Positions> lists_;
};

class Index {
 public:
  Index();
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  // REQUIRES: position >= every position added before.
  void Add(const PacketKeys& keys, uint32_t position);

  uint64_t packets() const { return packets_; }

  // DropFrom removes every position >= position: the packets of blocks
  // that could not be written must not be found by queries.
  void DropFrom(uint32_t position);

  // Absorb moves later's positions onto the end of this index's lists and
  // takes its first block header when this one has none: the index of a
  // file is the concatenation of the indexes of its runs of blocks.
  // REQUIRES: every position in later is greater than every position here.
  void Absorb(const Index& later);

  // SetFirstBlockHeader records the header of the block written at offset
  // 0 (header: kBlockHeaderSize bytes) for the pair-identity record.
  void SetFirstBlockHeader(const uint8_t* header);
  // Empty when no first block was recorded (or its write failed).
  const std::string& first_block_header() const { return first_block_header_; }

  // An entry of the index in key order: the full key as written to the file
  // (type byte + big-endian value) and its ascending positions.
  struct Entry {
    std::string key;
    const Positions* positions;
  };
  // SortedEntries lists every key with at least one position in bytewise
  // key order. The pointers stay valid while the Index lives unchanged.
  std::vector<Entry> SortedEntries() const;

 private:
  std::vector<Positions> proto_;  // 256
  std::vector<Positions> port_;   // 65536
  std::vector<Positions> vlan_;   // 4096
  KeyTable<4> ipv4_;
  KeyTable<4> mpls_;
  KeyTable<16> ipv6_;
  uint64_t packets_ = 0;
  std::string first_block_header_;
};

// WriteIndexTable writes index as a LevelDB table into file, syncs and
// closes it (the caller renames it into place): the version record first,
// then every key in order, values as concatenated big-endian u32
// positions. live, when given, is written as the live-range record (a
// delta table). path names the file in errors.
Status WriteIndexTable(const Index& index, leveldb::WritableFile* file, const std::string& path,
                       const LiveRange* live = nullptr);

// WriteIndexFile is WriteIndexTable into path, created or truncated, mode
// 0640 (base/file.h).
Status WriteIndexFile(const Index& index, const std::string& path);

}  // namespace steno

#endif  // STENOTYPE_INDEX_INDEX_H_
