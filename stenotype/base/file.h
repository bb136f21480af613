// FileSystem is the small set of file operations the write path needs,
// behind an interface so that tests can inject faults (a full disk, a
// failing sync or rename) without root, as LevelDB's Env does: packet files
// (asynchronous O_DIRECT block writes), index files (a LevelDB
// WritableFile), renames that never replace, existence checks, removal.
//
// Every file stenotype writes is created mode 0640: the packet and index
// files list every address seen, so only the owner and the access group
// (`stenographer`) may read them. A umask can narrow that, never widen it.
//
// Names are never replaced: files are created with O_EXCL and renamed
// with RENAME_NOREPLACE (link + unlink where the file system lacks it), so
// even a race with another writer cannot overwrite a file.
//
// Thread-safety: the POSIX implementation is stateless and thread-safe;
// a WritableFile is used by one thread.
#ifndef STENOTYPE_BASE_FILE_H_
#define STENOTYPE_BASE_FILE_H_

#include <leveldb/env.h>
#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace steno {

constexpr int kFileMode = 0640;

// PacketFile writes packet files, one at a time: whole blocks written
// asynchronously at given offsets, then cut, synced and closed, and the
// next file opened. The asynchronous I/O context lives as long as the
// object: tearing one down (io_destroy) takes about 30 ms, a stall the
// capture thread must not take at every rotation.
// Not thread-safe.
class PacketFile {
 public:
  struct Completion {
    uint64_t tag;  // as given to Write
    long result;   // bytes written, or -errno
  };
  virtual ~PacketFile() = default;

  // Open creates path for O_DIRECT writes, mode 0640; kAlreadyExists when
  // path exists. With preallocate the space is reserved (a failure there is
  // logged, not returned). REQUIRES: no file open.
  virtual Status Open(const std::string& path, uint64_t preallocate) = 0;

  // Write starts writing n bytes of buf at offset. An error means the write
  // did not start; otherwise its Completion comes from a later Reap, and
  // buf must stay valid until then.
  virtual Status Write(const uint8_t* buf, size_t n, uint64_t offset, uint64_t tag) = 0;

  // Reap appends finished writes to out: at least min (waiting for them),
  // at most max.
  virtual Status Reap(int min, int max, std::vector<Completion>* out) = 0;

  virtual Status Truncate(uint64_t size) = 0;
  // PunchHole frees the space of [offset, offset+length), which then reads
  // as zeros; the length of the file stays.
  virtual Status PunchHole(uint64_t offset, uint64_t length) = 0;
  virtual Status Sync() = 0;  // the data (fdatasync)
  // Close closes the open file. REQUIRES: no write in flight.
  virtual Status Close() = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // NewPacketFile sets up a PacketFile for up to max_inflight writes at a
  // time.
  virtual Status NewPacketFile(int max_inflight, std::unique_ptr<PacketFile>* out) = 0;

  // NewWritableFile creates path for a LevelDB TableBuilder. With exclusive
  // an existing path is an error (kAlreadyExists); otherwise it is
  // truncated.
  virtual Status NewWritableFile(const std::string& path, bool exclusive,
                                 std::unique_ptr<leveldb::WritableFile>* out) = 0;

  // RenameNoReplace renames from to to; kAlreadyExists when to exists.
  virtual Status RenameNoReplace(const std::string& from, const std::string& to) = 0;

  // Exists reports whether path exists (any error other than ENOENT counts
  // as existing: such a name is not safe to take).
  virtual bool Exists(const std::string& path) = 0;

  // Remove unlinks path; a missing path is not an error.
  virtual Status Remove(const std::string& path) = 0;
};

// IoEngine is the kernel interface packet-file writes go through
// (--io_engine): libaio (io_submit/io_getevents) or io_uring. Both write
// the same O_DIRECT blocks with the same PacketFile semantics; DESIGN.md
// gives the measurements behind the default.
enum class IoEngine { kAio, kUring };
constexpr IoEngine kDefaultIoEngine = IoEngine::kAio;

// IoEngineName is the flag spelling ("aio", "uring"); ParseIoEngine is its
// inverse and returns false for any other name.
const char* IoEngineName(IoEngine engine);
bool ParseIoEngine(const std::string& name, IoEngine* out);

// PosixFileSystem is the real file system, its packet files written with
// engine; the pointer is to a stateless process-wide object and is never
// freed.
FileSystem* PosixFileSystem(IoEngine engine = kDefaultIoEngine);

}  // namespace steno

#endif  // STENOTYPE_BASE_FILE_H_
