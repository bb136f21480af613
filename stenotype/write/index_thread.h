// IndexThread writes indexes off the capture thread.
//
// Finished files: for each (Index, name) it writes IDX/.name, syncs it and
// renames it to IDX/name. It is handed an index only after the partner
// packet file was renamed, so an index never becomes visible before its
// packets (SPEC §2).
//
// Live files (--live_index_ms): while a packet file is still being written
// as PKT/.N, the capture thread hands over the index of each run of blocks
// whose writes have completed (a piece). The thread syncs the packet
// file's data, writes the piece as a delta table IDX/.N.d<seq> (written
// as IDX/.N.d<seq>.tmp, then renamed) holding a live-range record, the
// byte range [from, to) of the blocks it covers, and absorbs the piece
// into the file's whole index. Every 16 deltas or so it writes that whole
// index as one more delta, from 0, and removes the deltas it replaces, so
// a reader never has more than a few dozen to open. Deltas are hidden
// files: the reference's reader and the startup cleanup see them as
// leftovers of an unfinished write, and the thread removes them as soon as
// the full index is in place (or the packet file was given up).
//
// When an index cannot be written (index disk full, a name taken by
// someone else) the packet file stays visible as PKT/name with no IDX/name
// and no IDX/.name: one ERROR line names it, and `stenodump reindex`
// rebuilds its index from the packets.
//
// Thread-safe: the Push methods may be called from any thread, in the
// order of the file's blocks; Stop drains the queue.
#ifndef STENOTYPE_WRITE_INDEX_THREAD_H_
#define STENOTYPE_WRITE_INDEX_THREAD_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/file.h"
#include "index/index.h"

namespace steno {

class IndexThread {
 public:
  // nice_level is applied to the thread (setpriority) when non-zero.
  IndexThread(std::string index_dir, int nice_level, FileSystem* fs = PosixFileSystem());
  ~IndexThread();  // Stop()s.

  // Push queues the last piece of the index of packet_file (the visible
  // path, for messages), to be written with the pieces before it as
  // IDX/name. drop_from, when given, cuts the positions at and after it
  // (the file was cut after a failed write).
  void Push(std::unique_ptr<Index> index, const std::string& name, const std::string& packet_file,
            uint64_t drop_from = UINT64_MAX);

  // PushPiece queues the index of the blocks [range.from, range.to) of
  // the hidden packet file packet_file (PKT/.live_name), whose writes have
  // all completed. With publish it is also written as a delta table.
  void PushPiece(std::unique_ptr<Index> piece, const std::string& live_name, const std::string& packet_file,
                 LiveRange range, bool publish);

  // Abandon drops the pieces of live_name and its deltas: the packet file
  // was removed unindexed.
  void Abandon(const std::string& live_name);

  // Stop writes everything queued, then joins the thread.
  void Stop();

  uint64_t written() const { return written_.load(); }
  uint64_t failed() const { return failed_.load(); }
  uint64_t deltas() const { return deltas_.load(); }
  // heartbeat advances whenever the thread is idle or finishes a file; the
  // watchdog compares it over time.
  uint64_t heartbeat() const { return heartbeat_.load(); }
  const std::string& dir() const { return dir_; }

 private:
  enum class Kind { kFinish, kPiece, kAbandon };
  struct Job {
    Kind kind = Kind::kFinish;
    std::unique_ptr<Index> index;
    std::string name, packet_file;
    uint64_t drop_from = UINT64_MAX;
    LiveRange range;
    bool publish = false;
  };
  // The file whose pieces have come so far.
  struct Live {
    std::string name;
    std::unique_ptr<Index> index;  // the pieces absorbed
    std::vector<std::string> deltas;  // paths written, oldest first
    int seq = 0;
    uint64_t chain_to = 0;        // the end of the range the deltas cover
    int since_whole = 0;          // deltas since the last whole one
    uint64_t whole_packets = 0;   // packets in the last whole one
    bool warned = false;          // a delta failed and was logged
  };
  void Enqueue(Job job);
  void Run();
  void Finish(Job* job);
  void Piece(Job* job);
  // Absorb adds piece to live_'s index.
  void Absorb(std::unique_ptr<Index> piece);
  void DeltaFailed(const Status& s, const std::string& packet_file);
  // WriteDelta writes index as the next delta of live_ with range.
  Status WriteDelta(const Index& index, LiveRange range);
  // DropLive removes live_'s deltas and forgets it.
  void DropLive();
  Status Write(const Index& index, const std::string& name);

  const std::string dir_;
  const int nice_;
  FileSystem* const fs_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  Live live_;  // used by the thread only
  std::atomic<uint64_t> written_{0}, failed_{0}, deltas_{0}, heartbeat_{0};
  std::thread thread_;
};

}  // namespace steno

#endif  // STENOTYPE_WRITE_INDEX_THREAD_H_
