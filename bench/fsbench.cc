// strata_fsbench: file system workloads for comparing strata with a plain directory and with
// other FUSE file systems. It only uses POSIX calls on a directory, so every target is measured
// the same way. It asserts nothing: it prints one JSON object per workload (lines starting with
// '{') and a human-readable line (starting with '#'). bench/run.sh drives it; see
// bench/README.md for what each figure means.
//
// Data is deterministic (fixed seeds), so the same bytes land on every target and reads are
// verified against what was written.
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_common.h"

namespace strata::bench {

const char* const kProgram = "strata_fsbench";

namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kKiB = size_t{1} << 10;
constexpr int kSliceDim = 512;                                     // CT slice: 512 x 512 uint16
constexpr size_t kSliceBytes = size_t{kSliceDim} * kSliceDim * 2;  // 512 KiB
constexpr size_t kPoolSlices = 128;                                // 64 MiB of distinct data
constexpr size_t kPoolBytes = kPoolSlices * kSliceBytes;

[[noreturn]] void DieErrno(const char* what, const std::string& path) {
  Die("%s %s: %s", what, path.c_str(), std::strerror(errno));
}

// splitmix64: fast, good enough for noise and shuffles, and seedable.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return Next() % n; }
};

template <typename T>
void Shuffle(std::vector<T>* v, uint64_t seed) {
  Rng r(seed);
  for (size_t i = v->size(); i > 1; i--) std::swap((*v)[i - 1], (*v)[r.Below(i)]);
}

// ---------------------------------------------------------------------------------------------
// Data.
//
// "ct": synthetic CT slices, 512x512 little-endian uint16 (HU + 1024, as stored in DICOM
// with rescale intercept -1024): a circular field of view (outside it 0, the padding value),
// air with noise inside it, an elliptical body of soft tissue with slow variation, two lungs,
// a few organs, a bone ring, and gaussian-ish noise of a few LSBs from the PRNG. Every slice
// differs (the anatomy drifts with the slice number and the noise is fresh). zstd -1 compresses
// it about 4x, like real CT.
// "random": incompressible bytes.

// Noise: sum of four 4-bit uniforms, centred (sigma ~ 9.2), times kNoiseNum/kNoiseDen: sigma ~ 1.9
// LSB. Tuned so that `zstd -1` compresses the data about 4x.
constexpr int kNoiseNum = 1;
constexpr int kNoiseDen = 5;

void MakeCtSlice(size_t slice, uint16_t* px) {
  Rng rng(0x5eed0000 + slice);
  const double t = static_cast<double>(slice);
  const double cx = 256 + 6 * std::sin(t / 23), cy = 262 + 4 * std::cos(t / 31);
  const double ax = 205 + 10 * std::sin(t / 40), ay = 150 + 8 * std::cos(t / 29);
  // Organs: (x, y, radius, value).
  struct Blob {
    double x, y, r;
    int v;
  };
  const Blob blobs[] = {
      {cx - 70, cy - 10, 55 + 8 * std::sin(t / 17), 235},  // right lung (air-ish)
      {cx + 70, cy - 10, 52 + 8 * std::cos(t / 19), 235},  // left lung
      {cx, cy + 40, 30 + 5 * std::sin(t / 11), 1090},      // an organ
      {cx + 20, cy - 60, 18, 1150},                        // vessel with contrast
      {cx, cy + 110, 16, 1900},                            // spine
  };
  uint64_t bits = 0;
  int left = 0;
  for (int y = 0; y < kSliceDim; y++) {
    const double dy = y - cy;
    const double wave_y = 12 * std::cos(y / 41.0 + t / 13);
    for (int x = 0; x < kSliceDim; x++) {
      const double fx = x - 256.0, fy = y - 256.0;
      uint16_t* p = px + static_cast<size_t>(y) * kSliceDim + x;
      if (fx * fx + fy * fy > 250.0 * 250.0) {  // outside the field of view
        *p = 0;
        continue;
      }
      const double dx = x - cx;
      const double e = (dx * dx) / (ax * ax) + (dy * dy) / (ay * ay);
      int v;
      if (e > 1.0) {
        v = 24;  // air
      } else if (e > 0.93) {
        v = 1010;  // skin and fat
      } else if (e > 0.86) {
        v = 1750;  // ribs
      } else {
        v = 1045 + static_cast<int>(wave_y + 10 * std::sin(x / 37.0 + t / 9));
        for (const Blob& b : blobs) {
          const double bx = x - b.x, by = y - b.y;
          if (bx * bx + by * by < b.r * b.r) v = b.v;
        }
      }
      if (left == 0) {
        bits = rng.Next();
        left = 4;
      }
      int n = static_cast<int>((bits & 0xf) + ((bits >> 4) & 0xf) + ((bits >> 8) & 0xf) +
                               ((bits >> 12) & 0xf)) -
              30;
      bits >>= 16;
      left--;
      v += n * kNoiseNum / kNoiseDen;
      *p = static_cast<uint16_t>(std::clamp(v, 0, 4095));
    }
  }
}

enum class Kind { kCt, kRandom };

