// Options: stenotype's command line (SPEC §10), parsed and validated.
#ifndef STENOTYPE_APP_OPTIONS_H_
#define STENOTYPE_APP_OPTIONS_H_

#include <stdint.h>

#include <string>
#include <vector>

#include "base/file.h"
#include "base/status.h"

namespace steno {

struct Options {
  std::string iface = "eth0";
  std::string dir;
  int threads = 1;
  int64_t count = -1;  // packets to capture before exiting, -1 forever
  int blocks = 2048;
  int blocksize_kb = 1024;
  int aiops = 128;
  IoEngine io_engine = kDefaultIoEngine;  // not in the reference: packet-file writes by libaio or io_uring
  int filesize_mb = 4096;
  int fileage_sec = 60;
  int blockage_sec = 10;
  // 0: a file's packets become queryable when it is indexed at rotation
  // (the reference's behaviour); else a delta index is published this
  // often while the file is written (write/index_thread.h).
  int live_index_ms = 0;
  // The reference's default: load balancing, and a member whose ring is
  // full passes packets to the next instead of dropping them.
  std::string fanout_type = "lb,rollover";
  int fanout_id = 0;               // 0: derived from the pid
  std::string uid, gid;
  bool no_index = false;
  int index_nicelevel = 0;
  std::string filter;       // hex BPF
  std::string filter_expr;  // tcpdump expression
  std::string seccomp = "kill";
  int preallocate_file_mb = 0;
  bool no_watchdogs = false;
  bool no_promisc = false;
  int stats_blocks = 0;
  int stats_sec = 60;
  int verbosity = 0;
  std::string pcap_in;
};

// ParseOptions parses argv; --name=value and --name value are accepted,
// -v/-q repeat. Unknown flags, bad values and invalid combinations are
// errors naming the flag.
Status ParseOptions(int argc, char** argv, Options* out);

// Usage text for --help.
std::string Usage();

}  // namespace steno

#endif  // STENOTYPE_APP_OPTIONS_H_
