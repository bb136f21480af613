#include "capture/filter.h"

#include <linux/if_packet.h>
#include <pcap/pcap.h>
#include <stdlib.h>

#include <sstream>

namespace steno {

Status ParseHexFilter(const std::string& hex, std::vector<struct sock_filter>* out) {
  out->clear();
  if (hex.empty() || hex.size() % 16 != 0)
    return Status::Invalid("--filter: expected hex digits, 16 per BPF instruction, got " +
                           std::to_string(hex.size()) + " characters");
  for (char c : hex) {
    if (!isxdigit(static_cast<unsigned char>(c))) return Status::Invalid(std::string("--filter: not a hex digit: ") + c);
  }
  for (size_t i = 0; i < hex.size(); i += 16) {
    struct sock_filter f;
    f.code = static_cast<uint16_t>(strtoul(hex.substr(i, 4).c_str(), nullptr, 16));
    f.jt = static_cast<uint8_t>(strtoul(hex.substr(i + 4, 2).c_str(), nullptr, 16));
    f.jf = static_cast<uint8_t>(strtoul(hex.substr(i + 6, 2).c_str(), nullptr, 16));
    f.k = static_cast<uint32_t>(strtoul(hex.substr(i + 8, 8).c_str(), nullptr, 16));
    out->push_back(f);
  }
  if (out->size() > BPF_MAXINSNS) return Status::Invalid("--filter: program longer than the kernel accepts");
  return Status::OK();
}

Status CompileFilter(const std::string& expr, std::vector<struct sock_filter>* out) {
  out->clear();
  pcap_t* p = pcap_open_dead(DLT_EN10MB, 65535);
  if (p == nullptr) return Status::IOError("pcap_open_dead failed");
  struct bpf_program prog;
  if (pcap_compile(p, &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    Status s = Status::Invalid("--filter_expr '" + expr + "': " + pcap_geterr(p));
    pcap_close(p);
    return s;
  }
  for (u_int i = 0; i < prog.bf_len; ++i) {
    const struct bpf_insn& in = prog.bf_insns[i];
    out->push_back(sock_filter{in.code, in.jt, in.jf, in.k});
  }
  pcap_freecode(&prog);
  pcap_close(p);
  return Status::OK();
}

Status ParseFanout(const std::string& spec, uint32_t* out) {
  char* end = nullptr;
  unsigned long n = strtoul(spec.c_str(), &end, 0);
  if (!spec.empty() && *end == '\0') {
    if (n > 0xffff) return Status::Invalid("--fanout_type " + spec + " out of range");
    *out = static_cast<uint32_t>(n);
    return Status::OK();
  }
  std::stringstream ss(spec);
  std::string part;
  uint32_t mode = 0, flags = 0;
  bool have_mode = false;
  while (std::getline(ss, part, ',')) {
    uint32_t m = UINT32_MAX;
    if (part == "hash") m = PACKET_FANOUT_HASH;
    else if (part == "lb") m = PACKET_FANOUT_LB;
    else if (part == "cpu") m = PACKET_FANOUT_CPU;
    else if (part == "rnd") m = PACKET_FANOUT_RND;
    else if (part == "qm") m = PACKET_FANOUT_QM;
    else if (part == "defrag") flags |= PACKET_FANOUT_FLAG_DEFRAG;
    else if (part == "rollover" && have_mode) flags |= PACKET_FANOUT_FLAG_ROLLOVER;
    else if (part == "rollover") m = PACKET_FANOUT_ROLLOVER;
    else
      return Status::Invalid("--fanout_type: unknown mode or flag '" + part +
                             "' (modes: hash lb cpu rollover rnd qm; flags: defrag rollover)");
    if (m != UINT32_MAX) {
      if (have_mode) return Status::Invalid("--fanout_type: more than one mode in '" + spec + "'");
      mode = m;
      have_mode = true;
    }
  }
  if (!have_mode) return Status::Invalid("--fanout_type: no mode in '" + spec + "'");
  *out = mode | flags;
  return Status::OK();
}

}  // namespace steno
