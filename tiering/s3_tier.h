// S3Tier: a Tier on any S3-compatible object store (Ceph RGW, AWS S3, MinIO, ...), over
// libcurl with its built-in AWS Signature V4. docs/s3.md describes the requests, retries,
// timeouts, multipart uploads, TLS and credentials in full.
//
// Object `key` of the tier is stored as `prefix + key` in `bucket`. Every request carries the
// SHA-256 of its payload, which the server checks, so a body damaged on the way is refused
// rather than stored. Transient failures (5xx, 429/SlowDown, timeouts, refused or reset
// connections) are retried up to max_attempts times with jittered exponential backoff and
// then reported as Unavailable; every error message names the tier, the operation and the
// key, never the credentials.
//
// Thread-safety: a tier may be used from many threads at once; connections are kept alive in
// a small pool of curl handles.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "tiering/tier.h"

namespace strata::tiering {

// Never logged and never part of a message.
struct S3Credentials {
  std::string access_key;
  std::string secret_key;
};

// Reads an AWS shared-credentials file: `[profile]` sections (also `[profile name]`, as in
// ~/.aws/config) of `aws_access_key_id = ...` and `aws_secret_access_key = ...` lines;
// `#`/`;` comments. Errors name the file and the line and never quote a value. A file that
// group or others may read is accepted with a warning in the log.
Result<S3Credentials> LoadS3CredentialsFile(const std::string& path,
                                            const std::string& profile = "default");

// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; NotFound (naming the variable) if either is
// unset or empty.
Result<S3Credentials> S3CredentialsFromEnvironment();

struct S3Options {
  std::string name;      // the tier's name in the config, for messages
  std::string endpoint;  // "https://s3.example.org" or "http://127.0.0.1:7480"
  std::string region = "us-east-1";
  std::string bucket;
  std::string prefix;         // key prefix inside the bucket, e.g. "pacs/" (may be empty)
  std::string storage_class;  // x-amz-storage-class on PUT and multipart; empty: bucket default
  S3Credentials credentials;
  bool verify_tls = true;  // false only for tests; logged as a warning when the tier opens
  std::string ca_file;     // extra CA bundle (PEM) for https, e.g. a hospital's private CA
  bool path_style = true;  // false: virtual-host style https://bucket.host/key
  int64_t connect_timeout_ms = 5000;
  // Per attempt, plus 1 ms per KiB of payload (a floor of 1 MiB/s for large transfers), so a
  // tier that is down fails within about max_attempts * this.
  int64_t request_timeout_ms = 30000;
  int max_attempts = 4;                        // attempts per request, retries included
  uint64_t multipart_threshold = 32ull << 20;  // PutFile of a larger file uses multipart
  uint64_t part_size = 16ull << 20;            // 5 MiB .. 5 GiB; raised to stay <= 10000 parts
};

// Checks the options (an InvalidArgument names the offending option) and builds the tier.
// Does not contact the server: a tier that is down at start-up opens, and its requests fail
// with Unavailable until it is back.
Result<std::unique_ptr<Tier>> OpenS3Tier(const S3Options& options);

// The URL of `key` of a tier with these options (path or virtual-host style, key encoded as
// SigV4 requires), e.g. for messages and tools. Does not validate the options.
std::string S3ObjectUrl(const S3Options& options, std::string_view key);

}  // namespace strata::tiering
