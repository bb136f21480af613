#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "base/direct_file.h"
#include "base/logging.h"

namespace steno {
namespace {

leveldb::Status ToLevelDB(const Status& s) {
  return s.ok() ? leveldb::Status::OK() : leveldb::Status::IOError(s.message());
}

// FdFile buffers appends (TableBuilder appends many small records) and
// writes them with write(2) in large pieces.
class FdFile : public leveldb::WritableFile {
 public:
  FdFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) { buf_.reserve(kBuffer); }
  ~FdFile() override {
    if (fd_ >= 0) close(fd_);
  }

  leveldb::Status Append(const leveldb::Slice& data) override {
    if (buf_.size() + data.size() > kBuffer) {
      if (Status s = FlushBuffer(); !s.ok()) return ToLevelDB(s);
    }
    if (data.size() >= kBuffer) return ToLevelDB(WriteAll(data.data(), data.size()));
    buf_.insert(buf_.end(), data.data(), data.data() + data.size());
    return leveldb::Status::OK();
  }
  leveldb::Status Flush() override { return ToLevelDB(FlushBuffer()); }
  leveldb::Status Sync() override {
    if (Status s = FlushBuffer(); !s.ok()) return ToLevelDB(s);
    if (fdatasync(fd_) != 0) return ToLevelDB(Status::FromErrno(errno, "fdatasync", path_));
    return leveldb::Status::OK();
  }
  leveldb::Status Close() override {
    Status s = FlushBuffer();
    if (fd_ >= 0 && close(fd_) != 0 && s.ok()) s = Status::FromErrno(errno, "close", path_);
    fd_ = -1;
    return ToLevelDB(s);
  }

 private:
  static constexpr size_t kBuffer = 256 << 10;

  Status FlushBuffer() {
    Status s = WriteAll(buf_.data(), buf_.size());
    buf_.clear();
    return s;
  }
  Status WriteAll(const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return Status::FromErrno(errno, "write", path_);
      if (w == 0) return Status::FromErrno(ENOSPC, "write", path_);
      p += w;
      n -= static_cast<size_t>(w);
    }
    return Status::OK();
  }

  int fd_;
  const std::string path_;
  std::vector<char> buf_;
};

// AioFile writes with libaio on an O_DIRECT descriptor: the kernel reads
// each block straight from the caller's memory (a ring block, for a live
// capture), no copy.
class AioFile : public DirectFile {
 public:
  AioFile(io_context_t ctx, int max_inflight) : ctx_(ctx), events_(static_cast<size_t>(max_inflight)) {}
  ~AioFile() override {
    if (Status s = Close(); !s.ok()) LOG_ERROR << s.ToString();
    if (int r = io_destroy(ctx_); r < 0) LOG_ERROR << Status::FromErrno(-r, "io_destroy for", path()).ToString();
  }

  Status Write(const uint8_t* buf, size_t n, uint64_t offset, uint64_t tag) override {
    auto cb = std::make_unique<struct iocb>();
    // libaio's prep takes a non-const buffer for both directions.
    io_prep_pwrite(cb.get(), fd(), const_cast<uint8_t*>(buf), n, static_cast<long long>(offset));
    cb->data = reinterpret_cast<void*>(static_cast<uintptr_t>(tag));
    struct iocb* cbs[1] = {cb.get()};
    int r = io_submit(ctx_, 1, cbs);
    if (r != 1) return Status::FromErrno(r < 0 ? -r : EAGAIN, "io_submit", path());
    inflight_.push_back(std::move(cb));
    return Status::OK();
  }

  Status Reap(int min, int max, std::vector<Completion>* out) override {
    max = std::min(max, static_cast<int>(events_.size()));
    struct timespec zero = {0, 0};
    int n;
    do {
      n = io_getevents(ctx_, min, max, events_.data(), min > 0 ? nullptr : &zero);
    } while (n == -EINTR);
    if (n < 0) return Status::FromErrno(-n, "io_getevents", path());
    for (int i = 0; i < n; ++i) {
      const struct io_event& e = events_[i];
      out->push_back({static_cast<uint64_t>(reinterpret_cast<uintptr_t>(e.data)), static_cast<long>(e.res)});
      for (size_t j = 0; j < inflight_.size(); ++j) {
        if (inflight_[j].get() == e.obj) {
          inflight_[j] = std::move(inflight_.back());
          inflight_.pop_back();
          break;
        }
      }
    }
    return Status::OK();
  }

 protected:
  size_t in_flight() const override { return inflight_.size(); }

 private:
  const io_context_t ctx_;
  std::vector<std::unique_ptr<struct iocb>> inflight_;  // the kernel holds pointers to these
  std::vector<struct io_event> events_;
};

class Posix : public FileSystem {
 public:
  explicit Posix(IoEngine engine) : engine_(engine) {}

  Status NewPacketFile(int max_inflight, std::unique_ptr<PacketFile>* out) override {
    return engine_ == IoEngine::kUring ? NewUringFile(max_inflight, out) : NewAioFile(max_inflight, out);
  }

  Status NewWritableFile(const std::string& path, bool exclusive,
                         std::unique_ptr<leveldb::WritableFile>* out) override {
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC);
    int fd = open(path.c_str(), flags, kFileMode);
    if (fd < 0) return Status::FromErrno(errno, "open", path);
    *out = std::make_unique<FdFile>(fd, path);
    return Status::OK();
  }

  Status RenameNoReplace(const std::string& from, const std::string& to) override {
    if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return Status::OK();
    if (errno != EINVAL && errno != ENOSYS) return Status::FromErrno(errno, "rename " + from + " to", to);
    // The file system cannot rename without replacing: link fails when to
    // exists, which is the same guarantee.
    if (link(from.c_str(), to.c_str()) != 0) return Status::FromErrno(errno, "link " + from + " to", to);
    if (unlink(from.c_str()) != 0) return Status::FromErrno(errno, "unlink", from);
    return Status::OK();
  }

  bool Exists(const std::string& path) override {
    struct stat st;
    return lstat(path.c_str(), &st) == 0 || errno != ENOENT;
  }

  Status Remove(const std::string& path) override {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return Status::FromErrno(errno, "unlink", path);
    return Status::OK();
  }

 private:
  const IoEngine engine_;
};

}  // namespace

Status NewAioFile(int max_inflight, std::unique_ptr<PacketFile>* out) {
  io_context_t ctx = nullptr;
  if (int r = io_setup(max_inflight, &ctx); r < 0) return Status::FromErrno(-r, "io_setup", "");
  *out = std::make_unique<AioFile>(ctx, max_inflight);
  return Status::OK();
}

const char* IoEngineName(IoEngine engine) { return engine == IoEngine::kUring ? "uring" : "aio"; }

bool ParseIoEngine(const std::string& name, IoEngine* out) {
  for (IoEngine e : {IoEngine::kAio, IoEngine::kUring}) {
    if (name == IoEngineName(e)) {
      *out = e;
      return true;
    }
  }
  return false;
}

FileSystem* PosixFileSystem(IoEngine engine) {
  // Stateless apart from the engine, so sharing them is safe.
  static Posix aio(IoEngine::kAio), uring(IoEngine::kUring);
  return engine == IoEngine::kUring ? &uring : &aio;
}

}  // namespace steno
