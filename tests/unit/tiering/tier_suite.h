// The generic suite every Tier implementation passes (CONVENTIONS rule 15). Instantiate it
// with a factory that builds a fresh, empty tier for one test:
//
//   INSTANTIATE_TEST_SUITE_P(Directory, TierTest, ::testing::Values(TierFactory{
//       "directory", [](const std::string& scratch) { return OpenDirectoryTier(...); }}));
//
// `scratch` is unique per test: a local temp directory the factory may use, whose base name
// is also a fine key prefix for tiers that share one bucket across tests.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "tiering/tier.h"

namespace strata::tiering::test {

struct TierFactory {
  std::string name;
  std::function<Result<std::unique_ptr<Tier>>(const std::string& scratch)> make;
};

inline std::string PrintToString(const TierFactory& f) { return f.name; }

class TierTest : public ::testing::TestWithParam<TierFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;
  std::string scratch_;
  std::unique_ptr<Tier> tier_;
};

}  // namespace strata::tiering::test