const char* KindName(Kind k) { return k == Kind::kCt ? "ct" : "random"; }

// 64 MiB of distinct data of one kind; a file's byte at offset o is pool[o % kPoolBytes].
std::vector<char> MakePool(Kind kind) {
  std::vector<char> pool(kPoolBytes);
  if (kind == Kind::kRandom) {
    Rng r(0xabad1dea);
    for (size_t i = 0; i < kPoolBytes; i += 8) {
      uint64_t v = r.Next();
      std::memcpy(pool.data() + i, &v, 8);
    }
    return pool;
  }
  // Generate slices on both cores; done before any timing starts.
  unsigned nt = std::max(1u, std::min(4u, std::thread::hardware_concurrency()));
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < nt; t++)
    threads.emplace_back([&, t] {
      for (size_t s = t; s < kPoolSlices; s += nt)
        MakeCtSlice(s, reinterpret_cast<uint16_t*>(pool.data() + s * kSliceBytes));
    });
  for (auto& th : threads) th.join();
  return pool;
}

// ---------------------------------------------------------------------------------------------
// Options, output.

struct Options {
  std::string workload;
  std::string dir;
  std::string target = "dir";
  std::string hot;  // where the target keeps its bytes (stored-size accounting)
  std::string json_path;
  std::string ready_file;   // pacsread: created when the timed part starts
  std::string wait_file;    // pacsread: the timed part starts once this exists
  std::string latency_log;  // pacsread: one line per file (start, latency, path)
  Kind kind = Kind::kCt;
  bool quick = false;
  bool drop_caches = true;
  bool verify = true;  // compare what reads return with what was written (sizes always)
  size_t seq_mib = 1024;
  size_t rand_file_mib = 256;
  size_t rand_ops = 20000;
  double rand_seconds = 20;
  size_t studies = 20, series = 5, instances = 20;
  size_t first_study = 0;  // pacsread: read studies [first_study, studies)
  size_t file_kib = 512;
  size_t ingest_write_kib = 128;
  unsigned ingest_threads = 4;
  unsigned readers = 32;
  size_t meta_dirs = 100, meta_files = 200;
};

class Reporter {
 public:
  explicit Reporter(const Options& o) : o_(o) {}
  Json Begin(const char* workload) const {
    Json j;
    j.Str("workload", workload).Str("target", o_.target);
    return j;
  }
  void Emit(const Json& j, const std::string& human) const {
    std::string line = j.Done();
    std::printf("# %-10s %s\n%s\n", o_.target.c_str(), human.c_str(), line.c_str());
    std::fflush(stdout);
    if (!o_.json_path.empty()) {
      FILE* f = std::fopen(o_.json_path.c_str(), "a");
      if (f == nullptr) DieErrno("cannot append to", o_.json_path);
      std::fprintf(f, "%s\n", line.c_str());
      std::fclose(f);
    }
  }

 private:
  const Options& o_;
};

struct Percentiles {
  double p50 = 0, p99 = 0, max = 0, mean = 0;
};

Percentiles Summarize(std::vector<double> v) {
  Percentiles p;
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
    return v[std::min(i, v.size() - 1)];
  };
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.max = v.back();
  double sum = 0;
  for (double x : v) sum += x;
  p.mean = sum / static_cast<double>(v.size());
  return p;
}

// Latencies are collected in seconds and reported in milliseconds.
void AddLatency(Json* j, const char* prefix, const Percentiles& p) {
  std::string b(prefix);
  j->Num((b + "_p50_ms").c_str(), p.p50 * 1e3);
  j->Num((b + "_p99_ms").c_str(), p.p99 * 1e3);
  j->Num((b + "_max_ms").c_str(), p.max * 1e3);
}

// ---------------------------------------------------------------------------------------------
// Helpers.

std::string Join(const std::string& a, const std::string& b) { return a + "/" + b; }

void MkdirP(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) DieErrno("mkdir", path);
}

void WriteAll(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      DieErrno("write", path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void PwriteAll(int fd, const char* p, size_t n, off_t off, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, off);
    if (w < 0) {
      if (errno == EINTR) continue;
      DieErrno("pwrite", path);
    }
    p += w;
    off += w;
    n -= static_cast<size_t>(w);
  }
}

size_t ReadFull(int fd, char* p, size_t n, const std::string& path) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, p + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      DieErrno("read", path);
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

bool g_warned_drop = false;

// Empties the kernel's page, dentry and inode caches so reads reach the file system under test.
// Needs root; without it the figures are warm-cache figures (reported as dropped_caches=false).
bool DropCaches(const Options& o) {
  if (!o.drop_caches) return false;
  const bool ok = DropKernelCaches();
  if (!ok && !g_warned_drop) {
    std::fprintf(stderr, "strata_fsbench: cannot drop caches (%s); reads may be cached\n",
                 std::strerror(errno));
    g_warned_drop = true;
  }
  return ok;
}

