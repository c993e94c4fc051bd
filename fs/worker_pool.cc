#include "fs/worker_pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

namespace strata::fs {

void LowerThreadPriority(int nice) {
  // POSIX says the process; Linux applies PRIO_PROCESS with a thread id to that thread only.
  const auto tid = static_cast<id_t>(::gettid());
  errno = 0;
  const int now = ::getpriority(PRIO_PROCESS, tid);
  if (errno == 0 && now < nice) (void)::setpriority(PRIO_PROCESS, tid, nice);
}

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
  if (nice != 0) LowerThreadPriority(nice);
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
