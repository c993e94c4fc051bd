// strata_tierbench: how long a tiering dry run (`strata migrate --dry-run`) takes over a large
// filesystem. Creating 10^6 files through FUSE takes longer than the pass being measured (a few
// thousand creates per second), so this tool builds the filesystem through the library, without
// a mount: a PACS-like tree pacs/stNNNNN/seNN/iNNNNNNN.dcm of N tiny files (one chunk each, so
// every file has a placement to evaluate). Then it times Filesystem::Migrate with dry_run, on a
// read-only open like the CLI's, first with a rule that selects no file (the baseline: the
// metadata walk and one rule's evaluation per file) and then with the same rule made to select
// every file (each selected file's placement is counted too). It asserts nothing; it prints a
// human line ('#') and one JSON object per phase. bench/tiering.sh drives it; bench/README.md
// says what each figure means.
//
// DIR holds everything (hot tier, a directory tier, key, config.toml, policy.toml) and is left
// in place, so `strata migrate DIR/config.toml --dry-run --as-of +200d` can be timed on it too.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "bench/bench_common.h"
#include "fs/config.h"
#include "fs/filesystem.h"
#include "fs/tiering.h"

namespace strata::bench {

const char* const kProgram = "strata_tierbench";

namespace {

constexpr int64_t kDayNs = 86400ll * 1000000000ll;

struct Options {
  std::string dir;
  std::string json_path;
  size_t files = 1000000;
  size_t series = 5;       // per study
  size_t instances = 100;  // per series
  size_t file_bytes = 64;  // each file is one chunk of this many bytes
  int repeat = 1;          // dry runs of each kind (the figures are the fastest)
  bool drop_caches = true;
  bool build = true;  // false: reuse the filesystem already in DIR
};

void Check(const Status& s, const char* what) {
  if (!s.ok()) Die("%s: %s", what, s.ToString().c_str());
}

void WriteFile(const std::string& path, const std::string& text, mode_t mode = 0644) {
  std::ofstream f(path, std::ios::trunc | std::ios::binary);
  f << text;
  f.close();
  if (!f) Die("cannot write %s", path.c_str());
  ::chmod(path.c_str(), mode);
}

void Mkdir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    Die("mkdir %s: %s", path.c_str(), std::strerror(errno));
}

// Empties the kernel's page, dentry and inode caches (root only), so the walk reads meta.db
// from the disk like the first pass after a reboot would.
bool DropCaches(const Options& o) { return o.drop_caches && DropKernelCaches(); }

void Emit(const Options& o, const Json& j, const std::string& human) {
  std::string line = j.Done();
  std::printf("# %s\n%s\n", human.c_str(), line.c_str());
  std::fflush(stdout);
  if (!o.json_path.empty()) {
    FILE* f = std::fopen(o.json_path.c_str(), "a");
    if (f == nullptr) Die("cannot append to %s", o.json_path.c_str());
    std::fprintf(f, "%s\n", line.c_str());
    std::fclose(f);
  }
}

std::string ConfigPath(const Options& o) { return o.dir + "/config.toml"; }
std::string PolicyPath(const Options& o) { return o.dir + "/policy.toml"; }

// The baseline: the same rule with an age no file has, so the pass walks and evaluates every
// file and selects none. (An empty policy is no baseline: a pass may skip the walk for it.)
const char* kPolicyNone =
    "[[rule]]\n"
    "name = \"old-studies\"\n"
    "match = \"pacs/**\"\n"
    "older_than = \"100y\"\n"
    "to = \"archive\"\n";

// The rule the dry run evaluates: a PACS archive policy's usual shape.
const char* kPolicy =
    "[[rule]]\n"
    "name = \"old-studies\"\n"
    "match = \"pacs/**\"\n"
    "older_than = \"180d\"\n"
    "to = \"archive\"\n";

fs::Config WriteSetup(const Options& o) {
  Mkdir(o.dir);
  Mkdir(o.dir + "/hot");
  Mkdir(o.dir + "/archive");
  WriteFile(o.dir + "/key", std::string(32, 'b'), 0600);
  WriteFile(PolicyPath(o), kPolicy);
  WriteFile(ConfigPath(o), Fmt("[filesystem]\n"
                               "name = \"tierbench\"\n"
                               "[keys]\n"
                               "key_file = \"%s/key\"\n"
                               "[tiers.hot]\n"
                               "path = \"%s/hot\"\n"
                               "[tiers.archive]\n"
                               "kind = \"directory\"\n"
                               "path = \"%s/archive\"\n"
                               "[policy]\n"
                               "file = \"%s\"\n"
                               "interval = \"off\"\n",
                               o.dir.c_str(), o.dir.c_str(), o.dir.c_str(), PolicyPath(o).c_str()));
  auto cfg = fs::LoadConfig(ConfigPath(o));
  if (!cfg.ok()) Die("config: %s", cfg.status().ToString().c_str());
  return *cfg;
}

// Builds the tree through the library: mkdir per study and series, then per file create,
// one small write, release. Lookup references are returned at once (as the kernel would).
void Build(const Options& o, const fs::Config& cfg) {
  Check(fs::Filesystem::Mkfs(cfg, Env::Default()), "mkfs");
  fs::OpenOptions open;
  open.background_tiering = false;
  auto r = fs::Filesystem::Open(cfg, Env::Default(), open);
  if (!r.ok()) Die("open: %s", r.status().ToString().c_str());
  std::unique_ptr<fs::Filesystem> fsys = std::move(r).value();
  // No Start(): without the sealing pool and the committer each chunk is sealed by the caller
  // and everything becomes durable at Shutdown, which builds the tree about twice as fast.
  const fs::Caller root{};
  auto mkdir = [&](uint64_t parent, const std::string& name) {
    auto a = fsys->Mkdir(parent, name, 0755, root);
    if (!a.ok()) Die("mkdir %s: %s", name.c_str(), a.status().ToString().c_str());
    fsys->Forget(a->ino, 1);
    return a->ino;
  };
  const uint64_t pacs = mkdir(fs::kRootIno, "pacs");
  std::string data(o.file_bytes, '\0');
  const double t0 = Now();
  double last = t0;
  size_t done = 0;
  const size_t per_study = o.series * o.instances;
  for (size_t st = 0; done < o.files; st++) {
    const uint64_t study = mkdir(pacs, Fmt("st%05zu", st));
    for (size_t se = 0; se < o.series && done < o.files; se++) {
      const uint64_t series = mkdir(study, Fmt("se%02zu", se));
      for (size_t in = 0; in < o.instances && done < o.files; in++, done++) {
        const std::string name = Fmt("i%07zu.dcm", st * per_study + se * o.instances + in);
        auto c = fsys->Create(series, name, 0644, O_RDWR, root);
        if (!c.ok()) Die("create %s: %s", name.c_str(), c.status().ToString().c_str());
        const uint64_t ino = c->first.ino, fh = c->second;
        if (!data.empty()) {
          std::snprintf(data.data(), data.size(), "%s", name.c_str());  // distinct bytes
          auto w = fsys->Write(ino, fh, 0, data);
          if (!w.ok()) Die("write %s: %s", name.c_str(), w.status().ToString().c_str());
        }
        Check(fsys->Release(ino, fh), "release");
        fsys->Forget(ino, 1);
      }
    }
    const double t = Now();
    if (t - last >= 10) {
      std::fprintf(stderr, "strata_tierbench: %zu of %zu files (%.0f/s)\n", done, o.files,
                   static_cast<double>(done) / (t - t0));
      last = t;
    }
  }
  const double created = Now();
  Check(fsys->Shutdown(), "shutdown");
  fsys.reset();
  const double secs = Now() - t0;
  struct stat st;
  const double meta_bytes =
      ::stat((cfg.hot_path + "/meta.db").c_str(), &st) == 0 ? static_cast<double>(st.st_size) : 0;
  Json j;
  j.Str("workload", "tierbuild").Num("files", static_cast<double>(o.files));
  j.Num("file_bytes", static_cast<double>(o.file_bytes)).Num("seconds", secs);
  j.Num("create_seconds", created - t0).Num("files_per_s", static_cast<double>(o.files) / secs);
  j.Num("meta_db_bytes", meta_bytes);
  Emit(o, j,
       Fmt("build      %8zu files in %6.1f s (%6.0f files/s through the library, "
           "%.1f s of it shutdown); meta.db %.0f MiB",
           o.files, secs, static_cast<double>(o.files) / secs, secs - (created - t0),
           meta_bytes / 1048576));
}

// One dry-run pass on a fresh read-only open (as `strata migrate --dry-run` does when the
// filesystem is not mounted); the open is timed separately from the pass.
void DryRun(const Options& o, const fs::Config& cfg, const char* kind, const std::string& policy) {
  WriteFile(PolicyPath(o), policy);
  double best = 0, best_open = 0;
  fs::MigrateReport rep;
  bool dropped = false;
  for (int i = 0; i < o.repeat; i++) {
    dropped = DropCaches(o);
    const double t0 = Now();
    fs::OpenOptions open;
    open.read_only = true;
    open.background_tiering = false;
    auto r = fs::Filesystem::Open(cfg, Env::Default(), open);
    if (!r.ok()) Die("open: %s", r.status().ToString().c_str());
    const double t1 = Now();
    fs::MigrateOptions mo;
    mo.dry_run = true;
    mo.now_ns = Env::Default()->NowNanos() + 200 * kDayNs;  // every file is 200 days old
    auto m = (*r)->Migrate(mo);
    const double t2 = Now();
    if (!m.ok()) Die("dry run (%s): %s", kind, m.status().ToString().c_str());
    if (i == 0 || t2 - t1 < best) best = t2 - t1, best_open = t1 - t0, rep = *m;
  }
  WriteFile(PolicyPath(o), kPolicy);  // leave the real policy for the CLI
  uint64_t selected = 0, bytes = 0;
  for (const auto& rc : rep.rules) selected += rc.files, bytes += rc.bytes;
  const double n = static_cast<double>(rep.files_scanned);
  if (rep.files_scanned != o.files && o.build)
    std::fprintf(stderr, "strata_tierbench: warning: the pass scanned %llu files, not %zu\n",
                 static_cast<unsigned long long>(rep.files_scanned), o.files);
  Json j;
  j.Str("workload", "dryrun").Str("policy", kind).Num("files_scanned", n);
  j.Num("files_selected", static_cast<double>(selected))
      .Num("bytes_selected", static_cast<double>(bytes));
  j.Num("seconds", best).Num("open_seconds", best_open).Num("files_per_s", n / best);
  j.Num("repeat", o.repeat).Bool("dropped_caches", dropped);
  Emit(o, j,
       Fmt("dry run    %8.0f files in %6.2f s (%8.0f files/s), policy %-5s selects %llu "
           "(open %.2f s)%s",
           n, best, n / best, kind, static_cast<unsigned long long>(selected), best_open,
           dropped ? "" : " [warm caches]"));
}

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: strata_tierbench --dir DIR [options]\n"
               "  --dir DIR          new (or empty) directory for the filesystem; left in place\n"
               "  --files N          files to create (1000000; quick 100000)\n"
               "  --quick            100000 files\n"
               "  --series N         series per study (5)\n"
               "  --instances N      files per series (100)\n"
               "  --file-bytes N     bytes per file, one chunk (64)\n"
               "  --repeat N         dry runs of each policy; the fastest is reported (1)\n"
               "  --no-build         time the dry runs on the filesystem already in DIR\n"
               "  --json FILE        also append the JSON lines to FILE\n"
               "  --no-drop-caches   do not drop the kernel caches before each dry run\n");
  std::exit(1);
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++)
    if (std::strcmp(argv[i], "--quick") == 0) o.files = 100000;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) Die("%s needs a value", a.c_str());
      return argv[++i];
    };
    if (a == "--quick") continue;
    if (a == "--dir")
      o.dir = val();
    else if (a == "--files")
      o.files = ParseCount(val());
    else if (a == "--series")
      o.series = ParseCount(val());
    else if (a == "--instances")
      o.instances = ParseCount(val());
    else if (a == "--file-bytes")
      o.file_bytes = ParseCount(val());
    else if (a == "--repeat")
      o.repeat = static_cast<int>(ParseCount(val()));
    else if (a == "--no-build")
      o.build = false;
    else if (a == "--json")
      o.json_path = val();
    else if (a == "--no-drop-caches")
      o.drop_caches = false;
    else if (a == "-h" || a == "--help")
      Usage();
    else
      Die("unknown option %s (--help for help)", a.c_str());
  }
  if (o.dir.empty() || o.dir.front() != '/') Die("--dir must be an absolute path");
  if (o.files == 0 || o.series == 0 || o.instances == 0 || o.repeat <= 0)
    Die("counts must be positive");
  if (o.file_bytes > fs::Config{}.chunk_size)
    Die("--file-bytes: at most one chunk (the default chunk_size)");

  fs::Config cfg;
  if (o.build) {
    struct stat st;
    if (::stat((o.dir + "/hot").c_str(), &st) == 0)
      Die("%s already holds a filesystem", o.dir.c_str());
    cfg = WriteSetup(o);
    Build(o, cfg);
  } else {
    auto c = fs::LoadConfig(ConfigPath(o));
    if (!c.ok()) Die("config: %s", c.status().ToString().c_str());
    cfg = *c;
  }
  DryRun(o, cfg, "none", kPolicyNone);
  DryRun(o, cfg, "pacs", kPolicy);
  return 0;
}

}  // namespace
}  // namespace strata::bench

int main(int argc, char** argv) { return strata::bench::Main(argc, argv); }