// Also asks the kernel to drop this file's cached pages (works without root for clean pages).
void FadviseDontNeed(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

struct Usage {
  uint64_t apparent = 0;   // sum of st_size (du --apparent-size)
  uint64_t allocated = 0;  // sum of st_blocks * 512 (du); includes preallocated space
};

Usage g_usage;
int UsageVisit(const char*, const struct stat* st, int type, FTW*) {
  if (type == FTW_F) {
    g_usage.apparent += static_cast<uint64_t>(st->st_size);
    g_usage.allocated += static_cast<uint64_t>(st->st_blocks) * 512;
  }
  return 0;
}

Usage MeasureUsage(const std::string& dir) {
  g_usage = Usage{};
  if (::nftw(dir.c_str(), UsageVisit, 64, FTW_PHYS | FTW_MOUNT) != 0) DieErrno("walk", dir);
  return g_usage;
}

// ---------------------------------------------------------------------------------------------
// Workloads.

std::string SeqPath(const Options& o) {
  return Join(o.dir, std::string("seq-") + KindName(o.kind) + ".dat");
}

// Sequential write of seq_mib MiB in 1 MiB writes, then fsync and close (all timed).
void SeqWrite(const Options& o, const Reporter& rep) {
  std::vector<char> pool = MakePool(o.kind);
  const std::string path = SeqPath(o);
  ::unlink(path.c_str());
  Usage before;
  if (!o.hot.empty()) {
    ::sync();
    before = MeasureUsage(o.hot);
  }
  const size_t total = o.seq_mib * kMiB;
  std::vector<double> lat;
  lat.reserve(o.seq_mib);
  double t0 = Now();
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) DieErrno("create", path);
  for (size_t off = 0; off < total; off += kMiB) {
    double a = Now();
    WriteAll(fd, pool.data() + off % kPoolBytes, kMiB, path);
    lat.push_back(Now() - a);
  }
  double t_fsync = Now();
  if (::fsync(fd) != 0) DieErrno("fsync", path);
  double fsync_s = Now() - t_fsync;
  if (::close(fd) != 0) DieErrno("close", path);
  double secs = Now() - t0;

  Json j = rep.Begin("seqwrite");
  j.Str("kind", KindName(o.kind)).Num("bytes", static_cast<double>(total));
  j.Num("seconds", secs).Num("mb_per_s", static_cast<double>(total) / secs / 1e6);
  j.Num("fsync_seconds", fsync_s);
  AddLatency(&j, "write_1m", Summarize(lat));
  std::string stored;
  if (!o.hot.empty()) {
    ::sync();
    Usage after = MeasureUsage(o.hot);
    double app = static_cast<double>(after.apparent) - static_cast<double>(before.apparent);
    double alloc = static_cast<double>(after.allocated) - static_cast<double>(before.allocated);
    j.Num("stored_bytes", app).Num("stored_allocated_bytes", alloc);
    j.Num("stored_ratio", static_cast<double>(total) / app);
    stored = Fmt("; stored %.1f MiB (%.2fx)", app / kMiB, static_cast<double>(total) / app);
  }
  rep.Emit(j, Fmt("seqwrite %-6s %6zu MiB %8.1f MB/s (fsync %.2f s)%s", KindName(o.kind), o.seq_mib,
                  static_cast<double>(total) / secs / 1e6, fsync_s, stored.c_str()));
}

// Sequential read of the seqwrite file in 1 MiB reads with cold caches; verifies the bytes.
void SeqRead(const Options& o, const Reporter& rep) {
  std::vector<char> pool = MakePool(o.kind);
  const std::string path = SeqPath(o);
  FadviseDontNeed(path);
  bool dropped = DropCaches(o);
  std::vector<char> buf(kMiB);
  size_t total = 0, mismatches = 0;
  std::vector<double> lat;
  double t0 = Now();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) DieErrno("open", path);
  for (;;) {
    double a = Now();
    size_t n = ReadFull(fd, buf.data(), kMiB, path);
    if (n == 0) break;
    lat.push_back(Now() - a);
    if (o.verify && std::memcmp(buf.data(), pool.data() + total % kPoolBytes, n) != 0) mismatches++;
    total += n;
    if (n < kMiB) break;
  }
  ::close(fd);
  double secs = Now() - t0;
  if (total != o.seq_mib * kMiB) mismatches++;
  Json j = rep.Begin("seqread");
  j.Str("kind", KindName(o.kind)).Num("bytes", static_cast<double>(total));
  j.Num("seconds", secs).Num("mb_per_s", static_cast<double>(total) / secs / 1e6);
  AddLatency(&j, "read_1m", Summarize(lat));
  j.Num("mismatches", static_cast<double>(mismatches)).Bool("dropped_caches", dropped);
  j.Bool("verified", o.verify);
  rep.Emit(j, Fmt("seqread  %-6s %6zu MiB %8.1f MB/s%s", KindName(o.kind), total / kMiB,
                  static_cast<double>(total) / secs / 1e6, mismatches ? "  DATA MISMATCH" : ""));
}

std::string RandPath(const Options& o) { return Join(o.dir, "rand4k.dat"); }

