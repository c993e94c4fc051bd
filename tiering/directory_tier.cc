#include "tiering/directory_tier.h"

#include <algorithm>
#include <atomic>
#include <functional>

#include "base/logging.h"

namespace strata::tiering {
namespace {

constexpr size_t kCopyBuffer = 1 << 20;
constexpr const char* kTmpSuffix = ".strata-tmp";

bool MeansShareIsGone(const Status& s) {
  if (!s.IsIOError()) return false;
  int e = s.ToErrno();
  return e == ESTALE || e == ENOTCONN || e == EHOSTDOWN || e == ETIMEDOUT || e == EHOSTUNREACH ||
         e == ENETDOWN || e == ENETUNREACH || e == ECONNABORTED || e == ECONNRESET;
}

class DirectoryTier final : public Tier {
 public:
  DirectoryTier(Env* env, DirectoryTierOptions o) : env_(env), o_(std::move(o)) {}

  const std::string& name() const override { return o_.name; }

  Status PutFile(const std::string& key, const std::string& local_path) override {
    auto src = env_->OpenFile(local_path, OpenMode::kReadOnly);
    if (!src.ok()) return src.status().WithContext("tier " + o_.name + ": put " + key);
    return PutWith(key, [&](File* dst) -> Status {
      std::string buf(kCopyBuffer, '\0');
      uint64_t off = 0;
      for (;;) {
        size_t got = 0;
        RETURN_IF_ERROR((*src)->Read(off, buf.size(), buf.data(), &got));
        if (got == 0) return Status::OK();
        RETURN_IF_ERROR(dst->Write(off, std::string_view(buf.data(), got)));
        off += got;
      }
    });
  }

  Status Put(const std::string& key, std::string_view data) override {
    return PutWith(key, [&](File* dst) { return dst->Write(0, data); });
  }

  Status Get(const std::string& key, uint64_t offset, uint64_t length, std::string* out) override {
    RETURN_IF_ERROR(CheckKey(key));
    auto f = env_->OpenFile(Path(key), OpenMode::kReadOnly);
    if (!f.ok()) return Classify(f.status(), "get " + key);
    out->resize(length);
    size_t got = 0;
    Status s = (*f)->Read(offset, length, out->data(), &got);
    if (!s.ok()) return Classify(s, "get " + key);
    if (got != length) {
      out->clear();
      return Status::Corruption(
          fmt::format("tier {}: get {}: wanted {} bytes at offset {}, object "
                      "ends after {}",
                      o_.name, key, length, offset, offset + got));
    }
    return Status::OK();
  }

  Result<uint64_t> Size(const std::string& key) override {
    RETURN_IF_ERROR(CheckKey(key));
    auto f = env_->OpenFile(Path(key), OpenMode::kReadOnly);
    if (!f.ok()) return Classify(f.status(), "size " + key);
    auto size = (*f)->Size();
    if (!size.ok()) return Classify(size.status(), "size " + key);
    return *size;
  }

  Status Delete(const std::string& key) override {
    RETURN_IF_ERROR(CheckKey(key));
    const std::string path = Path(key), dir = DirName(path);
    Status s = env_->RemoveFile(path);
    if (s.IsNotFound()) {
      RETURN_IF_ERROR(RootCheck("delete " + key));
    } else if (!s.ok()) {
      return Classify(s, "delete " + key);
    }
    bool removed = s.ok();
    // Temp files of a put of this key that a crash interrupted (PutWith's names): the rollback
    // of that upload deletes the key, and they go with it instead of leaking for ever.
    if (auto names = env_->ListDir(dir); names.ok()) {
      const std::string stem = path.substr(dir.size() + 1) + ".";
      for (const std::string& n : *names)
        if (IsTempOf(n, stem)) removed = env_->RemoveFile(JoinPath(dir, n)).ok() || removed;
    }
    if (!removed) return Status::OK();
    return Classify(env_->SyncDir(dir), "delete " + key);
  }

