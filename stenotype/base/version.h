// Version and commit of the build, for --version. The Makefile defines
// STENO_VERSION and STENO_COMMIT (from git) when it compiles the programs'
// main files; a build outside a git checkout says "unknown".
#ifndef STENOTYPE_BASE_VERSION_H_
#define STENOTYPE_BASE_VERSION_H_

#include <string>

#ifndef STENO_VERSION
#define STENO_VERSION "unknown"
#endif
#ifndef STENO_COMMIT
#define STENO_COMMIT "unknown"
#endif

namespace steno {

// VersionLine is what `program --version` prints.
inline std::string VersionLine(const std::string& program) {
  return program + " version " STENO_VERSION " commit " STENO_COMMIT "\n";
}

}  // namespace steno

#endif  // STENOTYPE_BASE_VERSION_H_