// Creates the file the random workloads use (CT data; timed only for information).
void RandFile(const Options& o, const Reporter& rep) {
  std::vector<char> pool = MakePool(Kind::kCt);
  const std::string path = RandPath(o);
  ::unlink(path.c_str());
  const size_t total = o.rand_file_mib * kMiB;
  double t0 = Now();
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) DieErrno("create", path);
  for (size_t off = 0; off < total; off += kMiB)
    WriteAll(fd, pool.data() + off % kPoolBytes, kMiB, path);
  if (::fsync(fd) != 0) DieErrno("fsync", path);
  ::close(fd);
  double secs = Now() - t0;
  Json j = rep.Begin("randfile");
  j.Num("bytes", static_cast<double>(total)).Num("seconds", secs);
  j.Num("mb_per_s", static_cast<double>(total) / secs / 1e6);
  rep.Emit(j, Fmt("randfile        %6zu MiB %8.1f MB/s (setup for randread/randwrite)",
                  o.rand_file_mib, static_cast<double>(total) / secs / 1e6));
}

// Distinct 4 KiB blocks in random order (no block twice, so no read is served by an earlier
// one's page cache).
std::vector<uint32_t> RandomBlocks(size_t file_bytes, uint64_t seed) {
  std::vector<uint32_t> blocks(file_bytes / (4 * kKiB));
  for (size_t i = 0; i < blocks.size(); i++) blocks[i] = static_cast<uint32_t>(i);
  Shuffle(&blocks, seed);
  return blocks;
}

// 4 KiB random reads, one thread, POSIX_FADV_RANDOM (no readahead), cold caches.
void RandRead(const Options& o, const Reporter& rep) {
  std::vector<char> pool = MakePool(Kind::kCt);
  const std::string path = RandPath(o);
  const size_t file_bytes = o.rand_file_mib * kMiB;
  std::vector<uint32_t> blocks = RandomBlocks(file_bytes, 1);
  size_t ops = std::min(o.rand_ops, blocks.size());
  FadviseDontNeed(path);
  bool dropped = DropCaches(o);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) DieErrno("open", path);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
  alignas(4096) static char buf[4096];
  std::vector<double> lat;
  lat.reserve(ops);
  size_t mismatches = 0, done = 0;
  double t0 = Now(), deadline = t0 + o.rand_seconds;
  for (; done < ops; done++) {
    off_t off = static_cast<off_t>(blocks[done]) * 4096;
    double a = Now();
    ssize_t n = ::pread(fd, buf, 4096, off);
    double b = Now();
    if (n != 4096) DieErrno("pread", path);
    lat.push_back(b - a);
    if (o.verify &&
        std::memcmp(buf, pool.data() + static_cast<size_t>(off) % kPoolBytes, 4096) != 0)
      mismatches++;
    if (b > deadline) {
      done++;
      break;
    }
  }
  double secs = Now() - t0;
  ::close(fd);
  Percentiles p = Summarize(lat);
  Json j = rep.Begin("randread");
  j.Num("ops", static_cast<double>(done)).Num("seconds", secs);
  j.Num("ops_per_s", static_cast<double>(done) / secs);
  AddLatency(&j, "lat", p);
  j.Num("mismatches", static_cast<double>(mismatches)).Bool("dropped_caches", dropped);
  j.Bool("verified", o.verify);
  rep.Emit(j, Fmt("randread 4k     %6zu ops %8.0f ops/s  p50 %.3f ms  p99 %.3f ms%s", done,
                  static_cast<double>(done) / secs, p.p50 * 1e3, p.p99 * 1e3,
                  mismatches ? "  DATA MISMATCH" : ""));
}

// 4 KiB random overwrites, one thread, then one fsync; ops/s counts the fsync.
void RandWrite(const Options& o, const Reporter& rep) {
  std::vector<char> pool = MakePool(Kind::kCt);
  const std::string path = RandPath(o);
  const size_t file_bytes = o.rand_file_mib * kMiB;
  std::vector<uint32_t> blocks = RandomBlocks(file_bytes, 2);
  size_t ops = std::min(o.rand_ops, blocks.size());
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) DieErrno("open", path);
  std::vector<double> lat;
  lat.reserve(ops);
  size_t done = 0;
  double t0 = Now(), deadline = t0 + o.rand_seconds;
  for (; done < ops; done++) {
    off_t off = static_cast<off_t>(blocks[done]) * 4096;
    // Different bytes than the block held (an earlier slice's pixels), still CT-like.
    const char* src = pool.data() + (static_cast<size_t>(off) + 3 * kSliceBytes) % kPoolBytes;
    double a = Now();
    PwriteAll(fd, src, 4096, off, path);
    double b = Now();
    lat.push_back(b - a);
    if (b > deadline) {
      done++;
      break;
    }
  }
  double t_fsync = Now();
  if (::fsync(fd) != 0) DieErrno("fsync", path);
  double fsync_s = Now() - t_fsync;
  ::close(fd);
  double secs = Now() - t0;
  Percentiles p = Summarize(lat);
  Json j = rep.Begin("randwrite");
  j.Num("ops", static_cast<double>(done)).Num("seconds", secs);
  j.Num("ops_per_s", static_cast<double>(done) / secs).Num("fsync_seconds", fsync_s);
  AddLatency(&j, "lat", p);
  rep.Emit(j, Fmt("randwrite 4k    %6zu ops %8.0f ops/s  p50 %.3f ms  p99 %.3f ms (fsync %.2f s)",
                  done, static_cast<double>(done) / secs, p.p50 * 1e3, p.p99 * 1e3, fsync_s));
}

