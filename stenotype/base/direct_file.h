// DirectFile: the part of a PacketFile that is the same for every
// asynchronous I/O engine (base/file.h): an O_DIRECT descriptor opened
// exclusively, cut, synced, hole-punched and closed with plain system
// calls. The engines (libaio in file.cc, io_uring in uring_file.cc) add
// Write and Reap. Internal to base/.
//
// Not thread-safe, like PacketFile.
#ifndef STENOTYPE_BASE_DIRECT_FILE_H_
#define STENOTYPE_BASE_DIRECT_FILE_H_

#include <stddef.h>

#include <memory>
#include <string>

#include "base/file.h"

namespace steno {

class DirectFile : public PacketFile {
 public:
  ~DirectFile() override;  // closes a file left open, unchecked

  Status Open(const std::string& path, uint64_t preallocate) override;
  Status Truncate(uint64_t size) override;
  Status PunchHole(uint64_t offset, uint64_t length) override;
  Status Sync() override;
  Status Close() override;

 protected:
  // in_flight counts the engine's unfinished writes, which Close refuses.
  virtual size_t in_flight() const = 0;
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;  // the open (or last) file, for messages
};

// The engines' constructors: each sets up a context for max_inflight
// writes that lives as long as the PacketFile.
Status NewAioFile(int max_inflight, std::unique_ptr<PacketFile>* out);
Status NewUringFile(int max_inflight, std::unique_ptr<PacketFile>* out);

}  // namespace steno

#endif  // STENOTYPE_BASE_DIRECT_FILE_H_
