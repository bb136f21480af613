// Capture filters and fanout modes given on the command line.
#ifndef STENOTYPE_CAPTURE_FILTER_H_
#define STENOTYPE_CAPTURE_FILTER_H_

#include <linux/filter.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "base/status.h"

namespace steno {

// ParseHexFilter decodes --filter: compiled classic BPF as hex, 16 digits
// per instruction (code 4, jt 2, jf 2, k 8), as scripts/compile_bpf.sh
// prints from `tcpdump -ddd`.
Status ParseHexFilter(const std::string& hex, std::vector<struct sock_filter>* out);

// CompileFilter compiles a tcpdump expression (--filter_expr) for Ethernet
// with libpcap.
Status CompileFilter(const std::string& expr, std::vector<struct sock_filter>* out);

// ParseFanout decodes --fanout_type: a number, or a mode name (hash, lb,
// cpu, rollover, rnd, qm) with optional ",defrag" and ",rollover" flags.
// The result is the upper 16 bits of the PACKET_FANOUT argument.
Status ParseFanout(const std::string& spec, uint32_t* out);

}  // namespace steno

#endif  // STENOTYPE_CAPTURE_FILTER_H_