// The PACS tree: pacs/stNN/seNN/iNNNNN.dcm; the global instance number picks the slice.
struct PacsFile {
  std::string path;
  size_t index;
};

std::string PacsRoot(const Options& o) { return Join(o.dir, "pacs"); }

std::vector<PacsFile> PacsFiles(const Options& o) {
  std::vector<PacsFile> files;
  size_t idx = 0;
  for (size_t st = 0; st < o.studies; st++)
    for (size_t se = 0; se < o.series; se++)
      for (size_t in = 0; in < o.instances; in++, idx++)
        files.push_back({PacsRoot(o) + Fmt("/st%02zu/se%02zu/i%05zu.dcm", st, se, idx), idx});
  return files;
}

const char* FileData(const std::vector<char>& pool, size_t index, size_t file_bytes) {
  return pool.data() + (index * file_bytes) % (kPoolBytes - file_bytes + 1);
}

// Ingest: ingest_threads writers (PACS associations), each taking whole studies: mkdir the
// study and series, then per instance create, write in ingest_write_kib pieces, fsync, close.
void Ingest(const Options& o, const Reporter& rep) {
  std::vector<char> pool = MakePool(Kind::kCt);
  const size_t fb = o.file_kib * kKiB, wb = std::max<size_t>(1, o.ingest_write_kib) * kKiB;
  if (fb > kPoolBytes) Die("--file-kib too large");
  std::vector<PacsFile> files = PacsFiles(o);
  MkdirP(PacsRoot(o));
  std::atomic<size_t> next_study{0};
  std::mutex mu;
  // Per file: the whole (open..close), and its steps: create, the writes, fsync, close.
  std::vector<double> lat, lat_create, lat_write, lat_fsync, lat_close;
  const size_t per_study = o.series * o.instances;
  double t0 = Now();
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < o.ingest_threads; t++)
    threads.emplace_back([&] {
      std::vector<double> mine, m_create, m_write, m_fsync, m_close;
      for (size_t st; (st = next_study++) < o.studies;) {
        MkdirP(PacsRoot(o) + Fmt("/st%02zu", st));
        for (size_t se = 0; se < o.series; se++)
          MkdirP(PacsRoot(o) + Fmt("/st%02zu/se%02zu", st, se));
        for (size_t k = 0; k < per_study; k++) {
          const PacsFile& f = files[st * per_study + k];
          const char* data = FileData(pool, f.index, fb);
          double a = Now();
          int fd = ::open(f.path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
          if (fd < 0) DieErrno("create", f.path);
          double b = Now();
          for (size_t off = 0; off < fb; off += wb)
            WriteAll(fd, data + off, std::min(wb, fb - off), f.path);
          double c = Now();
          if (::fsync(fd) != 0) DieErrno("fsync", f.path);
          double d = Now();
          if (::close(fd) != 0) DieErrno("close", f.path);
          double e = Now();
          mine.push_back(e - a);
          m_create.push_back(b - a);
          m_write.push_back(c - b);
          m_fsync.push_back(d - c);
          m_close.push_back(e - d);
        }
      }
      std::lock_guard<std::mutex> l(mu);
      lat.insert(lat.end(), mine.begin(), mine.end());
      lat_create.insert(lat_create.end(), m_create.begin(), m_create.end());
      lat_write.insert(lat_write.end(), m_write.begin(), m_write.end());
      lat_fsync.insert(lat_fsync.end(), m_fsync.begin(), m_fsync.end());
      lat_close.insert(lat_close.end(), m_close.begin(), m_close.end());
    });
  for (auto& th : threads) th.join();
  double secs = Now() - t0;
  Percentiles p = Summarize(lat);
  double bytes = static_cast<double>(files.size() * fb);
  Json j = rep.Begin("ingest");
  j.Num("files", static_cast<double>(files.size())).Num("file_bytes", static_cast<double>(fb));
  j.Num("threads", o.ingest_threads).Num("seconds", secs);
  j.Num("files_per_s", static_cast<double>(files.size()) / secs);
  j.Num("mb_per_s", bytes / secs / 1e6);
  AddLatency(&j, "file", p);
  Percentiles pc = Summarize(lat_create), pw = Summarize(lat_write), pf = Summarize(lat_fsync),
              pz = Summarize(lat_close);
  AddLatency(&j, "create", pc);
  AddLatency(&j, "write", pw);
  AddLatency(&j, "fsync", pf);
  AddLatency(&j, "close", pz);
  rep.Emit(j, Fmt("ingest          %6zu files %6.0f files/s %7.1f MB/s  p50 %.2f ms  p99 %.2f ms "
                  "(%u writers; p50 create %.2f write %.2f fsync %.2f close %.2f ms)",
                  files.size(), static_cast<double>(files.size()) / secs, bytes / secs / 1e6,
                  p.p50 * 1e3, p.p99 * 1e3, o.ingest_threads, pc.p50 * 1e3, pw.p50 * 1e3,
                  pf.p50 * 1e3, pz.p50 * 1e3));
}