  Status List(const std::string& prefix, std::vector<ObjectInfo>* out) override {
    out->clear();
    RETURN_IF_ERROR(RootCheck("list"));
    RETURN_IF_ERROR(Walk("", prefix, out));
    std::sort(out->begin(), out->end(),
              [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return Status::OK();
  }

 private:
  std::string Path(const std::string& key) const { return JoinPath(o_.root, key); }

  Status CheckKey(const std::string& key) const {
    bool bad = key.empty() || key.front() == '/' || key.back() == '/' ||
               key.find("//") != std::string::npos || key.find('\0') != std::string::npos ||
               key.ends_with(kTmpSuffix);
    for (size_t p = 0; !bad && p != std::string::npos;) {
      size_t q = key.find('/', p);
      std::string_view part(key.data() + p, (q == std::string::npos ? key.size() : q) - p);
      bad = part == "." || part == "..";
      p = q == std::string::npos ? q : q + 1;
    }
    if (bad) return Status::InvalidArgument("tier " + o_.name + ": bad object key '" + key + "'");
    return Status::OK();
  }

  // A missing file is NotFound only while the tier's root is there; without the root the
  // share is unmounted or gone, which is an outage, not a lost object.
  Status RootCheck(const std::string& what) {
    auto exists = env_->FileExists(o_.root);
    if (exists.ok() && *exists) return Status::OK();
    return Status::Unavailable("tier " + o_.name + ": " + what + ": directory " + o_.root +
                               (exists.ok() ? " does not exist (is the share mounted?)"
                                            : ": " + exists.status().ToString()));
  }

  Status Classify(const Status& s, const std::string& what) {
    if (s.ok()) return s;
    if (s.IsNotFound()) {
      RETURN_IF_ERROR(RootCheck(what));
      return Status::NotFound("tier " + o_.name + ": " + what + ": no such object");
    }
    if (MeansShareIsGone(s))
      return Status::Unavailable("tier " + o_.name + ": " + what + ": " + s.ToString());
    return s.WithContext("tier " + o_.name + ": " + what);
  }

  // `name` is `<stem><digits>-<digits>.strata-tmp`: a temp file of a put of the stem's key only
  // (not of a key that merely starts with it).
  static bool IsTempOf(const std::string& name, const std::string& stem) {
    const std::string_view suffix = kTmpSuffix;
    if (!name.starts_with(stem) || !name.ends_with(suffix) ||
        name.size() < stem.size() + suffix.size() + 3)
      return false;
    const std::string_view mid(name.data() + stem.size(),
                               name.size() - stem.size() - suffix.size());
    const size_t dash = mid.find('-');
    auto digits = [](std::string_view d) {
      return !d.empty() &&
             std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    return dash != std::string_view::npos && digits(mid.substr(0, dash)) &&
           digits(mid.substr(dash + 1));
  }

  Status MakeParents(const std::string& key) {
    size_t p = 0;
    while ((p = key.find('/', p)) != std::string::npos) {
      RETURN_IF_ERROR(CreateDirDurably(env_, Path(key.substr(0, p)), 0750));
      ++p;
    }
    return Status::OK();
  }

  Status PutWith(const std::string& key, const std::function<Status(File*)>& fill) {
    RETURN_IF_ERROR(CheckKey(key));
    RETURN_IF_ERROR(RootCheck("put " + key));
    const std::string what = "put " + key;
    Status s = MakeParents(key);
    if (!s.ok()) return Classify(s, what);
    const std::string final_path = Path(key);
    const std::string tmp =
        fmt::format("{}.{}-{}{}", final_path, env_->NowNanos(), ++tmp_counter_, kTmpSuffix);
    s = [&]() -> Status {
      ASSIGN_OR_RETURN(auto f, env_->OpenFile(tmp, OpenMode::kCreate));
      RETURN_IF_ERROR(f->Truncate(0));
      RETURN_IF_ERROR(fill(f.get()));
      RETURN_IF_ERROR(f->Sync());
      RETURN_IF_ERROR(env_->RenameFile(tmp, final_path));
      return env_->SyncDir(DirName(final_path));
    }();
    if (!s.ok()) {
      env_->RemoveFile(tmp).IgnoreError();  // best effort; List never reports temp files
      return Classify(s, what);
    }
    return Status::OK();
  }

  Status Walk(const std::string& rel_dir, const std::string& prefix, std::vector<ObjectInfo>* out) {
    auto names = env_->ListDir(rel_dir.empty() ? o_.root : Path(rel_dir));
    if (!names.ok()) return Classify(names.status(), "list " + rel_dir);
    for (const std::string& n : *names) {
      std::string key = rel_dir.empty() ? n : rel_dir + "/" + n;
      if (n.ends_with(kTmpSuffix)) continue;
      // Prune subtrees that cannot hold a key with this prefix.
      size_t common = std::min(key.size(), prefix.size());
      if (key.compare(0, common, prefix, 0, common) != 0) continue;
      auto f = env_->OpenFile(Path(key), OpenMode::kReadOnly);
      if (!f.ok()) return Classify(f.status(), "list " + key);
      auto size = (*f)->Size();
      // Directories open read-only too; tell them apart by trying to list them.
      auto sub = env_->ListDir(Path(key));
      if (sub.ok()) {
        RETURN_IF_ERROR(Walk(key, prefix, out));
        continue;
      }
      if (!size.ok()) return Classify(size.status(), "list " + key);
      if (key.starts_with(prefix)) out->push_back({key, *size});
    }
    return Status::OK();
  }

  Env* env_;
  DirectoryTierOptions o_;
  std::atomic<uint64_t> tmp_counter_{0};
};

}  // namespace

Result<std::unique_ptr<Tier>> OpenDirectoryTier(Env* env, const DirectoryTierOptions& options) {
  if (options.root.empty() || options.root.front() != '/')
    return Status::InvalidArgument("tier " + options.name + ": path '" + options.root +
                                   "' must be absolute");
  return std::unique_ptr<Tier>(new DirectoryTier(env, options));
}

}  // namespace strata::tiering
