#include "app/sandbox.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "base/logging.h"

namespace steno {
namespace {

Status LookupUid(const std::string& s, uid_t* uid, gid_t* primary) {
  char* end = nullptr;
  unsigned long n = strtoul(s.c_str(), &end, 10);
  struct passwd* pw = (!s.empty() && *end == '\0') ? getpwuid(static_cast<uid_t>(n)) : getpwnam(s.c_str());
  if (pw == nullptr) {
    if (!s.empty() && *end == '\0') {
      *uid = static_cast<uid_t>(n);
      *primary = static_cast<gid_t>(n);
      return Status::OK();
    }
    return Status::NotFound("--uid: no user " + s);
  }
  *uid = pw->pw_uid;
  *primary = pw->pw_gid;
  return Status::OK();
}

Status LookupGid(const std::string& s, gid_t* gid) {
  char* end = nullptr;
  unsigned long n = strtoul(s.c_str(), &end, 10);
  if (!s.empty() && *end == '\0') {
    *gid = static_cast<gid_t>(n);
    return Status::OK();
  }
  struct group* gr = getgrnam(s.c_str());
  if (gr == nullptr) return Status::NotFound("--gid: no group " + s);
  *gid = gr->gr_gid;
  return Status::OK();
}

}  // namespace

Status ResolveIdentity(const std::string& uid_s, const std::string& gid_s, Identity* out) {
  std::string u = uid_s, g = gid_s;
  if (u.empty() && g.empty()) {
    if (geteuid() != 0) {
      *out = {geteuid(), getegid()};
      return Status::OK();
    }
    u = "nobody";
    g = getgrnam("nogroup") != nullptr ? "nogroup" : "nobody";
  }
  uid_t uid = geteuid();
  gid_t primary = getegid();
  if (!u.empty()) RETURN_IF_ERROR(LookupUid(u, &uid, &primary));
  gid_t gid = primary;
  if (!g.empty()) RETURN_IF_ERROR(LookupGid(g, &gid));
  *out = {uid, gid};
  return Status::OK();
}

Status DropPrivileges(const Identity& id) {
  if (geteuid() == id.uid && getegid() == id.gid && id.uid != 0) return Status::OK();
  if (geteuid() == 0 && setgroups(0, nullptr) != 0) return Status::FromErrno(errno, "setgroups", "");
  if (setresgid(id.gid, id.gid, id.gid) != 0) return Status::FromErrno(errno, "setresgid", std::to_string(id.gid));
  if (setresuid(id.uid, id.uid, id.uid) != 0) return Status::FromErrno(errno, "setresuid", std::to_string(id.uid));
  if (id.uid != 0 && setuid(0) == 0) return Status::IOError("privilege drop failed: setuid(0) still works");
  LOG_INFO << "running as uid " << id.uid << " gid " << id.gid;
  return Status::OK();
}

Status InstallSeccomp(const std::string& mode) {
  if (mode == "none") return Status::OK();
  uint32_t deny = mode == "kill" ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_LOG;
  scmp_filter_ctx ctx = seccomp_init(deny);
  if (ctx == nullptr) return Status::IOError("seccomp_init failed");
  // Every call made after setup, found by running capture, rotation, index
  // writing, import, signals and exit under strace -f.
  static const char* const kAllowed[] = {
      "read", "write", "writev", "pread64", "pwrite64", "lseek", "open", "openat", "close", "fstat",
      "newfstatat", "stat", "lstat", "statx", "rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat",
      "fsync", "fdatasync", "ftruncate", "fallocate", "getdents64", "mkdir", "mkdirat", "fcntl",
      "mmap", "munmap", "mremap", "mprotect", "madvise", "brk",
      "io_setup", "io_submit", "io_getevents", "io_destroy", "io_pgetevents",
      // --io_engine=uring: the ring is set up after the sandbox (at the
      // writer's Start) and restricted to writes (base/uring_file.cc).
      "io_uring_setup", "io_uring_enter", "io_uring_register",
      "poll", "ppoll", "getsockopt", "getsockname", "futex", "clock_gettime", "gettimeofday", "nanosleep",
      "clock_nanosleep", "sched_yield", "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid",
      "setpriority", "getpriority", "clone", "clone3", "set_robust_list", "rseq", "rt_sigaction",
      "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "tgkill", "getrandom", "exit", "exit_group",
      "restart_syscall", "prlimit64", "sched_getaffinity", "membarrier", "rt_sigtimedwait",
  };
  for (const char* name : kAllowed) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0) {
      seccomp_release(ctx);
      return Status::IOError(std::string("seccomp_rule_add ") + name + " failed");
    }
  }
  int r = seccomp_load(ctx);
  seccomp_release(ctx);
  if (r != 0) return Status::FromErrno(-r, "seccomp_load", "");
  LOG_V1 << "seccomp installed (" << mode << ")";
  return Status::OK();
}

}  // namespace steno
