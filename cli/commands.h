// The strata command line: thin mains over testable functions. Exit codes (documented in
// docs/cli.md): 0 success, 1 bad usage/config/key/option (nothing changed), 2 the operation
// failed at run time (I/O error, corruption, already mounted).
#pragma once

#include <string>
#include <vector>

namespace strata::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 1;
inline constexpr int kExitFailed = 2;

int MkfsMain(const std::string& config_path);
// `null_data`: benchmarks only; see fs::OpenOptions::null_data.
int MountMain(const std::string& config_path, const std::string& mountpoint,
              const std::vector<std::string>& options, bool foreground, bool null_data = false);
struct MigrateArgs {
  bool dry_run = false;
  bool status = false;
  bool json = false;
  std::string as_of;  // "+200d" or "2027-06-01": the clock the policy's ages use
};
// strata migrate CONFIG [--dry-run|--status] [--json] [--as-of WHEN]
int MigrateMain(const std::string& config_path, const MigrateArgs& args);
// argv as mount(8) calls a helper: mount.strata CONFIG MOUNTPOINT [-sfnv] [-o opts]
int MountHelperMain(int argc, char** argv);
int Main(int argc, char** argv);

}  // namespace strata::cli
