// The worker pool runs every job before it goes, at the lower priority it was given.
#include "fs/worker_pool.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <thread>

namespace strata::fs {
namespace {

int MyNice() { return ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid())); }

TEST(WorkerPoolTest, RunsEveryQueuedJobBeforeItIsDestroyed) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(3);
    for (int i = 0; i < 1000; i++) pool.Submit([&] { ran++; });
  }
  EXPECT_EQ(ran.load(), 1000);
}

TEST(WorkerPoolTest, JobsRunAtThePoolsLowerPriority) {
  const int base = MyNice();
  WorkerPool pool(2, kColdReadNice);
  std::promise<int> seen;
  pool.Submit([&] { seen.set_value(MyNice()); });
  // Lower than the submitter's, never higher (a daemon started under `nice 10` keeps 10).
  EXPECT_EQ(seen.get_future().get(), std::max(base, kColdReadNice));
  EXPECT_EQ(MyNice(), base);  // the submitting thread is untouched
}

TEST(WorkerPoolTest, LowerThreadPriorityNeverRaisesIt) {
  std::thread([] {
    LowerThreadPriority(MyNice() + 3);
    const int lowered = MyNice();
    LowerThreadPriority(lowered - 2);
    EXPECT_EQ(MyNice(), lowered);
  }).join();
}

}  // namespace
}  // namespace strata::fs
