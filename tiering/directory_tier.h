// DirectoryTier: a tier that is a directory on an HDD array or a NAS (NFS, SMB). Each object
// is one file at <root>/<key>; '/' in a key makes subdirectories.
//
// A put writes a temporary file, fdatasyncs it, renames it into place and fsyncs the
// directory, so a reader (or a crash) sees either no object or the whole one. Errors that
// mean the share is gone (ESTALE, ENOTCONN, EHOSTDOWN, ETIMEDOUT, a missing root) are
// Unavailable, so the engine pauses and retries instead of treating data as lost.
#pragma once

#include <memory>
#include <string>

#include "base/env.h"
#include "tiering/tier.h"

namespace strata::tiering {

struct DirectoryTierOptions {
  std::string name;  // tier name in the config, for messages
  std::string root;  // absolute path of the tier's directory
};

// Fails with InvalidArgument when root is not absolute; a root that does not exist (yet, or
// any more) is not an error here: operations report it as Unavailable.
Result<std::unique_ptr<Tier>> OpenDirectoryTier(Env* env, const DirectoryTierOptions& options);

}  // namespace strata::tiering
