// A fixed pool of threads running submitted jobs in FIFO order. Used to compress and seal
// chunks off the FUSE threads so one writer uses every core. Thread-safe; the destructor runs
// every queued job, then joins.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace strata::fs {

// The CPU priority of the threads serving reads that wait on a cold tier: below the FUSE
// workers serving hot data (bench/tiering.sh: hot readers kept ~1.4x their p99 during a burst of
// cold reads against ~2.2x without it).
inline constexpr int kColdReadNice = 5;

// Lowers the calling thread's priority to `nice` (Linux: per thread) unless it already runs
// at that or lower (a daemon started under `nice` or systemd's Nice=). Best effort.
void LowerThreadPriority(int nice);

class WorkerPool {
 public:
  // `nice` > 0 runs the jobs at that lower CPU priority (LowerThreadPriority).
  explicit WorkerPool(unsigned threads, int nice = 0);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  void Submit(std::function<void()> job);
  // Runs fn(0) .. fn(n - 1) and returns when all have: on the calling thread, and on as many of
  // the pool's threads as pick up an offer before the caller has taken every index. A busy
  // pool costs nothing but the offers (they find no index left), so the caller is never slower
  // than running them itself; an idle one splits the work across cores. fn runs concurrently
  // with itself for different indexes. If fn throws, the first exception is rethrown here once
  // every index has run.
  void RunWithHelp(size_t n, const std::function<void(size_t)>& fn);
  size_t threads() const { return threads_.size(); }

 private:
  void Loop(int nice);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace strata::fs
