// Internal to fs/: names the tiering sources share. Not a public header.
#pragma once

#include <cstdint>
#include <string>

#include "base/env.h"
#include "fs/config.h"
#include "journal/placement.h"

namespace strata::fs::internal {

// The tier name of the hot tier, also the target that recalls a file.
inline constexpr const char* kHot = "hot";

inline bool IsPlacement(uint64_t segment) { return segment >= journal::kFirstPlacementSegment; }

inline std::string StagingDir(const Config& c) { return JoinPath(c.hot_path, "staging"); }
inline std::string HotSegmentsDir(const Config& c) { return JoinPath(c.hot_path, "segments"); }
inline std::string ReadCacheDir(const Config& c) { return JoinPath(c.hot_path, "cache"); }
inline std::string SnapshotDir(const Config& c) { return JoinPath(c.hot_path, "snapshots"); }
inline std::string MetaDbPath(const Config& c) { return JoinPath(c.hot_path, "meta.db"); }

}  // namespace strata::fs::internal
