// TempDir: a scratch directory removed with everything in it when the
// test ends, pass or fail.
#ifndef STENOTYPE_TESTUTIL_TEMP_DIR_H_
#define STENOTYPE_TESTUTIL_TEMP_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace steno {

class TempDir {
 public:
  // base must be on a file system with O_DIRECT for writer tests.
  explicit TempDir(const char* base = "/var/tmp") {
    std::string tmpl = std::string(base) + "/stenotype_test_XXXXXX";
    if (mkdtemp(&tmpl[0]) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace steno

#endif  // STENOTYPE_TESTUTIL_TEMP_DIR_H_
