// stenotype: capture packets from an interface (or import a pcap file) into
// packet files of raw TPACKET_V3 blocks and LevelDB index files. See
// DESIGN.md for the pipeline; this file only wires the pieces together.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "app/capture_thread.h"
#include "app/options.h"
#include "app/sandbox.h"
#include "base/logging.h"
#include "base/version.h"
#include "capture/filter.h"
#include "capture/ring.h"
#include "pcapin/pcap_import.h"
#include "write/block_writer.h"
#include "write/index_thread.h"

namespace steno {
namespace {

// MakeDir creates dir if missing, owned by the user stenotype will run as
// (it is still root here, and must be able to write there after the drop).
Status MakeDir(const std::string& dir, const Identity& id) {
  if (mkdir(dir.c_str(), 0750) == 0) {
    if (chown(dir.c_str(), id.uid, id.gid) != 0) return Status::FromErrno(errno, "chown", dir);
  } else if (errno != EEXIST) {
    return Status::FromErrno(errno, "mkdir", dir);
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return Status::FromErrno(errno, "stat", dir);
  if (!S_ISDIR(st.st_mode)) return Status::Invalid(dir + " is not a directory");
  return Status::OK();
}

WriterOptions MakeWriterOptions(const Options& o, int thread) {
  WriterOptions w;
  w.packet_dir = o.dir + "/PKT" + std::to_string(thread);
  w.block_size = static_cast<size_t>(o.blocksize_kb) * 1024;
  w.max_inflight = o.aiops;
  w.file_size = static_cast<uint64_t>(o.filesize_mb) << 20;
  w.file_age_usec = static_cast<int64_t>(o.fileage_sec) * 1000000;
  w.preallocate = static_cast<uint64_t>(o.preallocate_file_mb) << 20;
  w.index = !o.no_index;
  w.live_index_usec = static_cast<int64_t>(o.live_index_ms) * 1000;
  w.fs = PosixFileSystem(o.io_engine);
  return w;
}

// SignalWatcher turns SIGINT/SIGTERM into a stop flag. The signals are
// blocked in every thread and taken synchronously here, so no handler runs
// in async-signal context.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::atomic<bool>* stop) : stop_(stop) {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    signal(SIGHUP, SIG_IGN);  // a hangup of the daemon's terminal or group must not drop unflushed files
  }
  // Poll waits up to timeout_ms for SIGINT/SIGTERM.
  void Poll(int timeout_ms = 0) {
    struct timespec wait = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
    int sig = sigtimedwait(&set_, nullptr, &wait);
    if (sig > 0) {
      LOG_INFO << "signal " << sig << ": finishing files and exiting";
      stop_->store(true);
    }
  }

