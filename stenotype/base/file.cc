#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

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

class Posix : public FileSystem {
 public:
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
};

}  // namespace

FileSystem* PosixFileSystem() {
  static Posix fs;  // stateless, so sharing it is safe
  return &fs;
}

}  // namespace steno
