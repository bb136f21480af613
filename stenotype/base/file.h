// FileSystem is the small set of file operations the write path needs,
// behind an interface so that tests can inject faults (a full disk, a
// failing sync or rename) without root, as LevelDB's Env does.
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

#include <memory>
#include <string>

#include "base/status.h"

namespace steno {

constexpr int kFileMode = 0640;

class FileSystem {
 public:
  virtual ~FileSystem() = default;

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

// PosixFileSystem is the real file system; the pointer is to a stateless
// process-wide object and is never freed.
FileSystem* PosixFileSystem();

}  // namespace steno

#endif  // STENOTYPE_BASE_FILE_H_
