#include "write/index_thread.h"

#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/logging.h"

namespace steno {

IndexThread::IndexThread(std::string index_dir, int nice_level)
    : dir_(std::move(index_dir)), nice_(nice_level), thread_([this] { Run(); }) {}

IndexThread::~IndexThread() { Stop(); }

void IndexThread::Push(std::unique_ptr<Index> index, const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  queue_.emplace_back(std::move(index), name);
  cv_.notify_one();
}

void IndexThread::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void IndexThread::Run() {
  if (nice_ != 0) {
    pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
    if (setpriority(PRIO_PROCESS, tid, nice_) != 0)
      LOG_ERROR << Status::FromErrno(errno, "setpriority", "index thread").ToString();
  }
  for (;;) {
    std::unique_ptr<Index> index;
    std::string name;
    {
      std::unique_lock<std::mutex> l(mu_);
      while (queue_.empty() && !stopping_) {
        cv_.wait_for(l, std::chrono::seconds(1));
        heartbeat_++;
      }
      if (queue_.empty()) return;  // stopping and drained
      index = std::move(queue_.front().first);
      name = queue_.front().second;
      queue_.pop_front();
    }
    std::string hidden = dir_ + "/." + name, visible = dir_ + "/" + name;
    Status s = WriteIndexFile(*index, hidden);
    if (s.ok() && rename(hidden.c_str(), visible.c_str()) != 0)
      s = Status::FromErrno(errno, "rename", hidden);
    if (s.ok()) {
      written_++;
      LOG_V1 << "wrote index " << visible << " (" << index->packets() << " packets)";
    } else {
      failed_++;
      unlink(hidden.c_str());
      LOG_ERROR << "index for " << name << " not written: " << s.ToString();
    }
    heartbeat_++;
  }
}

}  // namespace steno
