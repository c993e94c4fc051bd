// The worker pool runs every job, in order per thread, at the priority it was given; a scoped
// priority change is undone.
#include "fs/worker_pool.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

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

TEST(WorkerPoolTest, JobsRunAtThePoolsNiceValue) {
  const int base = MyNice();
  WorkerPool pool(2, kColdReadNice);
  std::promise<int> seen;
  pool.Submit([&] { seen.set_value(MyNice()); });
  EXPECT_EQ(seen.get_future().get(), std::max(base, kColdReadNice));
  EXPECT_EQ(MyNice(), base);  // the submitting thread is untouched
}

TEST(WorkerPoolTest, ScopedNiceIsUndone) {
  if (::geteuid() != 0) GTEST_SKIP() << "only root may raise a thread's priority back";
  std::thread([] {
    const int base = MyNice();
    {
      ScopedThreadNice background(kBackgroundNice);
      EXPECT_EQ(MyNice(), std::max(base, kBackgroundNice));
    }
    EXPECT_EQ(MyNice(), base);
  }).join();
}

}  // namespace
}  // namespace strata::fs
