#include "cli/commands.h"

#include <sys/prctl.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "base/env.h"
#include "base/logging.h"
#include "cli/control.h"
#include "fs/config.h"
#include "fs/filesystem.h"
#include "fuse/fuse_glue.h"

namespace strata::cli {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "strata: %s\n", s.ToString().c_str());
  bool usage = s.IsInvalidArgument() || s.IsNotFound();
  return usage ? kExitUsage : kExitFailed;
}

std::vector<std::string> SplitOptions(const std::vector<std::string>& in) {
  std::vector<std::string> out;
  for (const auto& group : in) {
    std::stringstream ss(group);
    std::string o;
    while (std::getline(ss, o, ',')) {
      if (o.empty()) continue;
      // Options mount(8) and systemd use that mean nothing to FUSE.
      if (o == "defaults" || o == "auto" || o == "noauto" || o == "_netdev" || o == "nofail" ||
          o == "user" || o == "users" || o == "nouser" || o == "rw" || o.rfind("x-", 0) == 0 ||
          o.rfind("comment=", 0) == 0)
        continue;
      out.push_back(o);
    }
  }
  return out;
}

// True when /proc/self/mountinfo shows a live strata mount of the filesystem `name`.
bool IsMounted(const std::string& name) {
  std::FILE* f = std::fopen("/proc/self/mountinfo", "r");
  if (f == nullptr) return true;  // cannot tell: do not wait
  std::string want = " fuse.strata strata:" + name + " ";
  char line[4096];
  bool found = false;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::strstr(line, want.c_str()) != nullptr) found = true;
  std::fclose(f);
  return found;
}

// "+200d" (that long from now) or "2027-06-01" (UTC midnight) -> ns since the epoch.
Result<int64_t> ParseAsOf(const std::string& s, int64_t now_ns) {
  if (s.empty()) return int64_t{0};
  if (s[0] == '+') {
    auto ms = fs::ParseDurationMs(s.substr(1));
    if (!ms.ok()) return Status::InvalidArgument("--as-of " + s + ": " + ms.status().message());
    return now_ns + *ms * 1000000;
  }
  struct tm tm {};
  const char* end = ::strptime(s.c_str(), "%Y-%m-%d", &tm);
  if (end == nullptr || *end != '\0')
    return Status::InvalidArgument("--as-of " + s +
                                   ": expected +DURATION (e.g. +200d) or YYYY-MM-DD");
  return static_cast<int64_t>(::timegm(&tm)) * 1000000000;
}

}  // namespace

