// Chunk buffers for reuse: what comes back is reused, zeroed; spares and cached bytes stay
// within the budget; a reserve touches buffers ahead of use and stops when asked.
#include "fs/chunk_memory.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "fs/chunk_cache.h"

namespace strata::fs {
namespace {

constexpr size_t kChunk = 128 << 10;

TEST(ChunkMemoryTest, ABufferComesBackWhenItsLastReferenceDropsAndIsReusedZeroed) {
  auto memory = ChunkMemory::Make(kChunk, 64 * kChunk);
  std::string s = memory->Take(kChunk);
  ASSERT_EQ(s.size(), kChunk);
  s.assign(kChunk, 'x');
  const char* where = s.data();
  auto shared = memory->Share(std::move(s));
  auto second = shared;
  EXPECT_EQ(memory->spare_bytes(), 0u);
  shared.reset();
  EXPECT_EQ(memory->spare_bytes(), 0u) << "still referenced";
  second.reset();
  EXPECT_EQ(memory->spare_bytes(), kChunk);

  std::string again = memory->Take(1000);
  EXPECT_EQ(again.data(), where) << "the same memory, not a fresh allocation";
  EXPECT_EQ(again, std::string(1000, '\0'));
  EXPECT_EQ(memory->spare_bytes(), 0u);
}

// For a decoder that overwrites it all: the spare's memory at the size asked, not zero filled
// (only a fresh buffer's bytes are zeros).
TEST(ChunkMemoryTest, TakeToOverwriteReusesASpareAtTheSizeAsked) {
  auto memory = ChunkMemory::Make(kChunk, 64 * kChunk);
  std::string fresh = memory->TakeToOverwrite(kChunk);
  EXPECT_EQ(fresh, std::string(kChunk, '\0'));
  fresh.assign(kChunk, 'x');
  const char* where = fresh.data();
  memory->Give(std::move(fresh));
  std::string again = memory->TakeToOverwrite(kChunk / 2);
  EXPECT_EQ(again.data(), where);
  EXPECT_EQ(again.size(), kChunk / 2);
  EXPECT_EQ(memory->spare_bytes(), 0u);
}

TEST(ChunkMemoryTest, OnlyChunkSizedBuffersAreKept) {
  auto memory = ChunkMemory::Make(kChunk, 64 * kChunk);
  memory->Give(std::string(4096, 'a'));
  memory->Give(std::string(3 * kChunk, 'a'));
  EXPECT_EQ(memory->spare_bytes(), 0u);
  memory->Give(std::string(kChunk, 'a'));
  EXPECT_EQ(memory->spare_bytes(), kChunk);
}

TEST(ChunkMemoryTest, SparesMakeRoomForWhatTheCacheHolds) {
  const uint64_t budget = 64 * kChunk;
  auto memory = ChunkMemory::Make(kChunk, budget);
  // With 52 chunks cached, 12 spares fit beside them; with 60, the floor (budget / 8) holds.
  memory->Cached(52 * kChunk);
  for (int i = 0; i < 20; i++) memory->Give(std::string(kChunk, 'a'));
  EXPECT_EQ(memory->spare_bytes(), 12 * kChunk);
  // The cache grows by chunks that took no spare (a small file's): spares past the budget go.
  memory->Cached(8 * kChunk);
  EXPECT_EQ(memory->spare_bytes(), budget / 8);
  for (int i = 0; i < 5; i++) memory->Take(kChunk);
  for (int i = 0; i < 20; i++) memory->Give(std::string(kChunk, 'a'));
  EXPECT_EQ(memory->spare_bytes(), budget / 8);
  // Evicting from a full cache hands the buffers back as spares.
  auto cold = ChunkMemory::Make(kChunk, budget);
  ChunkCache full(budget, cold);
  for (uint64_t i = 0; i < 200; i++) full.Put(1, i, 1, cold->Share(cold->Take(kChunk)));
  EXPECT_GT(cold->spare_bytes(), 0u);
  EXPECT_LE(cold->spare_bytes(), budget / 8);
}

TEST(ChunkMemoryTest, AReserveFillsTheBudgetAheadOfUseAndStopsWhenAsked) {
  const uint64_t budget = 32 * kChunk;
  auto memory = ChunkMemory::Make(kChunk, budget);
  memory->StartReserving(budget);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (memory->spare_bytes() < budget && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_EQ(memory->spare_bytes(), budget);
  memory->StopReserving();
  EXPECT_EQ(memory->spare_bytes(), budget) << "never past the budget";

  auto big = ChunkMemory::Make(kChunk, uint64_t{1} << 40);
  big->StartReserving(uint64_t{1} << 40);
  big->StopReserving();  // joins: no thread outlives the call, and a terabyte is not touched
  EXPECT_LT(big->spare_bytes(), uint64_t{1} << 40);
  EXPECT_EQ(big->Take(10), std::string(10, '\0'));
}

}  // namespace
}  // namespace strata::fs
