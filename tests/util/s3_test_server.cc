#include "tests/util/s3_test_server.h"

#include <cstdlib>
#include <fstream>

namespace strata::test {

std::map<std::string, std::string> ReadEnvFile(const std::string& path) {
  std::map<std::string, std::string> vars;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) vars[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return vars;
}

std::string S3TestServer::operator[](const std::string& name) const {
  auto it = vars.find(name);
  return it == vars.end() ? std::string() : it->second;
}

const S3TestServer& S3Server() {
  static const S3TestServer server = [] {
    S3TestServer s;
    const char* path = std::getenv("STRATA_S3_ENV");
    if (path == nullptr || *path == '\0') {
      s.why_not =
          "no S3 test server: STRATA_S3_ENV is not set (run these tests through ctest, whose S3 "
          "fixture starts one: ctest -L s3)";
    } else if (s.vars = ReadEnvFile(path); s["STRATA_S3_ENDPOINT"].empty()) {
      s.why_not = std::string("no S3 test server: ") + path +
                  " is missing or incomplete (did the s3_server_start fixture fail?)";
    } else if (s["STRATA_S3_SERVER_SCRIPT"].empty() || s["STRATA_S3_DIR"].empty()) {
      s.why_not = std::string("no S3 test server: ") + path + " is from an older s3-server.sh";
    }
    return s;
  }();
  return server;
}

}  // namespace strata::test
