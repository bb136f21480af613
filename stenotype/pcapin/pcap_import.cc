#include "pcapin/pcap_import.h"

#include <pcap/pcap.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <vector>

#include "base/logging.h"
#include "format/block_builder.h"

namespace steno {
namespace {

struct FreeDeleter {
  void operator()(void* p) const { free(p); }
};
using AlignedBlock = std::unique_ptr<uint8_t, FreeDeleter>;

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};

// BlockPool hands out O_DIRECT-aligned blocks; a block comes back when its
// write completed. The kernel reads a block until its write completes and
// the completion gives it back here, so the pool drains the writer before
// it frees its blocks, on every way out of the import.
class BlockPool {
 public:
  BlockPool(BlockWriter* writer, size_t block_size, int count) : writer_(writer) {
    for (int i = 0; i < count; ++i) {
      void* p = nullptr;
      CHECK(posix_memalign(&p, 4096, block_size) == 0) << "out of memory for import blocks";
      all_.emplace_back(static_cast<uint8_t*>(p));
      free_.push_back(static_cast<uint8_t*>(p));
    }
  }
  uint8_t* Take() {
    if (free_.empty()) return nullptr;
    uint8_t* b = free_.back();
    free_.pop_back();
    return b;
  }
  void Give(uint8_t* b) { free_.push_back(b); }
  ~BlockPool() { writer_->Drain(); }
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

 private:
  BlockWriter* const writer_;
  std::vector<AlignedBlock> all_;
  std::vector<uint8_t*> free_;
};

}  // namespace

Status ImportPcap(InputFile in, const std::string& path, BlockWriter* writer, size_t block_size, int max_inflight,
                  const std::atomic<bool>* stop, ImportStats* stats) {
  char errbuf[PCAP_ERRBUF_SIZE] = {0};
  std::unique_ptr<pcap_t, PcapCloser> pc(
      pcap_fopen_offline_with_tstamp_precision(in.get(), PCAP_TSTAMP_PRECISION_NANO, errbuf));
  if (!pc) return Status::Invalid("reading " + path + ": " + errbuf);
  in.release();  // pcap_close closes it now
  if (int link = pcap_datalink(pc.get()); link != DLT_EN10MB) {
    const char* name = pcap_datalink_val_to_name(link);
    return Status::Invalid(path + ": link type " + (name ? name : std::to_string(link)) +
                           " is not Ethernet; only Ethernet captures can be imported");
  }

  BlockPool pool(writer, block_size, max_inflight + 1);
  uint8_t* block = nullptr;
  std::unique_ptr<BlockBuilder> builder;
  uint64_t seq = 0;
  int64_t block_first_usec = 0;

  // Flush hands the block being built to the writer, which rotates first
  // when the file is full or older (in packet time) than the age limit.
  // An import, unlike a live capture, cannot go on without a file: the
  // first failure to open one ends it with that error.
  Status result;
  auto flush = [&]() {
    if (!builder || builder->empty()) return;
    builder->Finish();
    uint8_t* b = block;
    auto release = [&pool, b] { pool.Give(b); };
    if (result.ok()) {
      result = writer->Append(b, block_first_usec, release);
      stats->blocks++;
    } else {
      release();
    }
    builder.reset();
    block = nullptr;
  };

  struct pcap_pkthdr* hdr;
  const u_char* data;
  for (;;) {
    if ((stop != nullptr && stop->load()) || !result.ok()) break;
    int r = pcap_next_ex(pc.get(), &hdr, &data);
    if (r == PCAP_ERROR_BREAK) break;  // end of file
    if (r != 1) {
      result = Status::Corruption("reading " + path + " after " + std::to_string(stats->packets) +
                                  " packets: " + pcap_geterr(pc.get()));
      break;
    }
    uint32_t sec = static_cast<uint32_t>(hdr->ts.tv_sec), nsec = static_cast<uint32_t>(hdr->ts.tv_usec);
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!builder) {
        while ((block = pool.Take()) == nullptr) writer->Reap(true);
        memset(block, 0, block_size);
        builder = std::make_unique<BlockBuilder>(block, block_size, ++seq);
      }
      bool first = builder->empty();
      if (builder->Add(data, hdr->caplen, hdr->len, sec, nsec)) {
        if (first) block_first_usec = static_cast<int64_t>(sec) * 1000000 + nsec / 1000;
        break;
      }
      flush();  // the block is full: start another
    }
    stats->packets++;
    stats->bytes += hdr->caplen;
    writer->Reap(false);
  }
  flush();
  return result;
}

}  // namespace steno