 private:
  sigset_t set_;
  std::atomic<bool>* stop_;
};

// StatsLine is one thread's totals since start, printed as a STATS line
// (the supervisor turns them into metrics).
struct StatsLine {
  int thread = 0;
  uint64_t packets = 0, bytes = 0, drops = 0, blocks = 0, files = 0;
  double mbps = 0;
  uint64_t blocks_dropped = 0, socket_errors = 0;
};

void PrintStats(const StatsLine& l) {
  char line[320];
  snprintf(line, sizeof(line),
           "STATS thread=%d packets=%llu bytes=%llu drops=%llu blocks=%llu files=%llu mbps=%.2f blocks_dropped=%llu "
           "socket_errors=%llu",
           l.thread, static_cast<unsigned long long>(l.packets), static_cast<unsigned long long>(l.bytes),
           static_cast<unsigned long long>(l.drops), static_cast<unsigned long long>(l.blocks),
           static_cast<unsigned long long>(l.files), l.mbps, static_cast<unsigned long long>(l.blocks_dropped),
           static_cast<unsigned long long>(l.socket_errors));
  LOG_INFO << line;
}

int Import(const Options& o, InputFile in, std::atomic<bool>* stop, SignalWatcher* signals) {
  WriterOptions wo = MakeWriterOptions(o, 0);
  wo.live_index_usec = 0;  // nobody queries an import before it ends
  IndexThread index_thread(o.dir + "/IDX0", o.index_nicelevel);
  BlockWriter writer(wo, &index_thread);
  Status s = writer.Start();
  ImportStats stats;
  if (s.ok()) {
    std::atomic<bool> done{false};
    std::thread sig([&] {
      while (!done.load()) signals->Poll(10);
    });
    s = ImportPcap(std::move(in), o.pcap_in, &writer, wo.block_size, o.aiops, stop, &stats);
    done = true;
    sig.join();
  }
  Status c = writer.Close();
  index_thread.Stop();
  StatsLine line;
  line.packets = stats.packets;
  line.bytes = stats.bytes;
  line.blocks = stats.blocks;
  line.files = writer.stats().files;
  line.blocks_dropped = writer.stats().blocks_dropped;
  PrintStats(line);
  if (!s.ok() || !c.ok() || index_thread.failed() > 0) {
    LOG_ERROR << "import of " << o.pcap_in << " incomplete: " << (s.ok() ? c.ToString() : s.ToString());
    return 1;
  }
  return 0;
}

// Setup is what runs after the drop and before packets flow: every output
// directory must take O_DIRECT writes as the user we now are.
Status ProbeOutputs(const Options& o, const Identity& id) {
  RETURN_IF_ERROR(DropPrivileges(id));
  for (int i = 0; i < o.threads; ++i) {
    Status s = ProbeDirectIO(o.dir + "/PKT" + std::to_string(i), static_cast<size_t>(o.blocksize_kb) * 1024);
    if (!s.ok()) return Status::Invalid(s.ToString() + " (stenotype runs as uid " + std::to_string(id.uid) + ")");
    std::string idx = o.dir + "/IDX" + std::to_string(i);
    if (access(idx.c_str(), W_OK | X_OK) != 0) return Status::FromErrno(errno, "cannot write index directory", idx);
  }
  return InstallSeccomp(o.seccomp);
}

int Capture(const Options& o, const Identity& id, std::atomic<bool>* stop, SignalWatcher* signals) {
  RingOptions ro;
  ro.iface = o.iface;
  ro.block_size = static_cast<size_t>(o.blocksize_kb) * 1024;
  ro.blocks = o.blocks;
  ro.block_timeout_ms = o.blockage_sec * 1000;
  ro.promisc = !o.no_promisc;
  ro.fanout = o.threads > 1;
  ro.fanout_id = static_cast<uint16_t>(o.fanout_id != 0 ? o.fanout_id : getpid() & 0xffff);
  Status s = ParseFanout(o.fanout_type, &ro.fanout_type);
  if (s.ok() && !o.filter.empty()) s = ParseHexFilter(o.filter, &ro.filter);
  if (s.ok() && !o.filter_expr.empty()) s = CompileFilter(o.filter_expr, &ro.filter);
  if (!s.ok()) {
    LOG_ERROR << s.ToString();
    return 2;
  }
  std::vector<std::unique_ptr<CaptureThread>> threads;
  for (int i = 0; i < o.threads; ++i) {
    std::unique_ptr<Ring> ring;
    s = Ring::Open(ro, &ring);
    if (!s.ok()) {
      LOG_ERROR << s.ToString();
      return 1;
    }
    auto writer_opts = MakeWriterOptions(o, i);
    auto index_thread = std::make_unique<IndexThread>(o.dir + "/IDX" + std::to_string(i), o.index_nicelevel);
    auto writer = std::make_unique<BlockWriter>(writer_opts, index_thread.get());
    threads.push_back(std::make_unique<CaptureThread>(i, std::move(ring), std::move(writer), std::move(index_thread),
                                                      1000, ro.block_timeout_ms));
  }
  s = ProbeOutputs(o, id);
  if (!s.ok()) {
    LOG_ERROR << s.ToString();
    return 1;
  }
  LOG_INFO << "packet files written with --io_engine=" << IoEngineName(o.io_engine);
  std::atomic<int64_t> remaining{o.count};
  std::vector<std::thread> running;
  std::vector<Status> results(threads.size());
  for (size_t i = 0; i < threads.size(); ++i)
    running.emplace_back([&, i] { results[i] = threads[i]->Run(stop, &remaining); });

  // Stats and watchdog loop. PACKET_STATISTICS is read here only.
  const int stall_limit_sec = std::max(60, 6 * o.blockage_sec);
  std::vector<uint64_t> last_beat(threads.size()), last_index_beat(threads.size()), last_bytes(threads.size());
  std::vector<int> stalled(threads.size(), 0), index_stalled(threads.size(), 0);
  uint64_t last_blocks_total = 0;
  auto last_stats = std::chrono::steady_clock::now();
  auto report = [&](double secs) {
    for (size_t i = 0; i < threads.size(); ++i) {
      const ThreadCounters& c = threads[i]->counters();
      Status st = threads[i]->ring()->UpdateStats();
      if (!st.ok()) LOG_ERROR << st.ToString();
      uint64_t bytes = c.bytes.load();
      double mbps = secs > 0 ? (bytes - last_bytes[i]) / secs / 1e6 : 0;
      last_bytes[i] = bytes;
      StatsLine line;
      line.thread = static_cast<int>(i);
      line.packets = c.packets;
      line.bytes = bytes;
      line.drops = threads[i]->ring()->kernel_drops();
      line.blocks = c.blocks;
      line.files = c.files;
      line.mbps = mbps;
      line.blocks_dropped = c.blocks_dropped;
      line.socket_errors = c.socket_errors;
      PrintStats(line);
    }
  };
  bool all_done = false;
  for (int tick = 0; !all_done; ++tick) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    signals->Poll();
    all_done = remaining.load() == 0 || stop->load();
    // A thread that ended on its own (its interface is gone) stops the
    // others too, so the supervisor sees the exit and restarts capture.
    for (auto& t : threads) all_done = all_done || t->counters().ended.load();
    auto now = std::chrono::steady_clock::now();
    double secs = std::chrono::duration<double>(now - last_stats).count();
    uint64_t blocks_total = 0;
    for (auto& t : threads) blocks_total += t->counters().blocks;
    bool by_blocks = o.stats_blocks > 0 && blocks_total - last_blocks_total >= static_cast<uint64_t>(o.stats_blocks);
    if ((o.stats_sec > 0 && secs >= o.stats_sec) || by_blocks) {
      report(secs);
      last_stats = now;
      last_blocks_total = blocks_total;
    }
    if (o.no_watchdogs || tick % 5 != 0) continue;
    for (size_t i = 0; i < threads.size(); ++i) {
      uint64_t beat = threads[i]->counters().heartbeat, ibeat = threads[i]->index_thread()->heartbeat();
      stalled[i] = beat == last_beat[i] ? stalled[i] + 1 : 0;
      index_stalled[i] = ibeat == last_index_beat[i] ? index_stalled[i] + 1 : 0;
      last_beat[i] = beat;
      last_index_beat[i] = ibeat;
      if (stalled[i] > stall_limit_sec || index_stalled[i] > stall_limit_sec) {
        LOG_ERROR << "watchdog: thread " << i << (stalled[i] > stall_limit_sec ? " capture" : " index")
                  << " loop made no progress for " << stall_limit_sec << " s; aborting so the supervisor restarts us";
        abort();
      }
    }
  }
  stop->store(true);
  for (auto& t : running) t.join();
  report(std::chrono::duration<double>(std::chrono::steady_clock::now() - last_stats).count());
  int rc = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) {
      LOG_ERROR << "thread " << i << ": " << results[i].ToString();
      rc = 1;
    }
  }
  return rc;
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      fputs(Usage().c_str(), stdout);
      return 0;
    }
    if (std::string(argv[i]) == "--version") {
      fputs(VersionLine("stenotype").c_str(), stdout);
      return 0;
    }
  }
  Status s = ParseOptions(argc, argv, &o);
  if (!s.ok()) {
    fprintf(stderr, "stenotype: %s\n%s", s.ToString().c_str(), Usage().c_str());
    return 2;
  }
  SetLogVerbosity(o.verbosity);
  std::atomic<bool> stop{false};
  SignalWatcher signals(&stop);

  Identity id;
  s = ResolveIdentity(o.uid, o.gid, &id);
  if (s.ok()) s = MakeDir(o.dir, id);
  for (int i = 0; s.ok() && i < o.threads; ++i) {
    s = MakeDir(o.dir + "/PKT" + std::to_string(i), id);
    if (s.ok()) s = MakeDir(o.dir + "/IDX" + std::to_string(i), id);
  }
  if (!s.ok()) {
    LOG_ERROR << s.ToString();
    return 1;
  }
  if (!o.pcap_in.empty()) {
    // The input is opened before the drop, as tcpdump -r opens its file:
    // a capture only root may read can be imported into directories the
    // capture user owns.
    InputFile in(fopen(o.pcap_in.c_str(), "rbe"));
    if (!in) {
      LOG_ERROR << Status::FromErrno(errno, "cannot open pcap", o.pcap_in).ToString();
      return 1;
    }
    s = ProbeOutputs(o, id);
    if (!s.ok()) {
      LOG_ERROR << s.ToString();
      return 1;
    }
    return Import(o, std::move(in), &stop, &signals);
  }
  return Capture(o, id, &stop, &signals);
}

}  // namespace
}  // namespace steno

int main(int argc, char** argv) {
  // A log reader that went away (the supervisor's pipe closed) must cost
  // log lines, not the capture: writes then fail with EPIPE instead.
  signal(SIGPIPE, SIG_IGN);
  return steno::Main(argc, argv);
}
