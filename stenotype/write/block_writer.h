// BlockWriter writes one thread's packet files: whole blocks with O_DIRECT
// asynchronous writes, rotation by size and age, the hidden name while a
// file is written and the rename once its data is on disk, then the
// hand-off of the file's Index to the IndexThread.
//
//   PKT/.1700000000000000  --all writes done, fdatasync, rename-->  PKT/1700000000000000
//   Index of that file  --IndexThread-->  IDX/.1700000000000000  -->  IDX/1700000000000000
//
// The write path is one call, Append: rotate if due, index the block's
// packets at their file positions, submit the write. The caller owns each
// block's memory until the block's release callback runs (for a ring
// block: the block goes back to the kernel only then), and must keep it,
// and whatever release uses, alive until then: Drain() or Close() before
// freeing them.
//
// Write errors are values, not aborts. Each file has a sticky status: the
// first failed write marks it; later blocks of that file are dropped
// (counted, released), and at rotation the file is cut before the failed
// block and the index loses the positions beyond the cut. A file whose
// cut, sync or rename fails is removed, unindexed. A full disk thus costs
// packets, never the capture process.
//
// Sparse files: a retired block at most half full (a slow link, a block
// timeout) is written only up to its used bytes rounded up to the O_DIRECT
// alignment (WriteLength), at its usual offset; the rest of the block stays
// a hole, which reads as zeros. FinishFile cuts (ftruncate) every file to
// its block-size multiple, so readers see the same length and positions as
// with whole-block writes, and punches the holes back into preallocated
// space. Fuller blocks are written whole, as the fast path always was.
//
// Live index (live_index_usec > 0): the file's index is built in pieces.
// At most every live_index_usec the positions of the blocks appended since
// the last piece are cut off as a piece; once every write below the
// piece's end has completed, the piece goes to the IndexThread, which
// publishes it as a delta table of the hidden file and assembles the full
// index from the pieces. Pieces of a file that had a failed write are
// never published. So a query can see a packet a second or two after its
// block retired, and never one whose block is not on disk.
//
// Names are never reused: a file is named after its first packet's time
// (or the clock), moved on by 1 µs while that name, hidden or visible, is
// taken in the packet or the index directory; creation is O_EXCL and the
// final rename never replaces (base/file.h).
//
// Not thread-safe: used by one capture thread.
#ifndef STENOTYPE_WRITE_BLOCK_WRITER_H_
#define STENOTYPE_WRITE_BLOCK_WRITER_H_

#include <stdint.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/file.h"
#include "base/status.h"
#include "index/block_index.h"
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
  int64_t live_index_usec = 0;    // --live_index_ms; 0: index at rotation only
  FileSystem* fs = PosixFileSystem();
};

struct WriterStats {
  uint64_t blocks_written = 0;
  uint64_t blocks_dropped = 0;  // write errors, or no file open
  uint64_t bytes_written = 0;   // what reached the disk: a sparse block counts its written part
  uint64_t files = 0;
};

class BlockWriter {
 public:
  // index_thread may be null when options.index is false.
  BlockWriter(WriterOptions options, IndexThread* index_thread);
  ~BlockWriter();  // REQUIRES: no write in flight (Close() or Drain() was called).
  BlockWriter(const BlockWriter&) = delete;
  BlockWriter& operator=(const BlockWriter&) = delete;

  // Start sets up asynchronous I/O (io_setup: fails when the system's
  // aio-max-nr is reached). REQUIRES: called once, before Append.
  Status Start();

  // Append writes block (block_size bytes of TPACKET_V3 block, aligned for
  // O_DIRECT) at time now_usec: RotateIfDue(now_usec), then its packets
  // are indexed and counted into *counts (when given; a malformed packet
  // chain is described in *parse_error) and its write is submitted.
  // release runs once the block is no longer needed: written, failed, or
  // dropped because no file is open. Waits for a completion when
  // max_inflight writes are in flight. Returns the error of opening a new
  // file; the block is then dropped.
  Status Append(const uint8_t* block, int64_t now_usec, std::function<void()> release,
                BlockCounts* counts = nullptr, std::string* parse_error = nullptr);

