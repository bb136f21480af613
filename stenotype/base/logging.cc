#include "base/logging.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

namespace steno {
namespace {
std::atomic<int> g_verbosity{0};
}  // namespace

void SetLogVerbosity(int v) { g_verbosity.store(v, std::memory_order_relaxed); }
int LogVerbosity() { return g_verbosity.load(std::memory_order_relaxed); }

LogMessage::LogMessage(const char* file, int line, LogLevel level, bool fatal)
    : fatal_(fatal) {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char buf[64];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  const char* base = strrchr(file, '/');
  char lvl = level == LogLevel::kError ? 'E' : level == LogLevel::kInfo ? 'I' : 'V';
  char ms[8];
  snprintf(ms, sizeof(ms), ".%03d", static_cast<int>(tv.tv_usec / 1000));
  stream_ << buf << ms << "Z " << lvl << " "
          << (base ? base + 1 : file) << ":" << line << "] ";
}

LogMessage::~LogMessage() {
  stream_ << "\n";
  std::string s = stream_.str();
  // One write per line keeps lines whole across threads.
  ssize_t unused = write(STDERR_FILENO, s.data(), s.size());
  (void)unused;
  if (fatal_) abort();
}

}  // namespace steno
