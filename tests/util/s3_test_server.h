// The S3 test server as the tests see it: `scripts/s3-server.sh start DIR` writes DIR/env
// (KEY=VALUE lines: STRATA_S3_ENDPOINT, _REGION, _BUCKET, _ACCESS_KEY, _SECRET_KEY,
// _STORAGE_CLASS, _TLS_ENDPOINT, _CA_FILE, _DIR, _SERVER_SCRIPT), and the CTest fixture S3
// (tests/s3) passes its path in STRATA_S3_ENV. Tests skip with `why_not` when it is absent.
#pragma once

#include <map>
#include <string>

namespace strata::test {

// The KEY=VALUE lines of a file written by scripts/s3-server.sh (empty if it is missing).
std::map<std::string, std::string> ReadEnvFile(const std::string& path);

struct S3TestServer {
  std::map<std::string, std::string> vars;
  std::string why_not;  // empty when the server is there

  // The value of `name`, or "" if it is not set.
  std::string operator[](const std::string& name) const;
};

// Read once from $STRATA_S3_ENV.
const S3TestServer& S3Server();

}  // namespace strata::test