int MigrateMain(const std::string& config_path, const MigrateArgs& a) {
  auto cfg = fs::LoadConfig(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  auto now = ParseAsOf(a.as_of, Env::Default()->NowNanos());
  if (!now.ok()) return Fail(now.status());
  const bool tty = ::isatty(STDERR_FILENO);
  auto show = [&](const std::string& line) {
    if (a.json) return;
    std::fprintf(stderr, tty ? "\r\033[K%s" : "%s\n", line.c_str());
    std::fflush(stderr);
  };
  auto finish_progress = [&] {
    if (tty && !a.json) std::fprintf(stderr, "\r\033[K");
  };
  fs::OpenOptions open;
  open.read_only = a.status || a.dry_run;
  open.background_tiering = false;
  auto fs = fs::Filesystem::Open(*cfg, Env::Default(), open);
  if (!fs.ok() && fs.status().IsBusy()) {
    // Mounted: the running daemon does the work (it holds the filesystem).
    std::string req =
        a.status ? fmt::format("status {}", a.json ? 1 : 0)
                 : fmt::format("migrate {} {} {}", a.dry_run ? 1 : 0, a.json ? 1 : 0, *now);
    auto r = ControlRequest(ControlSocketPath(cfg->hot_path), req, show);
    finish_progress();
    if (!r.ok()) return Fail(r.status());
    std::fputs(r->output.c_str(), stdout);
    return r->exit_code;
  }
  if (!fs.ok()) return Fail(fs.status());
  if (a.status) {
    fs::TieringStatus st = (*fs)->GetTieringStatus();
    std::fputs((a.json ? fs::ToJson(st) + "\n" : fs::ToText(st)).c_str(), stdout);
    return kExitOk;
  }
  Status s = (*fs)->Start();
  if (!s.ok()) return Fail(s);
  fs::MigrateOptions o;
  o.dry_run = a.dry_run;
  o.now_ns = *now;
  o.progress = [&](const fs::MigrateProgress& p) {
    show(fmt::format("{}: {} files scanned, {} moved ({} bytes)", p.phase, p.files_scanned,
                     p.files_moved, p.bytes_moved));
  };
  auto r = (*fs)->Migrate(o);
  finish_progress();
  Status shut = (*fs)->Shutdown();
  if (!r.ok()) return Fail(r.status());
  std::fputs((a.json ? fs::ToJson(*r) + "\n" : fs::ToText(*r)).c_str(), stdout);
  if (!shut.ok()) return Fail(shut);
  return r->errors.empty() ? kExitOk : kExitFailed;
}

int MkfsMain(const std::string& config_path) {
  auto cfg = fs::LoadConfig(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  Status s = fs::Filesystem::Mkfs(*cfg, Env::Default());
  if (!s.ok()) return Fail(s);
  std::printf("created filesystem '%s' on %s (chunk size %u, segment size %llu)\n",
              cfg->name.c_str(), cfg->hot_path.c_str(), cfg->chunk_size,
              static_cast<unsigned long long>(cfg->segment_size));
  return kExitOk;
}

int MountMain(const std::string& config_path, const std::string& mountpoint,
              const std::vector<std::string>& raw_options, bool foreground, bool null_data) {
  auto cfg = fs::LoadConfig(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Fail(
        Status::InvalidArgument("mount point " + mountpoint + " is not an existing directory"));
  std::vector<std::string> options = SplitOptions(raw_options);
  fs::OpenOptions open;
  for (const auto& o : options)
    if (o == "ro") open.read_only = true;
  if (!IsMounted(cfg->name)) open.lock_wait_ms = 30000;
  open.null_data = null_data;
  open.reserve_memory = true;
  // Expanded keys live in OpenSSL's heap too: keep the daemon out of core dumps entirely.
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  auto fs = fs::Filesystem::Open(*cfg, Env::Default(), open);
  if (!fs.ok()) return Fail(fs.status());
  fuse::MountOptions mo;
  mo.mountpoint = mountpoint;
  mo.options = options;
  mo.foreground = foreground;
  std::unique_ptr<ControlServer> control;
  Status s = fuse::Serve(fs->get(), mo, [&]() -> Status {
    if (!foreground) log::UseSyslog("strata");
    log::Info("filesystem {} mounted on {}", cfg->name, mountpoint);
    RETURN_IF_ERROR((*fs)->Start());
    ASSIGN_OR_RETURN(control, ControlServer::Start(fs->get(), ControlSocketPath(cfg->hot_path)));
    return Status::OK();
  });
  control.reset();
  if (!s.ok()) return Fail(s);
  log::Info("filesystem {} unmounted cleanly", cfg->name);
  return kExitOk;
}

int MountHelperMain(int argc, char** argv) {
  std::vector<std::string> pos, opts;
  bool fake = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-o" && i + 1 < argc) {
      opts.push_back(argv[++i]);
    } else if (a.rfind("-o", 0) == 0 && a.size() > 2) {
      opts.push_back(a.substr(2));
    } else if (a == "-t" && i + 1 < argc) {
      ++i;
    } else if (a == "-n" || a == "-s" || a == "-v") {
      continue;
    } else if (a == "-f") {
      fake = true;
    } else {
      pos.push_back(a);
    }
  }
  if (pos.size() != 2) {
    std::fprintf(stderr, "usage: mount.strata CONFIG MOUNTPOINT [-o options]\n");
    return kExitUsage;
  }
  if (fake) return kExitOk;
  return MountMain(pos[0], pos[1], opts, false);
}

int Main(int argc, char** argv) {
  std::string prog = argv[0];
  auto slash = prog.find_last_of('/');
  if (slash != std::string::npos) prog = prog.substr(slash + 1);
  if (prog == "mount.strata") return MountHelperMain(argc, argv);

  CLI::App app{"strata: a tiered, encrypted, journaled filesystem for clinical archives"};
  app.require_subcommand(1);
  std::string config, mountpoint;
  std::vector<std::string> options;
  bool foreground = false, null_data = false;

  auto* mkfs = app.add_subcommand("mkfs", "create a filesystem described by CONFIG");
  mkfs->add_option("config", config, "filesystem config (TOML)")->required();

  auto* mount = app.add_subcommand("mount", "mount the filesystem described by CONFIG");
  mount->add_option("config", config, "filesystem config (TOML)")->required();
  mount->add_option("mountpoint", mountpoint, "directory to mount on")->required();
  mount->add_option("-o", options, "mount options (allow_other, ro, ...)");
  mount->add_flag("-f,--foreground", foreground, "stay in the foreground");
  mount->add_flag("--null-data", null_data,
                  "benchmarks only: file contents are DISCARDED and read back as zeros, so a "
                  "benchmark measures FUSE's own cost (names and sizes are kept); refused on a "
                  "filesystem that holds file data");

  MigrateArgs margs;
  auto* migrate =
      app.add_subcommand("migrate", "run a tiering pass now (through the daemon when mounted)");
  migrate->add_option("config", config, "filesystem config (TOML)")->required();
  migrate->add_flag("--dry-run", margs.dry_run, "count, per rule, what would move; change nothing");
  migrate->add_flag("--status", margs.status,
                    "show the pass in flight, the backlog and per-tier usage");
  migrate->add_flag("--json", margs.json, "machine-readable output");
  migrate->add_option("--as-of", margs.as_of,
                      "evaluate ages as of +DURATION from now or YYYY-MM-DD (planning)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (*mkfs) return MkfsMain(config);
  if (*mount) return MountMain(config, mountpoint, options, foreground, null_data);
  if (*migrate) return MigrateMain(config, margs);
  return kExitUsage;
}

}  // namespace strata::cli
