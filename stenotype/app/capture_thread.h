// CaptureThread runs one fanout member: it takes filled blocks from its
// Ring, indexes their packets, submits them to its BlockWriter (the ring
// block itself is the write buffer) and rotates files by size and age.
// Its IndexThread writes the finished indexes.
//
// Counters are atomics read by the stats and watchdog thread.
#ifndef STENOTYPE_APP_CAPTURE_THREAD_H_
#define STENOTYPE_APP_CAPTURE_THREAD_H_

#include <atomic>
#include <memory>

#include "capture/ring.h"
#include "write/block_writer.h"
#include "write/index_thread.h"

namespace steno {

struct ThreadCounters {
  std::atomic<uint64_t> packets{0}, bytes{0}, blocks{0}, files{0};
  std::atomic<uint64_t> blocks_dropped{0};  // write errors (e.g. ENOSPC)
  std::atomic<uint64_t> socket_errors{0};   // e.g. ENETDOWN: the link went down
  std::atomic<uint64_t> heartbeat{0};
  std::atomic<bool> ended{false};  // Run returned (stopped, or its interface is gone)
};

class CaptureThread {
 public:
  CaptureThread(int id, std::unique_ptr<Ring> ring, std::unique_ptr<BlockWriter> writer,
                std::unique_ptr<IndexThread> index_thread, int poll_ms, int block_timeout_ms);

  // Run captures until *stop is set or *remaining (shared by all threads;
  // negative = forever) reaches zero, then finishes its files. A link that
  // goes down is waited for; an interface that is deleted ends the run
  // with an error (only a new socket, which needs privileges stenotype no
  // longer has, could capture on its successor).
  Status Run(const std::atomic<bool>* stop, std::atomic<int64_t>* remaining);

  int id() const { return id_; }
  Ring* ring() { return ring_.get(); }
  IndexThread* index_thread() { return index_thread_.get(); }
  const ThreadCounters& counters() const { return counters_; }

 private:
  const int id_;
  std::unique_ptr<Ring> ring_;
  std::unique_ptr<BlockWriter> writer_;
  std::unique_ptr<IndexThread> index_thread_;
  const int poll_ms_;
  const int block_timeout_ms_;
  ThreadCounters counters_;
};

// TakeFromCount subtracts packets from the --count budget shared by all
// threads, never below zero, in one atomic step: a load followed by a
// separate subtraction let two threads both take the last packets, and a
// budget pushed below zero never reads as "done".
void TakeFromCount(std::atomic<int64_t>* remaining, uint64_t packets);

// NowMicros is CLOCK_REALTIME in microseconds: file names must follow wall
// time (a monotonic clock drifts from it and breaks time queries).
int64_t NowMicros();

}  // namespace steno

#endif  // STENOTYPE_APP_CAPTURE_THREAD_H_