  // RotateIfDue starts a new file, named now_usec (moved on to stay strictly
  // increasing and free), when none is open, the next block would pass the
  // size limit, or the file is older than the age limit: a live capture
  // calls it when idle, so files close on time without traffic. Errors
  // finishing the old file are logged; the error opening the new one is
  // returned, and the writer then drops blocks until a rotation works.
  Status RotateIfDue(int64_t now_usec);

  // Reap handles finished writes; with wait, blocks until at least one.
  void Reap(bool wait);

  // Drain waits for every write in flight and runs their release callbacks.
  void Drain();

  // Close finishes the current file and waits for every write.
  Status Close();

  const WriterStats& stats() const { return stats_; }

  // LiveDeadlineUsec is when the live index next needs a call (Reap for
  // a piece waiting for its writes, RotateIfDue to cut one), or INT64_MAX:
  // an idle capture thread waits no longer than that.
  int64_t LiveDeadlineUsec(int64_t now_usec) const;

 private:
  struct Pending {
    uint64_t tag;
    uint64_t offset;
    size_t length;  // bytes submitted
    std::function<void()> release;
  };
  // A block written short: the hole after its written part, punched back
  // into a preallocated file at FinishFile.
  struct Hole {
    uint64_t offset;
    uint64_t length;
  };
  // A piece of the live index waiting for the writes below its end.
  struct Piece {
    std::unique_ptr<Index> index;
    LiveRange range;
  };
  bool NeedsRotation(int64_t now_usec) const;
  bool live() const { return opts_.live_index_usec > 0 && index_thread_ != nullptr && opts_.index; }
  // CutPieceIfDue ends the current piece when live_index_usec has passed.
  void CutPieceIfDue(int64_t now_usec);
  // HandOffPieces gives the index thread the pieces whose writes are all
  // done; with all, every piece (the file is finished).
  void HandOffPieces(bool all);
  Status Open(int64_t name_usec);
  void Submit(const uint8_t* block, size_t length, std::function<void()> release);
  void ReapAtLeast(int min);
  void Fail(const Status& s, uint64_t offset);
  Status FinishFile();
  // PunchHoles gives the holes below size back to the file system.
  void PunchHoles(uint64_t size);
  // NameTaken reports whether name exists, hidden or visible, in the packet
  // or the index directory; IndexNameTaken looks in the index directory.
  bool NameTaken(int64_t name) const;
  bool IndexNameTaken(int64_t name) const;
  // Publish renames the finished hidden file to the first free name from
  // *name on, updating *name.
  Status Publish(const std::string& hidden, int64_t* name);

  const WriterOptions opts_;
  IndexThread* const index_thread_;
  std::unique_ptr<PacketFile> file_;  // set up at the first Open
  bool open_ = false;     // a file is open
  std::string hidden_;    // current file's path
  int64_t name_ = 0;      // current file's name
  int64_t opened_usec_ = 0;
  int64_t last_name_ = 0;
  uint64_t offset_ = 0;   // bytes submitted to the current file
  Status status_;         // sticky: the current file's first write error
  uint64_t bad_offset_ = UINT64_MAX;  // offset of that failed write
  std::unique_ptr<Index> index_;  // the file's, or in live mode the current piece's
  std::deque<Piece> pieces_;      // cut, waiting for their writes
  uint64_t piece_from_ = 0;       // offset of the current piece's first block
  int64_t piece_usec_ = 0;        // when the current piece began
  std::deque<Pending> pending_;  // in submission order
  std::vector<Hole> holes_;      // the current file's, in offset order, with preallocation
  uint64_t next_tag_ = 0;
  WriterStats stats_;
};

// kDirectIOAlign is the O_DIRECT unit every write's offset, length and
// buffer keep (the page size; --blocksize_kb is a multiple of it).
constexpr size_t kDirectIOAlign = 4096;

// WriteLength is how many bytes of a block of block_size, whose packets end
// at used bytes from its start, to write: block_size when the block is more
// than half full (the saving would be small, and full blocks at a high rate
// keep the one write they always had), else used rounded up to
// kDirectIOAlign. REQUIRES: block_size is a multiple of kDirectIOAlign.
size_t WriteLength(size_t used, size_t block_size);

// ProbeDirectIO checks that dir accepts O_DIRECT writes of block_size bytes
// (tmpfs on older kernels, some network file systems do not).
Status ProbeDirectIO(const std::string& dir, size_t block_size);

}  // namespace steno

#endif  // STENOTYPE_WRITE_BLOCK_WRITER_H_
