// Offline import (--pcap_in): read a pcap file, lay its packets into
// kernel-identical blocks (format/block_builder.h) and write them through
// the same BlockWriter and IndexThread as a live capture. Files are named
// by the first packet of the file, so time queries over old captures work,
// and rotate by size and by packet-time age.
#ifndef STENOTYPE_PCAPIN_PCAP_IMPORT_H_
#define STENOTYPE_PCAPIN_PCAP_IMPORT_H_

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>

#include "base/status.h"
#include "write/block_writer.h"

namespace steno {

struct ImportStats {
  uint64_t packets = 0;
  uint64_t bytes = 0;  // captured frame bytes
  uint64_t blocks = 0;
};

struct FileCloser {
  void operator()(FILE* f) const { fclose(f); }
};
using InputFile = std::unique_ptr<FILE, FileCloser>;

// ImportPcap imports the pcap open as in (named path, for messages) into
// writer (started, no file open). It stops
// early, still finishing the files, when *stop becomes true. A read error
// in the middle of the pcap is returned after what was read is written.
Status ImportPcap(InputFile in, const std::string& path, BlockWriter* writer, size_t block_size, int max_inflight,
                  const std::atomic<bool>* stop, ImportStats* stats);

}  // namespace steno

#endif  // STENOTYPE_PCAPIN_PCAP_IMPORT_H_
