// UringFile: the io_uring engine of PacketFile (--io_engine=uring).
//
// One ring per PacketFile, set up once like the libaio context (rotation
// must not pay for a teardown). Each Write is one submission; completions
// are read from the shared completion queue without a system call when
// Reap need not wait.
//
// The ring is restricted before it is enabled: it accepts only write and
// no-op requests and no registrations. The seccomp sandbox cannot see what
// a ring does (requests are not system calls), so without the restriction
// an open ring would be a way around it (an openat or a connect by ring).
#include <errno.h>
#include <liburing.h>

#include <vector>

#include "base/direct_file.h"
#include "base/logging.h"

namespace steno {
namespace {

// kCancelled tags the no-op that stands in for a write whose submission
// failed (see Write); user tags are the BlockWriter's sequence numbers,
// which never reach it.
constexpr uint64_t kCancelled = UINT64_MAX;

class UringFile : public DirectFile {
 public:
  UringFile() = default;
  ~UringFile() override {
    if (Status s = Close(); !s.ok()) LOG_ERROR << s.ToString();
    if (ready_) io_uring_queue_exit(&ring_);
  }

  // Init sets up the ring for max_inflight writes: the completion queue
  // (twice the submission queue) can then never overflow.
  Status Init(int max_inflight) {
    struct io_uring_params p = {};
    // Task work (posting completions) runs at the capture thread's next
    // system call, which comes within a poll interval, instead of
    // interrupting it; one thread submits.
    p.flags = IORING_SETUP_R_DISABLED | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
              IORING_SETUP_SINGLE_ISSUER;
    if (int r = io_uring_queue_init_params(static_cast<unsigned>(max_inflight), &ring_, &p); r < 0)
      return Status::FromErrno(-r, "io_uring_setup", "(" + std::to_string(max_inflight) + " entries)");
    ready_ = true;
    struct io_uring_restriction res[3] = {};
    res[0].opcode = IORING_RESTRICTION_SQE_OP;
    res[0].sqe_op = IORING_OP_WRITE;
    res[1].opcode = IORING_RESTRICTION_SQE_OP;
    res[1].sqe_op = IORING_OP_NOP;
    res[2].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
    res[2].sqe_flags = 0;
    // Debian 12's liburing 2.3 declares io_uring_register_restrictions and
    // io_uring_enable_rings but does not export them: the generic call.
    const unsigned fd = static_cast<unsigned>(ring_.ring_fd);
    if (int r = io_uring_register(fd, IORING_REGISTER_RESTRICTIONS, res, 3); r < 0)
      return Status::FromErrno(-r, "io_uring_register(RESTRICTIONS)", "");
    if (int r = io_uring_register(fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0); r < 0)
      return Status::FromErrno(-r, "io_uring_register(ENABLE_RINGS)", "");
    cqes_.resize(static_cast<size_t>(max_inflight));
    return Status::OK();
  }

  Status Write(const uint8_t* buf, size_t n, uint64_t offset, uint64_t tag) override {
    CHECK(tag != kCancelled) << "tag " << tag << " is reserved";
    struct io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    // Every earlier request was submitted, so a full queue means more
    // writes in flight than the ring was made for.
    if (sqe == nullptr) return Status::FromErrno(EAGAIN, "io_uring_get_sqe", path());
    io_uring_prep_write(sqe, fd(), buf, static_cast<unsigned>(n), offset);
    io_uring_sqe_set_data64(sqe, tag);
    int r;
    do {
      r = io_uring_submit(&ring_);
    } while (r == -EINTR);
    if (r == 1) {
      ++inflight_;
      return Status::OK();
    }
    // The kernel took nothing, but the request stays queued and would go
    // with the next submission, writing a buffer the caller has been told
    // is free: turn it into a no-op (no buffer, no descriptor, so the file
    // may close before it runs) that Reap drops.
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, kCancelled);
    return Status::FromErrno(r < 0 ? -r : EAGAIN, "io_uring_enter", path());
  }

  Status Reap(int min, int max, std::vector<Completion>* out) override {
    max = std::min(max, static_cast<int>(cqes_.size()));
    int got = 0;
    for (;;) {
      unsigned n = io_uring_peek_batch_cqe(&ring_, cqes_.data(), static_cast<unsigned>(max - got));
      for (unsigned i = 0; i < n; ++i) {
        uint64_t tag = io_uring_cqe_get_data64(cqes_[i]);
        if (tag == kCancelled) continue;
        out->push_back({tag, static_cast<long>(cqes_[i]->res)});
        --inflight_;
        ++got;
      }
      io_uring_cq_advance(&ring_, n);
      if (got >= min || got >= max) return Status::OK();
      // Wait for what is missing (a cancelled no-op may be among them:
      // then the loop waits again).
      struct io_uring_cqe* cqe;
      int r;
      do {
        r = io_uring_wait_cqe_nr(&ring_, &cqe, static_cast<unsigned>(min - got));
      } while (r == -EINTR);
      if (r < 0) return Status::FromErrno(-r, "io_uring_enter(GETEVENTS)", path());
    }
  }

 protected:
  size_t in_flight() const override { return inflight_; }

 private:
  struct io_uring ring_ = {};
  bool ready_ = false;  // ring_ set up, so queue_exit is due
  size_t inflight_ = 0;
  std::vector<struct io_uring_cqe*> cqes_;
};

}  // namespace

Status NewUringFile(int max_inflight, std::unique_ptr<PacketFile>* out) {
  auto f = std::make_unique<UringFile>();
  RETURN_IF_ERROR(f->Init(max_inflight));
  *out = std::move(f);
  return Status::OK();
}

}  // namespace steno
