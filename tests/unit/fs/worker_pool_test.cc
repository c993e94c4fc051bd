// The worker pool runs every job before it goes, at the lower priority it was given.
#include "fs/worker_pool.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

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

TEST(WorkerPoolTest, RunWithHelpRunsEveryIndexOnceAndIdleThreadsJoinIn) {
  WorkerPool pool(2);
  std::vector<std::atomic<int>> runs(64);
  std::atomic<int> inside{0};
  std::atomic<bool> concurrent{false};
  pool.RunWithHelp(runs.size(), [&](size_t i) {
    runs[i]++;
    // The first two indexes wait (bounded) for each other: only a helper can let them meet.
    if (i < 2) {
      inside++;
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (inside.load() < 2 && std::chrono::steady_clock::now() < until)
        std::this_thread::yield();
      concurrent = concurrent || inside.load() >= 2;
    }
  });
  for (size_t i = 0; i < runs.size(); i++) EXPECT_EQ(runs[i].load(), 1) << "index " << i;
  EXPECT_TRUE(concurrent.load()) << "no pool thread helped an idle pool's caller";
}

TEST(WorkerPoolTest, RunWithHelpFinishesOnTheCallerWhenThePoolIsBusy) {
  WorkerPool pool(1);
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  pool.Submit([gate] { gate.wait(); });  // the pool's only thread is busy
  std::vector<std::thread::id> by(8);
  {
    std::vector<int> local(8, 0);  // the caller's data, gone before the offers run
    pool.RunWithHelp(by.size(), [&](size_t i) {
      by[i] = std::this_thread::get_id();
      local[i] = 1;
    });
    EXPECT_EQ(std::count(local.begin(), local.end(), 1), 8);
  }
  for (const auto& id : by) EXPECT_EQ(id, std::this_thread::get_id());
  release.set_value();  // the stale offer runs now and must find nothing to do
}

// An exception from fn, on a pool thread or on the caller, reaches the caller once every index
// has run: a pool thread never dies of it, and nothing writes into the caller's data after.
TEST(WorkerPoolTest, RunWithHelpHandsAnExceptionToTheCallerAfterEveryIndex) {
  WorkerPool pool(2);
  for (int round = 0; round < 20; round++) {
    std::vector<std::atomic<int>> runs(16);
    EXPECT_THROW(pool.RunWithHelp(runs.size(),
                                  [&](size_t i) {
                                    runs[i]++;
                                    if (i % 5 == 3) throw std::runtime_error("chunk failed");
                                  }),
                 std::runtime_error);
    for (auto& r : runs) EXPECT_EQ(r.load(), 1);
  }
  std::atomic<int> after{0};
  pool.RunWithHelp(8, [&](size_t) { after++; });  // the pool still works
  EXPECT_EQ(after.load(), 8);
}

TEST(WorkerPoolTest, RunWithHelpFromManyCallersAtOnce) {
  WorkerPool pool(2);
  std::vector<std::thread> callers;
  std::atomic<int> total{0};
  for (int t = 0; t < 8; t++)
    callers.emplace_back([&] {
      for (int round = 0; round < 50; round++) {
        std::vector<int> seen(16, 0);
        pool.RunWithHelp(seen.size(), [&](size_t i) { seen[i]++; });
        for (int v : seen) total += v == 1 ? 1 : 1000;
      }
    });
  for (auto& c : callers) c.join();
  EXPECT_EQ(total.load(), 8 * 50 * 16);
}

}  // namespace
}  // namespace strata::fs
