// SecretBytes, LoadKeyFile and the helpers every other crypto file shares.

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "base/logging.h"
#include "crypto/crypto.h"
#include "crypto/internal.h"

namespace strata::crypto {
namespace internal {

std::string DrainOpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error" : out;
}

void Fatal(std::string_view what) {
  log::Error("crypto: {} ({}); aborting", what, DrainOpenSslErrors());
  std::abort();
}

void HkdfSha256(const SecretBytes& ikm, std::string_view info, SecretBytes* out) {
  // Fetched once; EVP_KDF objects are immutable and safe to share between threads.
  static EVP_KDF* const hkdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (hkdf == nullptr) Fatal("cannot fetch HKDF");
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(hkdf);
  if (ctx == nullptr) Fatal("EVP_KDF_CTX_new failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<unsigned char*>(ikm.data()),
                                        ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()),
                                        info.size()),
      OSSL_PARAM_construct_end(),
  };
  int rc = EVP_KDF_derive(ctx, out->data(), out->size(), params);
  EVP_KDF_CTX_free(ctx);  // cleanses the PRK it held
  if (rc != 1) Fatal("HKDF-SHA256 failed");
}

SecretBytes CopySecret(const unsigned char* data, size_t n) {
  SecretBytes s(n);
  if (n > 0) std::memcpy(s.data(), data, n);
  return s;
}

}  // namespace internal

namespace {

std::atomic<bool> g_warned_mlock{false};

}  // namespace

SecretBytes::SecretBytes() = default;

SecretBytes::SecretBytes(size_t n) {
  if (n == 0) return;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t mapped = (n + page - 1) / page * page;
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) internal::Fatal("mmap for key material failed");
  // Both are best effort: a key that can be swapped or dumped is still better than no key.
  if (mlock(p, mapped) != 0 && !g_warned_mlock.exchange(true)) {
    log::Warn(
        "crypto: mlock of key material failed ({}); keys may be written to swap. "
        "Raise RLIMIT_MEMLOCK (LimitMEMLOCK= in the systemd unit).",
        std::strerror(errno));
  }
  madvise(p, mapped, MADV_DONTDUMP);
  data_ = static_cast<unsigned char*>(p);  // anonymous mappings are zero-filled
  size_ = n;
  mapped_ = mapped;
}

SecretBytes SecretBytes::Random(size_t n) {
  SecretBytes s(n);
  if (n > 0 && RAND_priv_bytes(s.data(), static_cast<int>(n)) != 1) {
    internal::Fatal("the OpenSSL random generator failed");
  }
  return s;
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
  }
  return *this;
}

SecretBytes::~SecretBytes() { Release(); }

void SecretBytes::Release() {
  if (data_ == nullptr) return;
  OPENSSL_cleanse(data_, mapped_);
  munlock(data_, mapped_);
  munmap(data_, mapped_);
  data_ = nullptr;
  size_ = 0;
  mapped_ = 0;
}

namespace {

constexpr size_t kMaxKeyFileRead = 4096;  // anything longer is reported as "more than"

int HexValue(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() { close(fd_); }

 private:
  int fd_;
};

}  // namespace

Result<SecretBytes> LoadKeyFile(const std::string& path) {
  const std::string what = "key file " + path;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound(what + ": no such file");
    return Status::IOError(what + ": open", errno);
  }
  FdCloser closer(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) return Status::IOError(what + ": stat", errno);
  if (S_ISDIR(st.st_mode)) return Status::InvalidArgument(what + ": is a directory");
  if (S_ISREG(st.st_mode) && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    log::Warn("{}: mode {:04o} gives group or others access to the key; run chmod 600 on it", what,
              static_cast<unsigned>(st.st_mode & 07777));
  }

  // Read into locked memory; also works for a pipe (/dev/stdin) or a systemd credential.
  SecretBytes buf(kMaxKeyFileRead + 1);
  size_t n = 0;
  while (n < buf.size()) {
    ssize_t r = read(fd, buf.data() + n, buf.size() - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(what + ": read", errno);
    }
    if (r == 0) break;
    n += static_cast<size_t>(r);
  }

  const std::string expected = what + ": expected 32 bytes or 64 hex digits, found ";
  if (n == kKeySize) return internal::CopySecret(buf.data(), n);
  size_t digits = n;
  if (n == 2 * kKeySize + 1 && buf.data()[n - 1] == '\n') digits = n - 1;
  if (digits != 2 * kKeySize) {
    if (n > kMaxKeyFileRead) {
      return Status::InvalidArgument(expected + "more than " + std::to_string(kMaxKeyFileRead) +
                                     " bytes");
    }
    return Status::InvalidArgument(expected + std::to_string(n) + " bytes");
  }
  SecretBytes key(kKeySize);
  for (size_t i = 0; i < kKeySize; ++i) {
    int hi = HexValue(buf.data()[2 * i]);
    int lo = HexValue(buf.data()[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      // Never echo the offending byte: it may be key material.
      return Status::InvalidArgument(expected + std::to_string(n) +
                                     " bytes that are not all hex digits");
    }
    key.data()[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return key;
}

}  // namespace strata::crypto
