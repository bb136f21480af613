#include "app/capture_thread.h"

#include <time.h>

#include "base/logging.h"
#include "index/block_index.h"

namespace steno {

int64_t NowMicros() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

CaptureThread::CaptureThread(int id, std::unique_ptr<Ring> ring, std::unique_ptr<BlockWriter> writer,
                             std::unique_ptr<IndexThread> index_thread, int poll_ms, int block_timeout_ms)
    : id_(id),
      ring_(std::move(ring)),
      writer_(std::move(writer)),
      index_thread_(std::move(index_thread)),
      poll_ms_(poll_ms),
      block_timeout_ms_(block_timeout_ms) {}

Status CaptureThread::Run(const std::atomic<bool>* stop, std::atomic<int64_t>* remaining) {
  RETURN_IF_ERROR(writer_->Start());
  Ring* ring = ring_.get();
  // After a stop request keep taking blocks for one block timeout: the
  // kernel then retires the block it was filling, so a clean stop loses
  // nothing that was already captured.
  int64_t drain_until = 0;
  for (;;) {
    bool stopping = stop->load(std::memory_order_relaxed) || remaining->load(std::memory_order_relaxed) == 0;
    if (stopping && drain_until == 0) drain_until = NowMicros() + (block_timeout_ms_ + 500) * 1000ll;
    if (drain_until != 0 && NowMicros() > drain_until) break;
    counters_.heartbeat++;
    uint8_t* block = ring->Next(drain_until != 0 ? 100 : poll_ms_);
    int64_t now = NowMicros();
    if (block != nullptr) {
      std::string err;
      BlockCounts n;
      Status s = writer_->Append(block, now, [ring, block] { ring->Release(block); }, &n, &err);
      if (!s.ok()) LOG_ERROR << "thread " << id_ << ": " << s.ToString();
      if (!err.empty()) LOG_ERROR << "thread " << id_ << ": malformed ring block: " << err;
      counters_.packets += n.packets;
      counters_.bytes += n.bytes;
      counters_.blocks++;
      int64_t left = remaining->load();
      if (left > 0) remaining->fetch_sub(std::min<int64_t>(n.packets, left));
      counters_.blocks_dropped = writer_->stats().blocks_dropped;
    } else if (Status s = writer_->RotateIfDue(now); !s.ok()) {
      LOG_ERROR << "thread " << id_ << ": " << s.ToString();
    }
    counters_.files = writer_->stats().files;
    writer_->Reap(false);
  }
  Status s = writer_->Close();
  counters_.files = writer_->stats().files;
  counters_.blocks_dropped = writer_->stats().blocks_dropped;
  index_thread_->Stop();
  return s;
}

}  // namespace steno