// Parallel readers of the ingested files, cold caches: each file once, in random order, taken
// from a shared queue by `readers` threads; latency is open + read to EOF + close.
void PacsRead(const Options& o, const Reporter& rep) {
  std::vector<char> pool = MakePool(Kind::kCt);
  const size_t fb = o.file_kib * kKiB;
  std::vector<PacsFile> files = PacsFiles(o);
  files.erase(files.begin(),
              files.begin() + static_cast<ptrdiff_t>(
                                  std::min(files.size(), o.first_study * o.series * o.instances)));
  if (files.empty())
    Die("pacsread: no files (--first-study %zu of %zu studies)", o.first_study, o.studies);
  Shuffle(&files, 3);
  bool dropped = DropCaches(o);
  // Another workload's --ready-file: start together with it (the data pool is already made).
  for (double until = Now() + 600; !o.wait_file.empty();) {
    struct stat st;
    if (::stat(o.wait_file.c_str(), &st) == 0) break;
    if (Now() > until) Die("pacsread: %s did not appear within 600 s", o.wait_file.c_str());
    ::usleep(5000);
  }
  if (!o.ready_file.empty()) {  // tells a script that runs something alongside: starting now
    int fd = ::open(o.ready_file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) DieErrno("create", o.ready_file);
    ::close(fd);
  }
  std::atomic<size_t> next{0}, mismatches{0}, bytes{0};
  std::mutex mu;
  std::vector<double> lat;
  std::vector<double> starts(files.size()), lats(files.size());
  double t0 = Now();
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < o.readers; t++)
    threads.emplace_back([&] {
      std::vector<char> buf(fb + kMiB);
      std::vector<double> mine;
      for (size_t i; (i = next++) < files.size();) {
        const PacsFile& f = files[i];
        double a = Now();
        starts[i] = a - t0;
        int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) DieErrno("open", f.path);
        size_t n = ReadFull(fd, buf.data(), buf.size(), f.path);
        ::close(fd);
        mine.push_back(Now() - a);
        lats[i] = mine.back();
        bytes += n;
        if (n != fb || (o.verify && std::memcmp(buf.data(), FileData(pool, f.index, fb), fb) != 0))
          mismatches++;
      }
      std::lock_guard<std::mutex> l(mu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  for (auto& th : threads) th.join();
  double secs = Now() - t0;
  if (!o.latency_log.empty()) {  // where in the run the slow files were (bench/README.md)
    FILE* lf = std::fopen(o.latency_log.c_str(), "w");
    if (lf == nullptr) DieErrno("create", o.latency_log);
    std::fprintf(lf, "# start_s latency_s path (start: seconds after the first open)\n");
    for (size_t i = 0; i < files.size(); i++)
      std::fprintf(lf, "%.6f %.6f %s\n", starts[i], lats[i], files[i].path.c_str());
    std::fclose(lf);
  }
  Percentiles p = Summarize(lat);
  Json j = rep.Begin("pacsread");
  j.Num("files", static_cast<double>(files.size())).Num("readers", o.readers);
  j.Num("seconds", secs).Num("files_per_s", static_cast<double>(files.size()) / secs);
  j.Num("mb_per_s", static_cast<double>(bytes.load()) / secs / 1e6);
  AddLatency(&j, "file", p);
  j.Num("mismatches", static_cast<double>(mismatches.load())).Bool("dropped_caches", dropped);
  j.Bool("verified", o.verify);
  rep.Emit(j, Fmt("pacsread        %6zu files %6.0f files/s %7.1f MB/s  p50 %.2f ms  p99 %.2f ms "
                  "(%u readers)%s",
                  files.size(), static_cast<double>(files.size()) / secs,
                  static_cast<double>(bytes.load()) / secs / 1e6, p.p50 * 1e3, p.p99 * 1e3,
                  o.readers, mismatches.load() ? "  DATA MISMATCH" : ""));
}

int RemoveVisit(const char* path, const struct stat*, int, FTW*) { return ::remove(path); }

// Metadata: create (empty files), stat, readdir, rename, unlink over meta_dirs x meta_files,
// one thread; caches are dropped before stat and readdir so they reach the file system.
void Meta(const Options& o, const Reporter& rep) {
  const std::string root = Join(o.dir, "meta");
  struct stat st;
  if (::lstat(root.c_str(), &st) == 0 &&  // left over by an interrupted run
      ::nftw(root.c_str(), RemoveVisit, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0)
    DieErrno("cannot remove", root);
  MkdirP(root);
  std::vector<std::string> dirs;
  for (size_t d = 0; d < o.meta_dirs; d++) dirs.push_back(root + Fmt("/d%03zu", d));
  const size_t n = o.meta_dirs * o.meta_files;
  auto name = [&](size_t d, size_t f, char c) { return dirs[d] + Fmt("/%c%05zu", c, f); };
  auto each = [&](const std::function<void(size_t, size_t)>& fn) {
    for (size_t d = 0; d < o.meta_dirs; d++)
      for (size_t f = 0; f < o.meta_files; f++) fn(d, f);
  };
  Json j = rep.Begin("meta");
  j.Num("files", static_cast<double>(n)).Num("dirs", static_cast<double>(o.meta_dirs));
  std::string human = Fmt("meta %6zu files:", n);
  auto record = [&](const char* op, size_t count, double secs) {
    j.Num((std::string(op) + "_per_s").c_str(), static_cast<double>(count) / secs);
    human += Fmt(" %s %.0f/s", op, static_cast<double>(count) / secs);
  };

  double t0 = Now();
  for (const std::string& d : dirs) MkdirP(d);
  each([&](size_t d, size_t f) {
    std::string p = name(d, f, 'f');
    int fd = ::open(p.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) DieErrno("create", p);
    ::close(fd);
  });
  record("create", n, Now() - t0);

  bool dropped = DropCaches(o);
  t0 = Now();
  each([&](size_t d, size_t f) {
    struct stat st;
    std::string p = name(d, f, 'f');
    if (::stat(p.c_str(), &st) != 0) DieErrno("stat", p);
  });
  record("stat", n, Now() - t0);

  DropCaches(o);
  t0 = Now();
  size_t entries = 0;
  for (const std::string& d : dirs) {
    DIR* dp = ::opendir(d.c_str());
    if (dp == nullptr) DieErrno("opendir", d);
    while (struct dirent* e = ::readdir(dp))
      if (e->d_name[0] != '.') entries++;
    ::closedir(dp);
  }
  if (entries != n) Die("readdir found %zu entries, expected %zu", entries, n);
  record("readdir", entries, Now() - t0);  // entries listed per second

  t0 = Now();
  each([&](size_t d, size_t f) {
    std::string a = name(d, f, 'f'), b = name(d, f, 'g');
    if (::rename(a.c_str(), b.c_str()) != 0) DieErrno("rename", a);
  });
  record("rename", n, Now() - t0);

  t0 = Now();
  each([&](size_t d, size_t f) {
    std::string p = name(d, f, 'g');
    if (::unlink(p.c_str()) != 0) DieErrno("unlink", p);
  });
  record("unlink", n, Now() - t0);
  for (const std::string& d : dirs) ::rmdir(d.c_str());
  ::rmdir(root.c_str());
  j.Bool("dropped_caches", dropped);
  rep.Emit(j, human);
}

// ---------------------------------------------------------------------------------------------

[[noreturn]] void PrintUsage() {
  std::fprintf(
      stderr,
      "usage: strata_fsbench WORKLOAD --dir DIR [options]\n"
      "       strata_fsbench gen ct|random --size-mib N   (the data, to stdout)\n"
      "workloads (run in this order; later ones use earlier files):\n"
      "  seqwrite seqread     N MiB in 1 MiB writes + fsync / 1 MiB reads (--kind ct|random)\n"
      "  randfile             creates the file for randread/randwrite\n"
      "  randread randwrite   4 KiB random reads / overwrites\n"
      "  ingest pacsread      PACS tree of files: parallel fsync'ed writes / parallel readers\n"
      "  meta                 create, stat, readdir, rename, unlink of many empty files\n"
      "  all                  every one of these, in order (both kinds for seq*)\n"
      "options:\n"
      "  --dir DIR            directory on the file system under test\n"
      "  --target NAME        label for the results (default: dir)\n"
      "  --hot DIR            where the target stores its bytes: seqwrite reports the growth\n"
      "  --json FILE          also append the JSON lines to FILE\n"
      "  --kind ct|random     data for seqwrite/seqread (default ct)\n"
      "  --quick              smaller sizes (about 1/4)\n"
      "  --size-mib N         seqwrite/seqread size (1024; quick 256)\n"
      "  --rand-file-mib N    random I/O file size (256; quick 64)\n"
      "  --rand-ops N         random ops per phase (20000; quick 5000)\n"
      "  --rand-seconds S     time cap per random phase (20; quick 5)\n"
      "  --studies N --series N --instances N   PACS tree (20 x 5 x 20; quick 4 x 5 x 20)\n"
      "  --file-kib N         PACS file size (512)\n"
      "  --ingest-write-kib N write size for ingest (128)\n"
      "  --ingest-threads N   concurrent ingest writers (4)\n"
      "  --readers N          pacsread threads (32)\n"
      "  --ready-file PATH    pacsread: create PATH when the timed reads start\n"
      "  --first-study K      pacsread: read only studies K.. (default 0)\n"
      "  --wait-file PATH     pacsread: start the timed reads once PATH exists\n"
      "  --latency-log PATH   pacsread: write each file's start and latency to PATH\n"
      "  --meta-dirs N --meta-files N   metadata tree (100 x 200; quick 50 x 100)\n"
      "  --no-drop-caches     do not drop the kernel caches before reads\n"
      "  --no-verify          check only the sizes reads return, not the bytes (a target that\n"
      "                       discards data: strata mount --null-data)\n");
  std::exit(1);
}

int Main(int argc, char** argv) {
  if (argc < 2) PrintUsage();
  Options o;
  o.workload = argv[1];
  std::string gen_kind;
  int i = 2;
  if (o.workload == "gen") {
    if (argc < 3) PrintUsage();
    gen_kind = argv[2];
    i = 3;
  }
  // --quick first, so explicit sizes win regardless of order.
  for (int k = i; k < argc; k++)
    if (std::strcmp(argv[k], "--quick") == 0) {
      o.quick = true;
      o.seq_mib = 256;
      o.rand_file_mib = 64;
      o.rand_ops = 5000;
      o.rand_seconds = 5;
      o.studies = 4;
      o.meta_dirs = 50;
      o.meta_files = 100;
    }
  for (; i < argc; i++) {
    std::string a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) Die("%s needs a value", a.c_str());
      return argv[++i];
    };
    if (a == "--quick") continue;
    if (a == "--dir")
      o.dir = val();
    else if (a == "--target")
      o.target = val();
    else if (a == "--hot")
      o.hot = val();
    else if (a == "--json")
      o.json_path = val();
    else if (a == "--kind") {
      std::string k = val();
      if (k == "ct")
        o.kind = Kind::kCt;
      else if (k == "random")
        o.kind = Kind::kRandom;
      else
        Die("--kind must be ct or random");
    } else if (a == "--size-mib")
      o.seq_mib = ParseCount(val());
    else if (a == "--rand-file-mib")
      o.rand_file_mib = ParseCount(val());
    else if (a == "--rand-ops")
      o.rand_ops = ParseCount(val());
    else if (a == "--rand-seconds")
      o.rand_seconds = static_cast<double>(ParseCount(val()));
    else if (a == "--studies")
      o.studies = ParseCount(val());
    else if (a == "--series")
      o.series = ParseCount(val());
    else if (a == "--instances")
      o.instances = ParseCount(val());
    else if (a == "--file-kib")
      o.file_kib = ParseCount(val());
    else if (a == "--ingest-write-kib")
      o.ingest_write_kib = ParseCount(val());
    else if (a == "--ingest-threads")
      o.ingest_threads = static_cast<unsigned>(ParseCount(val()));
    else if (a == "--readers")
      o.readers = static_cast<unsigned>(ParseCount(val()));
    else if (a == "--ready-file")
      o.ready_file = val();
    else if (a == "--first-study")
      o.first_study = ParseCount(val());
    else if (a == "--wait-file")
      o.wait_file = val();
    else if (a == "--latency-log")
      o.latency_log = val();
    else if (a == "--meta-dirs")
      o.meta_dirs = ParseCount(val());
    else if (a == "--meta-files")
      o.meta_files = ParseCount(val());
    else if (a == "--no-drop-caches")
      o.drop_caches = false;
    else if (a == "--no-verify")
      o.verify = false;
    else
      Die("unknown option %s (run without arguments for help)", a.c_str());
  }

  if (o.workload == "gen") {
    if (gen_kind != "ct" && gen_kind != "random") PrintUsage();
    Kind k = gen_kind == "ct" ? Kind::kCt : Kind::kRandom;
    std::vector<char> pool = MakePool(k);
    for (size_t off = 0; off < o.seq_mib * kMiB; off += kMiB)
      WriteAll(1, pool.data() + off % kPoolBytes, kMiB, "stdout");
    return 0;
  }
  if (o.dir.empty()) Die("--dir is required");
  if (o.rand_file_mib == 0 || o.seq_mib == 0 || o.ingest_threads == 0 || o.readers == 0)
    Die("sizes and thread counts must be positive");
  struct stat st;
  if (::stat(o.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) DieErrno("not a directory:", o.dir);

  Reporter rep(o);
  const std::map<std::string, std::function<void()>> workloads = {
      {"seqwrite", [&] { SeqWrite(o, rep); }},   {"seqread", [&] { SeqRead(o, rep); }},
      {"randfile", [&] { RandFile(o, rep); }},   {"randread", [&] { RandRead(o, rep); }},
      {"randwrite", [&] { RandWrite(o, rep); }}, {"ingest", [&] { Ingest(o, rep); }},
      {"pacsread", [&] { PacsRead(o, rep); }},   {"meta", [&] { Meta(o, rep); }},
  };
  if (o.workload == "all") {
    for (Kind k : {Kind::kCt, Kind::kRandom}) {
      o.kind = k;
      SeqWrite(o, rep);
      SeqRead(o, rep);
    }
    for (const char* w : {"randfile", "randread", "randwrite", "ingest", "pacsread", "meta"})
      workloads.at(w)();
    return 0;
  }
  auto it = workloads.find(o.workload);
  if (it == workloads.end()) PrintUsage();
  it->second();
  return 0;
}

}  // namespace
}  // namespace strata::bench

int main(int argc, char** argv) { return strata::bench::Main(argc, argv); }
