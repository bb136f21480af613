// Index: the in-memory index of one packet file, built by the capture thread
// while it walks each block and handed whole to the index-writer thread at
// rotation.
//
// Add() is on the capture hot path (target: several million packets/s/core),
// so it only appends a position to a per-key vector; positions arrive in
// ascending order, so each vector stays sorted and duplicates (src == dst)
// are dropped by comparing with the last element. Keys are sorted only once,
// when the file is written.
//
// Not thread-safe: one owner at a time (capture thread, then index thread).
#ifndef STENOTYPE_INDEX_INDEX_H_
#define STENOTYPE_INDEX_INDEX_H_

#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "index/packet_parser.h"

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

class Index {
 public:
  Index();
  ~Index();
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  // REQUIRES: position >= every position added before.
  void Add(const PacketKeys& keys, uint32_t position);

  uint64_t packets() const { return packets_; }

  // ForEachKey calls fn(key, positions) for every key in bytewise key order,
  // where key is the full index key (type byte + value) and positions are
  // ascending and unique. This is what the writer turns into a table.
  template <typename Fn>
  void ForEachKey(Fn fn) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint64_t packets_ = 0;
  friend class IndexWriterAccess;
 public:
  // Sorted snapshot used by ForEachKey and the writer; computed on demand.
  struct Entry {
    std::string key;
    const std::vector<uint32_t>* positions;
  };
  std::vector<Entry> SortedEntries() const;
};

template <typename Fn>
void Index::ForEachKey(Fn fn) const {
  for (const Entry& e : SortedEntries()) fn(e.key, *e.positions);
}

// WriteIndexFile writes index as a LevelDB table at path (the caller renames
// it into place): version record first, then every key in order, values as
// concatenated big-endian u32 positions.
Status WriteIndexFile(const Index& index, const std::string& path);

}  // namespace steno

#endif  // STENOTYPE_INDEX_INDEX_H_
