// FaultFileSystem: the real file system with faults injected on request,
// so the write path's error handling runs in unit tests without root (no
// tiny tmpfs to fill): packet writes that fail or come back short from an
// offset on, a failing submit, sync, truncate or rename, an index disk that
// fills after some bytes. Modelled on LevelDB's fault-injection test env.
//
// Not thread-safe for changing knobs while files are in use; the counters
// are atomics because the index thread creates files concurrently.
#ifndef STENOTYPE_TESTUTIL_FAULT_FILE_SYSTEM_H_
#define STENOTYPE_TESTUTIL_FAULT_FILE_SYSTEM_H_

#include <errno.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "base/file.h"

namespace steno {

struct Faults {
  // Packet writes at or after this offset fail with write_errno, or, with
  // short_write, complete with half the bytes (what a full disk does).
  uint64_t write_fail_offset = UINT64_MAX;
  int write_errno = ENOSPC;
  bool short_write = false;
  // io_submit fails for writes at or after this offset.
  uint64_t submit_fail_offset = UINT64_MAX;
  // The next N calls of each fail with EIO.
  std::atomic<int> sync_failures{0}, truncate_failures{0}, rename_failures{0};
  // Index files take this many bytes, then fail with ENOSPC.
  uint64_t index_space = UINT64_MAX;
};

class FaultPacketFile : public PacketFile {
 public:
  FaultPacketFile(std::unique_ptr<PacketFile> base, Faults* f) : base_(std::move(base)), f_(f) {}

  Status Open(const std::string& path, uint64_t preallocate) override { return base_->Open(path, preallocate); }

  Status Write(const uint8_t* buf, size_t n, uint64_t offset, uint64_t tag) override {
    if (offset >= f_->submit_fail_offset) return Status::FromErrno(EAGAIN, "io_submit", "(injected)");
    if (offset >= f_->write_fail_offset) {
      if (!f_->short_write) {
        failed_.push_back({tag, -static_cast<long>(f_->write_errno)});
        return Status::OK();
      }
      n /= 2;  // the kernel writes what fits
    }
    Status s = base_->Write(buf, n, offset, tag);
    if (s.ok()) ++inflight_;
    return s;
  }

  Status Reap(int min, int max, std::vector<Completion>* out) override {
    int taken = 0;
    for (; taken < max && !failed_.empty(); ++taken) {
      out->push_back(failed_.front());
      failed_.pop_front();
    }
    // Never wait for more real writes than are in flight.
    int want = std::min(std::max(0, min - taken), inflight_);
    if (taken == max || (want == 0 && inflight_ == 0)) return Status::OK();
    size_t before = out->size();
    Status s = base_->Reap(want, max - taken, out);
    inflight_ -= static_cast<int>(out->size() - before);
    return s;
  }

  Status Truncate(uint64_t size) override {
    if (Take(&f_->truncate_failures)) return Status::FromErrno(EIO, "ftruncate", "(injected)");
    return base_->Truncate(size);
  }
  Status PunchHole(uint64_t offset, uint64_t length) override { return base_->PunchHole(offset, length); }
  Status Sync() override {
    if (Take(&f_->sync_failures)) return Status::FromErrno(EIO, "fdatasync", "(injected)");
    return base_->Sync();
  }
  Status Close() override { return base_->Close(); }

  static bool Take(std::atomic<int>* n) {
    int v = n->load();
    while (v > 0 && !n->compare_exchange_weak(v, v - 1)) {
    }
    return v > 0;
  }

 private:
  std::unique_ptr<PacketFile> base_;
  Faults* f_;
  std::deque<Completion> failed_;  // injected failures, not submitted
  int inflight_ = 0;
};

// LimitedFile fails appends once the file would pass its space.
class LimitedFile : public leveldb::WritableFile {
 public:
  LimitedFile(std::unique_ptr<leveldb::WritableFile> base, uint64_t space) : base_(std::move(base)), left_(space) {}
  leveldb::Status Append(const leveldb::Slice& data) override {
    if (data.size() > left_) return leveldb::Status::IOError("write (injected)", "No space left on device");
    left_ -= data.size();
    return base_->Append(data);
  }
  leveldb::Status Close() override { return base_->Close(); }
  leveldb::Status Flush() override { return base_->Flush(); }
  leveldb::Status Sync() override { return base_->Sync(); }

 private:
  std::unique_ptr<leveldb::WritableFile> base_;
  uint64_t left_;
};

class FaultFileSystem : public FileSystem {
 public:
  // engine writes the packet files underneath the faults.
  explicit FaultFileSystem(IoEngine engine = kDefaultIoEngine) : base_(PosixFileSystem(engine)) {}
  Faults faults;

  Status NewPacketFile(int max_inflight, std::unique_ptr<PacketFile>* out) override {
    std::unique_ptr<PacketFile> base;
    Status s = base_->NewPacketFile(max_inflight, &base);
    if (s.ok()) *out = std::make_unique<FaultPacketFile>(std::move(base), &faults);
    return s;
  }
  Status NewWritableFile(const std::string& path, bool exclusive,
                         std::unique_ptr<leveldb::WritableFile>* out) override {
    std::unique_ptr<leveldb::WritableFile> base;
    Status s = base_->NewWritableFile(path, exclusive, &base);
    if (s.ok()) *out = std::make_unique<LimitedFile>(std::move(base), faults.index_space);
    return s;
  }
  Status RenameNoReplace(const std::string& from, const std::string& to) override {
    if (FaultPacketFile::Take(&faults.rename_failures)) return Status::FromErrno(EIO, "rename " + from + " to", to);
    return base_->RenameNoReplace(from, to);
  }
  bool Exists(const std::string& path) override { return base_->Exists(path); }
  Status Remove(const std::string& path) override { return base_->Remove(path); }

 private:
  FileSystem* const base_;
};

}  // namespace steno

#endif  // STENOTYPE_TESTUTIL_FAULT_FILE_SYSTEM_H_
