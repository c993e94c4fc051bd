// Tier: where sealed segments live once they leave the hot tier. A tier stores whole
// immutable objects by key and serves ranged reads of them; it never sees plaintext (a
// segment's records are already AEAD-sealed) and never interprets the bytes.
//
// Implementations: DirectoryTier (an HDD array or an NFS/SMB mount) and S3Tier (any
// S3-compatible object store). Every implementation passes the same generic suite
// (tests/unit/tiering/tier_test.cc); an in-memory one lives in tests/util for unit tests.
//
// Errors: NotFound for a key that is not stored; Unavailable (retryable) for a tier that is
// down, timed out or throttled; Corruption when what came back is not what was stored (short
// object, size mismatch); IOError/InvalidArgument otherwise, each naming the tier and key.
//
// Thread-safety: every method may be called from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace strata::tiering {

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
};

class Tier {
 public:
  virtual ~Tier() = default;

  // The tier's name in the config ("archive"), for messages.
  virtual const std::string& name() const = 0;

  // Stores the local file at `local_path` under `key`, replacing any object with that key.
  // When this returns OK the object is complete and durable on the tier (a directory tier
  // fsyncs the file and its directory; S3 has acknowledged the PUT or the multipart
  // completion). A reader never sees a partial object under `key`.
  virtual Status PutFile(const std::string& key, const std::string& local_path) = 0;

  // Stores `data` under `key`, with the same guarantees as PutFile.
  virtual Status Put(const std::string& key, std::string_view data) = 0;

  // Reads exactly `length` bytes at `offset` into *out (replacing its contents). A range that
  // runs past the end of the object is Corruption (the caller asked for bytes it stored).
  virtual Status Get(const std::string& key, uint64_t offset, uint64_t length,
                     std::string* out) = 0;

  // The size of a stored object; NotFound when absent.
  virtual Result<uint64_t> Size(const std::string& key) = 0;

  // Removes the object. OK when it does not exist (deletes are retried after crashes).
  virtual Status Delete(const std::string& key) = 0;

  // Every object whose key starts with `prefix`, in key order.
  virtual Status List(const std::string& prefix, std::vector<ObjectInfo>* out) = 0;
};

}  // namespace strata::tiering
