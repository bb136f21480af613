#include "base/status.h"

#include <errno.h>
#include <string.h>

namespace steno {

Status Status::FromErrno(int err, const std::string& call, const std::string& object) {
  std::string msg = call;
  if (!object.empty()) msg += " " + object;
  msg += ": ";
  msg += strerror(err);
  switch (err) {
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return Status(kNotFound, msg);
    case ENOSPC:
    case EDQUOT:
      return Status(kNoSpace, msg);
    case EINVAL:
      return Status(kInvalidArgument, msg);
    case EEXIST:
      return Status(kAlreadyExists, msg);
    case EOPNOTSUPP:
      return Status(kUnsupported, msg);
    default:
      return Status(kIOError, msg);
  }
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return message_;
}

}  // namespace steno
