#include "fs/worker_pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <exception>
#include <memory>

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

void WorkerPool::RunWithHelp(size_t n, const std::function<void(size_t)>& fn) {
  struct Shared {
    std::atomic<size_t> next{0};
    size_t n = 0;
    const std::function<void(size_t)>* fn = nullptr;  // valid while some index is unfinished
    std::mutex mu;
    std::condition_variable cv;
    size_t done = 0;            // guarded by mu
    std::exception_ptr failed;  // the first exception fn threw (guarded by mu)
  };
  auto shared = std::make_shared<Shared>();
  shared->n = n;
  shared->fn = &fn;
  // An offer that runs after the caller took the last index never touches fn (nor the caller's
  // data): it only sees next >= n.
  // An exception counts its index as done and goes to the caller after the wait: never out of
  // a pool thread (std::terminate), never out of the caller while helpers write its data.
  auto work = [](Shared& s) {
    size_t mine = 0;
    std::exception_ptr failed;
    for (size_t i; (i = s.next.fetch_add(1)) < s.n; mine++) {
      try {
        (*s.fn)(i);
      } catch (...) {
        if (!failed) failed = std::current_exception();
      }
    }
    if (mine == 0) return;
    std::lock_guard<std::mutex> l(s.mu);
    if (failed && !s.failed) s.failed = failed;
    s.done += mine;
    if (s.done == s.n) s.cv.notify_all();
  };
  const size_t offers = n == 0 ? 0 : std::min(n - 1, threads_.size());
  for (size_t k = 0; k < offers; k++) Submit([shared, work] { work(*shared); });
  work(*shared);
  std::unique_lock<std::mutex> l(shared->mu);
  shared->cv.wait(l, [&] { return shared->done == n; });
  if (shared->failed) std::rethrow_exception(shared->failed);
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
