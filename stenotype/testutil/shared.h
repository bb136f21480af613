// Locating the shared corpus (../shared beside the checkout) from tests.
#ifndef STENOTYPE_TESTUTIL_SHARED_H_
#define STENOTYPE_TESTUTIL_SHARED_H_

#include <stdlib.h>
#include <sys/stat.h>

#include <string>

namespace steno {

// SharedDir returns the shared corpus directory or "" when absent. It
// honours $STENO_SHARED, else looks for ../shared relative to the
// repository root, found by walking up from the working directory.
inline std::string SharedDir() {
  if (const char* env = getenv("STENO_SHARED")) return env;
  std::string dir = ".";
  struct stat st;
  for (int i = 0; i < 6; ++i, dir += "/..") {
    if (stat((dir + "/stenotype/Makefile").c_str(), &st) == 0) {
      std::string shared = dir + "/../shared";
      if (stat((shared + "/pcaps").c_str(), &st) == 0) return shared;
      return "";
    }
  }
  return "";
}

inline bool SharedRequired() {
  const char* v = getenv("STENO_REQUIRE_SHARED");
  return v != nullptr && std::string(v) == "1";
}

}  // namespace steno

// SHARED_OR_SKIP binds `var` to the shared dir, skipping the test when the
// corpus is absent (failing instead when STENO_REQUIRE_SHARED=1, as in CI).
#define SHARED_OR_SKIP(var)                                                   \
  std::string var = ::steno::SharedDir();                                     \
  if (var.empty()) {                                                          \
    if (::steno::SharedRequired()) FAIL() << "shared corpus missing (STENO_REQUIRE_SHARED=1)"; \
    GTEST_SKIP() << "shared corpus (../shared) not found; set STENO_SHARED";   \
  }

#endif  // STENOTYPE_TESTUTIL_SHARED_H_
