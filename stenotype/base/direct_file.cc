#include "base/direct_file.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/logging.h"

namespace steno {

DirectFile::~DirectFile() {
  if (fd_ >= 0 && close(fd_) != 0) LOG_ERROR << Status::FromErrno(errno, "close", path_).ToString();
}

Status DirectFile::Open(const std::string& path, uint64_t preallocate) {
  CHECK(fd_ < 0) << "opening " << path << " while " << path_ << " is open";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, kFileMode);
  if (fd < 0) return Status::FromErrno(errno, "open", path);
  if (preallocate > 0) {
    if (int err = posix_fallocate(fd, 0, static_cast<off_t>(preallocate)); err != 0)
      LOG_ERROR << Status::FromErrno(err, "fallocate", path).ToString();
  }
  fd_ = fd;
  path_ = path;
  return Status::OK();
}

Status DirectFile::Truncate(uint64_t size) {
  if (ftruncate(fd_, static_cast<off_t>(size)) != 0) return Status::FromErrno(errno, "ftruncate", path_);
  return Status::OK();
}

Status DirectFile::PunchHole(uint64_t offset, uint64_t length) {
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                static_cast<off_t>(length)) != 0)
    return Status::FromErrno(errno, "fallocate(PUNCH_HOLE) at offset " + std::to_string(offset) + " of", path_);
  return Status::OK();
}

Status DirectFile::Sync() {
  if (fdatasync(fd_) != 0) return Status::FromErrno(errno, "fdatasync", path_);
  return Status::OK();
}

Status DirectFile::Close() {
  if (fd_ < 0) return Status::OK();
  CHECK(in_flight() == 0) << path_ << " closed with " << in_flight() << " writes in flight";
  Status s;
  if (close(fd_) != 0) s = Status::FromErrno(errno, "close", path_);
  fd_ = -1;
  return s;
}

}  // namespace steno
