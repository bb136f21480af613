// Defence in depth for the process that parses hostile packets: drop root
// once the sockets are open, then confine the remaining system calls.
#ifndef STENOTYPE_APP_SANDBOX_H_
#define STENOTYPE_APP_SANDBOX_H_

#include <string>

#include "base/status.h"

namespace steno {

// DropPrivileges switches to uid/gid (names or numbers). As root with
// neither given it drops to nobody/nogroup; as non-root with neither given
// it does nothing. The drop is verified (setuid(0) must then fail).
Status DropPrivileges(const std::string& uid, const std::string& gid);

// InstallSeccomp confines the process to the system calls stenotype makes
// after setup. mode: "none", "trace" (log violations, allow them) or
// "kill" (kill the process on a violation).
Status InstallSeccomp(const std::string& mode);

}  // namespace steno

#endif  // STENOTYPE_APP_SANDBOX_H_
