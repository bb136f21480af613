// Defence in depth for the process that parses hostile packets: drop root
// once the sockets are open, then confine the remaining system calls.
#ifndef STENOTYPE_APP_SANDBOX_H_
#define STENOTYPE_APP_SANDBOX_H_

#include <string>

#include "base/status.h"

namespace steno {

#include <sys/types.h>

// Identity is who stenotype runs as after setup.
struct Identity {
  uid_t uid;
  gid_t gid;
};

// ResolveIdentity turns --uid/--gid (names or numbers) into ids. As root
// with neither given the answer is nobody/nogroup; as non-root with neither
// given it is the current user.
Status ResolveIdentity(const std::string& uid, const std::string& gid, Identity* out);

// DropPrivileges switches to id for good. The drop is verified: setuid(0)
// must fail afterwards.
Status DropPrivileges(const Identity& id);

// InstallSeccomp confines the process to the system calls stenotype makes
// after setup. mode: "none", "trace" (log violations, allow them) or
// "kill" (kill the process on a violation).
Status InstallSeccomp(const std::string& mode);

}  // namespace steno

#endif  // STENOTYPE_APP_SANDBOX_H_
