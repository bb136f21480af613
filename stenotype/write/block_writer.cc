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
  CHECK(pending_.empty()) << "BlockWriter of " << opts_.packet_dir << " destroyed with writes in flight";
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

bool BlockWriter::NameTaken(int64_t name) const {
  std::string n = std::to_string(name);
  FileSystem* fs = opts_.fs;
  if (fs->Exists(opts_.packet_dir + "/" + n) || fs->Exists(opts_.packet_dir + "/." + n)) return true;
  if (index_thread_ == nullptr) return false;
  const std::string& idx = index_thread_->dir();
  return fs->Exists(idx + "/" + n) || fs->Exists(idx + "/." + n);
}

// kMaxNameTries bounds the search for a free name: a million consecutive
// taken microseconds means something else is wrong.
constexpr int kMaxNameTries = 1 << 20;

Status BlockWriter::Rotate(int64_t name_usec) {
  Status finished = FinishFile();
  if (!finished.ok()) LOG_ERROR << finished.ToString();
  const int64_t wanted = std::max(name_usec, last_name_ + 1);
  int64_t name = wanted;
  int fd = -1;
  std::string hidden;
  for (int tries = 0; fd < 0; ++tries, ++name) {
    if (tries == kMaxNameTries)
      return Status::IOError("no free file name in " + opts_.packet_dir + " from " + std::to_string(wanted));
    if (NameTaken(name)) continue;
    hidden = opts_.packet_dir + "/." + std::to_string(name);
    fd = open(hidden.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, kFileMode);
    if (fd < 0 && errno != EEXIST) return Status::FromErrno(errno, "open", hidden);
  }
  --name;  // the loop moved past the name it took
  if (name != wanted)
    LOG_INFO << "file name " << wanted << " is taken in " << opts_.packet_dir << " or its index directory: writing "
             << hidden << " instead";
  if (opts_.preallocate > 0) {
    if (int err = posix_fallocate(fd, 0, static_cast<off_t>(opts_.preallocate)); err != 0)
      LOG_ERROR << Status::FromErrno(err, "fallocate", hidden).ToString();
  }
  fd_ = fd;
  name_ = std::to_string(name);
  name_usec_ = name;
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

Status BlockWriter::Publish(const std::string& hidden, int64_t* name) {
  for (int tries = 0; tries < kMaxNameTries; ++tries, ++*name) {
    // The name was free when the file was opened; something may have taken
    // it since (a race no check can close): then move on, never replace.
    if (tries > 0 && NameTaken(*name)) continue;
    std::string visible = opts_.packet_dir + "/" + std::to_string(*name);
    Status s = opts_.fs->RenameNoReplace(hidden, visible);
    if (s.code() != Status::kAlreadyExists) {
      if (s.ok() && tries > 0) LOG_INFO << "name taken while writing: " << hidden << " renamed to " << visible;
      last_name_ = std::max(last_name_, *name);
      return s;
    }
  }
  return Status::IOError("no free name to rename " + hidden + " to");
}

void BlockWriter::Drain() {
  while (!pending_.empty()) ReapAtLeast(1);
}

Status BlockWriter::FinishFile() {
  if (name_.empty()) return Status::OK();
  Drain();
  std::string hidden = opts_.packet_dir + "/." + name_;
  int64_t name = name_usec_;
  name_.clear();
  uint64_t size = std::min(offset_, bad_offset_);
  Status s;
  // Cut preallocated space and anything at or after a failed write.
  if ((opts_.preallocate > 0 || bad_offset_ != UINT64_MAX) && ftruncate(fd_, static_cast<off_t>(size)) != 0)
    s = Status::FromErrno(errno, "ftruncate", hidden);
  if (s.ok() && fdatasync(fd_) != 0) s = Status::FromErrno(errno, "fdatasync", hidden);
  if (close(fd_) != 0 && s.ok()) s = Status::FromErrno(errno, "close", hidden);
  fd_ = -1;
  if (s.ok()) s = Publish(hidden, &name);
  if (!s.ok()) {
    // The packets are not durable: never index them.
    if (Status r = opts_.fs->Remove(hidden); !r.ok()) LOG_ERROR << r.ToString();
    index_.reset();
    return s;
  }
  std::string visible = opts_.packet_dir + "/" + std::to_string(name);
  LOG_V1 << "finished " << visible << " (" << size << " bytes)";
  if (index_ != nullptr && index_thread_ != nullptr) {
    if (bad_offset_ != UINT64_MAX) index_->DropFrom(static_cast<uint32_t>(std::min<uint64_t>(size, UINT32_MAX)));
    index_thread_->Push(std::move(index_), std::to_string(name), visible);
  }
  index_.reset();
  return Status::OK();
}

Status BlockWriter::Close() {
  Status s = FinishFile();
  Drain();
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
