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

// CPU priorities of the work that must not slow hot reads and writes down: threads serving
// reads that wait on a cold tier, and migration, compaction and recall passes.
inline constexpr int kColdReadNice = 5;
inline constexpr int kBackgroundNice = 10;

// Sets the calling thread's nice value (Linux: per thread). Best effort: a failure (an
// unprivileged thread cannot lower it again) leaves the priority as it was.
void SetThreadNice(int nice);

// Runs the calling thread at `nice` for the scope's life, then restores its priority.
class ScopedThreadNice {
 public:
  explicit ScopedThreadNice(int nice);
  ~ScopedThreadNice();
  ScopedThreadNice(const ScopedThreadNice&) = delete;
  ScopedThreadNice& operator=(const ScopedThreadNice&) = delete;

 private:
  int before_;
};

class WorkerPool {
 public:
  // `nice` > 0 runs the jobs at a lower CPU priority than the threads serving hot requests.
  explicit WorkerPool(unsigned threads, int nice = 0);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  void Submit(std::function<void()> job);

 private:
  void Loop(int nice);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace strata::fs
