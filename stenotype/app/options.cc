#include "app/options.h"

#include <errno.h>
#include <stdlib.h>

#include <functional>
#include <map>
#include <type_traits>

namespace steno {
namespace {

Status ParseInt(const std::string& name, const std::string& v, int64_t lo, int64_t hi, int64_t* out) {
  errno = 0;
  char* end = nullptr;
  long long n = strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0)
    return Status::Invalid("--" + name + ": '" + v + "' is not a number");
  if (n < lo || n > hi)
    return Status::Invalid("--" + name + ": " + v + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  *out = n;
  return Status::OK();
}

}  // namespace

std::string Usage() {
  return "usage: stenotype --dir=DIR [--iface=eth0] [--threads=N] [flags]\n"
         "       stenotype --pcap_in=FILE --dir=DIR [flags]\n"
         "flags: --count --blocks --blocksize_kb --aiops --io_engine=aio|uring --filesize_mb --fileage_sec --blockage_sec\n"
         "       --fanout_type --fanout_id --uid --gid --no_index --index_nicelevel --filter=HEX\n"
         "       --filter_expr=EXPR --seccomp=none|trace|kill --preallocate_file_mb --no_watchdogs\n"
         "       --no_promisc --stats_blocks --stats_sec --live_index_ms -v -q\n"
         "       stenotype --version | --help\n";
}

Status ParseOptions(int argc, char** argv, Options* o) {
  using Setter = std::function<Status(const std::string&)>;
  auto integer = [](const char* name, int64_t lo, int64_t hi, auto* field) {
    return Setter([=](const std::string& v) {
      int64_t n;
      RETURN_IF_ERROR(ParseInt(name, v, lo, hi, &n));
      *field = static_cast<std::remove_pointer_t<decltype(field)>>(n);
      return Status::OK();
    });
  };
  auto str = [](std::string* field) {
    return Setter([=](const std::string& v) {
      *field = v;
      return Status::OK();
    });
  };
  const std::map<std::string, Setter> valued = {
      {"iface", str(&o->iface)},
      {"dir", str(&o->dir)},
      {"threads", integer("threads", 1, 64, &o->threads)},
      {"count", integer("count", -1, INT64_MAX, &o->count)},
      {"blocks", integer("blocks", 16, 1 << 20, &o->blocks)},
      {"blocksize_kb", integer("blocksize_kb", 4, 1 << 20, &o->blocksize_kb)},
      {"aiops", integer("aiops", 1, 65536, &o->aiops)},
      {"io_engine", Setter([o](const std::string& v) {
         if (!ParseIoEngine(v, &o->io_engine)) return Status::Invalid("--io_engine must be aio or uring");
         return Status::OK();
       })},
      {"filesize_mb", integer("filesize_mb", 1, 4096, &o->filesize_mb)},
      {"fileage_sec", integer("fileage_sec", 1, 86400, &o->fileage_sec)},
      {"blockage_sec", integer("blockage_sec", 1, 3600, &o->blockage_sec)},
      {"live_index_ms", integer("live_index_ms", 0, 60000, &o->live_index_ms)},
      {"fanout_type", str(&o->fanout_type)},
      {"fanout_id", integer("fanout_id", 0, 65535, &o->fanout_id)},
      {"uid", str(&o->uid)},
      {"gid", str(&o->gid)},
      {"index_nicelevel", integer("index_nicelevel", -20, 19, &o->index_nicelevel)},
      {"filter", str(&o->filter)},
      {"filter_expr", str(&o->filter_expr)},
      {"seccomp", str(&o->seccomp)},
      {"preallocate_file_mb", integer("preallocate_file_mb", 0, 4096, &o->preallocate_file_mb)},
      {"stats_blocks", integer("stats_blocks", 0, INT32_MAX, &o->stats_blocks)},
      {"stats_sec", integer("stats_sec", 0, 86400, &o->stats_sec)},
      {"pcap_in", str(&o->pcap_in)},
  };
  const std::map<std::string, bool*> booleans = {
      {"no_index", &o->no_index},
      {"no_watchdogs", &o->no_watchdogs},
      {"no_promisc", &o->no_promisc},
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-v" || a == "--v") {
      ++o->verbosity;
      continue;
    }
    if (a == "-q" || a == "--q") {
      --o->verbosity;
      continue;
    }
    if (a.size() > 2 && a[0] == '-' && a[1] == 'v' && a.find_first_not_of('v', 1) == std::string::npos) {
      o->verbosity += static_cast<int>(a.size() - 1);
      continue;
    }
    if (a.rfind("--", 0) != 0) return Status::Invalid("unexpected argument '" + a + "'");
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (auto b = booleans.find(name); b != booleans.end()) {
      if (has_value && value != "true" && value != "false")
        return Status::Invalid("--" + name + " takes no value (or true/false)");
      *b->second = !has_value || value == "true";
      continue;
    }
    auto s = valued.find(name);
    if (s == valued.end()) return Status::Invalid("unknown flag --" + name);
    if (!has_value) {
      if (i + 1 >= argc) return Status::Invalid("--" + name + " needs a value");
      value = argv[++i];
    }
    RETURN_IF_ERROR(s->second(value));
  }
  // Combinations.
  if (o->dir.empty()) return Status::Invalid("--dir is required");
  if (o->blocksize_kb % 4 != 0) return Status::Invalid("--blocksize_kb must be a multiple of 4 (the page size)");
  if (static_cast<int64_t>(o->filesize_mb) * 1024 < o->blocksize_kb)
    return Status::Invalid("--filesize_mb must hold at least one block of --blocksize_kb");
  if (o->preallocate_file_mb > o->filesize_mb)
    return Status::Invalid("--preallocate_file_mb cannot exceed --filesize_mb");
  if (!o->filter.empty() && !o->filter_expr.empty())
    return Status::Invalid("--filter and --filter_expr cannot be used together");
  if (o->seccomp != "none" && o->seccomp != "trace" && o->seccomp != "kill")
    return Status::Invalid("--seccomp must be none, trace or kill");
  if (!o->pcap_in.empty()) {
    if (o->threads != 1) return Status::Invalid("--pcap_in imports with one thread; drop --threads");
    if (!o->filter.empty() || !o->filter_expr.empty())
      return Status::Invalid("--filter/--filter_expr apply to live capture, not --pcap_in");
  }
  return Status::OK();
}

}  // namespace steno
