// BlockWriter writes one thread's packet files: whole blocks with O_DIRECT
// asynchronous writes (libaio), rotation by size and age, the hidden name
// while a file is written and the rename once its data is on disk, then the
// hand-off of the file's Index to the IndexThread.
//
//   PKT/.1700000000000000  --all writes done, fdatasync, rename-->  PKT/1700000000000000
//   Index of that file  --IndexThread-->  IDX/.1700000000000000  -->  IDX/1700000000000000
//
// The caller owns each block's memory until the block's done callback runs
// (for a ring block: the block goes back to the kernel only then), and must
// keep it, and whatever done uses, alive until then: Drain() or Close()
// before freeing them.
//
// Names are never reused: a file is named after its first packet's time
// (or the clock), moved on by 1 µs while that name, hidden or visible, is
// taken in the packet or the index directory; creation is O_EXCL and the
// final rename never replaces (base/file.h).
//
// Write errors are values, not aborts: the first failed write of a file
// marks it; later blocks of that file are dropped (counted, released), and
// at rotation the file is cut before the failed block and the index loses
// the positions beyond the cut. A full disk thus costs packets, never the
// capture process.
//
// Not thread-safe: used by one capture thread.
#ifndef STENOTYPE_WRITE_BLOCK_WRITER_H_
#define STENOTYPE_WRITE_BLOCK_WRITER_H_

#include <libaio.h>
#include <stdint.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "base/file.h"
#include "base/status.h"
#include "index/index.h"
#include "write/index_thread.h"

namespace steno {

struct WriterOptions {
  std::string packet_dir;
  size_t block_size = 1 << 20;
  int max_inflight = 128;         // --aiops
  uint64_t file_size = 4096ull << 20;  // --filesize_mb in bytes
  int64_t file_age_usec = 60 * 1000000ll;  // --fileage_sec
  uint64_t preallocate = 0;       // --preallocate_file_mb in bytes
  bool index = true;              // false with --no_index
  FileSystem* fs = PosixFileSystem();
};

struct WriterStats {
  uint64_t blocks_written = 0;
  uint64_t blocks_dropped = 0;  // write errors
  uint64_t bytes_written = 0;
  uint64_t files = 0;
};

class BlockWriter {
 public:
  // index_thread may be null when options.index is false.
  BlockWriter(WriterOptions options, IndexThread* index_thread);
  ~BlockWriter();  // REQUIRES: no write in flight (Close() or Drain() was called).
  BlockWriter(const BlockWriter&) = delete;
  BlockWriter& operator=(const BlockWriter&) = delete;

  // Start sets up the aio context. Files are opened lazily by Rotate.
  Status Start();

  // NeedsRotation reports whether the next block must go to a new file:
  // no file is open, the block would pass the size limit, or the file is
  // older than the age limit at time now_usec.
  bool NeedsRotation(int64_t now_usec) const;

  // Rotate finishes the current file (if any) and opens a new one named
  // name_usec (bumped to stay strictly increasing). Errors opening the new
  // file are returned; the writer then has no file and drops blocks.
  Status Rotate(int64_t name_usec);

  // Position the next block will have in the current file: packets of the
  // block are indexed at this + their offset in the block.
  uint64_t next_offset() const { return offset_; }
  Index* index() { return index_.get(); }

  // Submit queues an asynchronous write of block (block_size bytes,
  // aligned for O_DIRECT). done runs once the write finished or failed.
  // Waits for a completion when max_inflight writes are in flight.
  void Submit(const uint8_t* block, std::function<void()> done);

  // Reap handles finished writes; with wait, blocks until at least one.
  void Reap(bool wait);

  // Drain waits for every write in flight and runs their done callbacks.
  void Drain();

  // Close finishes the current file and waits for every write.
  Status Close();

  const WriterStats& stats() const { return stats_; }

 private:
  struct Pending {
    std::unique_ptr<struct iocb> cb;
    std::function<void()> done;
    uint64_t offset;
  };
  Status FinishFile();
  // NameTaken reports whether name exists, hidden or visible, in the packet
  // or the index directory.
  bool NameTaken(int64_t name) const;
  // Publish renames the finished hidden file to the first free name from
  // *name on, updating *name.
  Status Publish(const std::string& hidden, int64_t* name);
  void ReapAtLeast(long min);

  const WriterOptions opts_;
  IndexThread* const index_thread_;
  io_context_t ctx_ = nullptr;
  int fd_ = -1;
  std::string name_;      // current file's name, "" when none
  int64_t name_usec_ = 0;  // name_ as a number
  int64_t opened_usec_ = 0;
  int64_t last_name_ = 0;
  uint64_t offset_ = 0;   // bytes submitted to the current file
  uint64_t bad_offset_ = UINT64_MAX;  // first failed write in this file
  std::unique_ptr<Index> index_;
  std::deque<Pending> pending_;  // in submission order
  WriterStats stats_;
};

// ProbeDirectIO checks that dir accepts O_DIRECT writes of block_size bytes
// (tmpfs on older kernels, some network file systems do not).
Status ProbeDirectIO(const std::string& dir, size_t block_size);

}  // namespace steno

#endif  // STENOTYPE_WRITE_BLOCK_WRITER_H_
