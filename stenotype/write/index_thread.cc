#include "write/index_thread.h"

#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/logging.h"

namespace steno {

IndexThread::IndexThread(std::string index_dir, int nice_level, FileSystem* fs)
    : dir_(std::move(index_dir)), nice_(nice_level), fs_(fs), thread_([this] { Run(); }) {}

IndexThread::~IndexThread() { Stop(); }

void IndexThread::Push(std::unique_ptr<Index> index, const std::string& name, const std::string& packet_file) {
  std::lock_guard<std::mutex> l(mu_);
  queue_.push_back(Job{std::move(index), name, packet_file});
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
    Job job;
    {
      std::unique_lock<std::mutex> l(mu_);
      while (queue_.empty() && !stopping_) {
        cv_.wait_for(l, std::chrono::seconds(1));
        heartbeat_++;
      }
      if (queue_.empty()) return;  // stopping and drained
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Status s = Write(job);
    if (s.ok()) {
      written_++;
      LOG_V1 << "wrote index " << dir_ << "/" << job.name << " (" << job.index->packets() << " packets)";
    } else {
      failed_++;
      LOG_ERROR << "packet file " << job.packet_file << " left without an index: " << s.ToString()
                << " (stenodump reindex rebuilds it)";
    }
    heartbeat_++;
  }
}

Status IndexThread::Write(const Job& job) {
  std::string hidden = dir_ + "/." + job.name, visible = dir_ + "/" + job.name;
  std::unique_ptr<leveldb::WritableFile> file;
  // Exclusive: a hidden index of that name is someone else's, not ours to
  // replace or remove.
  RETURN_IF_ERROR(fs_->NewWritableFile(hidden, /*exclusive=*/true, &file));
  Status s = WriteIndexTable(*job.index, file.get(), hidden);
  file.reset();
  if (s.ok()) s = fs_->RenameNoReplace(hidden, visible);
  if (!s.ok()) {
    if (Status r = fs_->Remove(hidden); !r.ok()) LOG_ERROR << r.ToString();
  }
  return s;
}

}  // namespace steno
