// Minimal leveled logging to stderr. Each line is written with one write(2)
// so lines from different threads never interleave.
//
// Verbosity is process-wide (set once from -v/-q at start); it is the only
// mutable global besides counters, and it is atomic.
#ifndef STENOTYPE_BASE_LOGGING_H_
#define STENOTYPE_BASE_LOGGING_H_

#include <sstream>
#include <string>

namespace steno {

enum class LogLevel { kError = -1, kInfo = 0, kVerbose = 1, kDebug = 2 };

void SetLogVerbosity(int v);
int LogVerbosity();

class LogMessage {
 public:
  LogMessage(const char* file, int line, LogLevel level, bool fatal = false);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
  bool fatal_;
};

// Voidify lets a log statement be one expression (safe in unbraced ifs):
// `cond ? (void)0 : Voidify() & stream << ...`.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace steno

#define STENO_LOG_IF(level)                                    \
  (static_cast<int>(level) > ::steno::LogVerbosity())          \
      ? (void)0                                                \
      : ::steno::LogVoidify() & ::steno::LogMessage(__FILE__, __LINE__, level).stream()

#define LOG_ERROR STENO_LOG_IF(::steno::LogLevel::kError)
#define LOG_INFO STENO_LOG_IF(::steno::LogLevel::kInfo)
#define LOG_V1 STENO_LOG_IF(::steno::LogLevel::kVerbose)
#define LOG_V2 STENO_LOG_IF(::steno::LogLevel::kDebug)

// CHECK is for programmer errors only: it aborts with the failed condition.
#define CHECK(cond)                                                               \
  (cond) ? (void)0                                                                \
         : ::steno::LogVoidify() &                                                \
               ::steno::LogMessage(__FILE__, __LINE__, ::steno::LogLevel::kError, true).stream() \
                   << "CHECK failed: " #cond " "

#endif  // STENOTYPE_BASE_LOGGING_H_
