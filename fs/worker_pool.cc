#include "fs/worker_pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

namespace strata::fs {

void SetThreadNice(int nice) {
  // POSIX says the process; Linux applies PRIO_PROCESS with a thread id to that thread only.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice);
}

ScopedThreadNice::ScopedThreadNice(int nice) {
  errno = 0;
  before_ = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  if (errno != 0) before_ = 0;
  if (nice > before_) SetThreadNice(nice);
}

ScopedThreadNice::~ScopedThreadNice() { SetThreadNice(before_); }

WorkerPool::WorkerPool(unsigned threads, int nice) {
  if (threads == 0) threads = 1;
  for (unsigned i = 0; i < threads; i++) threads_.emplace_back([this, nice] { Loop(nice); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::Submit(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> l(mu_);
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void WorkerPool::Loop(int nice) {
  if (nice != 0) SetThreadNice(nice);
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    cv_.wait(l, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left to run
    auto job = std::move(queue_.front());
    queue_.pop_front();
    l.unlock();
    job();
    l.lock();
  }
}

}  // namespace strata::fs
