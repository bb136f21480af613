#include "app/capture_thread.h"

#include <time.h>

#include <algorithm>

#include "base/logging.h"
#include "index/block_index.h"

namespace steno {

int64_t NowMicros() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

void TakeFromCount(std::atomic<int64_t>* remaining, uint64_t packets) {
  int64_t left = remaining->load();
  while (left > 0 && !remaining->compare_exchange_weak(left, left - std::min(left, static_cast<int64_t>(packets)))) {
  }
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
  int64_t error_since = 0;  // the socket reported an error and no block came since
  Status gone;
  for (;;) {
    bool stopping = stop->load(std::memory_order_relaxed) || remaining->load(std::memory_order_relaxed) == 0;
    if (stopping && drain_until == 0) drain_until = NowMicros() + (block_timeout_ms_ + 500) * 1000ll;
    if (drain_until != 0 && NowMicros() > drain_until) break;
    counters_.heartbeat++;
    uint8_t* block = nullptr;
    Status err;
    int wait_ms = drain_until != 0 ? 100 : poll_ms_;
    int64_t before = NowMicros(), due = writer_->LiveDeadlineUsec(before);
    if (due != INT64_MAX) wait_ms = static_cast<int>(std::clamp<int64_t>((due - before) / 1000 + 1, 1, wait_ms));
    Ring::Wait w = ring->Next(wait_ms, &block, &err);
    int64_t now = NowMicros();
    if (w == Ring::Wait::kError) {
      counters_.socket_errors++;
      // One line per outage, not per error.
      if (error_since == 0) LOG_ERROR << "thread " << id_ << ": " << err.ToString() << "; capture resumes when packets flow again";
      if (error_since == 0) error_since = now;
    }
    // The link goes down before a deleted interface is unregistered, so the
    // error can come while the socket still looks attached: look again on
    // every wakeup until packets flow.
    if (error_since != 0 && w != Ring::Wait::kBlock && gone.ok() && ring->Detached()) {
      gone = Status::NotFound("thread " + std::to_string(id_) + ": capture interface " + ring->iface() + " was removed");
      LOG_ERROR << gone.ToString() << "; finishing files and stopping";
      if (drain_until == 0) drain_until = now + (block_timeout_ms_ + 500) * 1000ll;
    } else if (w == Ring::Wait::kBlock && error_since != 0 && Ring::LastPacketMicros(block) > error_since) {
      // (The block the kernel was filling when the link went down retires
      // later with only older packets.)
      LOG_INFO << "thread " << id_ << ": capture resumed after " << (now - error_since) / 1000000 << " s";
      error_since = 0;
    }
    if (block != nullptr) {
      std::string parse_err;
      BlockCounts n;
      Status s = writer_->Append(block, now, [ring, block] { ring->Release(block); }, &n, &parse_err);
      if (!s.ok()) LOG_ERROR << "thread " << id_ << ": " << s.ToString();
      if (!parse_err.empty()) LOG_ERROR << "thread " << id_ << ": malformed ring block: " << parse_err;
      counters_.packets += n.packets;
      counters_.bytes += n.bytes;
      counters_.blocks++;
      TakeFromCount(remaining, n.packets);
      counters_.blocks_dropped = writer_->stats().blocks_dropped;
    } else if (Status s = writer_->RotateIfDue(now); !s.ok()) {
      LOG_ERROR << "thread " << id_ << ": " << s.ToString();
    }
    counters_.files = writer_->stats().files;
    // A held block keeps the socket readable: waiting for its write (which
    // releases it) instead of polling again saves a spin of poll calls as
    // long as the write takes. With io_uring that spin cost 0.27 system
    // CPU s per million packets at top speed (tests/bench/capture.sh);
    // libaio on ext4 finishes appending writes inside io_submit, so it
    // rarely gets here.
    writer_->Reap(w == Ring::Wait::kHeld);
  }
  Status s = writer_->Close();
  counters_.files = writer_->stats().files;
  counters_.blocks_dropped = writer_->stats().blocks_dropped;
  index_thread_->Stop();
  counters_.ended = true;
  return s.ok() ? gone : s;
}

}  // namespace steno
