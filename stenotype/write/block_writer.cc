#include "write/block_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/logging.h"

namespace steno {

BlockWriter::BlockWriter(WriterOptions options, IndexThread* index_thread)
    : opts_(std::move(options)), index_thread_(index_thread) {}

BlockWriter::~BlockWriter() {
  if (ctx_ != nullptr) io_destroy(ctx_);
  if (fd_ >= 0) close(fd_);
}

Status BlockWriter::Start() {
  int r = io_setup(opts_.max_inflight, &ctx_);
  if (r < 0) return Status::FromErrno(-r, "io_setup", opts_.packet_dir);
  return Status::OK();
}

bool BlockWriter::NeedsRotation(int64_t now_usec) const {
  if (name_.empty()) return true;
  if (offset_ > 0 && offset_ + opts_.block_size > opts_.file_size) return true;
  return now_usec - opened_usec_ >= opts_.file_age_usec;
}

Status BlockWriter::Rotate(int64_t name_usec) {
  Status finished = FinishFile();
  if (!finished.ok()) LOG_ERROR << finished.ToString();
  int64_t name = std::max(name_usec, last_name_ + 1);
  std::string n = std::to_string(name);
  std::string hidden = opts_.packet_dir + "/." + n;
  int fd = open(hidden.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0640);
  if (fd < 0) return Status::FromErrno(errno, "open", hidden);
  if (opts_.preallocate > 0) {
    if (int err = posix_fallocate(fd, 0, static_cast<off_t>(opts_.preallocate)); err != 0)
      LOG_ERROR << Status::FromErrno(err, "fallocate", hidden).ToString();
  }
  fd_ = fd;
  name_ = n;
  last_name_ = name;
  opened_usec_ = name_usec;
  offset_ = 0;
  bad_offset_ = UINT64_MAX;
  index_ = opts_.index ? std::make_unique<Index>() : nullptr;
  stats_.files++;
  LOG_V1 << "opened " << hidden;
  return Status::OK();
}

void BlockWriter::Submit(const uint8_t* block, std::function<void()> done) {
  if (fd_ < 0 || bad_offset_ != UINT64_MAX) {
    // No file, or this file already failed: drop the block, keep capturing.
    stats_.blocks_dropped++;
    done();
    return;
  }
  while (pending_.size() >= static_cast<size_t>(opts_.max_inflight)) ReapAtLeast(1);
  Pending p;
  p.cb = std::make_unique<struct iocb>();
  p.done = std::move(done);
  p.offset = offset_;
  // libaio's prep takes a non-const buffer for both directions.
  io_prep_pwrite(p.cb.get(), fd_, const_cast<uint8_t*>(block), opts_.block_size, static_cast<long long>(offset_));
  struct iocb* cbs[1] = {p.cb.get()};
  int r = io_submit(ctx_, 1, cbs);
  if (r != 1) {
    Status s = Status::FromErrno(r < 0 ? -r : EAGAIN, "io_submit", opts_.packet_dir + "/." + name_);
    LOG_ERROR << s.ToString();
    bad_offset_ = std::min(bad_offset_, offset_);
    stats_.blocks_dropped++;
    p.done();
    offset_ += opts_.block_size;
    return;
  }
  offset_ += opts_.block_size;
  pending_.push_back(std::move(p));
}

void BlockWriter::Reap(bool wait) {
  if (pending_.empty()) return;
  ReapAtLeast(wait ? 1 : 0);
}

void BlockWriter::ReapAtLeast(long min) {
  struct io_event events[64];
  struct timespec zero = {0, 0};
  int n = io_getevents(ctx_, min, 64, events, min > 0 ? nullptr : &zero);
  if (n < 0) {
    if (n != -EINTR) LOG_ERROR << Status::FromErrno(-n, "io_getevents", opts_.packet_dir).ToString();
    return;
  }
  for (int i = 0; i < n; ++i) {
    auto it = std::find_if(pending_.begin(), pending_.end(),
                           [&](const Pending& p) { return p.cb.get() == events[i].obj; });
    CHECK(it != pending_.end()) << "completion for an unknown write";
    long res = static_cast<long>(events[i].res);
    if (res != static_cast<long>(opts_.block_size)) {
      int err = res < 0 ? static_cast<int>(-res) : ENOSPC;  // a short write means the disk is full
      LOG_ERROR << Status::FromErrno(err, "write block at offset " + std::to_string(it->offset) + " of",
                                     opts_.packet_dir + "/." + name_)
                       .ToString();
      bad_offset_ = std::min(bad_offset_, it->offset);
      stats_.blocks_dropped++;
    } else {
      stats_.blocks_written++;
      stats_.bytes_written += opts_.block_size;
    }
    it->done();
    pending_.erase(it);
  }
}

Status BlockWriter::FinishFile() {
  if (name_.empty()) return Status::OK();
  while (!pending_.empty()) ReapAtLeast(1);
  std::string hidden = opts_.packet_dir + "/." + name_;
  std::string visible = opts_.packet_dir + "/" + name_;
  std::string name = name_;
  name_.clear();
  uint64_t size = std::min(offset_, bad_offset_);
  Status s;
  // Cut preallocated space and anything at or after a failed write.
  if ((opts_.preallocate > 0 || bad_offset_ != UINT64_MAX) && ftruncate(fd_, static_cast<off_t>(size)) != 0)
    s = Status::FromErrno(errno, "ftruncate", hidden);
  if (s.ok() && fdatasync(fd_) != 0) s = Status::FromErrno(errno, "fdatasync", hidden);
  if (close(fd_) != 0 && s.ok()) s = Status::FromErrno(errno, "close", hidden);
  fd_ = -1;
  if (s.ok() && rename(hidden.c_str(), visible.c_str()) != 0) s = Status::FromErrno(errno, "rename", hidden);
  if (!s.ok()) {
    // The packets are not durable: never index them.
    unlink(hidden.c_str());
    index_.reset();
    return s;
  }
  LOG_V1 << "finished " << visible << " (" << size << " bytes)";
  if (index_ != nullptr && index_thread_ != nullptr) {
    if (bad_offset_ != UINT64_MAX) index_->DropFrom(static_cast<uint32_t>(std::min<uint64_t>(size, UINT32_MAX)));
    index_thread_->Push(std::move(index_), name);
  }
  index_.reset();
  return Status::OK();
}

Status BlockWriter::Close() {
  Status s = FinishFile();
  while (!pending_.empty()) ReapAtLeast(1);
  return s;
}

Status ProbeDirectIO(const std::string& dir, size_t block_size) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return Status::FromErrno(errno, "stat", dir);
  if (!S_ISDIR(st.st_mode)) return Status::Invalid(dir + " is not a directory");
  std::string probe = dir + "/.stenotype_probe";
  int fd = open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EINVAL)
      return Status::Unsupported("the file system of " + dir + " does not support O_DIRECT, which stenotype needs");
    return Status::FromErrno(errno, "open", probe);
  }
  void* buf = nullptr;
  if (posix_memalign(&buf, 4096, block_size) != 0) {
    close(fd);
    unlink(probe.c_str());
    return Status::IOError("out of memory probing " + dir);
  }
  memset(buf, 0, block_size);
  ssize_t n = pwrite(fd, buf, block_size, 0);
  int err = errno;
  free(buf);
  close(fd);
  unlink(probe.c_str());
  if (n != static_cast<ssize_t>(block_size)) {
    if (n < 0 && err == EINVAL)
      return Status::Unsupported("the file system of " + dir + " does not support O_DIRECT writes of " +
                                 std::to_string(block_size) + " bytes");
    return Status::FromErrno(n < 0 ? err : ENOSPC, "O_DIRECT write probe in", dir);
  }
  return Status::OK();
}

}  // namespace steno
