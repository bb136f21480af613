// Status: the result of an operation that can fail for reasons outside the
// program's control (I/O, kernel, bad input). Programmer errors use CHECK.
//
// A Status is cheap to copy when OK. Errors carry a code that tells the
// caller what to do next and a message that names the call and the file.
#ifndef STENOTYPE_BASE_STATUS_H_
#define STENOTYPE_BASE_STATUS_H_

#include <string>
#include <utility>

namespace steno {

class Status {
 public:
  enum Code {
    kOk = 0,
    kInvalidArgument,  // bad flag, bad input file: fix the input.
    kNotFound,         // missing interface, directory or file.
    kIOError,          // a system call failed: maybe retry, maybe stop.
    kNoSpace,          // ENOSPC: the caller may drop data and go on.
    kCorruption,       // a format check failed.
    kUnsupported,      // e.g. file system without O_DIRECT.
    kAlreadyExists,    // EEXIST: take another name.
  };

  Status() = default;
  static Status OK() { return Status(); }
  static Status Invalid(std::string msg) { return Status(kInvalidArgument, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(kNotFound, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(kIOError, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(kCorruption, std::move(msg)); }
  static Status Unsupported(std::string msg) { return Status(kUnsupported, std::move(msg)); }

  // FromErrno converts an errno value into a Status naming the system call
  // and the object (file, interface) it was applied to.
  static Status FromErrno(int err, const std::string& call, const std::string& object);

  bool ok() const { return code_ == kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = kOk;
  std::string message_;
};

// RETURN_IF_ERROR propagates a non-OK Status to the caller.
#define RETURN_IF_ERROR(expr)              \
  do {                                     \
    ::steno::Status _st = (expr);          \
    if (!_st.ok()) return _st;             \
  } while (0)

}  // namespace steno

#endif  // STENOTYPE_BASE_STATUS_H_
