// IndexThread writes finished indexes off the capture thread: for each
// (Index, name) it writes IDX/.name, syncs it and renames it to IDX/name.
// It is handed an index only after the partner packet file was renamed, so
// an index never becomes visible before its packets (SPEC §2).
//
// When an index cannot be written (index disk full, a name taken by
// someone else) the packet file stays visible as PKT/name with no IDX/name
// and no IDX/.name: one ERROR line names it, and `stenodump reindex`
// rebuilds its index from the packets.
//
// Thread-safe: Push may be called from any thread; Stop drains the queue.
#ifndef STENOTYPE_WRITE_INDEX_THREAD_H_
#define STENOTYPE_WRITE_INDEX_THREAD_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/file.h"
#include "index/index.h"

namespace steno {

class IndexThread {
 public:
  // nice_level is applied to the thread (setpriority) when non-zero.
  IndexThread(std::string index_dir, int nice_level, FileSystem* fs = PosixFileSystem());
  ~IndexThread();  // Stop()s.

  // Push queues the index of packet_file (for messages) to be written as
  // IDX/name.
  void Push(std::unique_ptr<Index> index, const std::string& name, const std::string& packet_file);
  // Stop writes everything queued, then joins the thread.
  void Stop();

  uint64_t written() const { return written_.load(); }
  uint64_t failed() const { return failed_.load(); }
  // heartbeat advances whenever the thread is idle or finishes a file; the
  // watchdog compares it over time.
  uint64_t heartbeat() const { return heartbeat_.load(); }
  const std::string& dir() const { return dir_; }

 private:
  struct Job {
    std::unique_ptr<Index> index;
    std::string name, packet_file;
  };
  void Run();
  Status Write(const Job& job);

  const std::string dir_;
  const int nice_;
  FileSystem* const fs_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::atomic<uint64_t> written_{0}, failed_{0}, heartbeat_{0};
  std::thread thread_;
};

}  // namespace steno

#endif  // STENOTYPE_WRITE_INDEX_THREAD_H_
